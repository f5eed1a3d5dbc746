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
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

NEGATIVE_TTL = 30.0


class ResolvingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with a host table and a negative cache in front of DNS.

    With a table entry, TLS still uses the URL's host name (SNI and certificate), as with
    curl's --resolve.
    """

    def __init__(self, table: dict[str, str], negative_ttl: float = NEGATIVE_TTL) -> None:
        self._table = {host.lower(): ip for host, ip in table.items()}
        self._negative_ttl = negative_ttl
        self._backend = httpcore.AnyIOBackend()
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
    return ResolvingTransport(httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
        max_connections=max_connections, max_keepalive_connections=max_connections,
        keepalive_expiry=5.0, network_backend=ResolvingBackend(table)))


class ResolvingTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface over an httpcore pool of our making.

    httpx's own transport takes no network backend, so this one stands in for it, with the
    public APIs of both libraries: a request is handed to the pool as httpcore's request, the
    answer comes back as an httpx response, and httpcore's errors as httpx's errors of the
    same name (which is what the fetcher classifies).
    """

    def __init__(self, pool: httpcore.AsyncConnectionPool) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        sent = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port,
                             target=url.raw_path),
            headers=request.headers.raw, content=_Upload(request.stream),
            extensions=request.extensions)
        with _as_httpx_errors():
            answer = await self._pool.handle_async_request(sent)
        return httpx.Response(status_code=answer.status, headers=answer.headers,
                              stream=_Body(answer.stream), extensions=answer.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()


class _Upload:
    """A request body as httpcore reads it (our GETs have none, but a body must not be lost)."""

    def __init__(self, stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self._stream, httpx.AsyncByteStream)
        async for part in self._stream:
            yield part


class _Body(httpx.AsyncByteStream):
    """A response body read from the pool, its errors said in httpx's words."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        with _as_httpx_errors():
            await self._stream.aclose()


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
