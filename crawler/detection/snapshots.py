"""The captures a comparison reads: catalog rows as ``detect.Snap``, and their payloads
re-read from the WARCs (decoded, normalized to text lines, cached for one comparison).

Read-only: nothing here writes or fetches. ``comparison.py``, ``rotation.py`` and
``probes.py`` share it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator

from crawler.archive.catalog import Catalog
from crawler.archive.warcread import RecordUnreadable, read_record
from crawler.capture import extract, pagetext
from crawler.capture.fingerprints import WALL_NOTE
from crawler.detection.detect import Snap

log = logging.getLogger("crawler.snapshots")

SNAP_COLUMNS = ("c.id, c.crawl, c.url, c.key, c.kind, c.fetched_at, c.status, c.failure, "
                "c.mime, c.location, c.digest, c.text_hash, c.record_type, c.record_id, "
                "c.detail")
_REPEATED = (4, 6, 7, 8, 12)  # kind, status, failure, mime, record_type in SNAP_COLUMNS
# A capture the crawl saw a challenge page in: never a page's "last good" or "last" state.
NOT_WALL = f"coalesce(c.detail, '') NOT LIKE '%{WALL_NOTE}%'"
GOOD = "(c.status BETWEEN 200 AND 299 OR (c.status = 304 AND c.record_type = 'revisit'))"


class Captures:
    """Catalog access for one comparison, with payload re-reads cached."""

    def __init__(self, catalog: Catalog, rules: pagetext.TextRules) -> None:
        self.catalog = catalog
        self.db = catalog.db
        self.rules = rules
        self._dirs = {r["id"]: catalog.resolve(r["directory"]) for r in
                      self.db.execute("SELECT id, directory FROM crawls")}
        self._lines: dict[int, list[str] | None] = {}
        self._split: dict[tuple[int, str], tuple[list[str] | None, list[str]] | None] = {}

    def snaps(self, sql: str, args: Iterable[object]) -> list[Snap]:
        return [Snap(*row) for row in self.db.execute(sql, tuple(args))]

    def iter_snaps(self, sql: str, args: Iterable[object]) -> Iterator[Snap]:
        """Yield the rows of a query as snaps, one at a time (for the streaming pass).

        The few values that repeat on every row (kind, status, failure, media type, record
        type) are shared, not a new object per row: a comparison that holds a million
        URLs holds two million snaps."""
        shared: dict[object, object] = {}
        for row in self.db.execute(sql, tuple(args)):
            values = list(row)
            for i in _REPEATED:
                values[i] = shared.setdefault(values[i], values[i])
            yield Snap(*values)

    def record(self, capture: int) -> tuple[bytes, bytes] | None:
        """Return (HTTP head, payload) of a capture, a revisit's payload from its original."""
        row = self.db.execute("SELECT crawl, warc_file, warc_offset, warc_length, refers_to, "
                              "record_type FROM captures WHERE id=?", (capture,)).fetchone()
        if row is None or not row["warc_file"]:
            return None
        try:
            rec = read_record(self._dirs[row["crawl"]] / "warc" / row["warc_file"],
                              row["warc_offset"], row["warc_length"])
            payload = rec.payload
            if row["record_type"] == "revisit" and row["refers_to"]:
                original = self.record(row["refers_to"])
                payload = original[1] if original else b""
        except (RecordUnreadable, OSError, KeyError) as exc:
            log.warning("cannot re-read capture %s: %s", capture, exc)
            return None
        return rec.http_head, payload

    def lines(self, snap: Snap) -> list[str] | None:
        """Return the normalized text of an HTML capture (None for other types)."""
        if snap.mime not in extract.HTML_TYPES:
            return None
        if snap.capture not in self._lines:
            found = self.record(snap.capture)
            self._lines[snap.capture] = text_lines(*found, self.rules) if found else None
        return self._lines[snap.capture]

    def html(self, snap: Snap) -> str | None:
        """Return the decoded HTML of a capture (None if it is not HTML or unreadable)."""
        found = self.record(snap.capture) if snap.mime in extract.HTML_TYPES else None
        return _decoded(*found) if found else None

    def split(self, snap: Snap, selector: str) -> tuple[list[str] | None, list[str]] | None:
        """Return (lines of the element ``selector`` picks, the page's lines without it) for
        an HTML capture (one parse per capture and selector, kept)."""
        if (snap.capture, selector) not in self._split:
            html = self.html(snap)
            self._split[(snap.capture, selector)] = (
                pagetext.split_lines(html, selector, self.rules) if html else None)
        return self._split[(snap.capture, selector)]

    def lines_without(self, snap: Snap, selector: str) -> list[str] | None:
        """Return the normalized text of an HTML capture without one element."""
        found = self.split(snap, selector)
        return found[1] if found else None

    def header(self, snap: Snap, name: str) -> list[str]:
        """Return the values of a response header of a capture."""
        found = self.record(snap.capture)
        return _headers(found[0], name) if found else []


def _headers(head: bytes, name: str) -> list[str]:
    prefix = name.lower() + ":"
    return [line.split(":", 1)[1].strip() for line in head.decode("latin-1").split("\r\n")
            if line.lower().startswith(prefix)]


def text_lines(head: bytes, payload: bytes, rules: pagetext.TextRules) -> list[str]:
    return pagetext.html_lines(_decoded(head, payload), rules)


def _decoded(head: bytes, payload: bytes) -> str:
    """Return the text of an HTTP payload, inflated and decoded as its headers say."""
    content_type = next(iter(_headers(head, "content-type")), None)
    encoding = next(iter(_headers(head, "content-encoding")), None)
    body = extract.decode_content(payload, encoding)
    text, _ = extract.decode_text(body, content_type)
    return text


def blocked_by(rows: Captures, snap: Snap) -> str | None:
    """Return the blocking entity a 451 names in ``Link: <...>; rel="blocked-by"``."""
    for value in rows.header(snap, "link"):
        for part in value.split(","):
            if re.search(r'rel\s*=\s*"?blocked-by"?', part, re.I):
                match = re.search(r"<([^>]*)>", part)
                if match:
                    return match.group(1)
    return None


def between(rows: Captures, before: Snap, after: Snap) -> list[Snap]:
    """Return the captures of a URL by crawls between its last good capture and now."""
    return rows.snaps(f"SELECT {SNAP_COLUMNS} FROM captures c WHERE c.key = ? AND c.final = 1 "
                      "AND c.crawl > ? AND c.crawl < ? AND c.crawl IN (SELECT id FROM crawls "
                      "WHERE target = (SELECT target FROM crawls WHERE id = ?)) "
                      "ORDER BY c.id DESC LIMIT 3",
                      (after.key, before.crawl, after.crawl, after.crawl))

