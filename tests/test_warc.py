"""WARC writer record-level behaviour, with hand-made fetch results."""

from __future__ import annotations

import gzip
import io
import random
from datetime import UTC, datetime
from pathlib import Path

from conftest import read_records

from crawler.archive.warc import (
    OPEN_SUFFIX,
    Original,
    WarcSettings,
    WarcWriter,
    received_fields,
    received_head,
    response_head,
)
from crawler.core.models import FailureKind, FetchResult, Truncation

WHEN = datetime(2026, 11, 23, 10, 15, 0, 123456, tzinfo=UTC)


def result(body: bytes, headers: list[tuple[bytes, bytes]], status: int = 200,
           **kw: object) -> FetchResult:
    r = FetchResult(url="http://h.org/a", started=WHEN, status=status, reason="OK",
                    headers=headers, body=io.BytesIO(body), body_length=len(body),
                    peer_ip="10.0.0.1", request_head=b"GET /a HTTP/1.1\r\nHost: h.org\r\n\r\n",
                    **kw)  # type: ignore[arg-type]
    return r


def test_head_drops_chunking_and_makes_length_truthful() -> None:
    head, _ = response_head(result(b"hello", [(b"Transfer-Encoding", b"chunked"),
                                              (b"X-Thing", b"\xe9t\xe9")]))
    assert head == (b"HTTP/1.1 200 OK\r\nX-Orig-Transfer-Encoding: chunked\r\n"
                    b"X-Thing: \xe9t\xe9\r\nContent-Length: 5\r\n\r\n")
    head, _ = response_head(result(b"hel", [(b"Content-Length", b"5")]))
    assert b"X-Orig-Content-Length: 5\r\nContent-Length: 3\r\n" in head
    head, _ = response_head(result(b"", [(b"Content-Length", b"999"), (b"ETag", b'"x"')],
                                   status=304))
    assert head.endswith(b"Content-Length: 999\r\n\r\n")  # a 304 keeps what it declared


def test_http2_is_written_with_an_http11_status_line(tmp_path: Path) -> None:
    writer = WarcWriter(WarcSettings(directory=tmp_path))
    writer.write_exchange(result(b"x", [], http_version="HTTP/2"))
    recs = read_records(writer.close())
    resp = next(r for r in recs if r.type == "response")
    assert resp.line == "HTTP/1.1 200 OK"
    assert resp.warc["WARC-Protocol"] == "http/2"


def test_exchange_records_and_index_entry(tmp_path: Path) -> None:
    writer = WarcWriter(WarcSettings(directory=tmp_path, prefix="t",
                                     warcinfo={"operator": "tester"}))
    entry = writer.write_exchange(result(b"<p>hi</p>", [(b"Content-Type", b"text/html")],
                                         truncated=Truncation.TIME))
    files = writer.close()
    assert len(files) == 1 and files[0].name.endswith(".warc.gz")
    assert not list(tmp_path.glob("*" + OPEN_SUFFIX))
    recs = read_records(files)
    assert [r.type for r in recs] == ["warcinfo", "response", "request"]
    assert b"operator: tester" in recs[0].body
    resp, req = recs[1], recs[2]
    assert resp.warc["WARC-Date"] == "2026-11-23T10:15:00.123Z"  # milliseconds (docs/warc.md)
    assert resp.warc["WARC-Truncated"] == "time"
    assert resp.warc["WARC-IP-Address"] == "10.0.0.1"
    assert resp.uri == "http://h.org/a"
    assert req.warc["WARC-Concurrent-To"] == resp.warc["WARC-Record-ID"]
    assert entry is not None
    assert entry.timestamp == "20261123101500123" and entry.status == 200
    assert entry.mime == "text/html" and entry.filename == files[0].name
    assert entry.digest == resp.warc["WARC-Payload-Digest"]
    with open(files[0], "rb") as fh:
        fh.seek(entry.offset)
        member = gzip.decompress(fh.read(entry.length))
    assert member.startswith(b"WARC/1.1\r\n") and b"<p>hi</p>" in member
    line = entry.cdxj()
    assert line.startswith("org,h)/a 20261123101500123 {")


def test_failure_becomes_metadata_record(tmp_path: Path) -> None:
    writer = WarcWriter(WarcSettings(directory=tmp_path))
    failed = FetchResult(url="http://gone.invalid/", started=WHEN, failure=FailureKind.DNS,
                         failure_detail="ConnectError: [Errno -2] Name or service not known")
    entry = writer.write_exchange(failed)
    assert entry.record_type == "metadata" and entry.status == 0
    recs = read_records(writer.close())
    meta = recs[1]
    assert meta.type == "metadata" and meta.uri == "http://gone.invalid/"
    assert meta.warc["Content-Type"] == "application/warc-fields"
    assert b"fetch-failure: dns\r\n" in meta.body
    assert b"Name or service not known" in meta.body


def test_rotation_and_open_suffix(tmp_path: Path) -> None:
    writer = WarcWriter(WarcSettings(directory=tmp_path, prefix="rot", max_size=2000))
    body = random.Random(1).randbytes(3000)  # incompressible: each record passes 2000 bytes
    writer.write_exchange(result(body, []))
    assert writer.current_name is None  # rotated right after the record
    writer.write_exchange(result(body, []))
    writer.write_exchange(result(b"small", []))
    assert writer.current_name is not None
    assert len(list(tmp_path.glob("*.warc.gz" + OPEN_SUFFIX))) == 1  # being written
    files = writer.close()
    assert [f.name.split("-")[2] for f in files] == ["00000", "00001", "00002"]
    for path in files:
        assert read_records([path])[0].type == "warcinfo"


def test_304_head_is_kept_on_its_revisit(tmp_path: Path) -> None:
    """A 304 becomes one revisit carrying the original's head; what the server answered
    (odd bytes included) comes back byte for byte from the revisit's WARC fields."""
    head = (b"HTTP/1.1 304 Not Modified\r\nServer: b\xe4r 100%\r\nX-Tab:\ta\r\n"
            b"ETag: \"x\"\r\n\r\n")
    fields = received_fields(head)
    assert all(0x20 <= ord(c) < 0x7F for _, value in fields for c in value)
    assert received_head(fields) == head
    assert received_head([("WARC-Type", "revisit")]) is None
    writer = WarcWriter(WarcSettings(directory=tmp_path))
    answer = result(b"", [(b"Server", b"b\xe4r 100%"), (b"X-Tab", b"\ta"), (b"ETag", b'"x"')],
                    status=304)
    answer.reason = "Not Modified"
    original = Original(url=answer.url, date="2026-11-22T10:00:00.000Z", record_id=None,
                        digest="sha1:AAAA")
    carried = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nETag: \"x\"\r\n\r\n"
    writer.write_revisit(answer, original, carried_head=carried)
    recs = read_records(writer.close())
    assert [r.type for r in recs] == ["warcinfo", "revisit", "request"]  # no evidence record
    revisit = recs[1]
    assert revisit.line == "HTTP/1.1 200 OK" and revisit.header("ETag") == '"x"'
    assert received_head(revisit.fields) == response_head(answer)[0]
    assert received_head(revisit.fields).startswith(b"HTTP/1.1 304 Not Modified\r\n")
