"""What a crawl reports: why it stopped, its live counters, and its outcome."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from crawler.core.errors import ExitCode
from crawler.core.models import FetchResult


class StopReason(StrEnum):
    """Why a crawl ended."""

    COMPLETE = "complete"  # nothing left in scope
    MAX_PAGES = "max-pages"
    MAX_BYTES = "max-bytes"
    MAX_TIME = "max-time"
    INTERRUPTED = "interrupted"  # SIGINT/SIGTERM; resumable
    NO_SPACE = "no-space"  # a write failed for lack of space; resumable once space is freed
    WRITE_FAILED = "write-failed"  # a write failed otherwise (I/O error, permissions)
    STOPPED = "stopped"  # a distributed crawl whose workers were all stopped (crawler stop)


@dataclass(slots=True)
class CrawlStats:
    """Live counters of this session, read by the progress display."""

    fetched: int = 0  # HTTP exchanges completed (any status)
    pages: int = 0  # seeds and pages fetched with 2xx
    failed: int = 0  # network failures after retries
    retries: int = 0
    bytes: int = 0  # body bytes downloaded
    robots_blocked: int = 0
    out_of_scope: int = 0
    truncated: int = 0
    recovered: int = 0  # records found in WARCs after a kill and entered in the catalog
    revisits: int = 0  # stored as revisits of payloads archived before (incl. 304s)
    not_modified: int = 0  # 304 answers to conditional requests
    damaged_originals: int = 0  # earlier records found damaged: their duplicates stored in full
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "404", "dns", ...
    traps: Counter[str] = field(default_factory=Counter)
    capped: Counter[str] = field(default_factory=Counter)  # pages whose links a cap cut short
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Return seconds since this session started."""
        return time.monotonic() - self.started

    def count(self, result: FetchResult, *, page: bool, revisit: bool = False,
              not_modified: bool = False) -> None:
        """Count a final result; ``page`` for seeds and links, ``not_modified`` for a 304 that
        became a revisit (an unchanged page, so still a page captured)."""
        if revisit:
            self.revisits += 1
            self.not_modified += not_modified
        if not result.ok:
            self.failed += 1
            self.statuses[result.failure.value if result.failure else "failed"] += 1
            return
        self.fetched += 1
        self.statuses[str(result.status)] += 1
        if result.truncated is not None:
            self.truncated += 1
        if page and (200 <= result.status < 300 or not_modified):
            self.pages += 1

    def as_dict(self) -> dict[str, Any]:
        """Return the counters as JSON-ready data."""
        data = asdict(self)
        data.pop("started")
        data["elapsed_seconds"] = round(self.elapsed, 3)
        data["statuses"] = dict(self.statuses)
        data["traps"] = dict(self.traps)
        data["capped"] = dict(self.capped)
        return data


@dataclass(frozen=True, slots=True)
class CrawlOutcome:
    """What a finished (or interrupted) crawl produced."""

    crawl_id: str
    target: str
    directory: Path
    warcs: tuple[Path, ...]
    index: Path
    pages: Path
    stop_reason: StopReason
    exit_code: ExitCode
    stats: dict[str, Any]  # this session's counters plus "totals" over all sessions
    wacz: Path | None = None  # the package written when the crawl asked for one
    status: str = "complete"  # catalog status: complete, incomplete, interrupted, failed
    shortfall: dict[str, int] = field(default_factory=dict)  # URLs not fetched, per reason


SHORTFALL = {  # reason -> how a summary says it
    "limit": "{n} URL(s) left queued when a limit stopped the crawl (the next run of the "
             "target continues them)",
    "trap": "{n} URL(s) skipped by trap rules (`crawler list TARGET --failure trap`)",
    "robots-unreachable": "{n} URL(s) of hosts whose robots.txt answered with a server "
                          "error (RFC 9309: disallow all)",
    "host-hung": "{n} URL(s) of hosts that stopped answering",
    "bot-wall": "{n} URL(s) answered with the challenge page of an anti-DDoS or "
                "bot-protection service: the crawl saw the wall, not the page",
    "parse-cap": "{n} page(s) whose links past a per-page cap were not followed",
    "errors": "{n} URL(s) that failed after all retries",
    "truncated": "{n} response(s) cut short (the server stalled or disconnected)",
    "not-fetched": "{n} URL(s) still queued or leased in the shared queue when the "
                   "distributed crawl was stopped",
    "queue-unknown": "the shared queue was not read (merged without Redis): whether URLs "
                     "were left queued is not known",
    "worker-missing": "{n} URL(s) done by workers whose folders were not found for the "
                      "merge (copy them here and run `crawler merge --from DIR`)",
}


def shortfall_lines(shortfall: dict[str, int]) -> list[str]:
    """Return one line per reason a crawl did not fetch URLs it found in scope."""
    return [SHORTFALL.get(k, "{n} URL(s): " + k).format(n=n) for k, n in shortfall.items()]
