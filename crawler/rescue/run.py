"""One rescue: rebuild a target from public web archives into its own WARCs and catalog.

In order: list every capture under the URL prefix or domain from each source's CDX server
(paged, resumable); then, URL by URL in key order, choose the latest good capture in the
window (or, with ``every``, all of them), fetch it raw (``id_``) from its source, judge it
(``memento.archive_error``, ``memento.page_problem``), and write it as the origin's response
dated when the archive captured it, with its provenance. Links of rescued pages that no
listing named are asked for per URL (a TimeMap, or an exact CDX query), which is also how a
source without a CDX server is rescued from: starting at the prefix, page by page.

Politeness towards the sources: one pacer per source (``Source.rate``), ``Retry-After`` on
429 and 503 obeyed for the whole source, transient failures retried with back-off.
Durability as in a crawl: a record is written and flushed before its catalog transaction; a
kill leaves records the catalog lacks, which the next run enters from their own WARC fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawler.archive.catalog import Catalog, CrawlRow, CrawlStatus, now_iso
from crawler.archive.layout import lock_target, new_crawl_dir, write_json
from crawler.archive.package import index_entries, page_entries, write_cdxj, write_pages
from crawler.archive.recovery import recover_warcs
from crawler.archive.store import Store, capture_from_record, capture_row, parse_head
from crawler.archive.warc import WarcSettings, WarcWriter, warc_date
from crawler.archive.warcread import RecordUnreadable, read_record
from crawler.archive.watermark import Watermark
from crawler.capture import extract, urls
from crawler.capture.fetcher import DEFAULT_USER_AGENT, Fetcher, FetchSettings, retry_after_seconds
from crawler.capture.settings import DedupSettings
from crawler.core import failpoints
from crawler.core.errors import ExitCode
from crawler.core.models import CrawlUrl, Extracted, FetchResult, UrlKind
from crawler.rescue.ledger import Candidate, Ledger, Outcome, Provenance
from crawler.rescue.memento import SHARED_BY, archive_error, page_problem, restore
from crawler.rescue.report import build_report, write_missing, write_report
from crawler.rescue.sources import (
    UNPAGED_LIMIT,
    Memento,
    Source,
    in_window,
    parse_cdx,
    read_cdx,
    read_timemap,
)

log = logging.getLogger("crawler.rescue")
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_BATCH = 64  # URLs taken from the ledger at a time
_MAX_ARCHIVE_REDIRECTS = 3
_HELD = "held"  # a capture the target holds already (also a ledger outcome)
_MAX_TIMEMAP_PAGES = 100  # pages of one URL's TimeMap followed (a URL captured every day)
# A CDX server that does not page (pywb) answers a whole site at once: ~300 bytes a capture,
# a gigabyte for three million. Spooled to disk and read line by line, never held.
_MAX_ANSWER = 8 << 30


@dataclass(frozen=True, slots=True)
class RescueSettings:
    """What to rescue, from where, and how politely."""

    target: str
    output: Path  # the archive root
    sources: tuple[Source, ...]
    url: str | None = None  # rescue every URL under this prefix…
    domain: str | None = None  # …or on this domain and its subdomains
    start: str | None = None  # window: 14-digit timestamps, bounds included
    end: str | None = None
    every: bool = False  # every good capture in the window, not only the latest
    concurrency: int = 4  # captures fetched at once (each source keeps its own pace)
    attempts: int = 5  # tries of one request to a source (429, 5xx, network) before giving up
    backoff: float = 2.0  # seconds before the first retry, doubled each time
    max_wait: float = 600.0  # the longest Retry-After obeyed; longer counts as a failure
    timeout: float = 120.0
    user_agent: str = DEFAULT_USER_AGENT
    max_urls: int = 0  # stop after deciding this many URLs (0: no limit)

    def seed(self) -> str:
        """Return the URL a rescue starts from."""
        return self.url or f"http://{self.domain}/"

    def to_json(self) -> dict[str, Any]:
        """Return the settings as stored with the rescue (to continue it with the same)."""
        found = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        found["output"] = str(self.output)
        found["sources"] = [dataclasses.asdict(s) for s in self.sources]
        return {"rescue": found}


@dataclass(slots=True)
class RescueOutcome:
    """What a rescue did, for the summary, the report and the exit code."""

    target: str
    rescue_id: str
    directory: Path
    status: str  # complete | incomplete | interrupted
    report: dict[str, Any]
    warcs: tuple[Path, ...] = ()

    @property
    def exit_code(self) -> ExitCode:
        """Return OK when every URL found was decided, INCOMPLETE when some could not be
        (sources failing), CRAWL_FAILED when nothing was found or rescued."""
        if self.status == CrawlStatus.INTERRUPTED:
            return ExitCode.INTERRUPTED
        urls_ = self.report["urls"]
        if not urls_.get("rescued") and not urls_.get("held"):
            return ExitCode.CRAWL_FAILED
        return ExitCode.OK if self.status == CrawlStatus.COMPLETE else ExitCode.INCOMPLETE


class _Pacer:
    """One source's pace: at most ``rate`` requests a second, all paused by a Retry-After."""

    def __init__(self, rate: float) -> None:
        self.gap = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            now = time.monotonic()
            if self.next > now:
                await asyncio.sleep(self.next - now)
            self.next = max(now, self.next) + self.gap

    def pause(self, seconds: float) -> None:
        self.next = max(self.next, time.monotonic() + seconds)


@dataclass(slots=True)
class _Stats:
    """Counters of this session (the ledger holds the totals)."""

    requests: int = 0
    retries: int = 0
    waited: float = 0.0
    written: int = 0
    started: float = field(default_factory=time.monotonic)


class Rescue:
    """One rescue run (new, or continuing one a kill or a failure left)."""

    def __init__(self, settings: RescueSettings, catalog: Catalog, fetcher: Fetcher) -> None:
        self.settings = settings
        self.catalog = catalog
        self.fetcher = fetcher
        self.sources = {s.name: s for s in settings.sources}
        self.pacers = {s.name: _Pacer(s.rate) for s in settings.sources}
        self.stats = _Stats()
        self.stop = asyncio.Event()
        self.row = self._open_row()
        self.ledger = Ledger(catalog.db, self.row.pk)
        self.store: Store | None = None
        self._prefix_surt = urls.surt_key(settings.url) if settings.url else ""
        self.unreadable: dict[str, int] = {}  # source -> CDX lines skipped this run
        # digest -> how many other URLs' listed captures have the same HTML bytes
        self.shared: dict[str, int] = {}

    def _open_row(self) -> CrawlRow:
        """Return the rescue to run: the target's unfinished one with the same settings,
        or a new one."""
        stored = self.settings.to_json()
        last = self.catalog.latest_crawl(self.settings.target, kind="rescue")
        if last is not None and last.status != CrawlStatus.COMPLETE and \
                _same_rescue(last.settings, stored):
            log.info("%s: continuing rescue %s", last.target, last.crawl_id)
            self.catalog.set_running(last.pk)
            row = self.catalog.crawl(last.target, last.crawl_id)
            assert row is not None
            return row
        crawl_id, directory = new_crawl_dir(self.settings.output, self.settings.target)
        pk = self.catalog.add_crawl(self.settings.target, crawl_id, directory, stored,
                                    kind="rescue")
        row = self.catalog.crawl(self.settings.target, crawl_id)
        assert row is not None and row.pk == pk
        return row

    # -- the run --------------------------------------------------------------------------

    async def run(self) -> RescueOutcome:
        """List, choose, fetch and write; then index and report."""
        self._recover()
        with self.catalog.transaction():
            again = self.ledger.retry_failed()
            seed = urls.try_normalize(self.settings.seed())
            if seed:
                self.ledger.add_urls([(urls.canonical_key(seed), seed, UrlKind.SEED.value)],
                                     looked_up=False)
        if again:
            log.info("trying again %d URLs the sources failed to answer before", again)
        warc_dir = self.row.directory / "warc"
        watermark = Watermark()
        warc = WarcWriter(WarcSettings(
            directory=warc_dir, prefix=f"{self.settings.target}-rescue",
            warcinfo={"description": "captures rescued from public web archives: "
                                     + ", ".join(self.sources),
                      "isPartOf": self.settings.target}),
            first_serial=len(list(warc_dir.glob("*.warc.gz"))), watermark=watermark)
        # As in a crawl: each record is flushed before its catalog rows, which commit in
        # batches (every 0.5 s) with each WARC file's watermark, so a continued rescue reads
        # only what lies past the marks (archive/watermark.py).
        self.catalog.track_marks(self.row.pk, watermark)
        self.store = Store(warc, self.catalog, target=self.settings.target,
                           crawl_pk=self.row.pk, settings=DedupSettings(conditional=False))
        self.catalog.begin_batch()
        try:
            for source in self.settings.sources:
                if not self.stop.is_set():
                    await self._list(source)
            self.shared = self.ledger.shared_pages(SHARED_BY)
            await self._work()
        finally:
            try:
                self.catalog.end_batch()  # before the WARC closes: see recover_warcs
            finally:
                self.catalog.track_marks(None)
                await self.store.close()
        return self._finish(warc.finished)

    def _recover(self) -> None:
        """Close what a killed run of this rescue left open, and enter the records it
        wrote but did not commit (from their own WARC fields: URL, date, provenance)."""
        warc_dir = self.row.directory / "warc"
        if not warc_dir.is_dir():
            return
        found = recover_warcs(warc_dir, lambda name: self.catalog.record_offsets(
            self.row.pk, name), payload_cap=64 << 20, marks=self.catalog.warc_marks(self.row.pk))
        with self.catalog.transaction():
            self.catalog.set_warc_marks(self.row.pk, found.read_to)
            for orphan in found.orphans:
                row, links = capture_from_record(self.catalog, self.settings.target, orphan,
                                                 UrlKind.PAGE)
                pk = self.catalog.add_capture(self.row.pk, row)
                provenance = Provenance.of_record(orphan.headers, row.digest or "")
                if provenance is not None:
                    self.ledger.add_provenance(pk, provenance)
                    # The capture is done; its URL is decided when the run reaches it (with
                    # --all, its other captures may still be to do).
                    if stamp := re.search(r"/(\d{1,17})id_/", provenance.memento):
                        self.ledger.tried(row.key, provenance.source, stamp.group(1),
                                          "rescued")
                if links is not None:
                    self._add_links(row.url, links)
        if found.orphans:
            log.info("entered %d records a killed run wrote", len(found.orphans))

    # -- listing --------------------------------------------------------------------------

    async def _list(self, source: Source) -> None:
        """List every capture under the prefix or domain that ``source`` holds (CDX), page
        by page, each page committed with the key to the next."""
        state = self._in_transaction(self.ledger.source_state, source.name,
                                     "cdx" if source.cdx else "timemap")
        if state["done"] or state["listing"] != "cdx":
            return
        match, target = (("prefix", self.settings.url) if self.settings.url
                         else ("domain", self.settings.domain))
        assert target is not None
        resume = state["resume"]
        while not self.stop.is_set():
            address = source.cdx_url(target, match, start=self.settings.start,
                                     end=self.settings.end, resume=resume)
            answer = await self._get(source, address)
            if answer is None or answer.status != 200:
                status = answer.status if answer is not None else "no answer"
                if answer is not None:
                    answer.close()
                listed = self.ledger.source_state(source.name, "cdx")["listed"]
                if not listed and answer is not None and answer.status in (400, 404, 501):
                    # No CDX server there: ask TimeMaps per URL instead.
                    why = f"no CDX server at {source.cdx} ({status}): TimeMaps used"
                    self._in_transaction(self.ledger.listed, source.name, resume=None,
                                         done=True, count=0, error=why, listing="timemap")
                else:
                    self._in_transaction(self.ledger.listed, source.name, resume=resume,
                                         done=False, count=0,
                                         error=f"CDX listing stopped: {status}")
                log.warning("%s: %s", source.name, status)
                return
            listed = 0

            def enter(batch: list[Memento]) -> None:
                nonlocal listed
                rows = self._keyed(source.name, batch)
                with self.catalog.transaction():
                    self.ledger.add_urls(((k, m.url, _kind_of(m)) for k, _, m in rows),
                                         looked_up=False)
                    self.ledger.add_mementos(rows)
                listed += len(rows)
                self.catalog.commit_if_due()  # a whole-site answer is not one transaction

            try:
                assert answer.body is not None
                answer.body.seek(0)
                page = read_cdx(answer.body, on_batch=enter)
            except ValueError as exc:
                self._in_transaction(self.ledger.listed, source.name, resume=resume,
                                     done=False, count=listed,
                                     error=f"CDX answer unreadable: {exc}")
                return
            finally:
                answer.close()
            if not source.is_wayback and page.rows >= UNPAGED_LIMIT:
                self._in_transaction(self.ledger.listed, source.name, resume=resume,
                                     done=False, count=listed,
                                     error=f"CDX answer cut short at the server's limit "
                                           f"({page.rows} rows): URLs past it are asked "
                                           "for one by one as links lead to them")
                return
            if answer.truncated is not None:
                self._in_transaction(self.ledger.listed, source.name, resume=resume,
                                     done=False, count=listed,
                                     error=f"CDX answer cut short ({answer.truncated.value})")
                return
            if page.unreadable:
                log.warning("%s: %d lines of its CDX answer were not CDX rows: skipped",
                            source.name, page.unreadable)
                self.unreadable[source.name] = self.unreadable.get(source.name, 0) + \
                    page.unreadable
            self._in_transaction(self.ledger.listed, source.name, resume=page.resume,
                                 done=page.resume is None, count=listed, error=(
                                     f"{self.unreadable[source.name]} unreadable CDX lines "
                                     "skipped" if source.name in self.unreadable else None))
            log.info("%s: listed %d captures%s", source.name, listed,
                     ", more to come" if page.resume else "")
            if page.resume is None:
                return
            resume = page.resume

    def _keyed(self, source: str, found: Iterable[Memento]) -> list[tuple[str, str, Memento]]:
        """Return the captures in the window, each with its URL's key (the URL normalized
        as a crawl would, so a later crawl compares with it)."""
        rows = []
        for memento in found:
            if not in_window(memento.timestamp, self.settings.start, self.settings.end):
                continue
            url = urls.try_normalize(memento.url)
            if url is None:
                continue
            rows.append((urls.canonical_key(url), source, dataclasses.replace(memento, url=url)))
        return rows

    # -- URL by URL -----------------------------------------------------------------------

    async def _work(self) -> None:
        """Decide every URL in the ledger (new ones are added as pages are rescued), a batch
        at a time in key order, ``concurrency`` URLs at once."""
        limit = self.settings.max_urls
        decided = 0
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def one(row: Any) -> None:
            async with gate:
                if not self.stop.is_set():
                    await self._rescue_url(row["key"], row["url"], row["kind"],
                                           bool(row["looked_up"]))

        after = ""  # the walk over the keys; URLs found behind it are met on the next walk
        while not self.stop.is_set():
            if limit and decided >= limit:
                return
            batch = self.ledger.pending(_BATCH, after)
            if limit:
                batch = batch[:limit - decided]
            if not batch:
                if after == "":
                    return
                after = ""
                continue
            after = batch[-1]["key"]
            await asyncio.gather(*(one(row) for row in batch))
            decided += len(batch)
            self.catalog.commit_if_due()

    async def _rescue_url(self, key: str, url: str, kind: str, looked_up: bool) -> None:
        """Choose, fetch, judge and write the captures of one URL; record the outcome."""
        self.catalog.commit_if_due()
        if not looked_up:
            unanswered = await self._look_up(key, url)
            if unanswered:
                self._in_transaction(self.ledger.decide, key, Outcome.FAILED, unanswered)
                return
        candidates = [c for c in self.ledger.candidates(key)
                      if in_window(c.memento.timestamp, self.settings.start, self.settings.end)]
        if not candidates:
            self._in_transaction(self.ledger.decide, key, Outcome.MISSING,
                                 "no capture in any source")
            return
        held = self._held(key)
        tried: list[str] = []
        rescued = kept = failed = 0  # written by this rescue; held already; source failed
        for candidate in _ordered(candidates, every=self.settings.every):
            ts14 = candidate.memento.timestamp[:14]
            if candidate.outcome in ("rescued", "held"):  # (a continued rescue)
                if candidate.outcome == "rescued":
                    rescued += 1
                else:
                    kept += 1
                if not self.settings.every:
                    break
                continue
            if candidate.outcome is not None:
                tried.append(candidate.outcome)
                continue
            good = [moment for moment, status in held.items() if 200 <= status < 300]
            if ts14 in held or (not self.settings.every and good and max(good) >= ts14):
                self._in_transaction(self.ledger.tried, key, candidate.source,
                                     candidate.memento.timestamp, "held")
                kept += 1
                if not self.settings.every:
                    break
                continue
            verdict = await self._try(key, kind, candidate)
            if verdict is None:
                rescued += 1
                if not self.settings.every:
                    break
            elif verdict == _HELD:
                kept += 1
                if not self.settings.every:
                    break
            elif verdict.startswith("failed"):
                failed += 1
                tried.append(verdict)
            else:
                tried.append(verdict)
        if kept and not rescued and not failed:
            good = [moment for moment, status in held.items() if 200 <= status < 300]
            found = await asyncio.to_thread(self._links_held, key)
            with self.catalog.transaction():
                self.ledger.decide(key, Outcome.HELD,
                                   f"held from {max(good or list(held) or ['?'])}")
                if found is not None:
                    self._add_links(url, found)
        elif failed and (self.settings.every or not rescued):
            # (with --all, a URL keeps its captures written, and its failed ones are tried
            # again by the next run)
            done = f"{rescued} captures rescued; " if rescued else ""
            self._in_transaction(self.ledger.decide, key, Outcome.FAILED, done + _why(tried))
        elif rescued:
            self._in_transaction(self.ledger.decide, key, Outcome.RESCUED, None)
        else:
            self._in_transaction(self.ledger.decide, key, Outcome.MISSING, _why(tried))

    def _held(self, key: str) -> dict[str, int]:
        """Return the captures the target already holds of a URL (earlier crawls and
        rescues, and this one): 14-digit time -> status (a revisit counts as 200)."""
        held: dict[str, int] = {}
        for fetched, status, record_type in self.catalog.db.execute(
                "SELECT c.fetched_at, c.status, c.record_type FROM captures c JOIN crawls k "
                "ON k.id = c.crawl WHERE c.key = ? AND k.target = ? AND c.final = 1 AND "
                "c.record_type IN ('response', 'revisit')", (key, self.settings.target)):
            moment = "".join(ch for ch in fetched if ch.isdigit())[:14]
            held[moment] = 200 if record_type == "revisit" else int(status or 0)
        return held

    def _links_held(self, key: str) -> Extracted | None:
        """Return the links of the latest good capture the target holds of a URL, read
        back from its WARC: a page held is explored as a page rescued would be (the URLs it
        leads to may be in no listing). Runs in a thread: it only reads files."""
        row = self.catalog.db.execute(
            "SELECT c.url, c.mime, coalesce(o.warc_file, c.warc_file) AS file, "
            "coalesce(o.warc_offset, c.warc_offset) AS offset, "
            "coalesce(o.warc_length, c.warc_length) AS length, k2.directory "
            "FROM captures c JOIN crawls k ON k.id = c.crawl "
            "LEFT JOIN captures o ON o.id = c.refers_to "
            "JOIN crawls k2 ON k2.id = coalesce(o.crawl, c.crawl) "
            "WHERE c.key = ? AND k.target = ? AND c.final = 1 AND c.status BETWEEN 200 AND "
            "299 AND c.record_type IN ('response', 'revisit') ORDER BY c.id DESC LIMIT 1",
            (key, self.settings.target)).fetchone()
        if row is None or row["file"] is None or (row["mime"] or "") not in (
                extract.HTML_TYPES | {"text/css"}):
            return None
        path = self.catalog.resolve(row["directory"]) / "warc" / row["file"]
        try:
            record = read_record(path, row["offset"], row["length"])
        except (RecordUnreadable, OSError) as exc:
            log.warning("held capture of %s unreadable, its links not followed: %s",
                        row["url"], exc)
            return None
        head = FetchResult(url=row["url"], started=datetime.now(UTC),
                           headers=parse_head(record.http_head)[1])
        return extract.extract_safely(row["url"], row["mime"], record.payload,
                                      head.header("content-type"),
                                      head.header("content-encoding"))

    async def _look_up(self, key: str, url: str) -> str | None:
        """Ask each source for one URL's captures (a TimeMap, or an exact CDX query when
        the source's listing did not cover the URL); return why it failed, or None."""
        found: list[tuple[str, str, Memento]] = []
        failures = []
        for source in self.settings.sources:
            state = self.ledger.source_state(source.name, "cdx" if source.cdx else "timemap")
            if state["listing"] == "cdx" and state["done"] and self._in_listing(url):
                continue
            if state["listing"] == "cdx":
                pages = [source.cdx_url(url, "exact")]
            else:
                pages = [source.timemap_url(url)]
            asked: set[str] = set()
            more: list[str]
            while pages and len(asked) < _MAX_TIMEMAP_PAGES:
                address = pages.pop(0)
                asked.add(address)
                answer = await self._get(source, address)
                if answer is None:
                    failures.append(f"{source.name}: no answer")
                    break
                try:
                    if answer.status == 200:
                        try:
                            if state["listing"] == "cdx":
                                mementos, more = list(parse_cdx(_body(answer)).mementos), []
                            else:
                                mementos, more = read_timemap(_body(answer))
                        except ValueError:
                            mementos, more = [], []
                        found.extend(r for r in self._keyed(source.name, mementos)
                                     if r[0] == key)
                        pages += [m for m in more if m not in asked and m not in pages]
                    elif answer.status != 404:  # 404: the source has no capture of it
                        failures.append(f"{source.name}: {answer.status}")
                finally:
                    answer.close()
            if pages:
                log.warning("%s: %s has more than %d TimeMap pages; the rest were not read",
                            source.name, url, _MAX_TIMEMAP_PAGES)
        with self.catalog.transaction():
            self.ledger.add_mementos(found)
            if not failures:
                self.ledger.looked_up(key)
        return "; ".join(failures) if failures and not found else None

    def _in_listing(self, url: str) -> bool:
        """Return True if a URL lies under the prefix or domain the sources listed, as a
        CDX server matches it: by SURT, so http and https, and www or not, are one site
        (a rescue of https://www.memo.ru/ meets the http://memo.ru/ links of old pages)."""
        if self.settings.url:
            prefix = self._prefix_surt
            found = urls.surt_key(url)
            if self.settings.url.endswith("/"):
                return found == prefix or found.startswith(prefix.rstrip("/") + "/")
            return found.startswith(prefix)
        host = urls.hostname_of(url)
        domain = (self.settings.domain or "").lower()
        return host == domain or host.endswith("." + domain)

    async def _try(self, key: str, kind: str, candidate: Candidate) -> str | None:
        """Fetch one capture, judge it, and write it if good; return None if written,
        ``_HELD`` if the archive served a capture the target holds already, else what was
        wrong (``failed: …`` when the source could not be asked)."""
        source = self.sources.get(candidate.source)
        memento = candidate.memento
        if source is None:  # a source no longer given: its captures are not tried
            return "failed: source not given this time"
        address = source.memento_url(memento.timestamp, memento.url)
        served = await self._get(source, address, follow_archive=True)
        verdict: str | None
        if served is None:
            verdict = "failed: no answer from the source"
            self._in_transaction(self.ledger.tried, key, candidate.source,
                                 memento.timestamp, verdict)
            return verdict
        try:
            if served.ok and served.truncated is not None:
                verdict = f"failed: the source's answer was cut short ({served.truncated.value})"
                self._in_transaction(self.ledger.tried, key, candidate.source,
                                     memento.timestamp, verdict)
                return verdict
            if served.status in _RETRY_STATUSES and served.header("memento-datetime") is None:
                verdict = (f"failed: the source answered {served.status} "
                           f"{self.settings.attempts} times")
                self._in_transaction(self.ledger.tried, key, candidate.source,
                                     memento.timestamp, verdict)
                return verdict
            verdict = archive_error(served, memento)
            body = _body(served) if verdict is None else b""
            restored = restore(served, memento, source) if verdict is None else None
            found = _links_of(restored.result, body) if restored is not None else None
            if restored is not None and 200 <= restored.result.status < 300:
                verdict = page_problem(restored.result, body, found,
                                       shared=self.shared.get(memento.digest, 0))
            if verdict is not None or restored is None:
                self._in_transaction(self.ledger.tried, key, candidate.source,
                                     memento.timestamp, verdict or "unusable")
                return verdict
            served_at = restored.result.started.strftime("%Y%m%d%H%M%S")
            if served_at != memento.timestamp[:14] and served_at in self._held(key):
                # the archive served another capture than listed, one held already
                self._in_transaction(self.ledger.tried, key, candidate.source,
                                     memento.timestamp, _HELD)
                return _HELD
            await self._write(key, kind, candidate, address, restored.result, found,
                              restored.digest_match)
            return None
        finally:
            served.close()

    async def _write(self, key: str, kind: str, candidate: Candidate, address: str,
                     result: FetchResult, found: Extracted | None, match: bool | None) -> None:
        """Write a good capture and enter it, its provenance and its links in one
        transaction (the record is flushed first: see the module docstring)."""
        assert self.store is not None
        provenance = Provenance(candidate.source, address, now_iso(),
                                candidate.memento.digest or None, match)
        item = CrawlUrl(url=result.url, key=key, kind=UrlKind(kind), depth=0)
        stored = await self.store.write(result, item, fields=provenance.fields())
        failpoints.hit("rescue-written")  # written, not entered: the next run enters it
        row = capture_row(item, result, stored, found)
        with self.catalog.transaction():
            pk = self.catalog.add_capture(self.row.pk, row)
            self.ledger.add_provenance(pk, provenance)
            self.ledger.tried(key, candidate.source, candidate.memento.timestamp, "rescued")
            if found is not None:
                self._add_links(result.url, found)
            location = result.header("location") if 300 <= result.status < 400 else None
            target = urls.try_normalize(location, result.url) if location else None
            if target:
                self.ledger.add_urls([(urls.canonical_key(target), target, kind)],
                                     looked_up=False)
        self.stats.written += 1

    def _add_links(self, url: str, found: Extracted) -> None:
        """Queue a rescued page's links in scope, and every page requisite, to be looked up
        (inside the caller's transaction)."""
        keys = found.keys
        rows = [(keys.get(link) or urls.canonical_key(link), link, UrlKind.PAGE.value)
                for link in found.links if self._in_listing(link)]
        rows += [(keys.get(link) or urls.canonical_key(link), link, UrlKind.REQUISITE.value)
                 for link in found.requisites]
        self.ledger.add_urls(rows, looked_up=False)
        self.catalog.add_linked(self.row.pk, (key for key, _, kind in rows
                                              if kind == UrlKind.PAGE.value))

    # -- requests to sources --------------------------------------------------------------

    async def _get(self, source: Source, address: str, *,
                   follow_archive: bool = False) -> FetchResult | None:
        """GET from a source at its pace, retrying what is transient; None if every try
        failed. ``follow_archive``: follow the archive's own redirects, those to another
        capture of the same URL (an inexact timestamp), never an archived redirect: that
        carries Memento-Datetime, or leads to another URL, and is the capture itself."""
        for hop in range(_MAX_ARCHIVE_REDIRECTS + 1):
            result = await self._get_once(source, address)
            if result is None or not follow_archive or hop == _MAX_ARCHIVE_REDIRECTS:
                return result
            location = result.header("location")
            if not (300 <= result.status < 400 and location
                    and result.header("memento-datetime") is None):
                return result
            target = urls.try_normalize(location, address)
            if not target or not target.startswith(source.replay + "/") or \
                    _original_in(target) != _original_in(address):
                return result
            result.close()
            address = target
        return None

    async def _get_once(self, source: Source, address: str) -> FetchResult | None:
        """One request, tried up to ``attempts`` times."""
        settings = self.settings
        for attempt in range(settings.attempts):
            await self.pacers[source.name].wait()
            self.stats.requests += 1
            self._in_transaction(self.ledger.count_request, source.name)
            result = await self.fetcher.fetch(address)
            dated = result.ok and result.header("memento-datetime") is not None
            if result.ok and (result.status not in _RETRY_STATUSES or dated):
                return result
            wait = settings.backoff * (2 ** attempt)
            if result.ok:
                asked = retry_after_seconds(result.header("retry-after"))
                if asked is not None:
                    if asked > settings.max_wait:
                        log.warning("%s asks to wait %.0f s (more than %.0f): giving up %s",
                                    source.name, asked, settings.max_wait, address)
                        return result
                    wait = max(asked, 0.0)
            log.info("%s: %s for %s; again in %.1f s", source.name,
                     result.status if result.ok else result.failure_detail, address, wait)
            self.stats.retries += 1
            self.stats.waited += wait
            self.pacers[source.name].pause(wait)
            if attempt + 1 == settings.attempts:
                if result.ok:
                    return result
                result.close()
                return None
            result.close()
        return None

    def _in_transaction(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self.catalog.transaction():
            return func(*args, **kwargs)

    # -- the end --------------------------------------------------------------------------

    def _finish(self, warcs: list[Path]) -> RescueOutcome:
        """Record how the rescue ended; write its index, page list and report."""

        outcomes = self.ledger.outcomes()
        listing_errors = [s["error"] for s in self.ledger.sources()
                          if s["error"] and not s["done"]]
        skipped = sum(int(m.group(1)) for s in self.ledger.sources() if s["error"]
                      if (m := re.match(r"(\d+) unreadable CDX lines", s["error"])))
        if self.stop.is_set():
            status = CrawlStatus.INTERRUPTED
        elif outcomes.get("pending") or outcomes.get(Outcome.FAILED) or listing_errors \
                or skipped:
            status = CrawlStatus.INCOMPLETE
        else:
            status = CrawlStatus.COMPLETE
        shortfall = {k: v for k, v in (("not tried", outcomes.get("pending", 0)),
                                       ("source failed", outcomes.get(Outcome.FAILED, 0)),
                                       ("unreadable CDX lines", skipped))
                     if v}
        directory = self.row.directory
        write_cdxj(index_entries(self.catalog, self.row.pk),
                   directory / "indexes" / "index.cdxj")
        write_pages(page_entries(self.catalog, self.row.pk), directory / "pages" / "pages.jsonl")
        all_warcs = tuple(sorted((directory / "warc").glob("*.warc.gz")))
        report = build_report(self.catalog, self.row, self.settings.to_json()["rescue"],
                              status, self.stats.requests, time.monotonic() - self.stats.started)
        outcome = RescueOutcome(self.settings.target, self.row.crawl_id, directory, status,
                                report, all_warcs)
        with self.catalog.transaction():
            self.catalog.db.execute(
                "UPDATE crawls SET status=?, stop_reason=?, exit_code=?, finished=?, "
                "shortfall=?, phase=NULL WHERE id=?",
                (status, "interrupted" if status == CrawlStatus.INTERRUPTED else
                 "max-urls" if self.settings.max_urls and outcomes.get("pending") else
                 "complete",
                 int(outcome.exit_code), now_iso(),
                 json.dumps(shortfall) if shortfall else None, self.row.pk))
        write_report(report, directory)
        write_missing(self.catalog, self.row)
        snapshot = {"crawl_id": self.row.crawl_id, "target": self.settings.target,
                    "kind": "rescue", "status": status, "warcs": [p.name for p in all_warcs],
                    "finished": warc_date(datetime.now(UTC)), "exit_code": int(
                        outcome.exit_code), "shortfall": shortfall,
                    "settings": self.settings.to_json()}
        write_json(directory / "crawl.json", snapshot)
        return outcome


def _original_in(memento_address: str) -> str | None:
    """Return the key of the original URL inside ``…/TIMESTAMP[mode]/URL``."""
    found = re.search(r"/\d{1,17}(?:[a-z]{2}_)?/(.+)$", memento_address)
    original = urls.try_normalize(found.group(1)) if found else None
    return urls.canonical_key(original) if original else None


def _same_rescue(stored: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Return True if a stored rescue asked for what ``wanted`` asks: the same URLs, window,
    mode and sources. How fast or how persistently it asks (rates, concurrency, attempts,
    limits) may change between runs, and the root may have been moved."""
    def plain(settings: dict[str, Any]) -> Any:
        found = dict(json.loads(json.dumps(settings)).get("rescue") or {})
        return ({k: found.get(k) for k in ("target", "url", "domain", "start", "end",
                                            "every")},
                [{k: v for k, v in source.items() if k != "rate"}
                 for source in found.get("sources") or []])

    return bool(stored) and plain(stored) == plain(wanted)


def _ordered(candidates: list[Candidate], *, every: bool) -> list[Candidate]:
    """Return a URL's captures in the order they are tried.

    Latest: 2xx captures newest first, then those whose status the source did not list
    (revisits, TimeMaps), then redirects (kept as redirects when a URL has nothing else);
    errors (4xx, 5xx) are never tried: they are not the page. Every: all but errors, oldest
    first, so the newest is entered last (the one a later crawl is compared with).
    """
    def rank(c: Candidate) -> int:
        status = c.memento.status
        if status is None:
            return 1
        return 0 if 200 <= status < 300 else 2 if 300 <= status < 400 else 9

    seen = set()
    ordered = []
    for c in candidates:  # one capture held by two sources is tried once
        if rank(c) == 9:
            continue
        mark = (c.memento.timestamp[:14], c.memento.digest or c.source)
        if mark not in seen:
            seen.add(mark)
            ordered.append(c)
    if every:
        return sorted(ordered, key=lambda c: c.memento.timestamp)
    return sorted(ordered, key=lambda c: (rank(c), _negated(c.memento.timestamp)))


def _negated(timestamp: str) -> str:
    """Return a key that sorts timestamps newest first."""
    return "".join(str(9 - int(ch)) for ch in timestamp.ljust(17, "0"))


def _why(tried: list[str]) -> str:
    """Return why no capture of a URL was taken: its captures' verdicts, counted."""
    if not tried:
        return "only error captures (4xx/5xx) in the sources"
    counts: dict[str, int] = {}
    for verdict in tried:
        counts[verdict] = counts.get(verdict, 0) + 1
    return "; ".join(f"{v} ×{n}" if n > 1 else v for v, n in counts.items())


def _kind_of(memento: Memento) -> str:
    """Return the kind a listed URL is rescued as: pages are HTML, the rest requisites."""
    mime = memento.mime.split(";")[0].strip().lower()
    return UrlKind.PAGE.value if mime in extract.HTML_TYPES or mime in (
        "", "warc/revisit") else UrlKind.REQUISITE.value


def _links_of(result: FetchResult, body: bytes) -> Extracted | None:
    """Return the links and text fingerprints of a rescued HTML page or stylesheet."""
    media = result.content_type
    if not (200 <= result.status < 300) or media not in extract.HTML_TYPES | {"text/css"}:
        return None
    return extract.extract_safely(result.url, media, body, result.header("content-type"),
                                  result.header("content-encoding"))


def _body(result: FetchResult) -> bytes:
    """Return a result's raw body (kept on disk when large)."""
    if result.body is None:
        return b""
    result.body.seek(0)
    return result.body.read()


async def run_rescue(settings: RescueSettings,
                     on_start: Callable[[Rescue], None] | None = None, *,
                     catalog: Catalog | None = None, locked: bool = False) -> RescueOutcome:
    """Run (or continue) a rescue of ``settings.target`` under its lock (``locked``: the
    caller holds it, with ``catalog`` open: a run that rescues a target gone dark)."""
    lock = None if locked else lock_target(settings.output, settings.target)
    own = catalog is None
    try:
        if catalog is None:
            catalog = Catalog.open(settings.output)
        try:
            catalog.check_integrity()
            fetch = FetchSettings(user_agent=settings.user_agent,
                                  total_timeout=settings.timeout,
                                  max_body_bytes=_MAX_ANSWER,
                                  max_connections=max(4, settings.concurrency * 2))
            async with Fetcher(fetch) as fetcher:
                rescue = Rescue(settings, catalog, fetcher)
                if on_start is not None:
                    on_start(rescue)
                return await rescue.run()
        finally:
            if own:
                with contextlib.suppress(Exception):
                    catalog.close()
    finally:
        if lock is not None:
            lock.close()
