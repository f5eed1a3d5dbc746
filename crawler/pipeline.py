"""One run of a target: crawl, then compare with earlier crawls, report, notify, package.

The CLI (and the daemon) call ``run_target``; it owns the catalog for the run. Detection
runs after a crawl that ended on its own (complete, stopped by a limit, or failed because no
seed could be fetched, which is when it matters most); an interrupted crawl is compared when
its resume finishes. The crawl's index is written again after detection and the WACZ (if
asked for) only then, so both hold the probes and re-checks behind the findings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from crawler import notify, report
from crawler.catalog import Catalog, CrawlRow, CrawlStatus
from crawler.crawl import Crawl, run_crawl
from crawler.diff import Event, detect_after_crawl
from crawler.errors import ExitCode
from crawler.layout import lock_target
from crawler.outcome import CrawlOutcome
from crawler.package import refresh_after_detection
from crawler.settings import CrawlSettings
from crawler.wacz import wacz_path, write_wacz

log = logging.getLogger("crawler.pipeline")


@dataclass(frozen=True, slots=True)
class TargetRun:
    """What one run of a target produced."""

    outcome: CrawlOutcome
    report: dict[str, Any] | None = None  # None if the crawl was interrupted
    report_paths: tuple[Path, Path] | None = None
    events: tuple[Event, ...] = ()

    @property
    def exit_code(self) -> ExitCode:
        """Return the crawl's code, or TAKEDOWN when the run raised a new alert (also when
        no seed could be fetched: an unreachable site is the alert)."""
        if self.outcome.exit_code in (ExitCode.OK, ExitCode.CRAWL_FAILED,
                                      ExitCode.INCOMPLETE) and any(
                e.state in ("confirmed", "provisional") for e in self.events):
            return ExitCode.TAKEDOWN
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
        outcome = await run_crawl(settings, catalog=catalog, resume=resume, on_start=on_start,
                                  lock=lock)
        row = catalog.crawl(outcome.target, outcome.crawl_id)
        if row is None or row.status not in (*CrawlStatus.FINISHED, CrawlStatus.FAILED):
            return TargetRun(outcome)  # interrupted: compared when its resume finishes
        run = await detect_and_report(catalog, row, settings, outcome)
        outcome = replace(run.outcome, warcs=refresh_after_detection(catalog, row))
        if settings.wacz and row.status in CrawlStatus.FINISHED:
            path = wacz_path(catalog.root, row.target, [row], whole=False)
            outcome = replace(outcome, wacz=write_wacz(catalog, [row], path))
        run = replace(run, outcome=outcome)
        catalog.set_exit_code(row.pk, int(run.exit_code))  # what `crawler status` shows
        return run
    finally:
        catalog.close()


async def detect_and_report(catalog: Catalog, row: CrawlRow, settings: CrawlSettings,
                            outcome: CrawlOutcome) -> TargetRun:
    """Compare a finished crawl with the target's earlier ones; write and send the report."""
    fetch = replace(settings.fetch, total_timeout=min(settings.fetch.total_timeout, 60.0))
    comparison, events = await detect_after_crawl(catalog, row, settings.detect, fetch)
    data = report.build(catalog, comparison, events)
    paths = report.write(data, row.directory)
    if events and settings.detect.notify:
        title, body = notify.message(row.target, row.crawl_id, events, paths[1])
        await asyncio.to_thread(notify.send, settings.detect.notify, title, body)
    return TargetRun(outcome, data, paths, tuple(events))
