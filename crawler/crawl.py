"""One crawl: workers take URLs from the frontier, fetch them, and feed one sink.

Data flow per URL: frontier -> robots check -> fetcher -> (WARC sink thread || link extraction
in a worker process) -> scope -> frontier. The sink thread is the only writer of WARC files, so
records never interleave; extraction runs in another process so parsing uses the second core.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from multiprocessing import get_context
from pathlib import Path
from typing import IO, Any

from crawler import __version__, extract, urls
from crawler.errors import ExitCode, OutputError
from crawler.fetcher import Fetcher, FetchSettings
from crawler.frontier import Frontier
from crawler.models import CrawlUrl, Extracted, FailureKind, FetchResult, UrlKind
from crawler.package import PageEntry, write_cdxj, write_pages
from crawler.robots import ALLOW_ALL, RobotsPolicy, RobotsRules, rules_from_response
from crawler.scope import Scope, ScopeRules
from crawler.warc import IndexEntry, WarcSettings, WarcWriter

log = logging.getLogger("crawler.crawl")

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRY_FAILURES = frozenset({FailureKind.TIMEOUT, FailureKind.RESET, FailureKind.CONNECT})
_EXTRACT_TYPES = extract.HTML_TYPES | {"text/css"} | extract.SITEMAP_TYPES
MAX_EXTRACT_BYTES = 32 * 1024 * 1024
_TRAP_LOG_LIMIT = 20  # log this many hits per trap rule, then only count them


class StopReason(StrEnum):
    """Why a crawl ended."""

    COMPLETE = "complete"  # nothing left in scope
    MAX_PAGES = "max-pages"
    MAX_BYTES = "max-bytes"
    MAX_TIME = "max-time"
    INTERRUPTED = "interrupted"  # SIGINT/SIGTERM


@dataclass(frozen=True, slots=True)
class Limits:
    """When to stop a crawl that has not run out of URLs."""

    max_pages: int | None = None  # pages (seeds and links), requisites not counted
    max_bytes: int | None = None  # body bytes downloaded
    max_time: float | None = None  # seconds


@dataclass(frozen=True, slots=True)
class Politeness:
    """How hard the crawl may push each server. Defaults suit small, fragile NGO servers."""

    concurrency: int = 16  # requests in flight across all hosts
    per_host: int = 2  # requests in flight to one host
    delay: float = 0.5  # seconds between request starts to one host
    retries: int = 2  # extra attempts for timeouts, resets, 429 and 5xx
    backoff: float = 2.0  # first retry waits about this long, doubling each time
    max_retry_after: float = 300.0  # cap on a server's Retry-After


@dataclass(frozen=True, slots=True)
class CrawlSettings:
    """Everything one crawl needs; built by the CLI (or, later, from a target config)."""

    seeds: tuple[str, ...]
    output: Path = Path("archives")
    target: str | None = None  # defaults to the first seed's host
    scope: ScopeRules = field(default_factory=ScopeRules)
    limits: Limits = field(default_factory=Limits)
    politeness: Politeness = field(default_factory=Politeness)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    robots: RobotsPolicy = RobotsPolicy.OBEY
    warc_size: int = 1_000_000_000
    warc_prefix: str | None = None  # defaults to the target name
    sitemaps: bool = True  # read robots.txt Sitemap: lines and /sitemap.xml of seed hosts
    extract_workers: int = 1  # processes parsing HTML/CSS; 0 parses in the event loop
    operator: str | None = None  # who ran the crawl, for warcinfo

    def target_name(self) -> str:
        """Return the target name, derived from the first seed when not given."""
        if self.target:
            return self.target
        return re.sub(r"[^A-Za-z0-9._-]+", "-", urls.host_of(self.seeds[0])).strip("-") or "site"


@dataclass(slots=True)
class CrawlStats:
    """Live counters, read by the progress display and saved in crawl.json."""

    fetched: int = 0  # HTTP exchanges completed (any status)
    pages: int = 0  # seeds and pages fetched with 2xx HTML
    failed: int = 0  # network failures after retries
    retries: int = 0
    bytes: int = 0  # body bytes downloaded
    robots_blocked: int = 0
    out_of_scope: int = 0
    truncated: int = 0
    queued: int = 0
    in_flight: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "404", "dns", ...
    traps: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Return seconds since the crawl started."""
        return time.monotonic() - self.started

    def as_dict(self) -> dict[str, Any]:
        """Return the counters as JSON-ready data."""
        data = asdict(self)
        data.pop("started")
        data["elapsed_seconds"] = round(self.elapsed, 3)
        data["statuses"] = dict(self.statuses)
        data["traps"] = dict(self.traps)
        return data


@dataclass(frozen=True, slots=True)
class CrawlOutcome:
    """What a finished crawl produced."""

    crawl_id: str
    target: str
    directory: Path
    warcs: tuple[Path, ...]
    index: Path
    pages: Path
    stop_reason: StopReason
    exit_code: ExitCode
    stats: dict[str, Any]


def new_crawl_dir(root: Path, target: str) -> tuple[str, Path]:
    """Create and return (crawl id, directory) for a new crawl of ``target``."""
    base = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1000):
        crawl_id = base if n == 0 else f"{base}-{n}"
        path = root / target / crawl_id
        try:
            path.mkdir(parents=True, exist_ok=False)
            return crawl_id, path
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot create {path}: {exc}") from exc
    raise OutputError(f"too many crawls of {target} in one second under {root}")


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header (seconds or HTTP date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Crawl:
    """Runs one crawl to completion; ``request_stop()`` ends it gracefully."""

    def __init__(self, settings: CrawlSettings) -> None:
        if not settings.seeds:
            raise ValueError("a crawl needs at least one seed")
        self.settings = settings
        self.target = settings.target_name()
        self.crawl_id, self.directory = new_crawl_dir(settings.output, self.target)
        self.stats = CrawlStats()
        self.scope = Scope(settings.scope, list(settings.seeds))
        pol = settings.politeness
        self.frontier = Frontier(per_host=pol.per_host, delay=pol.delay)
        self._stop_reason: StopReason | None = None
        self._limited_by: StopReason | None = None  # a limit that dropped URLs without stopping
        self._robots: dict[str, RobotsRules] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self._sitemap_hosts: set[str] = set()
        self._seed_hosts = {urls.host_of(s) for s in settings.seeds}
        self._pages_queued = 0
        self._index: list[IndexEntry] = []
        self._pages: list[PageEntry] = []
        self._seed_keys = {urls.canonical_key(s) for s in settings.seeds}
        self._seeds_captured = 0
        self._log_file: IO[str] | None = None
        self.on_event: Callable[[str], None] | None = None
        self.warc = WarcWriter(WarcSettings(
            directory=self.directory / "warc",
            prefix=settings.warc_prefix or self.target,
            max_size=settings.warc_size,
            warcinfo=self._warcinfo_fields(),
        ))

    def _warcinfo_fields(self) -> dict[str, str]:
        """Return the crawl description written into every warcinfo record."""
        s = self.settings
        fields = {
            "isPartOf": f"{self.target}/{self.crawl_id}",
            "description": "seeds: " + " ".join(s.seeds),
            "robots": s.robots.value,
            "http-header-user-agent": s.fetch.user_agent,
            "scope": f"{s.scope.kind.value} depth={s.scope.depth}",
        }
        if s.operator:
            fields["operator"] = s.operator
        return fields

    # -- control ------------------------------------------------------------------------------

    def request_stop(self, reason: StopReason = StopReason.INTERRUPTED) -> None:
        """Stop taking new URLs; in-flight fetches finish and are written."""
        if self._stop_reason is None:
            self._stop_reason = reason
            log.info("stopping: %s", reason.value)
        self.frontier.close()

    @property
    def stopping(self) -> bool:
        """Return True once a stop was requested."""
        return self._stop_reason is not None

    # -- main loop ----------------------------------------------------------------------------

    async def run(self) -> CrawlOutcome:
        """Crawl until done, a limit, or a stop request; write indexes; return the outcome."""
        s = self.settings
        for seed in s.seeds:
            key = urls.canonical_key(seed)
            if self.frontier.add(CrawlUrl(url=seed, key=key, kind=UrlKind.SEED, depth=0)):
                self._pages_queued += 1
        self._log_file = open(self.directory / "crawl.log", "a", encoding="utf-8")  # noqa: SIM115
        write_pool = ThreadPoolExecutor(1, thread_name_prefix="warc-sink")
        parse_pool: Executor | None = None
        if s.extract_workers > 0:
            parse_pool = ProcessPoolExecutor(s.extract_workers, mp_context=get_context("spawn"))
        self._write_pool, self._parse_pool = write_pool, parse_pool
        timer = None
        try:
            async with Fetcher(s.fetch) as fetcher:
                self.fetcher = fetcher
                if s.limits.max_time is not None:
                    timer = asyncio.get_running_loop().call_later(
                        s.limits.max_time, self.request_stop, StopReason.MAX_TIME)
                workers = [asyncio.create_task(self._worker()) for _ in range(
                    max(1, s.politeness.concurrency))]
                await asyncio.gather(*workers)
        finally:
            if timer is not None:
                timer.cancel()
            warcs = await asyncio.get_running_loop().run_in_executor(write_pool, self.warc.close)
            write_pool.shutdown()
            if parse_pool is not None:
                parse_pool.shutdown(cancel_futures=True)
            self._log_file.close()
        return self._finish(warcs)

    def _finish(self, warcs: list[Path]) -> CrawlOutcome:
        """Write the index, page list and crawl.json."""
        reason = self._stop_reason or self._limited_by or StopReason.COMPLETE
        if reason is StopReason.INTERRUPTED:
            code = ExitCode.INTERRUPTED
        elif self._seeds_captured == 0:
            code = ExitCode.CRAWL_FAILED
        else:
            code = ExitCode.OK
        index = self.directory / "indexes" / "index.cdxj"
        pages = self.directory / "pages" / "pages.jsonl"
        write_cdxj(self._index, index)
        write_pages(self._pages, pages)
        self.stats.queued = self.frontier.queued
        left = self.frontier.drain()
        stats = self.stats.as_dict()
        outcome = CrawlOutcome(
            crawl_id=self.crawl_id, target=self.target, directory=self.directory,
            warcs=tuple(warcs), index=index, pages=pages, stop_reason=reason, exit_code=code,
            stats=stats)
        s = self.settings
        snapshot = {
            "software": f"crawler/{__version__}",
            "crawl_id": self.crawl_id,
            "target": self.target,
            "exit_status": code.name.lower(),
            "exit_code": int(code),
            "stop_reason": reason.value,
            "finished": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "seeds": list(s.seeds),
            "settings": _jsonable(asdict(s)),
            "stats": stats,
            "unfetched": len(left),
            "warcs": [p.name for p in warcs],
        }
        tmp = self.directory / "crawl.json.tmp"
        tmp.write_text(json.dumps(snapshot, indent=2, ensure_ascii=False) + "\n", "utf-8")
        os.replace(tmp, self.directory / "crawl.json")
        return outcome

    async def _worker(self) -> None:
        """Take URLs until the frontier is exhausted or closed."""
        while True:
            item = await self.frontier.get()
            if item is None:
                return
            self.stats.in_flight = self.frontier.in_flight
            state = _Slot()
            try:
                await self._process(item, state)
            except Exception:  # a bug must not kill the crawl; the URL is logged as lost
                log.exception("internal error while processing %s", item.url)
                self.stats.statuses["internal-error"] += 1
            finally:
                self.frontier.done(item, slot_released=state.released)
                self.stats.queued = self.frontier.queued
                self.stats.in_flight = self.frontier.in_flight

    async def _process(self, item: CrawlUrl, slot: _Slot) -> None:
        """Fetch one URL, write it, and queue what it links to."""
        host = urls.host_of(item.url)
        rules = await self._robots_for(item.url, host)
        if (self.settings.robots is RobotsPolicy.OBEY and item.kind is not UrlKind.ROBOTS
                and not rules.allowed(item.url, self.settings.fetch.user_agent)):
            self.stats.robots_blocked += 1
            self._log_line(item, None, "robots-disallowed")
            return
        result = await self.fetcher.fetch(item.url)
        self.frontier.release_host(item)
        slot.released = True
        try:
            await self._handle(item, result)
        finally:
            result.close()

    async def _handle(self, item: CrawlUrl, result: FetchResult) -> None:
        """Write a fetch result, retry or follow it."""
        self.stats.bytes += result.body_length
        retry_in = self._retry_delay(item, result)
        if retry_in is not None:
            # The failed attempt is kept in the WARC as evidence but not indexed for replay.
            await self._write(result, item)
            self.stats.retries += 1
            self._log_line(item, result, f"retry-in-{retry_in:.1f}s")
            self.frontier.back_off(urls.host_of(item.url), retry_in)
            self.frontier.retry(item)
            return
        media = result.content_type
        raw: bytes | None = None
        if (result.ok and 200 <= result.status < 300 and result.body_length <= MAX_EXTRACT_BYTES
                and (media in _EXTRACT_TYPES or item.kind is UrlKind.SITEMAP)
                and item.kind is not UrlKind.ROBOTS):
            raw = result.read_body()
        if raw is not None:
            entry, found = await asyncio.gather(
                self._write(result, item), self._extract(result, media, raw))
        else:
            entry, found = await self._write(result, item), Extracted()
        self._count(item, result, entry)
        self._log_line(item, result, "")
        if not result.ok:
            return
        if result.status in _REDIRECT_STATUSES:
            self._follow_redirect(item, result)
        elif 200 <= result.status < 300:
            if item.kind in (UrlKind.SEED, UrlKind.PAGE) and media in extract.HTML_TYPES:
                self._pages.append(PageEntry(item.url, result.started, found.title,
                                             result.status))
            elif item.kind is UrlKind.SEED:
                self._pages.append(PageEntry(item.url, result.started, None, result.status))
            self._queue_found(item, found)
        limits = self.settings.limits
        if limits.max_bytes is not None and self.stats.bytes >= limits.max_bytes:
            self.request_stop(StopReason.MAX_BYTES)

    def _retry_delay(self, item: CrawlUrl, result: FetchResult) -> float | None:
        """Return seconds to wait before retrying, or None if this result is final."""
        pol = self.settings.politeness
        if item.attempt >= pol.retries or self.stopping:
            return None
        transient = (result.failure in _RETRY_FAILURES or result.status in _RETRY_STATUSES
                     or (result.ok and result.truncated is not None
                         and result.truncated.value != "length"))
        if not transient:
            return None
        wait = pol.backoff * (2 ** item.attempt) * random.uniform(0.75, 1.25)
        told = retry_after_seconds(result.header("retry-after")) if result.ok else None
        if told is not None:
            wait = max(wait, min(told, pol.max_retry_after))
        return wait

    async def _write(self, result: FetchResult, item: CrawlUrl) -> IndexEntry | None:
        """Write the result in the sink thread; return its index entry if replayable."""
        extra = {"WARC-Crawler-Kind": item.kind.value}  # why we fetched it (audit trail)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._write_pool, self.warc.write_exchange, result,
                                          extra)

    async def _extract(self, result: FetchResult, media: str, raw: bytes) -> Extracted:
        """Find links in a body, in the parse process when there is one."""
        args = (result.url, media, raw, result.header("content-type"),
                result.header("content-encoding"))
        if self._parse_pool is not None:
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    self._parse_pool, extract.extract, *args)
            except BrokenProcessPool:
                log.warning("parser process died; parsing in the main process from now on")
                self._parse_pool = None
        try:
            return extract.extract(*args)
        except Exception:
            log.exception("could not extract links from %s", result.url)
            return Extracted()

    def _count(self, item: CrawlUrl, result: FetchResult, entry: IndexEntry | None) -> None:
        """Update counters (and the index) for a final result."""
        stats = self.stats
        if result.ok:
            stats.fetched += 1
            stats.statuses[str(result.status)] += 1
            if result.truncated is not None:
                stats.truncated += 1
            if entry is not None:
                self._index.append(entry)
            if item.kind in (UrlKind.SEED, UrlKind.PAGE) and 200 <= result.status < 300:
                stats.pages += 1
            if item.key in self._seed_keys:
                self._seeds_captured += 1
        else:
            stats.failed += 1
            stats.statuses[result.failure.value if result.failure else "failed"] += 1

    def _follow_redirect(self, item: CrawlUrl, result: FetchResult) -> None:
        """Queue the target of a redirect as its own capture, through scope."""
        location = result.header("location")
        target = urls.try_normalize(location, item.url) if location else None
        if target is None:
            return
        if item.kind is UrlKind.SEED:
            # A seed that redirects (http -> https, bare -> www) carries its scope with it.
            self.scope.add_seed(target)
            self._seed_keys.add(urls.canonical_key(target))
            self._seed_hosts.add(urls.host_of(target))
        self._offer(target, item.kind, item.depth, via=item.url, redirects=item.redirects + 1,
                    embeds=item.embeds)

    def _queue_found(self, item: CrawlUrl, found: Extracted) -> None:
        """Queue links, requisites and sitemaps found in a document."""
        keys = found.keys
        if item.kind in (UrlKind.SEED, UrlKind.PAGE, UrlKind.SITEMAP):
            for link in found.links:
                self._offer(link, UrlKind.PAGE, item.depth + 1, via=item.url,
                            key=keys.get(link))
        if item.kind is not UrlKind.SITEMAP:
            for link in found.requisites:
                self._offer(link, UrlKind.REQUISITE, item.depth, via=item.url,
                            embeds=item.embeds + 1, key=keys.get(link))
        for link in found.sitemaps:
            self._offer(link, UrlKind.SITEMAP, item.depth, via=item.url, key=keys.get(link))

    def _offer(self, url: str, kind: UrlKind, depth: int, *, via: str | None,
               redirects: int = 0, embeds: int = 0, key: str | None = None) -> None:
        """Pass one discovered URL through scope and limits into the frontier."""
        if self.stopping:
            return
        key = key or urls.canonical_key(url)
        if self.frontier.seen(key):
            return
        decision = self.scope.decide(url, kind, depth, redirects=redirects, embeds=embeds)
        if not decision.allowed:
            if decision.is_trap:
                self.stats.traps[decision.reason] += 1
                if self.stats.traps[decision.reason] <= _TRAP_LOG_LIMIT:
                    log.info("%s: %s (linked from %s)", decision.reason, url, via)
            else:
                self.stats.out_of_scope += 1
            return
        if kind in (UrlKind.PAGE, UrlKind.SEED):
            max_pages = self.settings.limits.max_pages
            if max_pages is not None and self._pages_queued >= max_pages:
                self._limited_by = StopReason.MAX_PAGES
                return
            self._pages_queued += 1
        self.frontier.add(CrawlUrl(url=url, key=key, kind=kind, depth=depth, via=via,
                                   redirects=redirects, embeds=embeds))

    async def _robots_for(self, url: str, host: str) -> RobotsRules:
        """Return the robots rules of ``host``, fetching robots.txt once (and recording it)."""
        rules = self._robots.get(host)
        if rules is not None:
            return rules
        lock = self._robots_locks.setdefault(host, asyncio.Lock())
        async with lock:
            rules = self._robots.get(host)
            if rules is None:
                rules = await self._fetch_robots(url, host)
                self._robots[host] = rules
        return rules

    async def _fetch_robots(self, url: str, host: str) -> RobotsRules:
        """Fetch robots.txt (following up to 5 redirects, each recorded) and parse it."""
        target = urls.robots_url(url)
        rules = ALLOW_ALL
        for hop in range(6):
            key = urls.canonical_key(target)
            self.frontier.mark_seen(key)  # robots.txt is fetched here, never from the queue
            item = CrawlUrl(url=target, key=key, kind=UrlKind.ROBOTS, depth=0, redirects=hop)
            result = await self.fetcher.fetch(target)
            try:
                self.stats.bytes += result.body_length
                entry = await self._write(result, item)
                self._count(item, result, entry)
                self._log_line(item, result, "")
                if not result.ok:
                    # Unreachable host: we still try its URLs so their failures are recorded as
                    # evidence (nothing reaches a server that did not answer). RFC 9309 §2.3.1.3
                    # asks for "complete disallow" here; see docs/crawling.md.
                    return ALLOW_ALL
                location = result.header("location")
                if result.status in _REDIRECT_STATUSES and location:
                    nxt = urls.try_normalize(location, target)
                    if nxt is None:
                        break
                    target = nxt
                    continue
                rules = rules_from_response(result.status, result.read_body())
            finally:
                result.close()
            break
        if self.settings.robots is RobotsPolicy.OBEY:
            delay = rules.crawl_delay(self.settings.fetch.user_agent)
            if delay:
                self.frontier.set_host_delay(host, delay)
        if self.settings.sitemaps and host in self._seed_hosts and host not in self._sitemap_hosts:
            self._sitemap_hosts.add(host)
            candidates = [*rules.sitemaps(), urls.origin(url) + "sitemap.xml"]
            for sitemap in candidates:
                found = urls.try_normalize(sitemap, url)
                if found is not None:
                    self._offer(found, UrlKind.SITEMAP, 0, via=target)
        return rules

    def _log_line(self, item: CrawlUrl, result: FetchResult | None, note: str) -> None:
        """Append one line per URL to crawl.log (Heritrix-style, tab separated)."""
        if self._log_file is None:
            return
        if result is None:
            status, size, mime, ms = "-", 0, "-", 0
        else:
            status = str(result.status) if result.ok else (
                result.failure.value if result.failure else "-")
            size, mime, ms = result.body_length, result.content_type or "-", int(
                result.elapsed * 1000)
            if result.truncated is not None:
                note = (note + " " if note else "") + f"truncated:{result.truncated.value}"
            if result.failure_detail:
                note = (note + " " if note else "") + result.failure_detail
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        self._log_file.write(
            f"{now}\t{status}\t{size}\t{item.url}\t{item.kind.value}\t{item.depth}\t"
            f"{item.via or '-'}\t{mime}\t{ms}ms\t{note or '-'}\n")


@dataclass(slots=True)
class _Slot:
    """Whether a worker already gave back the host slot of the URL it is processing."""

    released: bool = False


def _jsonable(value: Any) -> Any:
    """Turn settings (paths, patterns, enums, tuples) into JSON-ready values."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, StrEnum):
        return value.value
    return value


async def run_crawl(settings: CrawlSettings, *,
                    on_start: Callable[[Crawl], None] | None = None) -> CrawlOutcome:
    """Run one crawl; ``on_start`` gets the Crawl (for progress display and stop requests)."""
    crawl = Crawl(settings)
    if on_start is not None:
        on_start(crawl)
    return await crawl.run()
