"""Exception tree and named exit codes.

Every error the crawler raises on purpose derives from ``CrawlerError``::

    CrawlerError
    ├── ConfigError        invalid settings: names the source, the key and the reason
    ├── InvalidURL         a string that cannot be crawled as an http(s) URL
    └── OutputError        the output directory cannot be created or written

Fetch failures (DNS, refused, TLS, timeout, reset) are *not* exceptions past the fetcher: they are
data (``models.FailureKind``) written into the WARC as evidence, so they never abort a crawl.
"""

from __future__ import annotations

import errno
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, so cron, systemd and CI can react to how a run ended."""

    OK = 0  # crawl finished (possibly stopped by a configured limit)
    INTERNAL = 1  # unexpected error: a bug
    USAGE = 2  # bad command-line argument (click's own code)
    CONFIG = 3  # invalid configuration or output directory
    CRAWL_FAILED = 4  # no seed could be captured, or not one page archived
    INTERRUPTED = 5  # stopped by SIGINT/SIGTERM; state and WARCs were closed cleanly
    TAKEDOWN = 6  # a recrawl confirmed a new takedown event
    DAMAGED = 7  # `crawler verify` found missing, damaged or inconsistent files
    INCOMPLETE = 8  # the crawl finished, but URLs in scope were not fetched (its shortfall)
    UNDELIVERED = 9  # `crawler outbox --send`: notifications still not delivered (queued)
    NO_SPACE = 10  # a write failed for lack of disk space: stopped cleanly, resumable


class CrawlerError(Exception):
    """Base class of the crawler's own errors."""

    exit_code: ExitCode = ExitCode.INTERNAL


class ConfigError(CrawlerError):
    """A setting is invalid; the message names where it came from, the key and why."""

    exit_code = ExitCode.CONFIG

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


class NotFound(CrawlerError):
    """A command named something that is not there or not usable: an event, a URL never
    captured, a key file."""

    exit_code = ExitCode.USAGE


class InvalidURL(CrawlerError, ValueError):
    """A string that cannot be crawled as an http(s) URL."""

    exit_code = ExitCode.CONFIG


class OutputError(CrawlerError):
    """The archive output directory cannot be created or written."""

    exit_code = ExitCode.CONFIG


class CatalogSound(CrawlerError):
    """``crawler reindex`` without --force on a catalog that passes SQLite's integrity check:
    rebuilding it would lose what the WARCs do not hold."""

    exit_code = ExitCode.USAGE


class NoSpace(OutputError):
    """A write failed for lack of space (disk full, quota): what was written stays valid."""

    exit_code = ExitCode.NO_SPACE


def write_error(exc: OSError, what: str) -> OutputError:
    """Return the error to raise when writing ``what`` failed: NoSpace for a full disk or
    quota, so that the crawl stops cleanly and resumes once space is freed."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"no space left writing {what}: stopped; free some space, then "
                       "`crawler resume` continues where it stopped")
    return OutputError(f"cannot write {what}: {exc}")
