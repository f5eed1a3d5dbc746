"""Bring the WARC files of a distributed crawl's workers into one collection, each URL once.

Every record a worker wrote under a lease of the shared queue carries it
(``WARC-Crawler-Lease: N; attempt=A``). A URL is fetched twice only when a lease ran out
before its worker reported it done (the worker was killed, cut off from Redis for longer
than the lease, or its machine lost); the URL was then leased again, with a higher number.
So, per URL and attempt, the record of the highest lease is the one the crawl stands on;
earlier ones are superseded and left out. Earlier *attempts* (a 503 that was retried) are
kept, as a single-machine crawl keeps them, not final.

Records fetched outside the queue (each worker's robots.txt) are kept once per URL, the
earliest. A superseded record that a kept revisit refers to is kept too (a revisit is only as
good as its original), and counted.

Records are copied byte for byte (their gzip members), so ids, digests, dates and the
revisits' references stay as written; each merged file starts with its own warcinfo.
Workers' files are read in the order they wrote them, so an original precedes its revisits.
A worker killed mid-record left an ``.open`` file: it is read up to its last complete record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from crawler.archive.recovery import complete_members_end
from crawler.archive.store import LEASE_FIELD
from crawler.archive.warc import OPEN_SUFFIX, WarcWriter
from crawler.capture import urls

log = logging.getLogger("crawler.merge")

_MAIN = ("response", "revisit", "metadata")


@dataclass(frozen=True, slots=True)
class _Record:
    """A record of a worker's WARC, as the choice needs it."""

    record_id: str
    key: str
    date: str
    lease: int | None
    attempt: int
    refers_to: str | None  # a revisit's original (WARC-Refers-To)


@dataclass
class MergeCount:
    """What a merge took and left out."""

    files: int = 0  # worker WARC files read
    records: int = 0  # main records found (responses, revisits, failures)
    kept: int = 0
    superseded: int = 0  # fetched again under a later lease: left out
    kept_for_revisits: int = 0  # superseded but an original a kept revisit needs
    duplicate_robots: int = 0  # robots.txt fetched by several workers: kept once
    torn_bytes: int = 0  # unfinished records at the end of killed workers' files
    written: list[Path] = field(default_factory=list)


def worker_warcs(worker_root: Path) -> list[Path]:
    """Return a worker root's WARC files, session by session, in the order written."""
    found = [p for p in worker_root.glob("*/*/warc/*")
             if p.name.endswith((".warc.gz", ".warc.gz" + OPEN_SUFFIX))]
    return sorted(found, key=lambda p: (p.parent.parent.name, p.name))


def _main_records(path: Path, end: int) -> Iterator[_Record]:
    """Yield the main records of one file up to ``end`` (complete members only)."""
    with open(path, "rb") as fh:
        for record in ArchiveIterator(_Bounded(fh, end)):
            if record.rec_type not in _MAIN:
                continue
            head = record.rec_headers
            if head.get_header("WARC-Concurrent-To"):
                continue
            lease, attempt = _lease_of(head.get_header(LEASE_FIELD))
            url = head.get_header("WARC-Target-URI") or ""
            yield _Record(record_id=head.get_header("WARC-Record-ID") or "",
                          key=urls.canonical_key(url) if url else "",
                          date=head.get_header("WARC-Date") or "", lease=lease,
                          attempt=attempt, refers_to=head.get_header("WARC-Refers-To"))


def _lease_of(value: str | None) -> tuple[int | None, int]:
    """Return the lease number and attempt of a ``WARC-Crawler-Lease`` value."""
    if not value:
        return None, 0
    number, _, rest = value.partition(";")
    attempt = 0
    for part in rest.split(";"):
        name, _, found = part.strip().partition("=")
        if name == "attempt" and found.isdigit():
            attempt = int(found)
    return (int(number) if number.strip().isdigit() else None), attempt


class _Bounded:
    """A read-only file view that ends at ``end`` (past it: a torn record)."""

    def __init__(self, fh: object, end: int) -> None:
        self._fh = fh
        self._end = end

    def read(self, size: int = -1) -> bytes:
        left = self._end - self._fh.tell()  # type: ignore[attr-defined]
        if left <= 0:
            return b""
        return self._fh.read(left if size < 0 else min(size, left))  # type: ignore[attr-defined,no-any-return]

    def readline(self, size: int = -1) -> bytes:
        left = self._end - self._fh.tell()  # type: ignore[attr-defined]
        if left <= 0:
            return b""
        return self._fh.readline(left if size < 0 else min(size, left))  # type: ignore[attr-defined,no-any-return]

    def tell(self) -> int:
        return int(self._fh.tell())  # type: ignore[attr-defined]


def choose(paths: list[Path], count: MergeCount) -> tuple[set[str], dict[Path, int]]:
    """Return the ids of the records to keep, and how far each file is complete."""
    ends: dict[Path, int] = {}
    best: dict[tuple[str, int], _Record] = {}  # (key, attempt) -> highest lease
    unleased: dict[str, _Record] = {}  # key -> earliest
    refers: dict[str, str] = {}  # revisit id -> original id
    superseded: set[str] = set()
    for path in paths:
        size = path.stat().st_size
        end = complete_members_end(path) if path.name.endswith(OPEN_SUFFIX) else size
        count.torn_bytes += size - end
        ends[path] = end
        count.files += 1
        for record in _main_records(path, end):
            count.records += 1
            if record.refers_to:
                refers[record.record_id] = record.refers_to
            if record.lease is None:
                earlier = unleased.get(record.key)
                if earlier is None or record.date < earlier.date:
                    if earlier is not None:
                        superseded.add(earlier.record_id)
                    unleased[record.key] = record
                else:
                    superseded.add(record.record_id)
                if earlier is not None:
                    count.duplicate_robots += 1
                continue
            slot = (record.key, record.attempt)
            held = best.get(slot)
            if held is None or (held.lease or 0) < record.lease:
                if held is not None:
                    superseded.add(held.record_id)
                    count.superseded += 1
                best[slot] = record
            else:
                superseded.add(record.record_id)
                count.superseded += 1
    keep = {r.record_id for r in best.values()} | {r.record_id for r in unleased.values()}
    for revisit, original in refers.items():
        if revisit in keep and original not in keep and original in superseded:
            keep.add(original)
            count.kept_for_revisits += 1
    return keep, ends


def copy_kept(paths: list[Path], ends: dict[Path, int], keep: set[str], writer: WarcWriter,
              count: MergeCount) -> None:
    """Copy the kept records and the records attached to them (requests, a 304's own
    head) into ``writer``, in each file's order."""
    for path in paths:
        with open(path, "rb") as fh, open(path, "rb") as raw:
            records = ArchiveIterator(_Bounded(fh, ends[path]))
            for record in records:
                head = record.rec_headers
                rec_type = record.rec_type
                owner = head.get_header("WARC-Concurrent-To")
                wanted = (rec_type != "warcinfo"
                          and ((owner or head.get_header("WARC-Record-ID")) in keep))
                records.read_to_end()
                if not wanted:
                    continue
                raw.seek(records.get_record_offset())
                writer.copy_member(raw.read(records.get_record_length()))
                if not owner and rec_type in _MAIN:
                    count.kept += 1
    count.written = writer.close()
