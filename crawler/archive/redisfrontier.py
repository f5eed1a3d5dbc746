"""A worker's view of a crawl queue shared in Redis: the frontier a distributed crawl's engine
uses, in place of the SQLite one, without the engine knowing the difference.

The engine calls the frontier synchronously, inside catalog transactions (see frontier.py);
Redis is across a network. So every step the engine takes here is put in an outbox, in
order, and a pump sends the outbox to Redis in one pipeline at a time. Only ``get`` waits
for Redis, as it waits for politeness in the SQLite frontier.

Order and durability, the two things that make "no URL lost, none twice" hold:

* Links found on a page are sent before the page's lease is completed, so when the shared
  queue says "nothing queued, nothing leased" the crawl is really over.
* A URL is reported done (its lease completed) only after the catalog commit holding its
  row, so a worker killed at any moment leaves no URL reported done that it did not record.
  Its record is in its WARC before that (the writer flushes each record before the row is
  entered); a record whose lease was not completed is fetched again by another worker after
  the lease runs out, and ``merge`` keeps the later lease's record.
* A worker that cannot reach Redis pauses (its leases are renewed when Redis answers
  again); nothing it has done is dropped: the outbox waits.

What stays local: the seen-cache (a link is sent to Redis once per worker, where the shared
seen-set decides), robots.txt rules (each worker reads robots.txt itself), the trap rule for
query variants (counted per worker), and the host circuit breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from crawler.archive.frontier import Frontier
from crawler.archive.sharedfrontier import Lease, SharedFrontier, text_of
from crawler.core.models import CrawlUrl

log = logging.getLogger("crawler.distributed")

FLUSH_EVERY = 0.05  # seconds between sends of the outbox while a worker is busy
HEARTBEAT_EVERY = 2.0  # seconds between updates of the worker's entry (status, stop)
RECLAIM_EVERY = 5.0  # seconds between looks for leases that ran out (any worker may)
MAX_WAIT = 0.25  # longest sleep of a worker task waiting for a host to be due
RECENT_VARIANTS = 20_000  # (path, query shape) answers of the trap rule kept here
DRAIN_TIMEOUT = 600.0  # seconds a finishing worker keeps trying to deliver its outbox

Op = Callable[[Any], Coroutine[Any, Any, Any]]  # one step, queued on a pipeline


class DistributedFrontier(Frontier):
    """Leases URLs from a shared queue in Redis; the local SQLite tables keep only what this
    worker has seen and the per-worker state (robots, query variants)."""

    def __init__(self, db: sqlite3.Connection, crawl_pk: int, shared: SharedFrontier,
                 worker: str, *, commits: Callable[[], int], info: dict[str, str],
                 per_host: int, delay: float,
                 transaction: Callable[[], AbstractContextManager[object]] | None = None,
                 write_failure: Callable[[sqlite3.Error], Exception] | None = None) -> None:
        super().__init__(db, crawl_pk, per_host=per_host, delay=delay,
                         transaction=transaction, write_failure=write_failure)
        self.shared = shared
        self.worker = worker
        self.info = info  # where this worker writes (shown by status, used by merge)
        self._commits = commits
        self._adds: list[CrawlUrl] = []  # found links not yet in the outbox
        self._outbox: list[tuple[str, Op]] = []  # steps ready to send, in order
        self._after_commit: list[tuple[int, str, Op]] = []  # wait for the catalog commit
        self._leases: dict[str, Lease] = {}  # key -> lease held by this worker
        self._finished: dict[str, bool] = {}  # key -> failed, since ``finish``
        self._retried: dict[str, CrawlUrl] = {}  # key -> its next attempt, since ``retry``
        self._variants: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._send_lock = asyncio.Lock()
        self._pump: asyncio.Task[None] | None = None
        self._outage_since: float | None = None
        self.stopped_by: str | None = None  # the reason of a stop asked for all workers
        self.on_stop: Callable[[], None] = self.close  # the engine stops gracefully
        self.state_lost = False  # Redis lost the crawl: nothing more can be reported
        self.completed = 0  # URLs this worker reported done
        self.superseded = 0  # results whose lease had run out (another worker fetched them)
        self.undelivered = 0  # steps not delivered when the worker gave up at the end

    # -- what the engine calls (synchronous) --------------------------------------------------

    def add(self, item: CrawlUrl, *, deferred: bool = False) -> bool:
        """Send ``item`` to the shared queue unless this worker sent it before; the shared
        seen-set decides whether it is new to the crawl. (``deferred`` is never asked for:
        ``--max-pages`` is refused with ``--redis``.)"""
        if self.seen(item.key):
            return False
        self._remember(item.key)
        self._adds.append(item)
        return True

    def seen(self, key: str) -> bool:
        """Return True if this worker has sent or leased the key (recently: a bounded
        cache); the shared seen-set answers for the whole crawl."""
        if key in self._recent:
            self._recent.move_to_end(key)
            return True
        return False

    def finish(self, item: CrawlUrl, *, failed: bool = False) -> None:
        """Record that ``item`` is done; its lease is completed after the commit."""
        self._finished[item.key] = failed

    def retry(self, item: CrawlUrl) -> None:
        """Queue the next attempt of ``item`` (for any worker) after the commit."""
        self._retried[item.key] = dataclasses.replace(item, attempt=item.attempt + 1, lease="")

    async def starting(self, host: str) -> None:
        """Wait until the shared queue lets a request to ``host`` start: its delay holds
        between the moments requests start, whichever worker sends them."""
        while True:
            try:
                wait = await self.shared.start(host)
            except RedisError as exc:
                await self._outage(exc)
                continue
            self._outage_over()
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    def release_host(self, item: CrawlUrl) -> None:
        """Free the host's request slot in the shared queue (the response is read)."""
        lease = self._leases.get(item.key)
        if lease is not None:
            self._send(lambda pipe: self.shared.release(lease, pipe))

    def done(self, item: CrawlUrl, *, slot_released: bool = False) -> None:
        """End this worker's handling of ``item``: complete its lease, or requeue it (a
        retry, or a URL left unfinished by an error) once the catalog has committed."""
        if not slot_released:
            self.release_host(item)
        lease = self._leases.pop(item.key, None)
        self._in_flight -= 1
        if lease is None:
            return
        if item.key in self._finished:  # (links found go first: see ``_ready``)
            failed = self._finished.pop(item.key)
            self._after(self._completing(lease, failed), "complete")
        elif item.key in self._retried:
            retried = self._retried.pop(item.key)
            self._after(lambda pipe: self.shared.requeue(lease, retried, counter="retried",
                                                         client=pipe))
        else:  # an internal error or a failed write: another worker (or this) tries again
            self._send(self._giving_back(lease))

    def _giving_back(self, lease: Lease) -> Op:
        async def op(pipe: Any) -> None:
            await self.shared.requeue(lease, lease.item, counter="returned", client=pipe)
        return op

    def _completing(self, lease: Lease, failed: bool) -> Op:
        async def op(pipe: Any) -> None:
            await self.shared.complete(lease, failed=failed, client=pipe)
        return op

    def set_host_delay(self, host: str, delay: float) -> None:
        """Raise the delay between requests to ``host`` on every worker (Crawl-delay)."""
        super().set_host_delay(host, delay)
        self._send(lambda pipe: self.shared.set_host_delay(host, delay, pipe))

    def back_off(self, host: str, seconds: float) -> None:
        """Start no request to ``host`` for ``seconds``, on every worker."""
        super().back_off(host, seconds)
        self._send(lambda pipe: self.shared.back_off(host, seconds, pipe))

    def allow_variant(self, path: str, shape: str, limit: int) -> bool:
        """Decide the query-variant trap rule over all workers (the shared queue counts the
        shapes of each path); answers are remembered here, as they never change back."""
        known = self._variants.get((path, shape))
        if known is None:
            known = self._variants[(path, shape)] = self.shared.allow_variant(path, shape,
                                                                              limit)
            if len(self._variants) > RECENT_VARIANTS:
                self._variants.popitem(last=False)
        return known

    def forget(self) -> None:
        """Nothing to forget: the shared queue is the crawl's, not this worker's."""

    # -- the outbox ---------------------------------------------------------------------------

    def _flush_adds(self) -> None:
        if self._adds:
            batch, self._adds = self._adds, []
            self._outbox.append(("", lambda pipe: self.shared.add(batch, pipe)))

    def _send(self, op: Op, kind: str = "") -> None:
        """Queue ``op`` after the links found so far (they go first)."""
        self._flush_adds()
        self._outbox.append((kind, op))

    def _after(self, op: Op, kind: str = "") -> None:
        """Send ``op`` once the catalog commit that holds this URL's row is past."""
        if self.db.in_transaction:
            self._after_commit.append((self._commits(), kind, op))
        else:
            self._outbox.append((kind, op))

    def _ready(self) -> None:
        """Move the steps whose commit is past into the outbox, in order."""
        self._flush_adds()
        if not self._after_commit:
            return
        now = self._commits()
        done = 0
        for marker, kind, op in self._after_commit:
            if marker >= now and self.db.in_transaction:
                break
            self._outbox.append((kind, op))
            done += 1
        del self._after_commit[:done]

    @property
    def pending(self) -> int:
        """Return how many steps wait to be sent to Redis."""
        return len(self._outbox) + len(self._after_commit) + (1 if self._adds else 0)

    async def send(self) -> None:
        """Send the outbox to Redis in one pipeline; on failure the steps stay queued (every
        step is safe to send twice: adds are once per key, lease steps check the token)."""
        async with self._send_lock:
            self._ready()
            if not self._outbox:
                return
            ops = list(self._outbox)
            async with self.shared.client.pipeline(transaction=False) as pipe:
                for _kind, op in ops:
                    await op(pipe)
                results = await pipe.execute()
            del self._outbox[:len(ops)]
            # A completion refused: the lease had run out and the URL went to another
            # worker, whose record ``merge`` keeps (a later lease).
            done = [result for (kind, _op), result in zip(ops, results, strict=False)
                    if kind == "complete"]
            self.completed += sum(1 for result in done if result)
            self.superseded += sum(1 for result in done if not result)

    # -- leasing ------------------------------------------------------------------------------

    async def get(self) -> CrawlUrl | None:
        """Return the next URL leased to this worker; None when the whole crawl is over or
        this worker stops."""
        if self._pump is None:
            self._pump = asyncio.create_task(self._run_pump())
        while True:
            if self._closed:
                return None
            try:
                await self.send()
                found = await self.shared.take(self.worker)
                if not isinstance(found, Lease) and found < 0 and self._in_flight == 0 \
                        and self.pending == 0 and await self.shared.finished():
                    self._changed.set()
                    return None
            except RedisError as exc:
                await self._outage(exc)
                continue
            self._outage_over()
            if isinstance(found, Lease):
                self._leases[found.item.key] = found
                self._remember(found.item.key)
                self._in_flight += 1
                return dataclasses.replace(found.item, lease=found.token)
            wait = MAX_WAIT if found < 0 else min(max(found, 0.005), MAX_WAIT)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)

    async def _outage(self, exc: RedisError) -> None:
        """Say once that Redis cannot be reached, then wait and try again."""
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning("Redis does not answer (%s): this worker pauses and goes on when it "
                        "answers; nothing it has done is lost", exc)
        await asyncio.sleep(min(5.0, 0.5 + (time.monotonic() - self._outage_since) / 10))

    def _outage_over(self) -> None:
        if self._outage_since is not None:
            log.warning("Redis answers again after %.0f s: going on",
                        time.monotonic() - self._outage_since)
            self._outage_since = None

    async def _run_pump(self) -> None:
        """Send the outbox, renew held leases, reclaim expired ones, and keep this worker's
        entry (and see a stop asked for all workers), until closed."""
        last_beat = last_reclaim = last_renew = 0.0
        while True:
            now = time.monotonic()
            try:
                await self.send()
                if now - last_renew >= self.shared.lease_seconds / 4:
                    await self.shared.renew(list(self._leases.values()))
                    last_renew = now
                if now - last_reclaim >= RECLAIM_EVERY:
                    back = await self.shared.reclaim()
                    if back:
                        log.warning("%d URLs whose lease ran out (a worker killed or cut "
                                    "off) are queued again", back)
                    last_reclaim = now
                if now - last_beat >= HEARTBEAT_EVERY:
                    if not await self.shared.client.exists(self.shared.key("settings")):
                        self.state_lost = True
                        log.error("Redis no longer holds this crawl (restarted without "
                                  "persistence, or its keys deleted): this worker stops; what "
                                  "it fetched is in its folder, for `crawler merge --crawl`")
                        self.on_stop()
                        return
                    await self.beat("running")
                    stop = await self.shared.client.get(self.shared.key("stop"))
                    if stop is not None and not self._closed:
                        self.stopped_by = text_of(stop)
                        log.warning("a stop was asked for every worker (%s)", self.stopped_by)
                        self.on_stop()
                    last_beat = now
                self._outage_over()
            except RedisError as exc:
                await self._outage(exc)
                continue
            await asyncio.sleep(FLUSH_EVERY)

    async def beat(self, state: str) -> None:
        """Write this worker's entry: where it writes, its state and when last seen."""
        entry = {**self.info, "state": state, "pid": str(os.getpid()),
                 "host": socket.gethostname(), "in_flight": str(self._in_flight),
                 "completed": str(self.completed),
                 "seen": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        await self.shared.client.hset(self.shared.key("workers"), self.worker,
                                      json.dumps(entry))

    async def aclose(self, state: str) -> None:
        """Deliver what is left in the outbox (after the final commit), give back any lease
        still held, and record this worker's end. Waits out a Redis outage up to
        ``DRAIN_TIMEOUT``; what is still undelivered then is said, and is safe: those URLs'
        leases run out and other workers fetch them again."""
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        for lease in list(self._leases.values()):
            self._send(self._giving_back(lease))
        self._leases.clear()
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            try:
                await self.send()
                await self.beat(state)
                self._outage_over()
                return
            except RedisError as exc:
                if time.monotonic() > deadline:
                    self.undelivered = self.pending
                    log.error("Redis still does not answer (%s): %d steps of this worker "
                              "were not delivered; the URLs concerned are fetched again "
                              "once their leases run out", exc, self.undelivered)
                    return
                await self._outage(exc)
