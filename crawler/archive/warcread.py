"""Read one archived record back by file and offset, exactly as stored.

Used where the crawl needs bytes it archived earlier: the HTTP head an earlier capture stored
(a 304 revisit carries it so that it replays), the payload of an unchanged page (its links are
extracted again), and whole gzip members copied into a WACZ. Only our own layout is read: one
gzip member per record (warc.py), so a record is ``length`` bytes at ``offset``; warcio parses it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.statusandheaders import StatusAndHeadersParser, StatusAndHeadersParserException

from crawler.archive.warc import OPEN_SUFFIX


class RecordUnreadable(Exception):
    """The record is missing, cut short, or not what the catalog says it is."""


@dataclass(frozen=True, slots=True)
class ArchivedRecord:
    """One record: its WARC headers, and for HTTP records the head and payload bytes."""

    warc_headers: dict[str, str]
    http_head: bytes  # status line and headers ending in CRLF CRLF (b"" if none)
    payload: bytes  # raw payload as stored (still content-coded)
    block: bytes = b""  # the whole block (HTTP head and payload), for its digest


def read_member(path: Path, offset: int, length: int) -> bytes:
    """Return the gzip member at ``offset``: the record's bytes as they sit in the file.

    A crawl still writing the file has it under ``<name>.open``; that name is tried too.
    """
    for candidate in (path, path.with_name(path.name + OPEN_SUFFIX)):
        try:
            with open(candidate, "rb") as fh:
                fh.seek(offset)
                data = fh.read(length)
        except FileNotFoundError:
            continue
        if len(data) != length:
            raise RecordUnreadable(f"{candidate}: {len(data)} of {length} bytes at {offset}")
        return data
    raise RecordUnreadable(f"{path}: no such WARC file")


def read_record(path: Path, offset: int, length: int) -> ArchivedRecord:
    """Return the record at ``offset``, split into WARC headers, HTTP head and payload.

    The member is inflated whole first, so its gzip CRC is checked (warcio stops reading at
    the end of the record's block and would not notice a flipped byte in the trailer); warcio
    then parses the record.
    """
    member = read_member(path, offset, length)
    try:
        data = zlib.decompress(member, zlib.MAX_WBITS | 16)
    except zlib.error as exc:
        raise RecordUnreadable(f"{path}@{offset}: not a gzip member ({exc})") from exc
    try:
        record = next(iter(ArchiveIterator(io.BytesIO(data), no_record_parse=True,
                                           arc2warc=False)))
    except (ArchiveLoadFailed, StopIteration, ValueError) as exc:
        raise RecordUnreadable(f"{path}@{offset}: not a WARC record ({exc})") from exc
    if record.format != "warc":
        raise RecordUnreadable(f"{path}@{offset}: not a WARC record")
    headers: dict[str, str] = {}
    for name, value in record.rec_headers.headers:
        headers.setdefault(name, value)
    if record.length is None or "Content-Length" not in headers:
        raise RecordUnreadable(f"{path}@{offset}: no Content-Length")
    block = record.raw_stream.read()
    if len(block) != record.length:
        raise RecordUnreadable(f"{path}@{offset}: block cut short")
    if record.rec_type not in ("response", "revisit", "request"):
        return ArchivedRecord(headers, b"", block, block)
    body = io.BytesIO(block)
    try:
        StatusAndHeadersParser([], verify=False).parse(body)
    except StatusAndHeadersParserException as exc:
        raise RecordUnreadable(f"{path}@{offset}: no HTTP head in the block") from exc
    http_end = body.tell()
    if not block[:http_end].endswith(b"\r\n\r\n"):
        raise RecordUnreadable(f"{path}@{offset}: no HTTP head in the block")
    return ArchivedRecord(headers, block[:http_end], block[http_end:], block)


def sha1_digest(data: bytes) -> str:
    """Return a WARC digest (``sha1:`` and base32) of ``data``."""
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def read_intact(path: Path, offset: int, length: int, *, record_id: str | None = None,
                digest: str | None = None) -> ArchivedRecord:
    """Return the record at ``offset`` after proving it is the one meant and undamaged.

    Reading it whole checks the gzip CRC (any flipped byte of the member); then its block
    digest, its payload digest (for responses), and, when given, its WARC-Record-ID and
    payload digest against what the catalog says. Used before a revisit is made to depend on
    a record, when it is packaged, and by ``crawler verify``.
    """
    record = read_record(path, offset, length)
    where = f"{path.name}@{offset}"
    headers = record.warc_headers
    if record_id and headers.get("WARC-Record-ID") != record_id:
        raise RecordUnreadable(f"{where}: holds {headers.get('WARC-Record-ID')}, "
                               f"not {record_id}")
    block_digest = headers.get("WARC-Block-Digest")
    if block_digest and _differs(block_digest, record.block):
        raise RecordUnreadable(f"{where}: block digest does not match ({block_digest})")
    stored = headers.get("WARC-Payload-Digest")
    if headers.get("WARC-Type") == "response" and stored and _differs(stored, record.payload):
        raise RecordUnreadable(f"{where}: payload digest does not match ({stored})")
    if digest and stored and stored != digest:
        raise RecordUnreadable(f"{where}: payload digest {stored}, catalog says {digest}")
    return record


def _differs(declared: str, data: bytes) -> bool:
    """Return True if a declared ``sha1:`` digest does not match ``data`` (other algorithms
    are not ours and are not checked)."""
    algorithm, _, value = declared.partition(":")
    if algorithm.lower() != "sha1":
        return False
    return value.upper() != sha1_digest(data).partition(":")[2]
