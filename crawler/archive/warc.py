"""Write WARC/1.1 files: naming, `.open` then rename, rotation, warcinfo, and one record per event.

Conventions (docs/warc.md, checked by replaying in pywb): one gzip member per record; response
then request, the request pointing at the response with WARC-Concurrent-To; the HTTP block keeps
the headers as received except that de-chunked bodies lose ``Transfer-Encoding`` and
``Content-Length`` is made truthful (pywb#584, iipc/warc-specifications#22); the status line is
always ``HTTP/1.1``, with ``WARC-Protocol`` when the real one was another. Fetch failures become
``metadata`` records so the WARC itself is evidence of what the server did.

Not thread-safe: one owner (the crawl's sink thread) calls it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import logging
import os
import socket
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from crawler import __version__
from crawler.capture import urls
from crawler.core import failpoints
from crawler.core.errors import OutputError, write_error
from crawler.core.models import FetchResult, UrlKind

if TYPE_CHECKING:
    from crawler.archive.watermark import Watermark

log = logging.getLogger("crawler.warc")

OPEN_SUFFIX = ".open"
REVISIT_MIME = "warc/revisit"
IDENTICAL_PAYLOAD = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
SERVER_NOT_MODIFIED = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"
_NO_BODY_STATUSES = frozenset({204, 304})
_HOP_HEADERS = (b"transfer-encoding",)


@dataclass(frozen=True, slots=True)
class WarcSettings:
    """Where and how WARC files are written."""

    directory: Path
    prefix: str = "crawler"
    max_size: int = 1_000_000_000  # rotate once a file reaches this many bytes
    compress_level: int = 6  # zlib level per record; 9 costs ~2x the CPU for ~3% less space
    warcinfo: dict[str, str] = field(default_factory=dict)  # extra warcinfo fields


@dataclass(frozen=True, slots=True)
class Original:
    """The archived response a revisit refers to."""

    url: str
    date: str  # its WARC-Date, spelled as in the record
    record_id: str | None
    digest: str  # its WARC-Payload-Digest, copied into the revisit unchanged


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """Where one replayable record landed: enough for a CDXJ line and for the catalog."""

    url: str
    timestamp: str  # 17 digits (to the millisecond), UTC
    mime: str
    status: int
    digest: str
    offset: int
    length: int
    filename: str
    record_type: str = "response"  # "revisit", or "metadata" for a failure (not replayable)
    record_id: str = ""  # WARC-Record-ID, for WARC-Refers-To of later revisits

    def cdxj(self) -> str:
        """Return the CDXJ line pywb reads for this record (revisits: mime warc/revisit)."""
        mime = REVISIT_MIME if self.record_type == "revisit" else self.mime or "unk"
        fields = {"url": self.url, "mime": mime, "status": str(self.status),
                  "digest": self.digest, "length": str(self.length),
                  "offset": str(self.offset), "filename": self.filename}
        return f"{urls.surt_key(self.url)} {self.timestamp} {json.dumps(fields)}"


class _GzipMemberWriter(io.RawIOBase):
    """File-like that gzips everything between two flush() calls as one member.

    warcio flushes once at the end of each record, so each record is its own gzip member,
    which replay tools need for random access by offset.
    """

    def __init__(self, out: IO[bytes], level: int) -> None:
        self._out = out
        self._level = level
        self._zip = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS | 16)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        _write_all(self._out, self._zip.compress(data))
        failpoints.hit("warc-mid-record")
        return len(data)

    def flush(self) -> None:
        _write_all(self._out, self._zip.flush())
        self.reset()

    def reset(self) -> None:
        """Start a new member (after a record was abandoned half-written)."""
        self._zip = zlib.compressobj(self._level, zlib.DEFLATED, zlib.MAX_WBITS | 16)


def _write_all(out: IO[bytes], data: bytes) -> None:
    """Write every byte (an unbuffered file may take part of it, e.g. as the disk fills)."""
    view = memoryview(data)
    while view:
        done = out.write(view)
        view = view[done or 0:]
        if not done:
            raise OSError(errno.ENOSPC, "the file system took no more bytes")


class _Writer(WARCWriter):
    """warcio's writer, computing a payload digest only where it identifies content.

    Responses get one (and dedup looks it up); a revisit copies its original's. A request's
    payload is empty for a GET and a metadata record's is its whole block, so a payload digest
    there says nothing the block digest does not, and costs ~50 bytes per record.
    """

    NO_PAYLOAD_DIGEST_TYPES = ("warcinfo", "revisit", "request", "metadata")


class _RawHttpHead(StatusAndHeaders):
    """HTTP head whose bytes are fixed in advance, so warcio stores them exactly as given."""

    def __init__(self, statusline: str, headers: list[tuple[str, str]], head: bytes) -> None:
        super().__init__(statusline, headers, protocol="HTTP/1.1")
        self.headers_buff = head

    def compute_headers_buffer(self, header_filter: object = None) -> None:
        """Keep the pre-built bytes (warcio would re-encode and %-escape non-ASCII values)."""


def warc_date(moment: datetime) -> str:
    """Return a WARC-Date: UTC to the millisecond, with a 'Z' (WARC 1.1 §5.4).

    Milliseconds, not microseconds: ReplayWeb.page parses dates with JavaScript's ``Date``
    (millisecond precision) and finds a revisit's original by its WARC-Refers-To-Date, so a
    date that JavaScript cannot spell exactly makes it pick the wrong capture. Milliseconds
    still tell apart two captures of one URL within a second, and the index (``timestamp17``)
    carries them, so both viewers resolve every record to itself (docs/warc.md#dates).
    """
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def timestamp17(moment: datetime) -> str:
    """Return the 17-digit timestamp (to the millisecond) of the CDXJ index and replay URLs."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y%m%d%H%M%S") + f"{utc.microsecond // 1000:03d}"


def response_head(result: FetchResult) -> tuple[bytes, list[tuple[str, str]]]:
    """Return the HTTP head to store for a response, and its headers as text.

    Headers stay as received, in order and spelling, except that ``Transfer-Encoding`` (httpx
    removed the chunk framing) is renamed ``X-Orig-Transfer-Encoding``, and ``Content-Length``
    is set to the bytes actually stored; a different declared value is kept as
    ``X-Orig-Content-Length`` (evidence of truncation or a lying server).
    """
    headers: list[tuple[bytes, bytes]] = []
    declared_length: bytes | None = None
    for name, value in result.headers:
        lname = name.lower()
        if lname in _HOP_HEADERS:
            headers.append((b"X-Orig-" + name, value))
        elif lname == b"content-length":
            declared_length = value
        else:
            headers.append((name, value))
    actual = str(result.body_length).encode()
    if result.status in _NO_BODY_STATUSES or 100 <= result.status < 200:
        if declared_length is not None:
            headers.append((b"Content-Length", declared_length))
    else:
        if declared_length is not None and declared_length.strip() != actual:
            headers.append((b"X-Orig-Content-Length", declared_length))
        headers.append((b"Content-Length", actual))
    reason = result.reason or ""
    status_line = f"HTTP/1.1 {result.status} {reason}".rstrip().encode("latin-1", "replace")
    head = b"\r\n".join([status_line, *(n + b": " + v for n, v in headers)]) + b"\r\n\r\n"
    text = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]
    return head, text


def _split_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Return the status ("200 OK") and headers of a stored HTTP response head."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 1)[1] if " " in lines[0] else ""
    headers = [(n.strip(), v.strip()) for n, _, v in
               (line.partition(":") for line in lines[1:] if line)]
    return status, headers


KIND_FIELD = "WARC-Crawler-Kind"


def kind_fields(kind: UrlKind) -> dict[str, str]:
    """Return the WARC field that says why a URL was fetched, or none for a page: most
    records are pages, and a record without the field is read as one (``record_kind``), so
    the field costs no bytes where it says nothing new."""
    return {} if kind is UrlKind.PAGE else {KIND_FIELD: kind.value}


def record_kind(headers: Mapping[str, str], default: UrlKind = UrlKind.PAGE) -> UrlKind:
    """Return the kind a record's ``WARC-Crawler-Kind`` names; ``default`` (a page, unless
    the reader knows better) when it names none or one this version does not know."""
    name = headers.get(KIND_FIELD, "")
    return UrlKind(name) if name in UrlKind.__members__.values() else default


RECEIVED_STATUS = "WARC-Crawler-Received-Status"
RECEIVED_HEADER = "WARC-Crawler-Received-Header"


def _escape(line: bytes) -> str:
    """Return a head line as a WARC field value: bytes outside printable ASCII, and ``%``,
    as ``%XX``, so that any head round-trips exactly."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x25 else f"%{b:02X}" for b in line)


def received_fields(head: bytes) -> list[tuple[str, str]]:
    """Return the WARC fields that keep an HTTP head as received (a 304's, on the revisit
    that carries the original's head): the status line, then one field per header line in
    order (``received_head`` reverses it)."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    return [(RECEIVED_STATUS, _escape(lines[0])),
            *((RECEIVED_HEADER, _escape(line)) for line in lines[1:])]


def received_head(fields: Iterable[tuple[str, str]]) -> bytes | None:
    """Return the HTTP head kept by ``received_fields`` in a record's WARC headers (name,
    value pairs in order), or None if the record keeps none."""
    lines = [urllib.parse.unquote_to_bytes(value) for name, value in fields
             if name in (RECEIVED_STATUS, RECEIVED_HEADER)]
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" if lines else None


def protocol_field(result: FetchResult) -> dict[str, str]:
    """Return ``WARC-Protocol`` when the real protocol is not the ``HTTP/1.1`` that every
    stored status line says (an HTTP/1.0 or HTTP/2 answer); for HTTP/1.1 the status line
    says it already, and the field would cost 8 bytes a record."""
    protocol = result.http_version.lower()
    return {} if protocol == "http/1.1" else {"WARC-Protocol": protocol}


def timestamp17_of(iso: str) -> str:
    """Return the 17-digit timestamp of an ISO 8601 date (WARC-Date, catalog ``fetched_at``).

    Digits past the millisecond are cut, as JavaScript's ``Date`` cuts them, so a record
    written with microseconds by an earlier version indexes to the same millisecond that
    ReplayWeb.page reads from a WARC-Refers-To-Date naming it.
    """
    digits = "".join(ch for ch in iso if ch.isdigit())
    return (digits + "000")[:17]


class WarcWriter:
    """Writes records into rotating WARC files under one directory."""

    def __init__(self, settings: WarcSettings, *, first_serial: int = 0,
                 watermark: Watermark | None = None) -> None:
        self.settings = settings
        self.watermark = watermark  # told where each exchange starts and ends (a crawl's)
        self.hostname = socket.gethostname().split(".")[0] or "localhost"
        self._serial = first_serial  # a resumed crawl continues the numbering
        self._file: IO[bytes] | None = None
        self._gzip: _GzipMemberWriter | None = None
        self._path: Path | None = None
        self._writer: WARCWriter | None = None
        self.failed: OutputError | None = None  # the first write failure: no more writes
        self.finished: list[Path] = []
        self.bytes_written = 0
        settings.directory.mkdir(parents=True, exist_ok=True)

    @property
    def current_name(self) -> str | None:
        """Return the final name of the file being written (without ``.open``)."""
        return self._path.name[: -len(OPEN_SUFFIX)] if self._path else None

    def _open(self) -> None:
        """Start a new file with a warcinfo record."""
        now = datetime.now(UTC)
        ts17 = now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"
        name = f"{self.settings.prefix}-{ts17}-{self._serial:05d}-{self.hostname}.warc.gz"
        self._serial += 1
        self._path = self.settings.directory / (name + OPEN_SUFFIX)
        # Unbuffered: after a failed write no bytes wait in a buffer to land later, past
        # the point the file is cut back to (see ``_guarded``).
        self._file = open(self._path, "xb", buffering=0)  # noqa: SIM115 - see _close_file
        self._gzip = _GzipMemberWriter(self._file, self.settings.compress_level)
        self._writer = _Writer(self._gzip, gzip=False, warc_version="WARC/1.1")
        with self._guarded(group=False):
            self._write_warcinfo(name)
        if self.watermark is not None:
            self.watermark.written(name, self._tell())

    def _write_warcinfo(self, filename: str) -> None:
        """Write the warcinfo record that opens every file."""
        assert self._writer is not None
        info = {
            "software": f"crawler/{__version__} (warcio)",
            "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/"
                          "warc-format/warc-1.1/",
            "hostname": socket.gethostname(),
            **self.settings.warcinfo,
        }
        record = self._writer.create_warcinfo_record(filename, info)
        # warcio dates it to the microsecond; every date we write is to the millisecond
        record.rec_headers.replace_header("WARC-Date", warc_date(datetime.now(UTC)))
        self._writer.write_record(record)

    def _ensure_open(self) -> WARCWriter:
        """Return the writer of the current file, opening one if needed."""
        if self.failed is not None:
            raise self.failed
        if self._writer is None:
            try:
                self._open()
            except OSError as exc:
                self.failed = write_error(exc, f"a new WARC file in {self.settings.directory}")
                raise self.failed from exc
        assert self._writer is not None
        return self._writer

    @contextlib.contextmanager
    def _guarded(self, *, group: bool = True) -> Iterator[None]:
        """Write one exchange or nothing: on a failed write (disk full), cut the file back
        to where the exchange began, so it ends with complete records and closes valid,
        and refuse every later write (the crawl stops; its resume starts a new file).

        A ``group`` is an exchange the catalog will point at: the watermark hears where it
        starts before it is written and where the file ends after (watermark.py)."""
        assert self._file is not None and self._path is not None
        file, name, start = self._file, self._path.name, self._file.tell()
        final = name[: -len(OPEN_SUFFIX)]
        mark = self.watermark if group else None
        if mark is not None:
            mark.begin(final, start)
        try:
            yield
            if mark is not None and not file.closed:  # (closed: rotated, end told then)
                mark.written(final, file.tell())
        except OSError as exc:
            if mark is not None:
                mark.abandon(final, start)
            self.failed = write_error(exc, f"WARC file {name}")
            with contextlib.suppress(OSError, ValueError):  # ValueError: closed by rotation
                os.ftruncate(file.fileno(), start)
                file.seek(start)
            if self._gzip is not None:
                self._gzip.reset()
            raise self.failed from exc

    def _tell(self) -> int:
        """Return the current offset in the open file."""
        assert self._file is not None
        return self._file.tell()

    def write_exchange(self, result: FetchResult, extra: dict[str, str] | None = None,
                       ) -> IndexEntry:
        """Write a fetch as response + request records, or a failure as a metadata record.

        Returns where the response (or, for a failure, the metadata record) landed.
        """
        writer = self._ensure_open()
        with self._guarded():
            return self._write_exchange(writer, result, extra)

    def _write_exchange(self, writer: WARCWriter, result: FetchResult,
                        extra: dict[str, str] | None) -> IndexEntry:
        """``write_exchange`` inside its guard."""
        if result.failure is not None:
            offset, length = self._write_failure(writer, result)
            entry = IndexEntry(url=result.url, timestamp=timestamp17(result.started), mime="",
                               status=0, digest="", offset=offset, length=length,
                               filename=self.current_name or "", record_type="metadata")
            self._maybe_rotate()
            return entry
        date = warc_date(result.started)
        head, header_text = response_head(result)
        http_head = _RawHttpHead(f"{result.status} {result.reason}".rstrip(), header_text, head)
        warc_headers = {"WARC-Date": date}
        if result.peer_ip:
            warc_headers["WARC-IP-Address"] = result.peer_ip
        warc_headers.update(protocol_field(result))
        if result.truncated is not None:
            warc_headers["WARC-Truncated"] = result.truncated.value
        if result.payload_digest:  # computed while the body streamed in: not hashed twice
            warc_headers["WARC-Payload-Digest"] = result.payload_digest
        if extra:
            warc_headers.update(extra)
        body = result.body if result.body is not None else io.BytesIO()
        body.seek(0)
        response = writer.create_warc_record(
            result.url, "response", payload=body, length=result.body_length,
            http_headers=http_head, warc_headers_dict=warc_headers)
        offset = self._tell()
        writer.write_record(response)
        length = self._tell() - offset
        response_id = response.rec_headers.get_header("WARC-Record-ID")
        self._write_request(writer, result, date, response_id)
        entry = IndexEntry(
            url=result.url, timestamp=timestamp17(result.started),
            mime=result.content_type, status=result.status,
            digest=response.rec_headers.get_header("WARC-Payload-Digest"),
            offset=offset, length=length, filename=self.current_name or "",
            record_id=response_id)
        self._maybe_rotate()
        return entry

    def copy_member(self, data: bytes) -> None:
        """Append complete gzip members copied byte for byte from another WARC file (a
        distributed crawl's merge: records keep their ids, digests and dates), after this
        file's warcinfo; rotate when the file is full."""
        self._ensure_open()
        assert self._file is not None
        with self._guarded(group=False):
            _write_all(self._file, data)
        self._maybe_rotate()

    def write_revisit(self, result: FetchResult, original: Original,
                      extra: dict[str, str] | None = None, *,
                      carried_head: bytes | None = None) -> IndexEntry:
        """Write a revisit + request instead of a response whose payload is archived already.

        Without ``carried_head``: the profile is identical-payload-digest and the revisit
        keeps the HTTP head as received. With it (the server answered 304 to a conditional
        request): the profile is server-not-modified and the revisit carries the original's
        status line and headers, because pywb and ReplayWeb.page replay only that shape
        (docs/warc.md); the 304 head the server actually sent is kept as evidence in the
        revisit's own WARC headers (``received_fields``): a separate record cost ~400 bytes
        per unchanged URL, these fields ~40, because they repeat the carried head inside
        the same gzip member.
        """
        writer = self._ensure_open()
        with self._guarded():
            return self._write_revisit(writer, result, original, extra, carried_head)

    def _write_revisit(self, writer: WARCWriter, result: FetchResult, original: Original,
                       extra: dict[str, str] | None, carried_head: bytes | None,
                       ) -> IndexEntry:
        """``write_revisit`` inside its guard."""
        date = warc_date(result.started)
        received, header_text = response_head(result)
        head = carried_head if carried_head is not None else received
        status_line, headers = _split_head(head) if carried_head is not None else (
            f"{result.status} {result.reason}".rstrip(), header_text)
        warc_headers = {
            "WARC-Date": date,
            "WARC-Profile": SERVER_NOT_MODIFIED if carried_head is not None
            else IDENTICAL_PAYLOAD,
            "WARC-Refers-To-Target-URI": original.url,
            "WARC-Refers-To-Date": original.date,
            "WARC-Payload-Digest": original.digest,
        }
        if original.record_id:
            warc_headers["WARC-Refers-To"] = original.record_id
        if result.peer_ip:
            warc_headers["WARC-IP-Address"] = result.peer_ip
        warc_headers.update(protocol_field(result))
        if extra:
            warc_headers.update(extra)
        revisit = writer.create_warc_record(
            result.url, "revisit", payload=io.BytesIO(), length=0,
            http_headers=_RawHttpHead(status_line, headers, head),
            warc_headers_dict=warc_headers)
        if carried_head is not None:
            for name, value in received_fields(received):
                revisit.rec_headers.add_header(name, value)
        offset = self._tell()
        writer.write_record(revisit)
        length = self._tell() - offset
        revisit_id = revisit.rec_headers.get_header("WARC-Record-ID")
        self._write_request(writer, result, date, revisit_id)
        assert self._file is not None
        self._file.flush()
        status = int(status_line.split(" ", 1)[0] or 0)
        entry = IndexEntry(
            url=result.url, timestamp=timestamp17(result.started), mime=REVISIT_MIME,
            status=status, digest=original.digest, offset=offset, length=length,
            filename=self.current_name or "", record_type="revisit", record_id=revisit_id)
        self._maybe_rotate()
        return entry

    def _write_request(self, writer: WARCWriter, result: FetchResult, date: str,
                       concurrent_to: str) -> None:
        """Write the request record of an exchange and flush the file.

        Flushing here means complete records reach the OS: a killed process loses none. A
        result without a request head (a capture rescued from another archive, which keeps
        no request) gets no request record: one made up would be false evidence.
        """
        assert self._file is not None
        if not result.request_head:
            self._file.flush()
            return
        request = writer.create_warc_record(
            result.url, "request", payload=io.BytesIO(result.request_head),
            length=len(result.request_head),
            warc_headers_dict={"WARC-Date": date, "WARC-Concurrent-To": concurrent_to})
        writer.write_record(request)
        assert self._file is not None
        self._file.flush()

    def append_members(self, members: Iterable[tuple[IndexEntry, bytes]]) -> list[IndexEntry]:
        """Copy complete records (gzip members read from other WARCs) unchanged into the
        current file; return their entries with this file's name and their new offsets."""
        self._ensure_open()
        assert self._file is not None
        placed = []
        with self._guarded(group=False):  # copies for a package, not the crawl's
            for entry, member in members:
                placed.append(dataclasses.replace(entry, offset=self._tell(),
                                                  filename=self.current_name or ""))
                _write_all(self._file, member)
        return placed

    def _write_failure(self, writer: WARCWriter, result: FetchResult) -> tuple[int, int]:
        """Record a failed fetch as a metadata record naming the failure."""
        assert result.failure is not None
        fields = [
            ("fetch-failure", result.failure.value),
            ("detail", result.failure_detail.replace("\r", " ").replace("\n", " ")),
            ("elapsed-seconds", f"{result.elapsed:.3f}"),
        ]
        payload = "".join(f"{k}: {v}\r\n" for k, v in fields).encode("utf-8")
        record = writer.create_warc_record(
            result.url, "metadata", payload=io.BytesIO(payload), length=len(payload),
            warc_content_type="application/warc-fields",
            warc_headers_dict={"WARC-Date": warc_date(result.started)})
        offset = self._tell()
        writer.write_record(record)
        assert self._file is not None
        self._file.flush()
        return offset, self._tell() - offset

    def _maybe_rotate(self) -> None:
        """Close the current file once it reaches the size limit."""
        if self._file is not None and self._tell() >= self.settings.max_size:
            self._close_file()

    def _close_file(self) -> None:
        """Flush, fsync and rename the open file to its final name."""
        if self._file is None or self._path is None:
            return
        self.bytes_written += self._file.tell()
        if self.watermark is not None and self.current_name is not None:
            self.watermark.written(self.current_name, self._file.tell())
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:  # the records are complete (see _guarded); keep them
            log.warning("%s: could not sync before closing: %s", self._path.name, exc)
        self._file.close()
        failpoints.hit("warc-rotate")
        final = self._path.with_name(self._path.name[: -len(OPEN_SUFFIX)])
        os.replace(self._path, final)
        failpoints.hit("warc-rotated")
        self.finished.append(final)
        self._file = self._path = self._writer = self._gzip = None

    def close(self) -> list[Path]:
        """Finish the open file; return all files written."""
        self._close_file()
        return list(self.finished)
