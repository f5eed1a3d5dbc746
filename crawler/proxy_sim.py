"""A second vantage point on one machine: a forward HTTP proxy on loopback whose connections
to sites come from another loopback address (127.0.0.2).

The sample site can block one client address (``Takedown.local``), as an ISP blocks a page
for its customers; through this proxy the site sees another client and serves the page. Used
by the tests, the scoring benchmark and anyone trying ``--vantage`` without a real proxy.
Plain HTTP only (absolute-form GET requests); nothing here reaches beyond 127.0.0.0/8.
"""

from __future__ import annotations

import http.client
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


class VantageProxy:
    """Run the proxy on 127.0.0.1 (a free port) in a thread: ``with VantageProxy() as p:``
    and pass ``p.url`` to ``--vantage``."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.requests = []  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Return the proxy URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[str]:
        """Return the URLs fetched through the proxy so far."""
        return list(self._server.requests)  # type: ignore[attr-defined]

    def __enter__(self) -> VantageProxy:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
