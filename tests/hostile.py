"""A hostile web server on 127.0.0.1 that misbehaves at the byte level, one way per path.

Real at-risk sites run old CMSs behind broken proxies, anti-bot walls and overloaded hosts;
a crawl must survive all of it in bounded time and record each response as what it was.
``http.server`` cannot send most of these (it validates and encodes what it writes), so this
server writes raw bytes on asyncio streams: every route is a coroutine given the request
head and the stream, free to send anything, stall, drip or reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from types import TracebackType

Route = Callable[[asyncio.StreamWriter, bytes], Awaitable[None]]


def response(status: int | bytes, body: bytes = b"", *headers: tuple[bytes, bytes],
             content_type: bytes | None = b"text/html; charset=utf-8",
             length: bool = True) -> bytes:
    """Return the bytes of a response (``Connection: close``, ``Content-Length`` unless
    ``length`` is False). ``status`` may be a whole raw status line."""
    line = status if isinstance(status, bytes) else f"HTTP/1.1 {status} X".encode()
    head = [line]
    if content_type is not None:
        head.append(b"Content-Type: " + content_type)
    if length:
        head.append(b"Content-Length: " + str(len(body)).encode())
    head.append(b"Connection: close")
    head.extend(name + b": " + value for name, value in headers)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def send(data: bytes) -> Route:
    """A route that sends ``data`` and closes."""
    async def route(writer: asyncio.StreamWriter, request: bytes) -> None:
        writer.write(data)
        await writer.drain()
    return route


def stall(seconds: float, first: bytes = b"") -> Route:
    """A route that sends ``first`` (perhaps nothing) and then says nothing for ``seconds``."""
    async def route(writer: asyncio.StreamWriter, request: bytes) -> None:
        if first:
            writer.write(first)
            await writer.drain()
        await asyncio.sleep(seconds)
    return route


def drip(data: bytes, every: float) -> Route:
    """A route that sends ``data`` one byte at a time, ``every`` seconds apart."""
    async def route(writer: asyncio.StreamWriter, request: bytes) -> None:
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(every)
    return route


def reset(first: bytes = b"") -> Route:
    """A route that sends ``first`` and then resets the connection (TCP RST)."""
    async def route(writer: asyncio.StreamWriter, request: bytes) -> None:
        if first:
            writer.write(first)
            await writer.drain()
            await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return route


class HostileServer:
    """Serves ``routes`` (path -> Route; unknown paths get a 404) from a thread."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[str, bytes]] = []  # (path, request head) as received
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        """Return the server's base URL, ending in '/'."""
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop)
        self._server = started.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            target = request.split(b"\r\n", 1)[0].split(b" ")
            path = target[1].decode("latin-1") if len(target) > 1 else "/"
            self.hits[path] += 1
            self.requests.append((path, request))
            route = self.routes.get(path) or send(response(404, b"<p>not here</p>"))
            await route(writer, request)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()
