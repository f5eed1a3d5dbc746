"""Rebuild a damaged (or lost) catalog from the WARC files: they are the source of truth.

``crawler reindex`` moves the old catalog aside (``catalog.sqlite3.damaged-<time>``, with its
journal files), creates a new one, and enters every crawl directory found under the root in
the order of their crawl ids: the crawl as ``crawl.json`` describes it, then every response,
revisit and failure record of its WARC files as a capture (the crawl's own and its detection
probes and re-checks, each with the kind its WARC-Crawler-Kind header names), with its text
fingerprints and links extracted again. Detection is then replayed offline, crawl by crawl,
so URL states and events are rebuilt; nothing is fetched and nothing is notified.

What the WARCs do not hold cannot come back, and the summary says so: URLs deliberately not
fetched (robots.txt, out of scope, traps: they have no record), notifications still queued,
and the queue of a crawl that had not finished (such a crawl is marked incomplete with stop
reason ``reindexed``; the next run of its target re-checks every URL it had captured).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawler.archive.catalog import (
    CATALOG_NAME,
    CaptureRow,
    Catalog,
    CatalogDamaged,
    CrawlRow,
    CrawlStatus,
)
from crawler.archive.layout import target_is_locked
from crawler.archive.recovery import iter_records
from crawler.archive.store import capture_from_record
from crawler.capture import urls
from crawler.capture.settings import detect_settings_of
from crawler.core.errors import CatalogSound, OutputError
from crawler.core.models import UrlKind
from crawler.detection.diff import comparison_after_detection
from crawler.detection.states import apply_states
from crawler.rescue.ledger import Ledger, Provenance

log = logging.getLogger("crawler.reindex")

PAYLOAD_CAP = 32 * 1024 * 1024  # bytes of a record read back for extraction (as a crawl)
_CRAWL_KINDS = frozenset({"seed", "page", "requisite", "sitemap", "robots"})
_EXTRACTED = ("text/html", "application/xhtml+xml", "text/css")


@dataclass
class ReindexResult:
    """What a rebuild found and entered."""

    moved_aside: list[Path] = field(default_factory=list)
    crawls: list[tuple[str, str, str, int]] = field(default_factory=list)  # target, id,
    #                                                                   status, records
    records: int = 0
    unreadable: list[str] = field(default_factory=list)  # WARC files that could not be read


def _sound(root: Path) -> bool:
    """Return True if the root has a catalog that opens and passes the integrity check."""
    if not (root / CATALOG_NAME).exists():
        return False
    try:
        catalog = Catalog.open(root, read_only=True)
        try:
            catalog.check_integrity()
        finally:
            catalog.close()
    except (CatalogDamaged, sqlite3.DatabaseError):
        return False
    return True


def crawl_dirs(root: Path) -> list[tuple[str, Path]]:
    """Return (target, directory) of every crawl under the root, oldest crawl id first."""
    found = []
    for target in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for crawl in target.iterdir():
            if crawl.is_dir() and (crawl / "warc").is_dir():
                found.append((target.name, crawl))
    return sorted(found, key=lambda item: (item[1].name, item[0]))


def reindex(root: Path, *, force: bool = False,
            progress: Callable[[str], None] = log.info) -> ReindexResult:
    """Move the catalog aside and rebuild it from the WARCs under ``root``.

    Without ``force``, a catalog that passes SQLite's integrity check is left alone
    (``CatalogSound``): the notification outbox and the rows of URLs deliberately not fetched
    are not in the WARCs, and a rebuild would lose them.
    """
    root = root.resolve()
    if not force and _sound(root):
        raise CatalogSound(
            f"{root / CATALOG_NAME} passes SQLite's integrity check; rebuild it anyway with "
            "--force (the notification outbox and rows of URLs deliberately not fetched are "
            "not in the WARCs and would be lost)")
    busy = [t for t, _ in crawl_dirs(root) if target_is_locked(root, t)]
    if busy:
        raise OutputError(f"runs of {', '.join(sorted(set(busy)))} are in progress under "
                          f"{root}: stop them before rebuilding the catalog")
    result = ReindexResult()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for suffix in ("", "-wal", "-shm"):
        old = root / (CATALOG_NAME + suffix)
        if old.exists():
            aside = old.with_name(f"{CATALOG_NAME}.damaged-{stamp}{suffix}")
            os.replace(old, aside)
            result.moved_aside.append(aside)
    catalog = Catalog.open(root)
    try:
        for target, directory in crawl_dirs(root):
            row = _add_crawl(catalog, target, directory)
            entered = enter_records(catalog, row, result)
            result.records += entered
            result.crawls.append((target, row.crawl_id, row.status, entered))
            progress(f"{target}/{row.crawl_id}: {entered} records, {row.status}")
            if row.status in CrawlStatus.FINISHED and row.kind == "crawl":
                detect = detect_settings_of(row.settings)
                apply_states(catalog, comparison_after_detection(catalog, row, detect), detect)
    finally:
        catalog.close()
    return result


def _add_crawl(catalog: Catalog, target: str, directory: Path) -> CrawlRow:
    """Enter a crawl as its crawl.json describes it (or as unfinished when it has none)."""
    snapshot: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        snapshot = json.loads((directory / "crawl.json").read_text("utf-8"))
    status = snapshot.get("status")
    stop = snapshot.get("stop_reason")
    if status not in (*CrawlStatus.FINISHED, CrawlStatus.FAILED):
        status, stop = CrawlStatus.INCOMPLETE, "reindexed"  # its queue was in the catalog
    started = started_of(directory.name)
    with catalog.transaction() as db:
        cur = db.execute(
            "INSERT INTO crawls (target, crawl_id, directory, started, finished, status, "
            "stop_reason, exit_code, settings, shortfall, kind) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (target, directory.name, f"{target}/{directory.name}", started,
             snapshot.get("finished") or started, status, stop, snapshot.get("exit_code"),
             json.dumps(snapshot.get("settings") or {}, ensure_ascii=False),
             json.dumps(snapshot.get("shortfall")) if snapshot.get("shortfall") else None,
             "rescue" if snapshot.get("kind") == "rescue" else "crawl"))
    row = catalog.crawl(target, directory.name)
    assert row is not None and row.pk == cur.lastrowid
    return row


def enter_records(catalog: Catalog, row: CrawlRow, result: ReindexResult) -> int:
    """Enter every record of a crawl's WARCs; a URL fetched again in the crawl (a retry)
    leaves its earlier captures not final, as the crawl did."""
    latest: dict[str, int] = {}  # key -> captures.id of its latest crawl-kind record
    linked: set[str] = set()
    count = 0
    for path in sorted((row.directory / "warc").glob("*.warc.gz")):
        try:  # entered one by one: a revisit finds the original entered before it
            for capture, keys, origin in _rows_of(catalog, row, path, linked):
                with catalog.transaction() as db:
                    previous = latest.get(capture.key) if capture.kind in _CRAWL_KINDS else None
                    if previous is not None and origin is None:  # (a rescue keeps every one)
                        db.execute("UPDATE captures SET final=0 WHERE id=?", (previous,))
                    pk = catalog.add_capture(row.pk, capture)
                    if capture.kind in _CRAWL_KINDS:
                        latest[capture.key] = pk
                    if origin is not None:
                        Ledger(db, row.pk).add_provenance(pk, origin)
                    catalog.add_linked(row.pk, keys)
                count += 1
        except Exception as exc:  # a damaged file must not stop the rebuild
            log.error("%s: could not read to the end (%s); records before the damage are "
                      "kept", path.name, exc)
            result.unreadable.append(str(path))
    return count


def _rows_of(catalog: Catalog, row: CrawlRow, path: Path, linked: set[str],
             ) -> Iterator[tuple[CaptureRow, list[str], Provenance | None]]:
    """Yield the capture row, newly linked keys and (a rescued record) provenance of each
    record of one WARC file."""
    for record in iter_records(path, path.name, PAYLOAD_CAP):
        capture, found = capture_from_record(catalog, row.target, record, UrlKind.PAGE)
        kind = UrlKind(capture.kind)
        keys: list[str] = []
        if found is not None and kind in (UrlKind.SEED, UrlKind.PAGE):
            for link in found.links:
                key = found.keys.get(link) or urls.canonical_key(link)
                if key not in linked:
                    linked.add(key)
                    keys.append(key)
        yield capture, keys, Provenance.of_record(record.headers, capture.digest or "")


def started_of(crawl_id: str) -> str:
    """Return the start time a crawl id encodes (``20261201T101500Z[-n]``), ISO 8601."""
    try:
        moment = datetime.strptime(crawl_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
