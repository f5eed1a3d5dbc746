"""A rescue's progress in the catalog: what each source listed, every URL found and what
became of it, every capture tried, and each rescued capture's provenance.

Everything a rescue knows lives here, not in memory, so a rescue of millions of URLs runs in
flat memory and a killed one continues where it stopped (``crawler rescue`` again).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from crawler.rescue.sources import Memento


class Outcome:
    """Values of rescue_urls.outcome."""

    RESCUED = "rescued"  # a capture was written into the target's WARCs
    HELD = "held"  # the target already held this capture (or a later good one)
    MISSING = "missing"  # no source has a good capture of it (reason says what they have)
    FAILED = "failed"  # the sources could not be asked, after retries: try again later


@dataclass(frozen=True, slots=True)
class Candidate:
    """A capture listed for a URL, as the ledger holds it."""

    source: str
    memento: Memento
    outcome: str | None  # what fetching it gave before (a continued rescue), or None


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a rescued capture came from (catalog table ``provenance``)."""

    source: str
    memento: str  # the address fetched
    retrieved: str  # when (ISO 8601)
    source_digest: str | None
    digest_match: bool | None

    def fields(self) -> dict[str, str]:
        """Return the WARC fields that carry it on the record itself."""
        found = {"WARC-Crawler-Rescued-From": self.source,
                 "WARC-Crawler-Memento": self.memento,
                 "WARC-Crawler-Retrieved": self.retrieved}
        if self.source_digest:
            found["WARC-Crawler-Source-Digest"] = self.source_digest
        return found

    @classmethod
    def of_record(cls, headers: dict[str, str], payload_digest: str) -> Provenance | None:
        """Return the provenance a record's WARC fields carry (a record a kill left
        unentered), or None for a record that is not rescued."""
        source = headers.get("WARC-Crawler-Rescued-From")
        if not source:
            return None
        digest = headers.get("WARC-Crawler-Source-Digest") or None
        return cls(source, headers.get("WARC-Crawler-Memento", ""),
                   headers.get("WARC-Crawler-Retrieved", ""), digest,
                   (digest == payload_digest) if digest and payload_digest else None)


class Ledger:
    """The rescue tables of one rescue (``crawl``), on the catalog's connection."""

    def __init__(self, db: sqlite3.Connection, crawl: int) -> None:
        self.db = db
        self.crawl = crawl

    # -- sources --------------------------------------------------------------------------

    def source_state(self, name: str, listing: str) -> sqlite3.Row:
        """Return a source's listing state, creating it."""
        self.db.execute("INSERT OR IGNORE INTO rescue_sources (crawl, source, listing) "
                        "VALUES (?, ?, ?)", (self.crawl, name, listing))
        row: sqlite3.Row = self.db.execute(
            "SELECT * FROM rescue_sources WHERE crawl=? AND source=?",
            (self.crawl, name)).fetchone()
        return row

    def listed(self, name: str, *, resume: str | None, done: bool, count: int,
               error: str | None = None, listing: str | None = None) -> None:
        """Record a page of a source's listing (inside the caller's transaction)."""
        self.db.execute(
            "UPDATE rescue_sources SET resume=?, done=?, listed=listed+?, "
            "error=?, listing=coalesce(?, listing) "
            "WHERE crawl=? AND source=?",
            (resume, int(done), count, error, listing, self.crawl, name))

    def count_request(self, name: str, n: int = 1) -> None:
        """Count requests made to a source (its politeness, in the report)."""
        self.db.execute("UPDATE rescue_sources SET requests=requests+? WHERE crawl=? "
                        "AND source=?", (n, self.crawl, name))

    def sources(self) -> list[sqlite3.Row]:
        """Return every source's listing state."""
        return self.db.execute("SELECT * FROM rescue_sources WHERE crawl=? ORDER BY source",
                               (self.crawl,)).fetchall()

    # -- URLs and captures ----------------------------------------------------------------

    def add_urls(self, found: Iterable[tuple[str, str, str]], *, looked_up: bool) -> None:
        """Record URLs (key, url, kind) found (inside the caller's transaction)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO rescue_urls (crawl, key, url, kind, looked_up) "
            "VALUES (?, ?, ?, ?, ?)",
            ((self.crawl, key, url, kind, int(looked_up)) for key, url, kind in found))

    def add_mementos(self, found: Iterable[tuple[str, str, Memento]]) -> None:
        """Record captures (key, source, memento) listed (inside the caller's transaction)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO rescue_mementos (crawl, key, timestamp, source, url, "
            "status, mime, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((self.crawl, key, m.timestamp, source, m.url, m.status, m.mime, m.digest or None)
             for key, source, m in found))

    def pending(self, limit: int, after: str = "") -> list[sqlite3.Row]:
        """Return up to ``limit`` URLs not yet decided, in key order after ``after`` (the
        caller walks the keys once, then again from the start for URLs found behind it:
        never a scan from the first key for every batch)."""
        return self.db.execute(
            "SELECT key, url, kind, looked_up FROM rescue_urls WHERE crawl=? AND key>? AND "
            "outcome IS NULL ORDER BY key LIMIT ?", (self.crawl, after, limit)).fetchall()

    def candidates(self, key: str) -> list[Candidate]:
        """Return every capture listed for a URL."""
        return [Candidate(row["source"], Memento(row["url"], row["timestamp"], row["status"],
                                                 row["mime"] or "", row["digest"] or ""),
                          row["outcome"])
                for row in self.db.execute(
                    "SELECT * FROM rescue_mementos WHERE crawl=? AND key=?",
                    (self.crawl, key))]

    def looked_up(self, key: str) -> None:
        """Record that the sources were asked for a URL (inside the transaction)."""
        self.db.execute("UPDATE rescue_urls SET looked_up=1 WHERE crawl=? AND key=?",
                        (self.crawl, key))

    def tried(self, key: str, source: str, timestamp: str, outcome: str) -> None:
        """Record what fetching a capture gave (inside the caller's transaction)."""
        self.db.execute("UPDATE rescue_mementos SET outcome=? WHERE crawl=? AND key=? AND "
                        "timestamp=? AND source=?", (outcome, self.crawl, key, timestamp,
                                                    source))

    def decide(self, key: str, outcome: str, reason: str | None) -> None:
        """Record what became of a URL (inside the caller's transaction)."""
        self.db.execute("UPDATE rescue_urls SET outcome=?, reason=? WHERE crawl=? AND key=?",
                        (outcome, reason, self.crawl, key))

    def retry_failed(self) -> int:
        """Put URLs and captures the sources failed to answer back to do (a continued
        rescue), and URLs whose look-up failed back to be looked up."""
        self.db.execute("UPDATE rescue_mementos SET outcome=NULL WHERE crawl=? AND "
                        "outcome LIKE 'failed%'", (self.crawl,))
        return self.db.execute("UPDATE rescue_urls SET outcome=NULL, reason=NULL WHERE "
                               "crawl=? AND outcome=?", (self.crawl, Outcome.FAILED)).rowcount

    def add_provenance(self, capture: int, found: Provenance) -> None:
        """Record a rescued capture's origin (inside the caller's transaction)."""
        self.db.execute(
            "INSERT OR REPLACE INTO provenance (capture, source, memento, retrieved, "
            "source_digest, digest_match) VALUES (?, ?, ?, ?, ?, ?)",
            (capture, found.source, found.memento, found.retrieved, found.source_digest,
             None if found.digest_match is None else int(found.digest_match)))

    def shared_pages(self, least: int) -> dict[str, int]:
        """Return payload digests of HTML 2xx captures listed for at least ``least`` + 1
        URLs, with how many other URLs share each (a template: not-found, block, login)."""
        return {row[0]: row[1] - 1 for row in self.db.execute(
            "SELECT digest, count(DISTINCT key) FROM rescue_mementos WHERE crawl=? AND "
            "digest IS NOT NULL AND status BETWEEN 200 AND 299 AND (mime LIKE 'text/html%' "
            "OR mime LIKE 'application/xhtml%') GROUP BY digest HAVING count(DISTINCT key) > ?",
            (self.crawl, least))}

    # -- the report -----------------------------------------------------------------------

    def outcomes(self) -> dict[str, int]:
        """Return URLs per outcome ("pending" for those not decided)."""
        return {row[0] or "pending": row[1] for row in self.db.execute(
            "SELECT outcome, count(*) FROM rescue_urls WHERE crawl=? GROUP BY outcome",
            (self.crawl,))}

    def undone(self) -> Iterator[sqlite3.Row]:
        """Yield URLs not rescued or held, with why, in key order."""
        yield from self.db.execute(
            "SELECT url, kind, outcome, reason FROM rescue_urls WHERE crawl=? AND "
            "(outcome IS NULL OR outcome IN ('missing', 'failed')) ORDER BY key",
            (self.crawl,))

    def rejections(self) -> dict[str, int]:
        """Return captures tried and not taken, per reason."""
        return {row[0]: row[1] for row in self.db.execute(
            "SELECT outcome, count(*) FROM rescue_mementos WHERE crawl=? AND outcome IS NOT "
            "NULL AND outcome NOT IN ('rescued', 'held') GROUP BY outcome ORDER BY 2 DESC",
            (self.crawl,))}
