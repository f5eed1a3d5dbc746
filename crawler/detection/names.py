"""Who or what a finding is about, in the page's own words.

A report that lists ``/person/100127 — 404`` tells a historian nothing; "Розенфельд Абрам
Моисеевич — Родился в 1900 году…" tells them who is gone. Names come from the **last good
capture** of each URL (what the page said before it went), re-read from the WARCs: its
``<title>``, its headline (``pagetext.page_name``), and the lines a partial removal took, as
the page wrote them (detection compares case-folded lines).

Reading a page back costs a WARC read and a parse (about 2 ms), so one report names at most
``NAME_BUDGET`` pages; the report says how many it left unnamed and why. Read-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crawler.archive.catalog import Catalog
from crawler.capture import extract, pagetext
from crawler.detection.detect import Cls, Finding, Snap
from crawler.detection.listing import listing_key
from crawler.detection.snapshots import GOOD, NOT_WALL, SNAP_COLUMNS, Captures

NAME_BUDGET = 5000  # pages read back for names per report (a site gone dark is millions)


class Namer:
    """Names of the pages of one target, from their last good captures (read once each)."""

    def __init__(self, catalog: Catalog, target: str,
                 rules: pagetext.TextRules = pagetext.DEFAULT_RULES,
                 budget: int = NAME_BUDGET) -> None:
        self.rows = Captures(catalog, rules)
        self.target = target
        self.rules = rules
        self.budget = budget
        # captures not read back because the budget was spent: a bit per capture id (a
        # report of a site gone whole asks for millions)
        self._unnamed = bytearray()
        self._unnamed_count = 0
        self._names: dict[int, pagetext.PageName | None] = {}
        self._last: dict[str, Snap | None] = {}  # at most 2 x budget keys: past that, each
        # is looked up again when asked for (unnamed by then anyway)

    @property
    def unnamed(self) -> int:
        """Return how many pages were left unnamed because the budget was spent."""
        return self._unnamed_count

    def _left_unnamed(self, capture: int) -> None:
        byte, bit = divmod(capture, 8)
        if byte >= len(self._unnamed):
            self._unnamed.extend(bytes(byte + 1 - len(self._unnamed) + 4096))
        if not self._unnamed[byte] & (1 << bit):
            self._unnamed[byte] |= 1 << bit
            self._unnamed_count += 1

    def last_good(self, key: str) -> Snap | None:
        """Return the latest good capture of a URL key in this target (None if none)."""
        if key in self._last:
            return self._last[key]
        found = self.rows.snaps(
            f"SELECT {SNAP_COLUMNS} FROM captures c JOIN crawls k ON k.id = c.crawl "
            f"WHERE k.target = ? AND c.key = ? AND c.final = 1 AND {GOOD} AND {NOT_WALL} "
            "ORDER BY c.id DESC LIMIT 1", (self.target, key))
        snap = found[0] if found else None
        if len(self._last) < 2 * self.budget:
            self._last[key] = snap
        return snap

    def of(self, snap: Snap | None) -> pagetext.PageName | None:
        """Return the name of the page a capture holds (None for non-HTML or unreadable)."""
        if snap is None or snap.mime not in extract.HTML_TYPES:
            return None
        if snap.capture not in self._names:
            if len(self._names) >= self.budget:
                self._left_unnamed(snap.capture)
                return None
            html = self.rows.html(snap)
            self._names[snap.capture] = pagetext.page_name(html, self.rules) if html else None
        return self._names[snap.capture]

    def finding(self, f: Finding) -> dict[str, Any]:
        """Return the naming fields of a finding: title and headline of its last good
        capture, and for lines gone from the page, those lines as the page wrote them."""
        before = f.before if f.before is not None else self.last_good(f.key)
        name = self.of(before)
        fields = _fields(name)
        if f.removed:
            fields["removed_as_written"] = as_written(name, f.removed)
        if f.cls is Cls.PARTIAL:
            fields["listing"] = listing_key(f.url) or f.url
        return fields

    def capture(self, snap: Snap | None) -> dict[str, Any]:
        """Return the naming fields of the page one capture holds."""
        return _fields(self.of(snap))

    def url(self, key: str, *, counted: bool = True) -> dict[str, Any]:
        """Return the naming fields of a URL key, from its last good capture.

        ``counted=False``: once the budget is spent, a key not looked up before is not
        looked up at all: its names are null, and it is not counted among the unnamed
        (findings.jsonl, written after the report's listing was named and counted, then
        needs no lookup per URL of a site gone whole)."""
        if key.startswith("host:") or (not counted and len(self._names) >= self.budget
                                       and key not in self._last):
            return _fields(None)
        return self.capture(self.last_good(key))


def _fields(name: pagetext.PageName | None) -> dict[str, Any]:
    return {"title": name.title if name else None,
            "headline": name.headline if name else None}


def as_written(name: pagetext.PageName | None, lines: Sequence[str]) -> list[str]:
    """Return lines as the page wrote them (case, punctuation), where it is known."""
    if name is None:
        return list(lines)
    return [name.as_written.get(line, line) for line in lines]


def label(fields: dict[str, Any]) -> str:
    """Return the one-line name of a page for a message: headline, else title, else ''."""
    return str(fields.get("headline") or fields.get("title") or "")
