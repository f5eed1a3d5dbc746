"""Repair what a killed crawl left behind: cut `.open` WARCs back to their last complete record,
and find the records that were written but never entered in the catalog.

A crawl writes a record, flushes it to the OS, and only then commits the catalog transaction
that marks its URL done. A kill between the two leaves complete records the catalog does not
know; they are returned here so the resumed crawl can enter them instead of fetching again
("no URL whose record was written is fetched again"). A kill in the middle of a record leaves
an unfinished gzip member at the end of the file, which is cut off.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from crawler.archive.warc import OPEN_SUFFIX
from crawler.core.models import FailureKind, FetchResult, Truncation

log = logging.getLogger("crawler.recovery")
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class OrphanRecord:
    """A complete response, revisit or metadata record that the catalog does not know."""

    warc_file: str  # final name (without .open)
    offset: int
    length: int
    record_type: str
    url: str
    date: str  # WARC-Date
    headers: dict[str, str]  # WARC headers
    status: int | None
    http_headers: list[tuple[str, str]]
    payload: bytes  # raw payload (capped)


def complete_members_end(path: Path, start: int = 0) -> int:
    """Return the offset just past the last complete gzip member of ``path``, reading from
    ``start`` (a member boundary: a watermark)."""
    end = start
    pos = start
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    with open(path, "rb") as fh:
        fh.seek(start)
        while chunk := fh.read(_CHUNK):
            data = chunk
            while data:
                try:
                    inflater.decompress(data, _CHUNK)
                    while inflater.unconsumed_tail and not inflater.eof:
                        inflater.decompress(inflater.unconsumed_tail, _CHUNK)
                except zlib.error:
                    return end
                if inflater.eof:
                    used = len(data) - len(inflater.unused_data)
                    pos += used
                    end = pos
                    data = inflater.unused_data
                    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
                else:
                    pos += len(data)
                    data = b""
    return end


@dataclass(slots=True)
class Recovered:
    """What ``recover_warcs`` did: files it closed, records the catalog lacked, and how far
    each file it looked at was read (its end: once the records are entered, its mark)."""

    closed: list[Path]
    orphans: list[OrphanRecord]
    read_to: dict[str, int]
    skipped_bytes: int = 0  # below the watermarks: not read


def recover_warcs(warc_dir: Path, known_offsets: Callable[[str], set[int]], *,
                  payload_cap: int, marks: dict[str, int] | None = None) -> Recovered:
    """Close every ``*.open`` WARC in ``warc_dir`` and find records the catalog lacks.

    ``known_offsets(file)`` returns the offsets of the records the catalog points at. Open
    files are truncated after their last complete record and renamed. Closed files are read
    too: a file can be closed by rotation before the transaction that enters its last records
    commits. Records are entered in the order their transactions run, not the order they were
    written (a page waits for its parser while others are written after it), so an unknown
    record can sit before known ones: each file is read from its watermark (``marks``, the
    offset below which every record is in the catalog; watermark.py), or whole without one.
    Returns the files closed here and the complete records the catalog did not know, in file
    and offset order.
    """
    marks = marks or {}
    found = Recovered([], [], {})
    for path in sorted(warc_dir.glob("*.warc.gz*")):
        is_open = path.name.endswith(OPEN_SUFFIX)
        if not is_open and not path.name.endswith(".warc.gz"):
            continue
        final = path.with_name(path.name[: -len(OPEN_SUFFIX)]) if is_open else path
        size = path.stat().st_size
        start = min(marks.get(final.name, 0), size)
        if is_open:
            end = complete_members_end(path, start)
            if end < size:
                log.warning("%s: cutting an unfinished record (%d of %d bytes kept)",
                            path.name, end, size)
                os.truncate(path, end)
                size = end
        if start < size:
            known = known_offsets(final.name)
            found.orphans.extend(r for r in iter_records(path, final.name, payload_cap, start)
                                 if r.offset not in known)
        found.skipped_bytes += start
        found.read_to[final.name] = size
        if is_open:
            with open(path, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(path, final)
            found.closed.append(final)
    return found


def iter_records(path: Path, name: str, payload_cap: int,
                 start: int = 0) -> Iterator[OrphanRecord]:
    """Yield every response, revisit and failure (metadata) record of a WARC file from
    ``start`` (a record boundary), in file order, with its payload read up to
    ``payload_cap`` bytes (one record in memory at once). Evidence attached to another
    record (a 304's own head) is skipped."""
    with open(path, "rb") as fh:
        fh.seek(start)
        records = ArchiveIterator(fh)
        for record in records:
            if record.rec_type not in ("response", "revisit", "metadata"):
                continue
            if record.rec_headers.get_header("WARC-Concurrent-To"):
                continue  # evidence attached to another record (a 304's own head)
            payload = record.raw_stream.read(payload_cap)
            records.read_to_end()  # warcio knows offset and length only past the record
            offset, length = records.get_record_offset(), records.get_record_length()
            http = record.http_headers
            yield OrphanRecord(
                warc_file=name, offset=offset, length=length, record_type=record.rec_type,
                url=record.rec_headers.get_header("WARC-Target-URI") or "",
                date=record.rec_headers.get_header("WARC-Date") or "",
                headers=dict(record.rec_headers.headers),
                status=int(http.get_statuscode()) if http and record.rec_type != "metadata"
                else None,
                http_headers=list(http.headers) if http else [],
                payload=payload)


def result_from_record(orphan: OrphanRecord) -> FetchResult:
    """Rebuild enough of a FetchResult from a recovered record to catalog it."""
    started = datetime.strptime(orphan.date, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    result = FetchResult(url=orphan.url, started=started,
                         peer_ip=orphan.headers.get("WARC-IP-Address"))
    if orphan.record_type == "metadata":
        fields = dict(line.split(": ", 1) for line in orphan.payload.decode(
            "utf-8", "replace").splitlines() if ": " in line)
        try:
            result.failure = FailureKind(fields.get("fetch-failure", "other"))
        except ValueError:
            result.failure = FailureKind.OTHER
        result.failure_detail = fields.get("detail", "")
        return result
    result.status = orphan.status or 0
    result.headers = [(k.encode("latin-1", "replace"), v.encode("latin-1", "replace"))
                      for k, v in orphan.http_headers]
    result.body = io.BytesIO(orphan.payload)
    result.body_length = len(orphan.payload)
    truncated = orphan.headers.get("WARC-Truncated")
    if truncated:
        with contextlib.suppress(ValueError):
            result.truncated = Truncation(truncated)
    return result
