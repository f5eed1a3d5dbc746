"""One run of a target: crawl, then compare with earlier crawls, report, notify, package.

The CLI (and the daemon) call ``run_target``; it owns the catalog for the run. Detection
runs after a crawl that ended on its own (complete, stopped by a limit, or failed because no
seed could be fetched, which is when it matters most); an interrupted crawl is compared when
its resume finishes. The crawl's index is written again after detection and the WACZ (if
asked for) only then, so both hold the probes and re-checks behind the findings.

Each step after the crawl is a phase recorded in the catalog (``catalog.Phase``): detect ->
report -> package -> done. Detection's states, its events, the run's notification (queued in
the outbox) and the move to the report phase commit in one transaction, so a kill at any
moment leaves either nothing of the detection or all of it. ``crawler resume``, the daemon's
start and the next run of the target finish a run that a kill left in any phase.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from crawler.archive.catalog import Catalog, CrawlRow, CrawlStatus, Phase
from crawler.archive.layout import lock_target
from crawler.archive.package import refresh_after_detection
from crawler.archive.wacz import wacz_path, write_wacz
from crawler.capture.settings import CrawlSettings
from crawler.core import failpoints
from crawler.core.errors import ExitCode
from crawler.core.outcome import CrawlOutcome, CrawlStats, StopReason
from crawler.crawl.engine import Crawl, run_crawl
from crawler.detection.diff import comparison_after_detection, detect_after_crawl
from crawler.detection.names import Namer, label
from crawler.detection.states import ALERTS, Event, events_of, transitions
from crawler.jobs.after_dark import rescue_if_dark
from crawler.reporting import notify, outbox, report
from crawler.rescue.run import RescueOutcome

log = logging.getLogger("crawler.pipeline")


@dataclass(frozen=True, slots=True)
class TargetRun:
    """What one run of a target produced."""

    outcome: CrawlOutcome
    report: dict[str, Any] | None = None  # None if the crawl was interrupted
    report_paths: tuple[Path, Path] | None = None
    events: tuple[Event, ...] = ()
    delivery: outbox.Delivery | None = None  # what the outbox pass at the end did
    dark: str | None = None  # why the target is dark after this run (after_dark.py)
    rescues: tuple[RescueOutcome, ...] = ()  # what was rescued from web archives then

    @property
    def exit_code(self) -> ExitCode:
        """Return the crawl's code, or TAKEDOWN when the run raised a new alert (also when
        no seed could be fetched: an unreachable site is the alert), or INCOMPLETE when the
        crawl ended complete but pages answered with a bot wall (it did not see them)."""
        if self.outcome.exit_code in (ExitCode.OK, ExitCode.CRAWL_FAILED,
                                      ExitCode.INCOMPLETE) and transitions(self.events, ALERTS):
            return ExitCode.TAKEDOWN
        if self.outcome.exit_code is ExitCode.OK and self.report is not None and \
                self.report["summary"]["classes"].get("bot-wall"):
            return ExitCode.INCOMPLETE
        return self.outcome.exit_code


async def run_target(settings: CrawlSettings, *, resume: CrawlRow | None = None,
                     on_start: Callable[[Crawl], None] | None = None) -> TargetRun:
    """Crawl a target, then detect, report, notify and package it.

    The target's lock is held through all of it, not only the crawl: a second run that
    started while this one was comparing would compare against a crawl whose states are
    being written, and could announce "recovered" for pages still gone.
    """
    lock = lock_target(settings.output, settings.target_name())
    try:
        return await _run_locked(settings, resume, on_start, lock)
    finally:
        lock.close()


async def _run_locked(settings: CrawlSettings, resume: CrawlRow | None,
                      on_start: Callable[[Crawl], None] | None, lock: IO[str]) -> TargetRun:
    """``run_target`` once the lock is held."""
    catalog = Catalog.open(settings.output)
    try:
        catalog.check_integrity()  # never add to a damaged catalog: rows could go with it
        if resume is not None and not resume.crawl_resumable:
            row = catalog.crawl(resume.target, resume.crawl_id)
            assert row is not None
            log.info("%s: crawl %s ended before; finishing its %s phase", row.target,
                     row.crawl_id, row.phase)
            return await finish_run(catalog, row, settings, outcome_of(catalog, row))
        if resume is None:
            await _finish_earlier(catalog, settings)
        outcome = await run_crawl(settings, catalog=catalog, resume=resume, on_start=on_start,
                                  lock=lock)
        row = catalog.crawl(outcome.target, outcome.crawl_id)
        if row is None or row.phase is None:
            return TargetRun(outcome)  # interrupted: compared when its resume finishes
        run = await finish_run(catalog, row, settings, outcome)
        dark, rescues = await rescue_if_dark(catalog, settings, run.outcome.exit_code)
        return replace(run, dark=dark, rescues=tuple(rescues))
    finally:
        catalog.close()


async def _finish_earlier(catalog: Catalog, settings: CrawlSettings) -> None:
    """Finish the phases a killed earlier run of the target left undone, before a new crawl
    is compared with it: otherwise its takedowns would never be reported."""
    latest = catalog.latest_crawl(settings.target_name())
    if latest is not None and latest.phase is not None and not latest.crawl_resumable:
        log.warning("%s: the run of crawl %s was cut short in its %s phase; finishing it "
                    "first", latest.target, latest.crawl_id, latest.phase)
        await finish_run(catalog, latest, settings, outcome_of(catalog, latest))


async def finish_run(catalog: Catalog, row: CrawlRow, settings: CrawlSettings,
                     outcome: CrawlOutcome) -> TargetRun:
    """Run the phases a crawl's run has left, from the one the catalog records."""
    fetch = replace(settings.fetch, total_timeout=min(settings.fetch.total_timeout, 60.0))
    detect = settings.detect
    report_path = row.directory / "report.html"
    namer = Namer(catalog, row.target, detect.rules)  # the alert and the report share it
    _remove_leftovers(row)
    if row.phase == Phase.DETECT:
        def commit(events: list[Event]) -> None:  # inside detection's transaction
            if events and detect.notify:
                title, body = notify.message(row.target, row.crawl_id, events, report_path,
                                             lambda key: label(namer.url(key)))
                outbox.enqueue(catalog, row.target, row.pk, detect.notify, title, body)
            catalog.set_phase(row.pk, Phase.REPORT)

        comparison, found = await detect_after_crawl(catalog, row, detect, fetch, commit)
        events = list(found)
        row = replace(row, phase=Phase.REPORT)
    else:
        comparison = comparison_after_detection(catalog, row, detect)
        events = events_of(catalog, row.pk, comparison.hosts)
    data, paths = None, None
    if row.phase in (Phase.REPORT, Phase.PACKAGE):
        data = report.build(catalog, comparison, events, namer)
        failpoints.hit("before-report")
        paths = report.write(data, row.directory,
                             report.detail_lines(catalog, comparison, events, namer))
        catalog.set_phase(row.pk, Phase.PACKAGE)
    delivery = await asyncio.to_thread(deliver, catalog, settings, row.target)
    outcome = replace(outcome, warcs=refresh_after_detection(catalog, row))
    if settings.wacz and row.status in CrawlStatus.FINISHED:
        path = wacz_path(catalog.root, row.target, [row], whole=False)
        outcome = replace(outcome, wacz=write_wacz(catalog, [row], path))
    run = TargetRun(outcome, data, paths, tuple(events), delivery)
    with catalog.transaction():
        catalog.db.execute("UPDATE crawls SET exit_code=?, phase=NULL WHERE id=?",
                           (int(run.exit_code), row.pk))  # what `crawler status` shows
    return run


def _remove_leftovers(row: CrawlRow) -> None:
    """Delete half-written files a kill left (reports, index, page list, crawl.json and
    packages are written as ``.tmp`` and renamed; the WARCs' ``.open`` files are repaired by
    detection, which keeps their records). Runs under the target's lock."""
    for path in [*row.directory.rglob("*.tmp"), *row.directory.parent.glob("*.wacz.tmp")]:
        log.info("removing %s, left half-written by an interrupted run", path.name)
        path.unlink(missing_ok=True)


def deliver(catalog: Catalog, settings: CrawlSettings, target: str) -> outbox.Delivery:
    """Send the target's due notifications (its new one, and any earlier one still queued)."""
    def send(url: str, title: str, body: str) -> str | None:
        failpoints.hit("before-notify")
        return notify.send_one(url, title, body)

    return outbox.deliver_due(catalog, send, target=target, urls=settings.detect.notify,
                              expiry=settings.detect.notify_expiry)


def outcome_of(catalog: Catalog, row: CrawlRow) -> CrawlOutcome:
    """Return the outcome of a crawl that ended in an earlier session (for finishing its
    run): its end as the catalog recorded it, and no fetches in this session."""
    stats = CrawlStats().as_dict()
    stats["totals"] = catalog.crawl_totals(row.pk)
    stats["phases_only"] = True
    warcs = tuple(sorted((row.directory / "warc").glob("*.warc.gz")))
    try:
        reason = StopReason(row.stop_reason or "complete")
    except ValueError:
        reason = StopReason.COMPLETE
    code = ExitCode(row.exit_code) if row.exit_code in set(ExitCode) else ExitCode.OK
    return CrawlOutcome(crawl_id=row.crawl_id, target=row.target, directory=row.directory,
                        warcs=warcs, index=row.directory / "indexes" / "index.cdxj",
                        pages=row.directory / "pages" / "pages.jsonl", stop_reason=reason,
                        exit_code=code, stats=stats, status=row.status,
                        shortfall=row.shortfall)
