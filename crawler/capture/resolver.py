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
from collections.abc import Iterable
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
              ) -> httpx.AsyncHTTPTransport:
    """Return an httpx transport whose connections go through a ResolvingBackend.

    httpx has no public hook for the network backend, so the transport's connection pool is
    rebuilt with httpx's own settings plus the backend (httpx is pinned below 1.0).
    """
    made = httpx.AsyncHTTPTransport(verify=verify, trust_env=False)
    made._pool = httpcore.AsyncConnectionPool(
        ssl_context=made._pool._ssl_context, max_connections=max_connections,
        max_keepalive_connections=max_connections, keepalive_expiry=5.0,
        network_backend=ResolvingBackend(table))
    return made
