"""What a crawl reports: why it stopped, its live counters, and its outcome."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from crawler.errors import ExitCode


class StopReason(StrEnum):
    """Why a crawl ended."""

    COMPLETE = "complete"  # nothing left in scope
    MAX_PAGES = "max-pages"
    MAX_BYTES = "max-bytes"
    MAX_TIME = "max-time"
    INTERRUPTED = "interrupted"  # SIGINT/SIGTERM; resumable


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
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "404", "dns", ...
    traps: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Return seconds since this session started."""
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
