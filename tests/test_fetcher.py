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


@pytest.fixture
def no_leaks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if a socket or transport it opened was never closed: the garbage
    collector's ResourceWarning, made an error and caught however late it comes."""
    import gc
    import sys
    import warnings

    leaks: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: leaks.append(u.exc_value))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        yield
        gc.collect()
    assert not [leak for leak in leaks if isinstance(leak, ResourceWarning)], leaks


def test_tls_handshakes_that_go_wrong_are_recorded_as_such(
        raw_server: tuple[int, list[bytes]], no_leaks: None) -> None:
    """An HTTPS server that never answers the handshake times out within the connect
    timeout; one that answers it with plain HTTP is a TLS failure; one that hangs up is
    not mistaken for an answer. None leaves a socket open (``no_leaks``)."""
    import time

    port, replies = raw_server
    url = f"https://127.0.0.1:{port}/"
    replies.append(b"STALL")  # takes the ClientHello, then says something that is no TLS
    assert fetch(url).failure is FailureKind.TLS
    replies.append(b"")  # takes the ClientHello and hangs up
    assert fetch(url).failure in (FailureKind.TLS, FailureKind.RESET)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts (the kernel does) and never says a word
    try:
        began = time.monotonic()
        hung = fetch(f"https://127.0.0.1:{silent.getsockname()[1]}/",
                     FetchSettings(connect_timeout=0.5))
        assert hung.failure is FailureKind.TIMEOUT
        assert time.monotonic() - began < 5
    finally:
        silent.close()


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
    # a name with several addresses, each refused: asyncio keeps only the errors' text
    every = OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 80, 0, 0), "
                    "[Errno 111] Connect call failed ('127.0.0.1', 80)")
    assert classify(wrapped(every)) is FailureKind.REFUSED
    mixed = OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 80, 0, 0), "
                    "[Errno 101] Network is unreachable")
    assert classify(wrapped(mixed)) is FailureKind.CONNECT


def test_network_streams_read_in_bounded_memory_and_time_out() -> None:
    """A server that sends faster than the crawl reads is not buffered without bound (reading
    pauses past 256 KiB and resumes), every byte arrives in order, the end of the stream
    reads as b"", and a silent server gives httpcore's ReadTimeout."""
    import httpcore

    from crawler.capture import netstream

    payload = bytes(range(256)) * 8192  # 2 MiB

    async def run() -> tuple[bytes, int, bool]:
        served: list[asyncio.Event] = []

        async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            done = asyncio.Event()
            served.append(done)
            try:
                if await reader.read(5) == b"quiet":
                    await reader.read(1)  # says nothing until the client goes
                else:
                    writer.write(payload)
                    await writer.drain()
            except ConnectionError:
                pass
            writer.close()
            done.set()

        server = await asyncio.start_server(send, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        backend = netstream.AsyncioBackend()
        stream = await backend.connect_tcp("127.0.0.1", port, timeout=5)
        assert isinstance(stream, netstream.AsyncioStream)
        await stream.write(b"send!", timeout=5)
        got, most = bytearray(), 0
        await asyncio.sleep(0.3)  # the server has written everything it can meanwhile
        while True:
            chunk = await stream.read(65536, timeout=5)
            if not chunk:
                break
            got += chunk
            most = max(most, len(stream._connection.buffer))
            await asyncio.sleep(0.001)
        await stream.aclose()
        quiet = await backend.connect_tcp("127.0.0.1", port, timeout=5)
        await quiet.write(b"quiet", timeout=5)
        timed_out = False
        try:
            await quiet.read(65536, timeout=0.2)
        except httpcore.ReadTimeout:
            timed_out = True
        await quiet.aclose()
        for done in served:
            await asyncio.wait_for(done.wait(), 5)
        server.close()
        await server.wait_closed()
        return bytes(got), most, timed_out

    got, most, timed_out = asyncio.run(run())
    assert got == payload
    assert most <= 512 * 1024  # the 256 KiB mark, and one socket read past it at most
    assert timed_out


class _CountingServer:
    """A loopback HTTP/1.1 server that counts the connections it accepts; with ``close``, it
    drops each connection after answering without saying so (a keep-alive timeout)."""

    def __init__(self, *, close: bool = False) -> None:
        self.close = close
        self.accepted = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            buffered = b""
            while True:
                while b"\r\n\r\n" not in buffered:
                    data = conn.recv(4096)
                    if not data:
                        return
                    buffered += data
                _, _, buffered = buffered.partition(b"\r\n\r\n")
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                if self.close:
                    return


def _fetch_in_turn(url: str, times: int, pause: float = 0.0) -> list[int | None]:
    """Fetch ``url`` ``times`` times one after another with one fetcher; return statuses."""
    async def run() -> list[int | None]:
        async with Fetcher(FetchSettings(max_connections=4)) as f:
            statuses = []
            for _ in range(times):
                result = await f.fetch(url)
                statuses.append(result.status)
                result.close()
                await asyncio.sleep(pause)
            return statuses

    return asyncio.run(run())


def test_connections_are_kept_alive_and_reused() -> None:
    server = _CountingServer()
    assert _fetch_in_turn(f"http://127.0.0.1:{server.port}/x", 20) == [200] * 20
    assert server.accepted == 1
    server.sock.close()


def test_a_kept_connection_the_server_dropped_is_replaced() -> None:
    """Servers close idle connections without warning: the next request must not fail."""
    server = _CountingServer(close=True)
    # (a pause: the server's close arrives before the next ask)
    assert _fetch_in_turn(f"http://127.0.0.1:{server.port}/x", 5, pause=0.05) == [200] * 5
    assert server.accepted == 5
    server.sock.close()


def test_idle_connections_are_bounded_across_hosts() -> None:
    """A crawl over many hosts keeps at most max_connections idle connections in all."""
    from crawler.capture import resolver

    servers = [_CountingServer() for _ in range(5)]

    async def run() -> int:
        transport = resolver.transport({}, verify=True, max_connections=2)
        async with httpx.AsyncClient(transport=transport) as client:
            for server in servers:
                for _ in range(2):
                    response = await client.get(f"http://127.0.0.1:{server.port}/")
                    assert response.status_code == 200
            return transport._idle_count

    assert asyncio.run(run()) == 2
    assert [s.accepted for s in servers] == [1] * 5
    for server in servers:
        server.sock.close()


@pytest.fixture
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A loopback HTTPS server with a self-signed certificate (made by the openssl tool)."""
    import ssl
    import subprocess
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"secure")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_tls_sites_are_archived_with_their_peer_address(tls_server: int, no_leaks: None,
                                                         ) -> None:
    """A self-signed certificate is archived anyway by default (the evidence matters more
    than the certificate), and refused with verify_tls; keep-alive works over TLS too, and
    closing the client closes its TLS connections at once (``no_leaks``)."""
    url = f"https://127.0.0.1:{tls_server}/"

    async def run() -> list[FetchResult]:
        async with Fetcher(FetchSettings()) as f:
            results = [await f.fetch(url) for _ in range(3)]
            for result in results:
                result.close()
            return results

    results = asyncio.run(run())
    assert [(r.status, r.peer_ip) for r in results] == [(200, "127.0.0.1")] * 3
    refused = fetch(url, FetchSettings(verify_tls=True))
    assert refused.failure is FailureKind.TLS and not refused.status
