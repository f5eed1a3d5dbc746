"""The crawl queue, persistent in the catalog's SQLite file: each canonical URL once per crawl,
per-host politeness slots, back-off and retries, and resumable after a crash.

Every URL a crawl has seen is a row of the ``frontier`` table (queued, in flight, done or
failed), so memory does not grow with the number of URLs: only a bounded buffer of the next
URLs per host is held in memory. Rows handed to the buffer are marked in flight; on resume
they go back to queued. Callers group ``add``/``finish``/``retry`` with the capture they belong
to in one catalog transaction, and never await inside it.

``get()`` hands out the next URL whose host has a free slot and whose politeness delay has
passed; ``release_host()`` frees the slot when the request is over, ``done()`` when its links
are queued. The crawl is over when nothing is queued and nothing is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import IntEnum

from crawler.capture import urls
from crawler.core.models import CrawlUrl, UrlKind

BUFFER_PER_HOST = 256  # URLs of one host held in memory; the rest wait in SQLite
RECENT_KEYS = 20_000  # recently seen keys answered without a query (about 2 MB)


class UrlState(IntEnum):
    """State of a frontier row."""

    QUEUED = 0  # waiting in SQLite
    IN_FLIGHT = 1  # in a host buffer or being fetched (reset to QUEUED on resume)
    DONE = 2  # captured (any HTTP status), or skipped on purpose (robots, scope)
    FAILED = 3  # no response after all retries
    DEFERRED = 4  # found past --max-pages: not fetched by this crawl, continued by the next


@dataclass(slots=True)
class HostSlot:
    """Politeness state of one host (like scrapy's downloader Slot)."""

    pending: deque[CrawlUrl] = field(default_factory=deque)  # pages, FIFO (breadth first)
    urgent: deque[CrawlUrl] = field(default_factory=deque)  # requisites and retries first
    in_db: int = 0  # queued rows not yet loaded into the buffers
    active: int = 0  # requests in flight to this host
    next_start: float = 0.0  # monotonic time before which no new request may start
    delay: float = 0.0  # seconds between request starts (max of --delay and Crawl-delay)
    floor: float = 0.0  # what an adaptive delay may not go below (robots.txt Crawl-delay)

    def buffered(self) -> int:
        """Return how many URLs of this host are in memory."""
        return len(self.pending) + len(self.urgent)


@dataclass(frozen=True, slots=True)
class Adaptive:
    """Bounds of an adaptive per-host delay (``--adaptive-delay``)."""

    min_delay: float
    max_delay: float


_COLUMNS = "key, url, host, kind, depth, via, redirects, embeds, attempt"


class Frontier:
    """URLs of one crawl, scheduled politely per host, stored in the catalog database."""

    def __init__(self, db: sqlite3.Connection, crawl_pk: int, *, per_host: int, delay: float,
                 adaptive: Adaptive | None = None, buffer_per_host: int = BUFFER_PER_HOST,
                 transaction: Callable[[], AbstractContextManager[object]] | None = None,
                 write_failure: Callable[[sqlite3.Error], Exception] | None = None,
                 ) -> None:
        self.db = db
        # Every write goes through the catalog's transactions (its turn among writers, its
        # batch); a bare connection (unit tests) gets one transaction per group.
        self._write = transaction or (lambda: _autocommit_batch(db))
        self._write_failure: Callable[[sqlite3.Error], Exception] = write_failure or (
            lambda exc: exc)
        self.crawl = crawl_pk
        self.per_host = per_host
        self.delay = delay
        self.adaptive = adaptive
        self.buffer_per_host = buffer_per_host
        self._hosts: dict[str, HostSlot] = {}
        self._in_flight = 0
        self._queued = 0
        self._changed = asyncio.Event()
        self._closed = False
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._load()

    def _load(self) -> None:
        """Pick up the state a previous session left (resume), or nothing for a new crawl."""
        self._exec("UPDATE frontier SET state=? WHERE crawl=? AND state=?",
                   (UrlState.QUEUED, self.crawl, UrlState.IN_FLIGHT))
        row = self.db.execute("SELECT coalesce(max(seq), 0) FROM frontier WHERE crawl=?",
                              (self.crawl,)).fetchone()
        self._seq = int(row[0])
        for host, count in self.db.execute(
                "SELECT host, count(*) FROM frontier WHERE crawl=? AND state=? GROUP BY host",
                (self.crawl, UrlState.QUEUED)):
            self._slot(host).in_db = count
            self._queued += count
        for host, delay in self.db.execute("SELECT host, delay FROM hosts WHERE crawl=?",
                                           (self.crawl,)):
            slot = self._slot(host)
            slot.delay, slot.floor = max(self.delay, delay), delay

    def _exec(self, sql: str, args: tuple[object, ...]) -> sqlite3.Cursor:
        """Run one write statement inside a transaction (the caller's, or its own).

        Inside an open transaction the statement runs as it is: SQLite undoes a failed
        statement by itself, and a failure reaching the caller's group rolls that back. A
        savepoint of its own would cost two more statements per call (two calls per URL).
        """
        if self.db.in_transaction:
            try:
                return self.db.execute(sql, args)
            except sqlite3.OperationalError as exc:  # e.g. disk full: said as the catalog says it
                raise self._write_failure(exc) from exc
        with self._write():
            return self.db.execute(sql, args)

    @property
    def queued(self) -> int:
        """Return the number of URLs waiting."""
        return self._queued

    @property
    def in_flight(self) -> int:
        """Return the number of URLs handed out and not yet done."""
        return self._in_flight

    def seen(self, key: str) -> bool:
        """Return True if a URL with this canonical key is already in the crawl.

        Recently seen keys are answered from a bounded in-memory cache: most links on a page
        (navigation, style sheets, logos) were seen moments ago.
        """
        if key in self._recent:
            self._recent.move_to_end(key)
            return True
        found = self.db.execute("SELECT 1 FROM frontier WHERE crawl=? AND key=?",
                                (self.crawl, key)).fetchone() is not None
        if found:
            self._remember(key)
        return found

    def _remember(self, key: str) -> None:
        """Add a key to the bounded cache of recently seen keys."""
        self._recent[key] = None
        if len(self._recent) > RECENT_KEYS:
            self._recent.popitem(last=False)

    def mark_seen(self, url: str, key: str, kind: UrlKind) -> bool:
        """Record a URL fetched outside the queue (robots.txt) as done; False if known."""
        self._seq += 1
        cur = self._exec(
            f"INSERT OR IGNORE INTO frontier (crawl, {_COLUMNS}, state, priority, seq) "
            "VALUES (?, ?, ?, ?, ?, 0, NULL, 0, 0, 0, ?, 0, ?)",
            (self.crawl, key, url, urls.host_of(url), kind.value, UrlState.DONE, self._seq))
        self._remember(key)
        return cur.rowcount == 1

    def add(self, item: CrawlUrl, *, deferred: bool = False) -> bool:
        """Queue ``item`` unless its key was seen in this crawl; return True if added.

        A closed frontier still accepts URLs (they wait in SQLite for a resume). A
        ``deferred`` URL is only recorded: this crawl never hands it out, the next run of
        the target continues it.
        """
        if deferred:
            self._seq += 1
            cur = self._exec(
                f"INSERT OR IGNORE INTO frontier (crawl, {_COLUMNS}, state, priority, seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.crawl, item.key, item.url, urls.host_of(item.url), item.kind.value,
                 item.depth, item.via, item.redirects, item.embeds, item.attempt,
                 UrlState.DEFERRED, 1, self._seq))
            self._remember(item.key)
            return cur.rowcount == 1
        host = urls.host_of(item.url)
        slot = self._slot(host)
        urgent = item.kind is UrlKind.REQUISITE
        in_memory = slot.in_db == 0 and slot.buffered() < self.buffer_per_host
        self._seq += 1
        cur = self._exec(
            f"INSERT OR IGNORE INTO frontier (crawl, {_COLUMNS}, state, priority, seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.crawl, item.key, item.url, host, item.kind.value, item.depth, item.via,
             item.redirects, item.embeds, item.attempt,
             UrlState.IN_FLIGHT if in_memory else UrlState.QUEUED, 0 if urgent else 1,
             self._seq))
        self._remember(item.key)
        if cur.rowcount != 1:
            return False
        if in_memory:
            (slot.urgent if urgent else slot.pending).append(item)
        else:
            slot.in_db += 1
        self._queued += 1
        self._changed.set()
        return True

    def item(self, key: str) -> CrawlUrl | None:
        """Return the frontier entry of a key (to enter a recovered record as its URL)."""
        row = self.db.execute(f"SELECT {_COLUMNS} FROM frontier WHERE crawl=? AND key=?",
                              (self.crawl, key)).fetchone()
        if row is None:
            return None
        key, url, _host, kind, depth, via, redirects, embeds, attempt = row
        return CrawlUrl(url=url, key=key, kind=UrlKind(kind), depth=depth, via=via,
                        redirects=redirects, embeds=embeds, attempt=attempt)

    def finish(self, item: CrawlUrl, *, failed: bool = False) -> None:
        """Record that ``item`` needs no more fetching (in the transaction that enters its
        capture), writing its row again if it is gone.

        A row can be gone while its URL is being fetched: a batch the catalog could not
        commit (a full disk) was rolled back whole, with the rows of the links its pages
        found, which were already handed out. Their captures enter the next batch; without
        a row saying they are done, the resume, entering the lost pages again from the WARCs
        (recovery.py), would find those links again and fetch them a second time.
        """
        state = UrlState.FAILED if failed else UrlState.DONE
        cur = self._exec("UPDATE frontier SET state=? WHERE crawl=? AND key=?",
                         (state, self.crawl, item.key))
        if cur.rowcount:
            return
        self._seq += 1
        self._exec(
            f"INSERT INTO frontier (crawl, {_COLUMNS}, state, priority, seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.crawl, item.key, item.url, urls.host_of(item.url), item.kind.value,
             item.depth, item.via, item.redirects, item.embeds, item.attempt, state,
             0 if item.kind is UrlKind.REQUISITE else 1, self._seq))
        self._remember(item.key)

    def finish_unfetched(self, item: CrawlUrl, *, failed: bool = False) -> None:
        """Finish a URL that is queued but must not be fetched (its record was recovered)."""
        self.finish(item, failed=failed)
        slot = self._slot(urls.host_of(item.url))
        for buffer in (slot.urgent, slot.pending):
            for queued in buffer:
                if queued.key == item.key:
                    buffer.remove(queued)
                    self._queued -= 1
                    return

    def retry(self, item: CrawlUrl) -> None:
        """Queue an in-flight URL again for another attempt, ahead of new pages."""
        retried = CrawlUrl(url=item.url, key=item.key, kind=item.kind, depth=item.depth,
                           via=item.via, redirects=item.redirects, embeds=item.embeds,
                           attempt=item.attempt + 1)
        self._exec("UPDATE frontier SET attempt=?, priority=0 WHERE crawl=? AND key=?",
                   (retried.attempt, self.crawl, item.key))
        self._slot(urls.host_of(item.url)).urgent.append(retried)
        self._queued += 1
        self._changed.set()

    def _slot(self, host: str) -> HostSlot:
        """Return the politeness slot of ``host``."""
        slot = self._hosts.get(host)
        if slot is None:
            slot = self._hosts[host] = HostSlot(delay=self.delay)
        return slot

    def set_host_delay(self, host: str, delay: float) -> None:
        """Raise the delay between requests to ``host`` (robots.txt Crawl-delay), durably."""
        slot = self._slot(host)
        slot.delay, slot.floor = max(slot.delay, delay), max(slot.floor, delay)
        self._exec("INSERT INTO hosts (crawl, host, delay) VALUES (?, ?, ?) "
                   "ON CONFLICT (crawl, host) DO UPDATE SET delay=excluded.delay",
                   (self.crawl, host, slot.delay))

    def host_delay(self, host: str) -> float:
        """Return the seconds now kept between request starts to ``host``."""
        return self._slot(host).delay

    def observe(self, host: str, seconds: float, *, trouble: bool, may_lower: bool) -> None:
        """Adapt ``host``'s delay to how it answered (adaptive politeness only).

        The delay aims at the response time divided by the requests allowed in flight to the
        host, the pace at which the server keeps that many busy: it rises to that at once and
        falls halfway toward it per answer, as Scrapy's AutoThrottle does. Trouble (5xx, 429,
        a timeout, a reset, a failed connection) doubles it. Only full answers (2xx, 304) may
        lower it: error pages and redirects are small and quick and say little about the
        server's load.
        Bounds: the adaptive minimum and maximum, and robots.txt Crawl-delay as a floor.
        """
        rules = self.adaptive
        if rules is None:
            return
        slot = self._slot(host)
        target = seconds / self.per_host
        if trouble:
            wanted = max(slot.delay * 2, rules.min_delay)
        elif target >= slot.delay:
            wanted = target
        elif may_lower:
            wanted = (slot.delay + target) / 2
        else:
            return
        slot.delay = max(min(wanted, rules.max_delay), rules.min_delay, slot.floor)

    def back_off(self, host: str, seconds: float) -> None:
        """Start no request to ``host`` for ``seconds`` (Retry-After, 429/503)."""
        slot = self._slot(host)
        slot.next_start = max(slot.next_start, time.monotonic() + seconds)

    def close(self) -> None:
        """Stop handing out URLs (graceful stop); waiting workers get None."""
        self._closed = True
        self._changed.set()

    def _refill(self, host: str, slot: HostSlot) -> None:
        """Move the next queued rows of ``host`` from SQLite into its buffers."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS}, priority FROM frontier WHERE crawl=? AND host=? AND state=? "
            "ORDER BY priority, seq LIMIT ?",
            (self.crawl, host, UrlState.QUEUED, self.buffer_per_host)).fetchall()
        if len(rows) < self.buffer_per_host:
            # Everything left is loaded now. Rows finished while still queued (records
            # entered by recovery) were counted but will never be handed out: drop them.
            self._queued -= slot.in_db - len(rows)
            slot.in_db = len(rows)
        if not rows:
            return
        with self._write():
            self.db.executemany(
                "UPDATE frontier SET state=? WHERE crawl=? AND key=?",
                [(UrlState.IN_FLIGHT, self.crawl, row[0]) for row in rows])
        for key, url, _host, kind, depth, via, redirects, embeds, attempt, priority in rows:
            item = CrawlUrl(url=url, key=key, kind=UrlKind(kind), depth=depth, via=via,
                            redirects=redirects, embeds=embeds, attempt=attempt)
            (slot.urgent if priority == 0 else slot.pending).append(item)
        slot.in_db = max(0, slot.in_db - len(rows))

    async def get(self) -> CrawlUrl | None:
        """Return the next URL to fetch, waiting for politeness; None when the crawl is over."""
        while True:
            if self._closed:
                return None
            now = time.monotonic()
            wake_at: float | None = None
            for host, slot in self._hosts.items():
                if slot.active >= self.per_host:
                    continue
                if not slot.buffered():
                    if not slot.in_db:
                        continue
                    self._refill(host, slot)
                    if not slot.buffered():
                        continue
                if slot.next_start > now:
                    wake_at = slot.next_start if wake_at is None else min(wake_at, slot.next_start)
                    continue
                item = slot.urgent.popleft() if slot.urgent else slot.pending.popleft()
                slot.active += 1
                slot.next_start = now + slot.delay
                self._queued -= 1
                self._in_flight += 1
                # Round robin: move this host to the end so others get their turn.
                del self._hosts[host]
                self._hosts[host] = slot
                return item
            if self._queued == 0 and self._in_flight == 0:
                self._changed.set()  # let every other waiting worker see the end too
                return None
            self._changed.clear()
            timeout = None if wake_at is None else max(0.0, wake_at - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def starting(self, host: str) -> None:
        """Wait, if need be, until a request to ``host`` may start now (here: nothing to
        wait for, ``get`` already kept the host's delay; a shared queue keeps it across
        workers at the moment requests start)."""

    def release_host(self, item: CrawlUrl) -> None:
        """Free the host slot taken by ``item`` once its request is over.

        Called as soon as the response is read: politeness limits requests to a server, not
        our own writing and parsing, which would otherwise cap throughput per host.
        """
        slot = self._slot(urls.host_of(item.url))
        slot.active -= 1
        self._changed.set()

    def done(self, item: CrawlUrl, *, slot_released: bool = False) -> None:
        """Mark ``item`` handled in memory; free its host slot if still held."""
        if not slot_released:
            self.release_host(item)
        self._in_flight -= 1
        self._changed.set()

    def allow_variant(self, path: str, shape: str, limit: int) -> bool:
        """Return True if ``shape`` is a known query shape of ``path``, or one more fits
        under ``limit`` (then it is recorded); durable, so a resumed crawl counts on."""
        known = self.db.execute("SELECT 1 FROM query_variants WHERE crawl=? AND path=?",
                                (self.crawl, path + "\x00" + shape)).fetchone()
        if known is not None:
            return True
        row = self.db.execute("SELECT variants FROM query_variants WHERE crawl=? AND path=?",
                              (self.crawl, path)).fetchone()
        count = row[0] if row else 0
        if count >= limit:
            return False
        self._exec("INSERT INTO query_variants (crawl, path, variants) VALUES (?, ?, 1) "
                   "ON CONFLICT (crawl, path) DO UPDATE SET variants=variants+1",
                   (self.crawl, path))
        self._exec("INSERT OR IGNORE INTO query_variants (crawl, path, variants) "
                   "VALUES (?, ?, 0)", (self.crawl, path + "\x00" + shape))
        return True

    def save_robots(self, host: str, status: int, body: bytes | None) -> None:
        """Keep a host's robots.txt answer (status 0: unreachable) for resumed sessions."""
        self._exec(
            "INSERT INTO hosts (crawl, host, robots_status, robots_body) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (crawl, host) DO UPDATE SET robots_status=excluded.robots_status, "
            "robots_body=excluded.robots_body", (self.crawl, host, status, body))

    def saved_robots(self) -> dict[str, tuple[int, bytes | None]]:
        """Return the robots.txt answers saved by earlier sessions of this crawl."""
        return {host: (status, body) for host, status, body in self.db.execute(
            "SELECT host, robots_status, robots_body FROM hosts "
            "WHERE crawl=? AND robots_status IS NOT NULL", (self.crawl,))}

    def seed_urls(self) -> list[str]:
        """Return every URL queued as a seed (redirected seeds included), for scope."""
        return [row[0] for row in self.db.execute(
            "SELECT url FROM frontier WHERE crawl=? AND kind=?", (self.crawl, UrlKind.SEED.value))]

    def deferred(self) -> int:
        """Return how many URLs this crawl deferred to the next run."""
        row = self.db.execute("SELECT count(*) FROM frontier WHERE crawl=? AND state=?",
                              (self.crawl, UrlState.DEFERRED)).fetchone()
        return int(row[0])

    def forget(self) -> None:
        """Delete this crawl's frontier rows (when the crawl is complete)."""
        with self._write():
            self.db.execute("DELETE FROM frontier WHERE crawl=?", (self.crawl,))
            self.db.execute("DELETE FROM query_variants WHERE crawl=?", (self.crawl,))


class _autocommit_batch:
    """Group statements in one transaction unless the caller already opened one."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._own = False

    def __enter__(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._own = True

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._own:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
