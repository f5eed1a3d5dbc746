"""The fetcher: raw capture, failure classification. Real loopback servers where it matters."""

from __future__ import annotations

import asyncio
import gzip
import io
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from crawler.capture.fetcher import Fetcher, FetchSettings, classify
from crawler.core.models import FailureKind, FetchResult, Truncation


def fetch(url: str, settings: FetchSettings | None = None,
          transport: httpx.AsyncBaseTransport | None = None) -> FetchResult:
    async def run() -> FetchResult:
        async with Fetcher(settings or FetchSettings(), transport=transport) as f:
            result = await f.fetch(url)
            data = result.read_body()
            result.close()  # swap the spool file for memory, so tests need not close it
            result.body = io.BytesIO(data)
            return result

    return asyncio.run(run())


def test_raw_body_is_kept_content_coded() -> None:
    payload = gzip.compress(b"<p>hello</p>")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept-encoding"] == "gzip, deflate"
        return httpx.Response(200, headers={"Content-Encoding": "gzip"},
                              stream=httpx.ByteStream(payload))

    result = fetch("http://h.org/", transport=httpx.MockTransport(handler))
    assert result.status == 200
    assert result.read_body() == payload  # not decoded
    assert result.body_length == len(payload)
    assert result.request_head.startswith(b"GET / HTTP/1.1\r\nHost: h.org\r\n")
    result.close()


def test_redirects_are_not_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "/elsewhere"})

    result = fetch("http://h.org/", transport=httpx.MockTransport(handler))
    assert result.status == 302 and result.header("location") == "/elsewhere"


@pytest.fixture
def raw_server() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server that answers each connection with the next canned byte string."""
    replies: list[bytes] = []
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                reply = replies.pop(0) if replies else b""
                if reply == b"STALL":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                    threading.Event().wait(2)
                elif reply:
                    conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    yield sock.getsockname()[1], replies
    sock.close()


def test_failure_classes_on_loopback(raw_server: tuple[int, list[bytes]]) -> None:
    port, replies = raw_server
    url = f"http://127.0.0.1:{port}/"
    replies.append(b"")  # closes without answering
    assert fetch(url).failure is FailureKind.RESET
    replies.append(b"garbage that is not http\r\n\r\n")
    assert fetch(url).failure is FailureKind.PROTOCOL
    replies.append(b"STALL")
    stalled = fetch(url, FetchSettings(read_timeout=0.5))
    assert stalled.failure is None and stalled.truncated is Truncation.TIME
    assert stalled.read_body() == b"partial"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    refused = fetch(f"http://127.0.0.1:{dead_port}/")
    assert refused.failure is FailureKind.REFUSED
    assert fetch("http://no-such-host.invalid/").failure is FailureKind.DNS


def test_classify_keeps_causes_apart() -> None:
    import ssl

    def wrapped(cause: BaseException) -> httpx.ConnectError:
        try:
            try:
                raise cause
            except BaseException as inner:
                raise httpx.ConnectError("failed") from inner
        except httpx.ConnectError as exc:
            return exc

    assert classify(wrapped(socket.gaierror(-2, "Name or service not known"))) is FailureKind.DNS
    assert classify(wrapped(ConnectionRefusedError())) is FailureKind.REFUSED
    assert classify(wrapped(ssl.SSLError("bad handshake"))) is FailureKind.TLS
    assert classify(httpx.ReadTimeout("slow")) is FailureKind.TIMEOUT
    assert classify(wrapped(ConnectionResetError())) is FailureKind.RESET
