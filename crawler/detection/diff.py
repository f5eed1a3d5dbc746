"""Detection after a crawl, in order: evidence (``probes.py``), comparison
(``comparison.py``), states (``states.py``). Also the comparison of a run whose detection a
kill interrupted after its states were committed (to write its report).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from crawler.archive.catalog import Catalog, CrawlRow
from crawler.capture.fetcher import FetchSettings
from crawler.capture.settings import DetectSettings
from crawler.detection.comparison import Comparison, baseline, compare, first_crawl, previous_crawl
from crawler.detection.probes import probe, repair_probe_files
from crawler.detection.states import Event, apply_states, transitions

log = logging.getLogger("crawler.diff")


async def detect_after_crawl(catalog: Catalog, after: CrawlRow, settings: DetectSettings,
                             fetch: FetchSettings,
                             on_commit: Callable[[list[Event]], None] | None = None,
                             ) -> tuple[Comparison, list[Event]]:
    """Probe, compare and advance states after a crawl (a first crawl: all URLs new).

    Safe to run again after a kill: the probes a killed run archived are kept (closed and
    entered first, see ``repair_probe_files``) and count as evidence; nothing is committed
    to the states until ``apply_states``.
    """
    started = time.monotonic()
    repair_probe_files(catalog, after)
    if first_crawl(catalog, after):
        comparison = baseline(catalog, after)
    elif previous_crawl(catalog, after) is not None:
        comparison = await probe(catalog, after, settings, fetch)
    else:  # earlier captures, but no crawl that finished: nothing to probe against
        comparison = compare(catalog, after, rules=settings.rules)
    events = apply_states(catalog, comparison, settings, on_commit)
    log.info("compared %d URLs in %.1fs: %d transitions", sum(comparison.counts().values()),
             time.monotonic() - started, transitions(events))
    return comparison, events


def comparison_after_detection(catalog: Catalog, after: CrawlRow,
                               settings: DetectSettings) -> Comparison:
    """Return the comparison that ``detect_after_crawl`` made, again and offline, from what
    it archived and entered (probes, control URL, re-checks): for a run killed after its
    states were committed but before its report was written."""
    if first_crawl(catalog, after):
        return baseline(catalog, after)
    return compare(catalog, after, rules=settings.rules)

