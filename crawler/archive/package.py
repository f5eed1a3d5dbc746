"""Per-crawl replay files: the CDXJ index pywb reads and the WACZ-style pages.jsonl, both
streamed from the catalog.

They are written when a crawl (or one session of it) ends, and the index again after
takedown detection, so that the probes and re-checks it fetched, the evidence behind its
findings, replay like every other capture (``refresh_after_detection``).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from crawler.archive.catalog import CaptureRow, Catalog, CrawlRow
from crawler.archive.warc import IndexEntry, timestamp17_of
from crawler.capture.extract import HTML_TYPES

PAGES_HEADER = {"format": "json-pages-1.0", "id": "pages", "title": "All Pages"}


def write_cdxj(entries: Iterable[IndexEntry], path: Path) -> int:
    """Write a CDXJ index (what ``wb-manager``/pywb expect); return the line count.

    ``entries`` must come sorted by SURT key and timestamp (the catalog's ORDER BY surt,
    fetched_at gives exactly the CDXJ line order, since SURT keys hold no spaces), so the index
    is streamed: memory does not grow with the size of the crawl. An entry out of order raises
    ValueError rather than writing an index pywb would misread. Written to a temporary name
    and renamed, so a reader never sees half an index.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    previous = ""
    with open(tmp, "w", encoding="utf-8") as out:
        for entry in entries:
            line = entry.cdxj()
            if line < previous:
                raise ValueError(f"CDXJ entries out of order at {entry.url}")
            previous = line
            out.write(line)
            out.write("\n")
            count += 1
    os.replace(tmp, path)
    return count


@dataclass(frozen=True, slots=True)
class PageEntry:
    """One page of the crawl for the WACZ page list (WACZ 1.1.1 §pages)."""

    url: str
    started: datetime
    title: str | None
    status: int

    def to_json(self) -> str:
        """Return the pages.jsonl line."""
        record: dict[str, object] = {
            "id": uuid.uuid5(uuid.NAMESPACE_URL, f"{self.url} {self.started.isoformat()}").hex,
            "url": self.url,
            "ts": self.started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "status": self.status,
        }
        if self.title:
            record["title"] = self.title
        return json.dumps(record, ensure_ascii=False)


def write_pages(pages: Iterable[PageEntry], path: Path) -> int:
    """Write pages.jsonl (streamed) with its header line first; return the number of pages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(json.dumps(PAGES_HEADER) + "\n")
        for page in pages:
            out.write(page.to_json() + "\n")
            count += 1
    os.replace(tmp, path)
    return count


def replay_status(cap: CaptureRow) -> int:
    """Return the status a capture replays with: a 304 revisit replays the original's 200."""
    if cap.record_type == "revisit" and cap.status == 304:
        return 200
    return cap.status or 0


def index_entries(catalog: Catalog, crawl_pk: int) -> Iterator[IndexEntry]:
    """Yield the replayable records (responses and revisits) of a crawl in CDXJ order.

    The catalog gives them by SURT and time; records that share both (two URLs that differ
    only in case, fetched in the same millisecond) are put in line order here.
    """
    group: list[IndexEntry] = []
    group_key: tuple[str | None, str] = (None, "")
    for cap in catalog.captures(crawl_pk, order="surt"):
        if cap.record_type in ("response", "revisit") and cap.warc_file:
            entry = IndexEntry(url=cap.url, timestamp=timestamp17_of(cap.fetched_at),
                               mime=cap.mime or "", status=replay_status(cap),
                               digest=cap.digest or "", offset=cap.warc_offset or 0,
                               length=cap.warc_length or 0, filename=cap.warc_file,
                               record_type=cap.record_type, record_id=cap.record_id or "")
            if group and (cap.surt, entry.timestamp) != group_key:
                yield from sorted(group, key=IndexEntry.cdxj)
                group = []
            group_key = (cap.surt, entry.timestamp)
            group.append(entry)
    yield from sorted(group, key=IndexEntry.cdxj)


def page_entries(catalog: Catalog, crawl_pk: int) -> Iterator[PageEntry]:
    """Yield seeds and HTML pages that replay with a 2xx, for pages.jsonl."""
    for cap in catalog.captures(crawl_pk):
        status = replay_status(cap)
        if cap.kind not in ("seed", "page") or status // 100 != 2:
            continue
        if cap.kind == "page" and cap.mime not in HTML_TYPES:
            continue
        started = datetime.strptime(cap.fetched_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=UTC)
        yield PageEntry(cap.url, started, cap.title, status)


def refresh_after_detection(catalog: Catalog, crawl: CrawlRow) -> tuple[Path, ...]:
    """Rewrite a crawl's index with the records detection added, and list every WARC of the
    crawl (the detection WARC too) in its ``crawl.json``; return the WARCs."""
    write_cdxj(index_entries(catalog, crawl.pk), crawl.directory / "indexes" / "index.cdxj")
    warcs = tuple(sorted((crawl.directory / "warc").glob("*.warc.gz")))
    snapshot_path = crawl.directory / "crawl.json"
    try:
        snapshot = json.loads(snapshot_path.read_text("utf-8"))
    except (OSError, ValueError):
        return warcs  # written by the crawl; if it is gone there is nothing to amend
    snapshot["warcs"] = [p.name for p in warcs]
    tmp = snapshot_path.with_name(snapshot_path.name + ".tmp")
    tmp.write_text(json.dumps(snapshot, indent=2, ensure_ascii=False) + "\n", "utf-8")
    os.replace(tmp, snapshot_path)
    return warcs
