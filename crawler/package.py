"""Per-crawl replay files: the CDXJ index pywb reads and the WACZ-style pages.jsonl."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from crawler.warc import IndexEntry

PAGES_HEADER = {"format": "json-pages-1.0", "id": "pages", "title": "All Pages"}


def write_cdxj(entries: list[IndexEntry], path: Path) -> int:
    """Write a sorted CDXJ index (what ``wb-manager``/pywb expect); return the line count.

    Written to a temporary name and renamed, so a reader never sees half an index.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = sorted(entry.cdxj() for entry in entries)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(line)
            out.write("\n")
    os.replace(tmp, path)
    return len(lines)


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


def write_pages(pages: list[PageEntry], path: Path) -> int:
    """Write pages.jsonl with its header line first; return the number of pages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(json.dumps(PAGES_HEADER) + "\n")
        for page in pages:
            out.write(page.to_json() + "\n")
    os.replace(tmp, path)
    return len(pages)
