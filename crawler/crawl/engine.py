"""One crawl: workers take URLs from the persistent frontier, fetch them, and feed one sink.

Per URL: frontier -> robots check -> fetcher -> (WARC sink thread || link extraction in a
parser process) -> one catalog transaction (capture row, URL done, new links queued through
scope). The sink thread is the only writer of WARC files; the event-loop thread is the only
user of the catalog connection, and never awaits inside a transaction.

A record is flushed to the OS before its transaction commits, so after a kill the catalog
never points at a missing record; records written but not committed are found and entered by
``recovery`` when the crawl resumes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import shutil
import sqlite3
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from crawler import __version__
from crawler.archive.catalog import Catalog, CrawlRow, CrawlStatus
from crawler.archive.frontier import Adaptive, Frontier
from crawler.archive.layout import (
    SpaceReserve,
    lock_target,
    new_crawl_dir,
    save_notify,
    write_json,
)
from crawler.archive.package import index_entries, page_entries, write_cdxj, write_pages
from crawler.archive.recovery import OrphanRecord, recover_warcs, result_from_record
from crawler.archive.store import (
    Conditional,
    Store,
    Stored,
    capture_row,
    stored_from_record,
    unfetched_row,
)
from crawler.archive.warc import SERVER_NOT_MODIFIED, WarcSettings, WarcWriter, record_kind
from crawler.archive.watermark import Watermark
from crawler.capture import extract, urls
from crawler.capture.breaker import HostBreakers, Verdict
from crawler.capture.fetcher import Fetcher, retry_after_seconds
from crawler.capture.fingerprints import WALL_NOTE
from crawler.capture.robots import (
    ALLOW_ALL,
    RobotsPolicy,
    RobotsRules,
    robots_body,
    rules_from_response,
)
from crawler.capture.scope import Scope
from crawler.capture.settings import CrawlSettings, Limits, Politeness
from crawler.core import failpoints
from crawler.core.errors import ExitCode, NoSpace, OutputError, write_error
from crawler.core.models import CrawlUrl, Extracted, FailureKind, FetchResult, Truncation, UrlKind
from crawler.core.outcome import CrawlOutcome, CrawlStats, StopReason
from crawler.core.units import format_size
from crawler.crawl.crawllog import CrawlLog
from crawler.crawl.parsing import ParsePool

if TYPE_CHECKING:  # a distributed worker's only
    from crawler.archive.redisfrontier import DistributedFrontier
    from crawler.archive.sharedfrontier import SharedFrontier

__all__ = ["Crawl", "CrawlOutcome", "CrawlSettings", "Limits", "Politeness", "StopReason",
           "run_crawl"]

log = logging.getLogger("crawler.crawl")

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_RETRY_FAILURES = frozenset({FailureKind.TIMEOUT, FailureKind.RESET, FailureKind.CONNECT})
_EXTRACT_TYPES = extract.HTML_TYPES | {"text/css"} | extract.SITEMAP_TYPES
MAX_EXTRACT_BYTES = 32 * 1024 * 1024
_WALL_ERROR_STATUSES = frozenset({403, 429, 503})  # what challenge pages answer, besides 2xx
MAX_WALL_BYTES = 256 * 1024
RECENT_LINKS = 20_000  # linked keys remembered so that repeats cost no statement
PARSE_TIMEOUT = 60.0  # seconds one page may take to parse before its links are given up
COMMIT_TICK = 0.05  # seconds between checks whether the open catalog batch must be committed
_TRAP_LOG_LIMIT = 20  # log this many hits per trap rule, then only count them
_PAGE_KINDS = (UrlKind.SEED, UrlKind.PAGE)
_WRITE_STOPS = (StopReason.NO_SPACE, StopReason.WRITE_FAILED)


class Crawl:
    """Runs one crawl (new or resumed) to completion; ``request_stop()`` ends it gracefully."""

    def __init__(self, settings: CrawlSettings, catalog: Catalog, *,
                 resume: CrawlRow | None = None, lock: IO[str] | None = None,
                 shared: Shared | None = None) -> None:
        if not settings.seeds:
            raise ValueError("a crawl needs at least one seed")
        self.settings = settings
        self.catalog = catalog
        catalog.index_texts = settings.search_index
        self.target = settings.target_name()
        # The run that holds the target's lock through detection passes it in
        # (pipeline.run_target); a crawl run on its own takes and releases its own.
        self._own_lock = lock is None
        self._lock = lock if lock is not None else lock_target(settings.output, self.target)
        save_notify(settings.output, self.target, settings.detect.notify,
                    settings.detect.vantage)
        self.resumed = resume is not None
        self.continued = 0  # URLs taken over from the queue an incomplete crawl left
        if resume is not None:
            self.crawl_id, self.directory, self.pk = resume.crawl_id, resume.directory, resume.pk
            catalog.set_running(self.pk)
        else:
            previous = catalog.latest_crawl(self.target)
            self.crawl_id, self.directory = new_crawl_dir(settings.output, self.target)
            self.pk = catalog.add_crawl(self.target, self.crawl_id, self.directory,
                                        settings.to_json())
            # A worker of a distributed crawl starts a new session each time; the shared
            # queue, not its own catalog, holds what is left.
            self.continued = 0 if shared is not None else self._continue_from(previous)
        self.db = catalog.db
        self.stats = CrawlStats()
        pol = settings.politeness
        self.shared = shared
        self.frontier: Frontier
        self._distributed: DistributedFrontier | None = None
        if shared is not None:
            # imported here: redis (and the cryptography it loads) is ~16 MB of every crawl's
            # memory, and only a distributed worker needs it
            from crawler.archive.redisfrontier import DistributedFrontier
            self.frontier = self._distributed = DistributedFrontier(
                self.db, self.pk, shared.queue, shared.worker, info=shared.info,
                commits=lambda: catalog.commits, per_host=pol.per_host, delay=pol.delay,
                transaction=catalog.transaction, write_failure=catalog.write_failure)
            self._distributed.on_stop = self.request_stop
        else:
            self.frontier = Frontier(self.db, self.pk, per_host=pol.per_host, delay=pol.delay,
                                     adaptive=(Adaptive(pol.min_delay, pol.max_delay)
                                               if pol.adaptive else None),
                                     transaction=catalog.transaction,
                                     write_failure=catalog.write_failure)
        self.scope = Scope(settings.scope, [*settings.seeds, *self.frontier.seed_urls()],
                           variants=self.frontier)
        self.scope.known_repetitive(catalog.trapped_urls(self.target, self.pk + 1,
                                                         "trap:same-content"))
        self._stop_reason: StopReason | None = None
        self.write_error: OutputError | None = None  # the first failed write, if any
        self._limited_by: StopReason | None = None  # a limit that dropped URLs without stopping
        self.breakers = HostBreakers(hang_limit=pol.hang_limit, hang_pause=pol.hang_pause,
                                     hang_trips=pol.hang_trips)
        self._robots: dict[str, RobotsRules] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self._sitemap_hosts: set[str] = set()
        self._seed_hosts = {urls.host_of(s) for s in settings.seeds}
        self._pages_queued = self._count_pages_queued()
        # keys linked from this crawl's pages, recently recorded: a repeated link (the site's
        # navigation) costs no statement; the catalog ignores the rarer repeats itself. A set
        # of every key held 16 MB at 160,000 URLs and would have grown with the crawl.
        self._linked: OrderedDict[str, None] = OrderedDict()
        self._log: CrawlLog | None = None
        self.store: Store | None = None

    def _continue_from(self, previous: CrawlRow | None) -> int:
        """Take over the queue that the target's last crawl left when a limit stopped it.

        A site too big for one time box is covered by successive runs, in rounds: a run
        that ends by a limit leaves its queue, and the next run continues that same round
        (what was left, then what it finds) instead of starting over; when a round ends
        with nothing left, the next run starts a new one, re-checking every known URL. So
        scheduled runs converge to full coverage, and every known URL is re-checked once
        per round. Only a crawl with the same seeds is continued. Returns how many URLs were
        taken over; with ``--max-pages`` those past the limit stay deferred.
        """
        if (previous is None or previous.status != CrawlStatus.INCOMPLETE
                or tuple(previous.settings.get("seeds") or ()) != self.settings.seeds):
            return 0
        db = self.catalog.db
        with self.catalog.transaction():
            cur = db.execute(
                "INSERT OR IGNORE INTO frontier (crawl, key, url, host, kind, depth, via, "
                "redirects, embeds, attempt, state, priority, seq) SELECT ?, key, url, host, "
                "kind, depth, via, redirects, embeds, 0, 0, priority, seq FROM frontier "
                "WHERE crawl=? AND state IN (0, 1, 4)", (self.pk, previous.pk))
            # What the round already visited stays seen: it is not fetched again this round.
            db.execute(
                "INSERT OR IGNORE INTO frontier (crawl, key, url, host, kind, depth, via, "
                "redirects, embeds, attempt, state, priority, seq) SELECT ?, key, url, host, "
                "kind, depth, via, redirects, embeds, attempt, state, priority, seq "
                "FROM frontier WHERE crawl=? AND state IN (2, 3)", (self.pk, previous.pk))
            max_pages = self.settings.limits.max_pages
            if max_pages is not None:  # pages past the limit wait for the run after
                db.execute(
                    "UPDATE frontier SET state=4 WHERE crawl=? AND state=0 AND kind IN "
                    "('seed', 'page') AND key NOT IN (SELECT key FROM frontier WHERE crawl=? "
                    "AND state=0 AND kind IN ('seed', 'page') ORDER BY seq LIMIT ?)",
                    (self.pk, self.pk, max_pages))
            db.execute("DELETE FROM frontier WHERE crawl=?", (previous.pk,))
            db.execute("DELETE FROM query_variants WHERE crawl=?", (previous.pk,))
        taken = max(cur.rowcount, 0)
        if taken:
            log.info("continuing %d URLs left by %s/%s", taken, self.target, previous.crawl_id)
        return taken

    def _count_pages_queued(self) -> int:
        """Return how many pages this crawl has queued so far (for --max-pages on resume)."""
        # A resumed crawl counts what its earlier sessions fetched; a run continuing a round
        # counts only what it will fetch itself (the round's visited rows are carried over).
        states = "(0, 1)" if self.continued else "(0, 1, 2, 3)"
        row = self.db.execute(f"SELECT count(*) FROM frontier WHERE crawl=? AND kind IN (?, ?) "
                              f"AND state IN {states}", (self.pk, UrlKind.SEED.value,
                                                         UrlKind.PAGE.value)).fetchone()
        return int(row[0])

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
        """Stop taking new URLs; in-flight fetches finish, are written and committed."""
        if self._stop_reason is None or reason in _WRITE_STOPS:  # a failed write says most
            self._stop_reason = reason
            log.info("stopping: %s", reason.value)
        self.frontier.close()

    def _write_failed(self, exc: OutputError) -> None:
        """Stop at the first failed write (disk full): every later write would fail too,
        and a crawl that kept fetching would only lose what it fetched. What was written
        stays valid (the WARC writer cuts a half-written record back; uncommitted records
        are entered from the WARCs on resume)."""
        if isinstance(exc, NoSpace):
            self._reserve.release()  # room to record how the crawl ended
        if self.write_error is None:
            self.write_error = exc
            log.error("%s", exc)
        self.request_stop(StopReason.NO_SPACE if isinstance(exc, NoSpace)
                          else StopReason.WRITE_FAILED)

    @property
    def stopping(self) -> bool:
        """Return True once a stop was requested."""
        return self._stop_reason is not None

    # -- main loop ----------------------------------------------------------------------------

    async def run(self) -> CrawlOutcome:
        """Crawl until done, a limit, or a stop request; write indexes; return the outcome."""
        s = self.settings
        warc_dir = self.directory / "warc"
        warc_dir.mkdir(parents=True, exist_ok=True)
        self._check_free_space()
        self._reserve = SpaceReserve(self.settings.output, self.target)
        self._log = CrawlLog(self.directory / "crawl.log")
        self._parser = ParsePool(self.settings.extract_workers, PARSE_TIMEOUT)
        timer = None
        try:
            if self.resumed:
                self._recover(warc_dir)
            else:
                self._queue_start_urls()
            serial = len(list(warc_dir.glob("*.warc.gz")))
            watermark = Watermark()
            warc = WarcWriter(WarcSettings(
                directory=warc_dir, prefix=s.warc_prefix or self.target, max_size=s.warc_size,
                warcinfo=self._warcinfo_fields()), first_serial=serial, watermark=watermark)
            self.catalog.track_marks(self.pk, watermark)
            self.store = Store(warc, self.catalog, target=self.target, crawl_pk=self.pk,
                               settings=s.dedup,
                               elsewhere=self.shared.queue.original if self.shared else None)
            for host, (status, body) in self.frontier.saved_robots().items():
                self._robots[host] = ALLOW_ALL if status == 0 else rules_from_response(status,
                                                                                        body)
            self.catalog.begin_batch()
            async with Fetcher(s.fetch) as fetcher:
                self.fetcher = fetcher
                if s.limits.max_time is not None:
                    timer = asyncio.get_running_loop().call_later(
                        s.limits.max_time, self.request_stop, StopReason.MAX_TIME)
                workers = [asyncio.create_task(self._worker())
                           for _ in range(max(1, s.politeness.concurrency))]
                ticker = asyncio.create_task(self._commit_ticker())
                try:
                    await asyncio.gather(*workers)
                finally:
                    ticker.cancel()
        finally:
            if timer is not None:
                timer.cancel()
            try:
                self.catalog.end_batch()  # commit before closing the WARC: see recover_warcs
            except OutputError as exc:  # its records are in the WARCs: entered on resume
                self._write_failed(exc)
            if self._distributed is not None:  # after the last commit
                await self._distributed.aclose("stopped" if self.stopping else "finished")
            self.catalog.track_marks(None)
            if self.store is not None:
                await self.store.close()
                self.stats.damaged_originals = self.store.damaged_originals
            self._parser.close()
            self._log.close()
        try:
            try:
                return self._finish()
            except OSError as exc:  # index, page list or crawl.json: the disk filled up
                raise write_error(exc, f"the index and summary of {self.directory}") from exc
        finally:
            self._reserve.release()
            if self._own_lock:
                self._lock.close()

    def _check_free_space(self) -> None:
        """Warn when the archive root is short of space (a full disk stops the crawl
        cleanly, but an archivist racing a deadline wants to know before, not after)."""
        free = shutil.disk_usage(self.directory).free
        wanted = self.settings.limits.min_free_space
        if free < wanted:
            log.warning("only %s free under %s (less than the %s asked for by "
                        "min_free_space): a full disk stops the crawl cleanly, resumable once "
                        "space is freed", format_size(free), self.settings.output,
                        format_size(wanted))

    async def _commit_ticker(self) -> None:
        """Commit the open batch when it is due even while no URL finishes (slow hosts,
        long politeness delays), so that other writers on the archive root get their turn
        within a tick (``writeturn.py``)."""
        while True:
            await asyncio.sleep(COMMIT_TICK)
            self._commit_due()

    def _queue_start_urls(self) -> None:
        """Queue the seeds, then every URL earlier crawls of this target captured (unless
        this run continues a round that has yet to reach them: see ``_continue_from``)."""
        with self.catalog.transaction():
            for seed in self.settings.seeds:
                key = urls.canonical_key(seed)
                if self.frontier.add(CrawlUrl(url=seed, key=key, kind=UrlKind.SEED, depth=0)):
                    self._pages_queued += 1
            if self.continued:
                return
            history, before = self.catalog, self.pk
            if self.shared is not None:  # only the worker that starts it re-checks
                if self.shared.history is None:
                    return
                history, before = self.shared.history, 1 << 62
            # A page that vanished from the site's navigation must still be checked.
            for row in history.known_urls(self.target, before):
                kind = UrlKind(row["kind"])
                kind = UrlKind.PAGE if kind is UrlKind.SEED else kind
                self._offer(row["url"], kind, row["depth"], via=None, key=row["key"],
                            record_out_of_scope=True, recheck=True)

    def _shortfall(self, reason: StopReason) -> dict[str, int]:
        """Return what this crawl (all its sessions) did not fetch although in scope, by
        reason; empty when nothing was lost except by rules the user set."""
        counts = lost_in_crawl(self.db, self.pk)
        left = self.frontier.queued + self.frontier.deferred()
        if left and reason is not StopReason.INTERRUPTED:
            counts["limit"] = left
        return dict(sorted(counts.items()))

    def _finish(self) -> CrawlOutcome:
        """Record the end in the catalog; write the index, page list and crawl.json.

        The end is said exactly: complete only when every URL in scope that the crawl found
        was fetched or kept out by a rule the user set (scope, exclude, depth, robots.txt);
        incomplete, with the URLs lost per reason, when a limit, a trap rule, a robots.txt
        that could not be read, a hung host, a per-page cap or failed fetches cost any;
        failed when not one page could be archived.
        """
        reason = self._stop_reason or self._limited_by or StopReason.COMPLETE
        totals = self.catalog.crawl_totals(self.pk)
        shortfall = self._shortfall(reason)
        if reason is StopReason.INTERRUPTED:
            code, status = ExitCode.INTERRUPTED, CrawlStatus.INTERRUPTED
        elif reason in _WRITE_STOPS:  # resumable once the disk has room again
            code = ExitCode.NO_SPACE if reason is StopReason.NO_SPACE else ExitCode.CONFIG
            status = CrawlStatus.INTERRUPTED
        else:
            code, status = judge_end(self.db, self.pk, totals, shortfall,
                                     continued=bool(self.continued))
        index = self.directory / "indexes" / "index.cdxj"
        pages = self.directory / "pages" / "pages.jsonl"
        # A full disk: record the end first (a few bytes); the index, page list and
        # crawl.json follow if they fit, and are written by the resume anyway.
        spare = reason in _WRITE_STOPS
        if spare:
            self.catalog.finish_crawl(self.pk, status, reason.value, int(code), shortfall)
        try:
            write_cdxj(index_entries(self.catalog, self.pk), index)
            write_pages(page_entries(self.catalog, self.pk), pages)
        except OSError as exc:
            if not spare:
                raise
            log.warning("index and page list not written (%s); the resume writes them", exc)
        if not spare:
            self.catalog.finish_crawl(self.pk, status, reason.value, int(code), shortfall)
        unfetched = self.frontier.queued + self.frontier.deferred()
        if status not in (CrawlStatus.INTERRUPTED, CrawlStatus.INCOMPLETE) or not unfetched:
            self.frontier.forget()  # kept when the next run continues it (_continue_from)
        warcs = tuple(sorted((self.directory / "warc").glob("*.warc.gz")))
        stats = self.stats.as_dict()
        stats["totals"] = totals
        stats["continued"] = self.continued
        snapshot = snapshot_of(self.crawl_id, self.target, status, shortfall, code, reason,
                               self.settings, stats, warcs, unfetched=unfetched)
        try:
            write_json(self.directory / "crawl.json", snapshot)
        except OSError as exc:
            if not spare:
                raise
            log.warning("crawl.json not written (%s); the resume writes it", exc)
        return CrawlOutcome(crawl_id=self.crawl_id, target=self.target,
                            directory=self.directory, warcs=warcs, index=index, pages=pages,
                            stop_reason=reason, exit_code=code, stats=stats, status=status,
                            shortfall=shortfall)

    async def _worker(self) -> None:
        """Take URLs until the frontier is exhausted or closed."""
        while True:
            item = await self.frontier.get()
            if item is None:
                return
            state = _Slot()
            try:
                await self._process(item, state)
            except OutputError as exc:  # the URL stays in flight: fetched again on resume
                self._write_failed(exc)
            except Exception:  # a bug must not kill the crawl; the URL stays queued for resume
                log.exception("internal error while processing %s", item.url)
                self.stats.statuses["internal-error"] += 1
            finally:
                self.frontier.done(item, slot_released=state.released)
                self._commit_due()

    def _commit_due(self) -> None:
        """Commit the catalog batch if due; a failed commit stops the crawl."""
        try:
            self.catalog.commit_if_due()
        except OutputError as exc:
            self._write_failed(exc)

    async def _process(self, item: CrawlUrl, slot: _Slot) -> None:
        """Fetch one URL, write it, and queue what it links to."""
        host = urls.host_of(item.url)
        if self.breakers.given_up(host):
            self._skip(item, "host-hung", f"not fetched: {host} stopped answering "
                       f"({self.breakers.hang_trips} times {self.breakers.hang_limit} "
                       "requests in a row got no answer in time)")
            return
        rules = await self._robots_for(item.url, host)
        if (self.settings.robots is RobotsPolicy.OBEY
                and not rules.allowed(item.url, self.settings.fetch.user_agent)):
            self.stats.robots_blocked += 1
            self._skip(item, "robots-unreachable" if rules.disallow_all else "robots",
                       rules.why)
            return
        assert self.store is not None
        conditional = await self.store.conditional(item)
        await self.frontier.starting(host)
        result = await self.fetcher.fetch(item.url, conditional.headers if conditional else None)
        self._watch_host(host, result)
        self.frontier.observe(host, result.elapsed, trouble=_troubled(result),
                              may_lower=result.ok and (200 <= result.status < 300
                                                       or result.status == 304))
        self.frontier.release_host(item)
        slot.released = True
        try:
            await self._handle(item, result, conditional)
        finally:
            result.close()

    def _watch_host(self, host: str, result: FetchResult) -> None:
        """Feed the host's circuit breaker and pause the host when it trips (breaker.py)."""
        hung = (result.failure in (FailureKind.TIMEOUT, FailureKind.CONNECT)
                or result.truncated is Truncation.TIME)
        verdict = self.breakers.record(host, result.started, hung=hung)
        if verdict is Verdict.PAUSE:
            pause = self.breakers.pause_for(host)
            log.warning("%s does not answer (%d timeouts in a row): pausing it %.0f s",
                        host, self.breakers.hang_limit, pause)
            self.frontier.back_off(host, pause)
        elif verdict is Verdict.GIVE_UP and hung:
            log.warning("%s still does not answer: its remaining URLs are recorded as not "
                        "fetched (host-hung)", host)

    def _skip(self, item: CrawlUrl, failure: str, detail: str) -> None:
        """Record a queued URL that is deliberately not fetched, and finish it."""
        with self.catalog.transaction():
            self._record_unfetched(item, failure, detail)
            self.frontier.finish(item)

    def _record_unfetched(self, item: CrawlUrl, failure: str, detail: str) -> None:
        """Add a catalog row (and a crawl.log line) for a URL that was not fetched."""
        self.catalog.add_capture(self.pk, unfetched_row(item, failure, detail))
        if self._log:
            self._log.line(item, None, failure if failure != "out-of-scope" else detail)

    async def _handle(self, item: CrawlUrl, result: FetchResult,
                      conditional: Conditional | None) -> None:
        """Write a fetch result, then retry it or commit it and queue its links."""
        assert self.store is not None
        self.stats.bytes += result.body_length
        retry_in = self._retry_delay(item, result)
        if retry_in is not None:
            # The failed attempt stays in the WARC as evidence but is not indexed for replay.
            stored = await self.store.write(result, item)
            with self.catalog.transaction():
                self.catalog.add_capture(self.pk, capture_row(item, result, stored, None,
                                                              final=False))
                self.frontier.retry(item)
            self.stats.retries += 1
            self._line(item, result, f"retry-in-{retry_in:.1f}s")
            self.frontier.back_off(urls.host_of(item.url), retry_in)
            return
        content = result  # what the URL serves; after a 304, the archived original
        found = Extracted()
        if result.ok and result.status == 304 and conditional is not None:
            stored = await self.store.write(result, item, conditional)
            if _extractable(item, 200, stored.mime or "", conditional.prior.payload.length):
                # Unchanged: its links are the archived original's, extracted again.
                content = await self.store.original_content(result, conditional)
                found = await self._extract(content, stored.mime or "", content.read_body())
        elif _extractable(item, result.status if result.ok else 0, result.content_type,
                          result.body_length):
            stored, found = await asyncio.gather(
                self.store.write(result, item),
                self._extract(result, result.content_type, result.read_body()))
        elif _may_be_wall(result):
            stored, found = await asyncio.gather(
                self.store.write(result, item),
                self._extract(result, result.content_type, result.read_body()))
            found = Extracted(wall=found.wall)  # an error page: its links are not followed
        else:
            stored = await self.store.write(result, item)
        failpoints.hit("before-commit")
        if item.kind in _PAGE_KINDS and result.ok and 200 <= result.status < 300:
            self.scope.note_content(item.url, found.shape_hash)
        row = capture_row(item, result, stored, found)
        notes = [*(["capped:" + ",".join(found.capped)] if found.capped else []),
                 *([f"{WALL_NOTE}{found.wall}"] if found.wall else [])]
        if notes:  # its links past a cap were not followed; a wall answered, not the site
            row = dataclasses.replace(row, detail="; ".join(filter(None, (row.detail, *notes))))
        with self.catalog.transaction():
            self.catalog.add_capture(self.pk, row)
            self._follow(item, content, found)
            self.frontier.finish(item, failed=not result.ok)
        self.stats.count(result, page=item.kind in _PAGE_KINDS and not found.wall,
                         revisit=stored.entry.record_type == "revisit",
                         not_modified=stored.mime is not None)
        for cap in found.capped:
            self.stats.capped[cap] += 1
        note = " ".join(filter(None, (_annotation(result, stored),
                                      *(f"capped:{c}" for c in found.capped),
                                      "bot-wall" if found.wall else "")))
        self._line(item, result, note)
        limits = self.settings.limits
        if limits.max_bytes is not None and self.stats.bytes >= limits.max_bytes:
            self.request_stop(StopReason.MAX_BYTES)

    def _follow(self, item: CrawlUrl, result: FetchResult, found: Extracted) -> None:
        """Queue a redirect target or the links found (inside the commit transaction)."""
        if not result.ok:
            return
        if result.status in _REDIRECT_STATUSES:
            self._follow_redirect(item, result)
        elif 200 <= result.status < 300:
            self._queue_found(item, found)

    def _retry_delay(self, item: CrawlUrl, result: FetchResult) -> float | None:
        """Return seconds to wait before retrying, or None if this result is final."""
        pol = self.settings.politeness
        if item.attempt >= pol.retries:  # (when stopping, a retry waits for the resume)
            return None
        transient = (result.failure in _RETRY_FAILURES or result.status in _RETRY_STATUSES
                     or (result.ok and result.truncated not in (None, Truncation.LENGTH)))
        if not transient:
            return None
        wait = pol.backoff * (2 ** item.attempt) * random.uniform(0.75, 1.25)
        told = retry_after_seconds(result.header("retry-after")) if result.ok else None
        if told is not None:
            if told > pol.max_retry_after:
                # "Come back in a week" (or in 2100): honouring it would freeze the whole
                # host for the rest of the crawl. The answer is final and recorded as such.
                return None
            wait = max(wait, told)
        return float(wait)

    async def _extract(self, result: FetchResult, media: str, raw: bytes) -> Extracted:
        """Find links in a body, in a parser process when there is one (``parsing.py``: a
        parse that outlasts ``PARSE_TIMEOUT`` costs that page's links, recorded as a cap,
        never the crawl)."""
        return await self._parser.extract(result.url, media, raw,
                                          result.header("content-type"),
                                          result.header("content-encoding"))

    def _follow_redirect(self, item: CrawlUrl, result: FetchResult) -> None:
        """Queue the target of a redirect as its own capture, through scope."""
        location = result.header("location")
        target = urls.try_normalize(location, item.url) if location else None
        if target is None:
            return
        if item.kind is UrlKind.SEED:
            # A seed that redirects (http -> https, bare -> www) carries its scope with it.
            self.scope.add_seed(target)
            self._seed_hosts.add(urls.host_of(target))
        kind = item.kind
        if kind is UrlKind.PAGE and not (self.scope.in_seed_scope(target) or any(
                p.search(target) for p in self.settings.scope.include)):
            kind = UrlKind.REQUISITE  # where a page now leads is evidence: fetch, crawl no further
        self._offer(target, kind, item.depth, via=item.url, redirects=item.redirects + 1,
                    embeds=item.embeds, record_out_of_scope=True)

    def _queue_found(self, item: CrawlUrl, found: Extracted) -> None:
        """Queue links, requisites and sitemaps found in a document."""
        keys = found.keys
        if item.kind in (UrlKind.SEED, UrlKind.PAGE, UrlKind.SITEMAP):
            linked = []
            for link in found.links:
                key = keys.get(link) or urls.canonical_key(link)
                self._offer(link, UrlKind.PAGE, item.depth + 1, via=item.url, key=key)
                if item.kind is UrlKind.SITEMAP:
                    continue
                if key in self._linked:
                    self._linked.move_to_end(key)
                else:  # for "delisted": still served, no longer linked
                    self._linked[key] = None
                    if len(self._linked) > RECENT_LINKS:
                        self._linked.popitem(last=False)
                    linked.append(key)
            self.catalog.add_linked(self.pk, linked)
        if item.kind is not UrlKind.SITEMAP:
            for link in found.requisites:
                self._offer(link, UrlKind.REQUISITE, item.depth, via=item.url,
                            embeds=item.embeds + 1, key=keys.get(link))
        for link in found.sitemaps:
            self._offer(link, UrlKind.SITEMAP, item.depth, via=item.url, key=keys.get(link))

    def _offer(self, url: str, kind: UrlKind, depth: int, *, via: str | None,
               redirects: int = 0, embeds: int = 0, key: str | None = None,
               record_out_of_scope: bool = False, recheck: bool = False) -> None:
        """Pass one discovered URL through scope and limits into the frontier.

        ``record_out_of_scope`` keeps evidence of URLs a user cares about (redirect targets,
        URLs known from earlier crawls) when scope rejects them. Links found while the crawl
        is stopping are still queued: they wait in the catalog for the resume.
        """
        key = key or urls.canonical_key(url)
        if self.frontier.seen(key):
            return
        decision = self.scope.decide(url, kind, depth, redirects=redirects, embeds=embeds,
                                     via=None if recheck else via)
        if not decision.allowed:
            item = CrawlUrl(url=url, key=key, kind=kind, depth=depth, via=via)
            if decision.is_trap:
                # Reported, not silently dropped: each URL a trap rule keeps from the crawl
                # is a row (`crawler list --failure trap`) and counts in its shortfall.
                if self.frontier.mark_seen(url, key, kind):
                    self.stats.traps[decision.reason] += 1
                    self._record_unfetched(item, "trap", decision.reason)
                    if self.stats.traps[decision.reason] <= _TRAP_LOG_LIMIT:
                        log.info("%s: %s (%s)", decision.reason, url,
                                 f"linked from {via}" if via else "known from earlier crawls")
                return
            self.stats.out_of_scope += 1
            if record_out_of_scope and self.frontier.mark_seen(url, key, kind):
                self._record_unfetched(item, "out-of-scope", decision.reason)
            return
        if kind in _PAGE_KINDS:
            max_pages = self.settings.limits.max_pages
            if max_pages is not None and self._pages_queued >= max_pages:
                self._limited_by = StopReason.MAX_PAGES
                self.frontier.add(CrawlUrl(url=url, key=key, kind=kind, depth=depth, via=via,
                                           redirects=redirects, embeds=embeds), deferred=True)
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
        """Fetch robots.txt (following up to 5 redirects, each recorded) and parse it.

        A 5xx or 429 answer is asked again, with back-off, before it counts (RFC 9309
        §2.3.1.3-4): a server error on robots.txt means "disallow everything", and one
        passing error must not cost the whole host.
        """
        target = urls.robots_url(url)
        rules, status, body = ALLOW_ALL, 0, None
        pol = self.settings.politeness
        hop = attempt = 0
        while hop < 6:
            key = urls.canonical_key(target)
            item = CrawlUrl(url=target, key=key, kind=UrlKind.ROBOTS, depth=0, redirects=hop,
                            attempt=attempt)
            result = await self.fetcher.fetch(target)
            try:
                self.stats.bytes += result.body_length
                assert self.store is not None
                stored = await self.store.write(result, item)
                again = (result.ok and (result.status >= 500 or result.status == 429)
                         and attempt < max(pol.retries, 2) and not self.stopping)
                with self.catalog.transaction():
                    self.frontier.mark_seen(target, key, UrlKind.ROBOTS)
                    self.catalog.add_capture(self.pk, capture_row(item, result, stored, None,
                                                                  final=not again))
                self.stats.count(result, page=False,
                                 revisit=stored.entry.record_type == "revisit")
                wait = pol.backoff * (2 ** attempt)
                self._line(item, result, f"retry-in-{wait:.1f}s" if again else "")
                if again:
                    attempt += 1
                    self.stats.retries += 1
                    await asyncio.sleep(wait)
                    continue
                if not result.ok:
                    # Unreachable host: we still try its URLs so their failures are recorded as
                    # evidence (nothing reaches a server that did not answer). RFC 9309 §2.3.1.3
                    # asks for "complete disallow" here; see docs/crawling.md.
                    break
                location = result.header("location")
                if result.status in _REDIRECT_STATUSES and location:
                    nxt = urls.try_normalize(location, target)
                    if nxt is None:
                        break
                    target, hop, attempt = nxt, hop + 1, 0
                    continue
                status = result.status
                body = robots_body(result.read_body(), result.header("content-encoding"))
                rules = rules_from_response(status, body)
            finally:
                result.close()
            break
        with self.catalog.transaction():
            self._adopt_robots(host, url, target, status, body, rules)
        return rules

    def _adopt_robots(self, host: str, url: str, robots: str, status: int,
                      body: bytes | None, rules: RobotsRules) -> None:
        """Keep a host's robots.txt answer, apply its Crawl-delay and queue its sitemaps
        (inside the caller's transaction; also for a robots.txt record entered after a kill,
        whose sitemaps would otherwise never be queued)."""
        self.frontier.save_robots(host, status, body)
        if self.settings.robots is RobotsPolicy.OBEY:
            delay = rules.crawl_delay(self.settings.fetch.user_agent)
            if delay:
                self.frontier.set_host_delay(host, delay)
        if (self.settings.sitemaps and host in self._seed_hosts
                and host not in self._sitemap_hosts):
            self._sitemap_hosts.add(host)
            for sitemap in [*rules.sitemaps(), urls.origin(url) + "sitemap.xml"]:
                found = urls.try_normalize(sitemap, url)
                if found is not None:
                    self._offer(found, UrlKind.SITEMAP, 0, via=robots)

    def _recover(self, warc_dir: Path) -> None:
        """Close WARCs a killed session left open and enter records it did not commit."""
        found = recover_warcs(
            warc_dir, lambda name: self.catalog.record_offsets(self.pk, name),
            payload_cap=MAX_EXTRACT_BYTES, marks=self.catalog.warc_marks(self.pk))
        for path in found.closed:
            log.info("closed %s left open by an interrupted session", path.name)
        for orphan in found.orphans:
            self._import_orphan(orphan)
        with self.catalog.transaction():  # every record up to each file's end is entered
            self.catalog.set_warc_marks(self.pk, found.read_to)
        if found.orphans:
            log.info("entered %d records written before the interruption", len(found.orphans))
        log.info("resume read %s of WARC past the watermarks (%s below them not read)",
                 format_size(sum(found.read_to.values()) - found.skipped_bytes),
                 format_size(found.skipped_bytes))

    def _import_orphan(self, orphan: OrphanRecord) -> None:
        """Enter one record found in a WARC but not in the catalog, as its crawl would have."""
        key = urls.canonical_key(orphan.url)
        known = self.frontier.item(key)
        kind = record_kind(orphan.headers)
        item = known or CrawlUrl(url=orphan.url, key=key, kind=kind, depth=0)
        result = result_from_record(orphan)
        stored, payload = stored_from_record(self.catalog, self.target, orphan, result)
        found = Extracted()
        media = result.content_type
        if item.kind is not UrlKind.ROBOTS and _extractable(item, result.status, media,
                                                            len(payload)):
            found = extract.extract_safely(result.url, media, payload,
                                           result.header("content-type"),
                                           result.header("content-encoding"))
        row = capture_row(item, result, stored, found)
        if orphan.headers.get("WARC-Profile") == SERVER_NOT_MODIFIED:
            row = dataclasses.replace(row, status=304)  # the revisit carries the original's
        with self.catalog.transaction():
            if known is None:  # its frontier row was in the lost transaction too
                self.frontier.mark_seen(orphan.url, key, item.kind)
            self.catalog.add_capture(self.pk, row)
            if item.kind is UrlKind.ROBOTS:
                if not result.ok:  # unreachable: its URLs are tried (see _fetch_robots)
                    self.frontier.save_robots(urls.host_of(orphan.url), 0, None)
                elif result.status not in _REDIRECT_STATUSES:
                    body = robots_body(payload, result.header("content-encoding"))
                    self._adopt_robots(urls.host_of(orphan.url), orphan.url, orphan.url,
                                       result.status, body,
                                       rules_from_response(result.status, body))
            else:
                self._follow(item, result, found)
            self.frontier.finish_unfetched(item, failed=not result.ok)
        self.stats.recovered += 1

    def _line(self, item: CrawlUrl, result: FetchResult, note: str) -> None:
        """Write a crawl.log line."""
        if self._log is not None:
            self._log.line(item, result, note)


@dataclass(frozen=True, slots=True)
class Shared:
    """How a crawl takes part in a distributed crawl (jobs/distributed.py): the shared
    queue, this worker's name and where it writes, and (for the worker that starts the
    crawl) the target's catalog, whose earlier crawls' URLs are queued to be re-checked."""

    queue: SharedFrontier
    worker: str
    info: dict[str, str]
    history: Catalog | None = None


@dataclass(slots=True)
class _Slot:
    """Whether a worker already gave back the host slot of the URL it is processing."""

    released: bool = False


async def run_crawl(settings: CrawlSettings, *, catalog: Catalog | None = None,
                    resume: CrawlRow | None = None,
                    on_start: Callable[[Crawl], None] | None = None,
                    lock: IO[str] | None = None, shared: Shared | None = None) -> CrawlOutcome:
    """Run one crawl, new or resumed; ``on_start`` gets the Crawl (progress, stop requests).

    Opens the catalog under ``settings.output`` unless one is given.
    """
    own = catalog is None
    catalog = catalog or Catalog.open(settings.output)
    try:
        crawl = Crawl(settings, catalog, resume=resume, lock=lock, shared=shared)
        if on_start is not None:
            on_start(crawl)
        return await crawl.run()
    finally:
        if own:
            catalog.close()


def judge_end(db: sqlite3.Connection, pk: int, totals: dict[str, int],
              shortfall: dict[str, int], *, continued: bool = False) -> tuple[ExitCode, str]:
    """Return the exit code and status of a crawl that ended on its own: failed when not
    one page was archived (or no seed answered, unless it continued an earlier round),
    incomplete when its shortfall lost any URL, else complete."""
    seeds_ok = db.execute(
        "SELECT count(*) FROM captures WHERE crawl=? AND kind='seed' AND final=1 "
        "AND status IS NOT NULL", (pk,)).fetchone()[0]
    if (seeds_ok == 0 and not continued) or totals["pages"] == 0:
        return ExitCode.CRAWL_FAILED, CrawlStatus.FAILED
    if shortfall:
        return ExitCode.INCOMPLETE, CrawlStatus.INCOMPLETE
    return ExitCode.OK, CrawlStatus.COMPLETE


def snapshot_of(crawl_id: str, target: str, status: str, shortfall: dict[str, int],
                code: ExitCode, reason: StopReason, settings: CrawlSettings,
                stats: dict[str, Any], warcs: tuple[Path, ...],
                **extra: object) -> dict[str, Any]:
    """Return a crawl's ``crawl.json``: how it ended, its settings, counters and files."""
    return {"software": f"crawler/{__version__}", "crawl_id": crawl_id, "target": target,
            "status": status, "shortfall": shortfall, "exit_status": code.name.lower(),
            "exit_code": int(code), "stop_reason": reason.value,
            "finished": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "seeds": list(settings.seeds), "settings": settings.to_json(), "stats": stats,
            **extra, "warcs": [p.name for p in warcs]}


def lost_in_crawl(db: sqlite3.Connection, pk: int) -> dict[str, int]:
    """Return the URLs in scope a crawl's captures show were not archived, by reason
    (failed fetches, trap rules, robots.txt that could not be read, hung hosts, bot walls,
    per-page caps, truncated bodies); rules the user set (scope, robots.txt) are not losses."""
    wall = f"'%{WALL_NOTE}%'"  # a challenge page answered: the page was not seen
    counts = dict(db.execute(
        "SELECT CASE WHEN failure IN ('trap', 'robots-unreachable', 'host-hung') "
        f"THEN failure WHEN detail LIKE {wall} THEN 'bot-wall' "
        "WHEN detail LIKE '%capped:%' THEN 'parse-cap' "
        "WHEN failure IS NULL THEN 'truncated' ELSE 'errors' END, count(*) "
        "FROM captures WHERE crawl=? AND final=1 AND kind IN "
        "('seed', 'page', 'requisite', 'sitemap') AND (failure IS NOT NULL OR detail LIKE "
        f"'%capped:%' OR detail LIKE {wall} OR detail LIKE 'time%' "
        "OR detail LIKE 'disconnect%') AND failure IS NOT 'robots' "
        "AND failure IS NOT 'out-of-scope' AND (failure IS NOT 'too-large' OR detail LIKE "
        "'%capped:%') GROUP BY 1",
        (pk,)).fetchall())
    return {k: int(v) for k, v in counts.items() if v}


def _troubled(result: FetchResult) -> bool:
    """Return True if the answer says the server is struggling (for adaptive politeness)."""
    if result.failure in (FailureKind.TIMEOUT, FailureKind.RESET, FailureKind.CONNECT,
                          FailureKind.REFUSED):
        return True
    return result.ok and (result.status == 429 or result.status >= 500)


def _extractable(item: CrawlUrl, status: int, media: str, length: int) -> bool:
    """Return True if a body with this status and media type is parsed for links."""
    return (200 <= status < 300 and length <= MAX_EXTRACT_BYTES
            and (media in _EXTRACT_TYPES or item.kind is UrlKind.SITEMAP))


def _may_be_wall(result: FetchResult) -> bool:
    """Return True if an error response could be a challenge page, and is read to tell
    (challenge pages are small HTML answered 403, 429 or 503)."""
    return (result.ok and result.status in _WALL_ERROR_STATUSES
            and result.content_type in extract.HTML_TYPES
            and result.body_length <= MAX_WALL_BYTES)


def _annotation(result: FetchResult, stored: Stored) -> str:
    """Return the crawl.log annotation for how a result was stored."""
    if stored.entry.record_type != "revisit":
        return ""
    return "not-modified" if result.status == 304 else "duplicate:digest"
