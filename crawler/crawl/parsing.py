"""Link extraction in parser processes, with pages handed over in batches.

Handing one page at a time to a ``ProcessPoolExecutor`` costs the event loop, per page, a
pickled work item, a wake-up of the executor's manager thread and a pipe write each way:
about a tenth of the loop's time at zero latency, and the loop is what limits a crawl there.
So pages go in batches: a page that arrives while every parser is busy waits for the next
batch (at most ``MAX_BATCH`` pages), and a page that arrives while one is idle leaves at the
next turn of the loop, with the others of that turn. An idle parser is never kept waiting.

A batch that outlasts the time limit (a page that takes forever to parse) costs only that
page: the process is killed, a new one started, and the batch's pages are parsed again one by
one, each with its own limit. If no parser process can be had, pages are parsed in the
event loop: a parser failure costs speed, never the crawl.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

from crawler.capture import extract
from crawler.core.models import Extracted

log = logging.getLogger("crawler.crawl")

MAX_BATCH = 32  # pages per hand-over: enough to spread its cost, small enough to stay quick

Args = tuple[str, str, bytes, str | None, str | None]  # extract.extract's arguments


@dataclass(slots=True)
class _Job:
    args: Args
    future: asyncio.Future[Extracted] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())

    def resolve(self, found: Extracted) -> None:
        if not self.future.done():  # (its crawl worker may have been cancelled)
            self.future.set_result(found)


class ParsePool:
    """Parser processes fed in batches (``workers`` 0: parse in the event loop)."""

    def __init__(self, workers: int, timeout: float) -> None:
        self.workers = workers
        self.timeout = timeout  # seconds one page may take
        self.pool = self._new_pool()
        self._pending: list[_Job] = []
        self._busy = 0  # batches in the parser processes
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def _new_pool(self) -> ProcessPoolExecutor | None:
        if self.workers <= 0:
            return None
        return ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),
                                   initializer=extract.exit_with_parent,
                                   initargs=(os.getpid(),))

    async def extract(self, url: str, media: str, raw: bytes, content_type: str | None,
                      content_encoding: str | None) -> Extracted:
        """Return a page's links (``extract.extract``), parsed with the next batch."""
        args = (url, media, raw, content_type, content_encoding)
        if self.pool is None:
            return extract.extract_safely(*args)
        job = _Job(args)
        self._pending.append(job)
        self._kick()
        return await job.future

    def close(self) -> None:
        """Stop the parser processes (pages still waiting get no links)."""
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
        for job in self._pending:
            job.future.cancel()
        self._pending.clear()

    def _kick(self) -> None:
        """Send waiting pages at the next turn of the loop, if a parser is free."""
        if self._pending and self._busy < max(1, self.workers) and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._scheduled = False
        while self._pending and self._busy < max(1, self.workers):
            batch = self._pending[:MAX_BATCH]
            del self._pending[:MAX_BATCH]
            self._busy += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Job]) -> None:
        try:
            await self._parse(batch, attempts=2)
        finally:
            self._busy -= 1
            self._kick()

    async def _parse(self, batch: list[_Job], attempts: int) -> None:
        """Parse a batch in a parser process; on a timeout, each page again on its own."""
        pool = self.pool
        if pool is None or attempts <= 0:
            for job in batch:
                job.resolve(extract.extract_safely(*job.args))
            return
        loop = asyncio.get_running_loop()
        try:
            found = await asyncio.wait_for(loop.run_in_executor(
                pool, extract.extract_batch, [job.args for job in batch]), self.timeout)
        except TimeoutError:
            self._restart(pool)
            if len(batch) > 1:  # which page it was is not known: each alone, with its limit
                for job in batch:
                    await self._parse([job], attempts)
                return
            log.warning("parsing %s took over %g s: its links are not followed",
                        batch[0].args[0], self.timeout)
            batch[0].resolve(Extracted(capped=("parse-time",)))
            return
        except Exception:
            if pool is not self.pool:  # another batch's timeout replaced it: the new one
                await self._parse(batch, attempts - 1)
                return
            log.warning("parser process unavailable; parsing in the main process",
                        exc_info=True)
            self.pool = None
            await self._parse(batch, 0)
            return
        for job, links in zip(batch, found, strict=True):
            job.resolve(links)

    def _restart(self, pool: ProcessPoolExecutor) -> None:
        """Kill a pool's processes (one is stuck on a page) and start a fresh pool."""
        if pool is not self.pool:
            return
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._new_pool()
