"""httpcore's network streams on asyncio's own transports, without anyio in between.

httpcore reaches the network through a backend; its default goes through anyio, which wraps
every read and write in a cancel scope for the timeout and yields to the event loop once
more (a "checkpoint") on every write and every read of data already buffered. At zero
latency that layer was a tenth of the crawl's event-loop thread. Here a connection is an
``asyncio.Protocol`` with a byte buffer: a write is ``transport.write`` (waiting only when
the socket's send buffer is full), a read takes what the buffer holds and waits, with a
timer only while it must, for more. Errors are httpcore's, each raised from the OS or TLS
error underneath, which is what ``fetcher.classify`` and the resolver's negative cache read.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore

_HIGH_WATER = 256 * 1024  # bytes buffered unread before the socket is no longer read
_LOW_WATER = 64 * 1024  # ... and read again once the buffer is below this
HAPPY_EYEBALLS_DELAY = 0.25  # seconds before the next address is tried too (RFC 8305)


class _Connection(asyncio.Protocol):
    """What the loop delivers for one connection: bytes, end of stream, loss, flow control."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None  # why the connection was lost, if not EOF
        self.reading_paused = False
        self.writing_paused = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None  # let the transport close its side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        self._wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()

    def waiter(self) -> asyncio.Future[None]:
        """Return a future that is done at the next event (data, EOF, loss, drained)."""
        self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


async def _wait(future: asyncio.Future[None], timeout: float | None) -> None:
    """Wait for ``future``; raise TimeoutError after ``timeout`` seconds (None: no limit)."""
    if timeout is None:
        await future
        return
    timer = asyncio.get_running_loop().call_later(timeout, _expire, future)
    try:
        await future
    finally:
        timer.cancel()


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection, plain or TLS, as httpcore reads and writes it."""

    def __init__(self, transport: asyncio.Transport, connection: _Connection) -> None:
        self._transport = transport
        self._connection = connection

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        conn = self._connection
        while not conn.buffer and not conn.eof and not conn.lost:  # (or woken by a drain)
            try:
                await _wait(conn.waiter(), timeout)
            except TimeoutError as exc:
                raise httpcore.ReadTimeout(str(exc)) from exc
        if conn.buffer:
            data = bytes(conn.buffer[:max_bytes])
            del conn.buffer[:max_bytes]
            if conn.reading_paused and len(conn.buffer) < _LOW_WATER and not conn.lost:
                conn.reading_paused = False
                self._transport.resume_reading()
            return data
        if conn.error is not None:
            raise httpcore.ReadError(str(conn.error) or type(conn.error).__name__) \
                from conn.error
        return b""  # the end of the stream

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        conn = self._connection
        if conn.lost or self._transport.is_closing():
            error = conn.error or ConnectionResetError("the connection was closed")
            raise httpcore.WriteError(str(error)) from error
        self._transport.write(buffer)
        while conn.writing_paused and not conn.lost:
            try:
                await _wait(conn.waiter(), timeout)
            except TimeoutError as exc:
                raise httpcore.WriteTimeout(str(exc)) from exc
        if conn.lost and conn.error is not None:
            raise httpcore.WriteError(str(conn.error)) from conn.error

    async def aclose(self) -> None:
        # aborted, not closed: a TLS close() would first wait (up to 30 s) for the server
        # to answer its close_notify, holding the socket; httpcore's anyio backend does not
        # send one either, and nothing is left to send on a connection being let go
        await self._abort()

    async def _abort(self) -> None:
        """Drop the connection now; the loop closes the socket on its next turn: let it."""
        if not self._connection.lost:
            self._transport.abort()
            await asyncio.sleep(0)

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                upgraded = await loop.start_tls(self._transport, self._connection, ssl_context,
                                                server_hostname=server_hostname)
        except TimeoutError as exc:
            await self._abort()
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:  # ssl.SSLError (a certificate refused) is one too
            await self._abort()
            raise httpcore.ConnectError(str(exc)) from exc
        except asyncio.CancelledError:  # the fetch's total time ran out mid-handshake
            self._transport.abort()
            raise
        assert isinstance(upgraded, asyncio.Transport)
        self._connection.transport = upgraded
        return AsyncioStream(upgraded, self._connection)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":  # an idle connection the server closed, or said more on
            conn = self._connection
            return conn.eof or conn.lost or bool(conn.buffer)
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Opens ``AsyncioStream`` connections (Happy Eyeballs over the name's addresses)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, connection = await loop.create_connection(
                    _Connection, host, port,
                    local_addr=(local_address, 0) if local_address else None,
                    happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:  # gaierror, refused, unreachable, "Multiple exceptions: ..."
            raise httpcore.ConnectError(str(exc)) from exc
        assert isinstance(transport, asyncio.Transport)
        for option in socket_options or ():  # (asyncio sets TCP_NODELAY itself)
            transport.get_extra_info("socket").setsockopt(*option)
        return AsyncioStream(transport, connection)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("Unix sockets are not used by the crawler")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
