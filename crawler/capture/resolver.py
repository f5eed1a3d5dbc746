"""Name resolution for the fetcher: a fixed host table (``--resolve``) and a short memory of
names that did not resolve.

A site whose domain was taken away fails DNS for every one of its URLs, and a resolver under
load answers some of those lookups only after its 5-second timeout, so a crawl of such a site
crawled at one lookup timeout per URL. Like Heritrix's DNS cache, a name that failed is not
asked again for ``negative_ttl`` seconds: its URLs fail at once, each recorded with the
original error and when it happened. The first lookups of a name are made one at a time, so
concurrent requests to a dead name cost one lookup, not one each.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from crawler.capture.netstream import AsyncioBackend

NEGATIVE_TTL = 30.0
_Key = tuple[bytes, bytes, int]  # an origin: scheme, host, port
KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept (httpx's default)


class ResolvingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with a host table and a negative cache in front of DNS.

    With a table entry, TLS still uses the URL's host name (SNI and certificate), as with
    curl's --resolve.
    """

    def __init__(self, table: dict[str, str], negative_ttl: float = NEGATIVE_TTL) -> None:
        self._table = {host.lower(): ip for host, ip in table.items()}
        self._negative_ttl = negative_ttl
        self._backend = AsyncioBackend()
        self._failed: dict[str, tuple[float, int, str]] = {}  # name -> (when, errno, message)
        self._settled: set[str] = set()  # names that connected (or failed) at least once
        self._locks: dict[str, asyncio.Lock] = {}

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        name = host.lower()
        mapped = self._table.get(name)
        if mapped is not None or _is_address(name):
            return await self._backend.connect_tcp(mapped or host, port, timeout,
                                                   local_address, socket_options)
        if name in self._settled:
            return await self._connect(name, host, port, timeout, local_address,
                                       socket_options)
        async with self._locks.setdefault(name, asyncio.Lock()):
            return await self._connect(name, host, port, timeout, local_address,
                                       socket_options)

    async def _connect(self, name: str, host: str, port: int, timeout: float | None,
                       local_address: str | None, socket_options: Iterable[Any] | None,
                       ) -> httpcore.AsyncNetworkStream:
        failed = self._failed.get(name)
        if failed is not None and time.monotonic() - failed[0] < self._negative_ttl:
            age = time.monotonic() - failed[0]
            raise httpcore.ConnectError(
                f"{failed[2]} (lookup of {host} failed {age:.0f}s ago; not asked again yet)"
            ) from socket.gaierror(failed[1], failed[2])
        try:
            stream = await self._backend.connect_tcp(host, port, timeout, local_address,
                                                     socket_options)
        except httpcore.ConnectError as exc:
            cause = exc.__cause__
            if isinstance(cause, socket.gaierror):
                self._failed[name] = (time.monotonic(), cause.errno or 0, str(cause))
            self._settled.add(name)
            raise
        self._failed.pop(name, None)
        self._settled.add(name)
        return stream

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        return await self._backend.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def transport(table: dict[str, str], *, verify: bool, max_connections: int,
              ) -> ResolvingTransport:
    """Return an httpx transport whose connections go through a ResolvingBackend."""
    return ResolvingTransport(
        ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
        max_connections=max_connections, backend=ResolvingBackend(table))


class ResolvingTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface over HTTP/1.1 connections of our own keeping.

    httpx's own transport takes no network backend, so this one stands in for it, with the
    public APIs of httpx and httpcore: a request is sent on an ``httpcore.AsyncHTTPConnection``
    as httpcore's request, the answer comes back as an httpx response, and httpcore's errors
    as httpx's errors of the same name (which is what the fetcher classifies).

    It keeps its own idle connections per origin instead of httpcore's connection pool, which
    on every request and every response walks all its connections, asks each socket whether
    it was closed, and under load hands requests to connections that turn them away (3.8
    tries per request measured with 16 in flight): most of the client's CPU. Here a request
    takes the newest idle connection of its origin (checked once for a server-side close) or
    opens one, and gives it back when its response is closed. ``max_connections`` bounds the
    connections open at once; the crawl's per-host slots bound them per host.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext, max_connections: int,
                 backend: httpcore.AsyncNetworkBackend,
                 keepalive_expiry: float = KEEPALIVE_EXPIRY) -> None:
        self._ssl_context = ssl_context
        self._backend = backend
        self._keepalive_expiry = keepalive_expiry
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_connections
        # origin -> its idle connections, oldest first; origins least recently used first
        self._idle: dict[_Key, list[httpcore.AsyncHTTPConnection]] = {}
        self._idle_count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.raw_scheme, url.raw_host, url.port or
               (443 if url.raw_scheme == b"https" else 80))
        sent = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                             target=url.raw_path),
            headers=request.headers.raw, content=_Upload(request.stream),
            extensions=request.extensions)
        await self._slots.acquire()
        try:
            connection, answer = await self._send(key, sent)
        except BaseException:
            self._slots.release()
            raise
        return httpx.Response(
            status_code=answer.status, headers=answer.headers, extensions=answer.extensions,
            stream=_Body(answer.stream, functools.partial(self._give_back, key, connection)))

    async def _send(self, key: _Key, sent: httpcore.Request,
                    ) -> tuple[httpcore.AsyncHTTPConnection, httpcore.Response]:
        """Send on an idle connection of the origin, or a new one; a kept connection that
        the server closed in the meantime is replaced once, as httpcore's pool does."""
        for attempt in range(2):  # an idle connection first (if any), then a new one
            connection = (await self._take_idle(key) if attempt == 0 else None) or \
                httpcore.AsyncHTTPConnection(
                    origin=httpcore.Origin(*key), ssl_context=self._ssl_context,
                    keepalive_expiry=self._keepalive_expiry, http1=True, http2=False,
                    network_backend=self._backend)
            try:
                with _as_httpx_errors():
                    return connection, await connection.handle_async_request(sent)
            except httpcore.ConnectionNotAvailable:
                await connection.aclose()
            except BaseException:
                await connection.aclose()
                raise
        raise httpx.ConnectError("no connection could take the request")

    async def _take_idle(self, key: _Key) -> httpcore.AsyncHTTPConnection | None:
        """Return the newest idle connection of the origin still usable, closing others."""
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if connection.is_idle() and not connection.has_expired():
                return connection
            await connection.aclose()
        return None

    async def _give_back(self, key: _Key, connection: httpcore.AsyncHTTPConnection) -> None:
        """A response was closed: keep its connection for the next request if it can be,
        and at most ``max_connections`` idle ones overall (the least recently used origin's
        oldest go first)."""
        self._slots.release()
        if not connection.is_idle():
            await connection.aclose()
            return
        kept = self._idle.pop(key, [])
        kept.append(connection)
        self._idle[key] = kept  # now the most recently used origin
        self._idle_count += 1
        while self._idle_count > self._max_idle:
            oldest_origin = next(iter(self._idle))
            oldest = self._idle[oldest_origin]
            dropped = oldest.pop(0)
            if not oldest:
                del self._idle[oldest_origin]
            self._idle_count -= 1
            await dropped.aclose()

    async def aclose(self) -> None:
        idle, self._idle, self._idle_count = self._idle, {}, 0
        for connections in idle.values():
            for connection in connections:
                await connection.aclose()


class _Upload:
    """A request body as httpcore reads it (our GETs have none, but a body must not be lost)."""

    def __init__(self, stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self._stream, httpx.AsyncByteStream)
        async for part in self._stream:
            yield part


class _Body(httpx.AsyncByteStream):
    """A response body read from a connection, its errors said in httpx's words; closing it
    hands the connection back (``on_close``), once."""

    def __init__(self, stream: Any, on_close: Callable[[], Awaitable[None]]) -> None:
        self._stream = stream
        self._on_close: Callable[[], Awaitable[None]] | None = on_close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        try:
            with _as_httpx_errors():
                await self._stream.aclose()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                await on_close()


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    """Raise an httpcore error as the httpx error of the same (or nearest parent's) name."""
    try:
        yield
    except Exception as exc:
        if not type(exc).__module__.startswith("httpcore"):
            raise
        for kind in type(exc).__mro__:
            mapped = getattr(httpx, kind.__name__, None)
            if isinstance(mapped, type) and issubclass(mapped, httpx.TransportError):
                raise mapped(str(exc)) from exc
        raise
