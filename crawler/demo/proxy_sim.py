"""A second vantage point on one machine: a forward HTTP proxy on loopback whose connections
to sites come from another loopback address (127.0.0.2).

The sample site can block one client address (``Takedown.local``), as an ISP blocks a page
for its customers; through this proxy the site sees another client and serves the page. Used
by the tests, the scoring benchmark and anyone trying ``--vantage`` without a real proxy.
An HTTP proxy (absolute-form GET requests) or a SOCKS5 one (CONNECT, no authentication);
nothing here reaches beyond 127.0.0.0/8.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

OTHER_ADDRESS = "127.0.0.2"  # where the proxy's requests come from, as sites see it
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                         "te", "trailer", "transfer-encoding", "upgrade", "content-length"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        target = urlsplit(self.path)
        if target.scheme != "http" or not target.hostname or \
                not target.hostname.startswith("127."):
            self.send_error(403, "this proxy only reaches loopback sites")
            return
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        upstream = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30,
                                              source_address=(OTHER_ADDRESS, 0))
        try:
            path = target.path or "/"
            upstream.request("GET", path + (f"?{target.query}" if target.query else ""),
                             headers={k: v for k, v in self.headers.items()
                                      if k.lower() not in _HOP_BY_HOP})
            answer = upstream.getresponse()
            body = answer.read()
        except OSError as exc:
            self.send_error(502, f"upstream failed: {exc}")
            return
        finally:
            upstream.close()
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Via", "1.1 crawler-vantage-sim")
        self.end_headers()
        self.wfile.write(body)


class _Socks5(socketserver.BaseRequestHandler):
    """SOCKS5 (RFC 1928), no authentication, CONNECT only, to loopback addresses."""

    def handle(self) -> None:
        client = self.request
        head = _read(client, 2)
        _read(client, head[1])  # the methods offered: "no authentication" is taken
        client.sendall(b"\x05\x00")
        version, command, _, kind = _read(client, 4)
        if kind == 1:
            host = socket.inet_ntoa(_read(client, 4))
        elif kind == 3:
            host = _read(client, _read(client, 1)[0]).decode("ascii", "replace")
        else:
            client.sendall(b"\x05\x08\x00\x01" + bytes(6))  # address type not supported
            return
        port = int.from_bytes(_read(client, 2), "big")
        if version != 5 or command != 1 or not host.startswith("127."):
            client.sendall(b"\x05\x02\x00\x01" + bytes(6))  # not allowed
            return
        self.server.requests.append(f"{host}:{port}")  # type: ignore[attr-defined]
        try:
            upstream = socket.create_connection((host, port), timeout=30,
                                                source_address=(OTHER_ADDRESS, 0))
        except OSError:
            client.sendall(b"\x05\x05\x00\x01" + bytes(6))  # connection refused
            return
        client.sendall(b"\x05\x00\x00\x01" + socket.inet_aton(OTHER_ADDRESS) + bytes(2))
        with upstream:
            pump = threading.Thread(target=_relay, args=(upstream, client), daemon=True)
            pump.start()
            _relay(client, upstream)
            pump.join(30)


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the client closed the connection")
        data += chunk
    return data


def _relay(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side closes."""
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    requests: list[str]  # what was fetched through it


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[str]


class VantageProxy:
    """Run the proxy on 127.0.0.1 (a free port) in a thread: ``with VantageProxy() as p:``
    and pass ``p.url`` to ``--vantage``. ``kind="socks5"`` runs a SOCKS5 proxy instead."""

    def __init__(self, kind: str = "http") -> None:
        self.kind = kind
        server: _TCPServer | _HTTPServer
        if kind == "socks5":
            server = _TCPServer(("127.0.0.1", 0), _Socks5)
        else:
            server = _HTTPServer(("127.0.0.1", 0), _Handler)
        server.requests = []
        self._server = server
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Return the proxy URL."""
        return f"{self.kind}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        """Return what was fetched through the proxy so far (URLs; for SOCKS5, host:port)."""
        return list(self._server.requests)

    def __enter__(self) -> VantageProxy:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
