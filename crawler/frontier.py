"""The crawl queue: each canonical URL once, per-host politeness slots, back-off and retries.

In memory for one-off crawls. ``get()`` hands out the next URL whose host has a free slot and
whose politeness delay has passed; ``done()`` releases the slot. The crawl is over when nothing
is queued and nothing is in flight (in-flight work may still discover URLs).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field

from crawler import urls
from crawler.models import CrawlUrl, UrlKind


@dataclass(slots=True)
class HostSlot:
    """Politeness state of one host (like scrapy's downloader Slot)."""

    pending: deque[CrawlUrl] = field(default_factory=deque)  # pages, FIFO (breadth first)
    urgent: deque[CrawlUrl] = field(default_factory=deque)  # requisites and retries first
    active: int = 0  # requests in flight to this host
    next_start: float = 0.0  # monotonic time before which no new request may start
    delay: float = 0.0  # seconds between request starts (max of --delay and Crawl-delay)

    def queued(self) -> int:
        """Return how many URLs wait for this host."""
        return len(self.pending) + len(self.urgent)


class Frontier:
    """URLs waiting to be fetched, scheduled politely per host."""

    def __init__(self, *, per_host: int, delay: float) -> None:
        self.per_host = per_host
        self.delay = delay
        self._seen: set[str] = set()
        self._hosts: dict[str, HostSlot] = {}
        self._in_flight = 0
        self._queued = 0
        self._changed = asyncio.Event()
        self._closed = False

    @property
    def queued(self) -> int:
        """Return the number of URLs waiting."""
        return self._queued

    @property
    def in_flight(self) -> int:
        """Return the number of URLs handed out and not yet done."""
        return self._in_flight

    def seen(self, key: str) -> bool:
        """Return True if a URL with this canonical key was already queued."""
        return key in self._seen

    def mark_seen(self, key: str) -> None:
        """Record a key as fetched outside the queue (robots.txt), so it is not queued."""
        self._seen.add(key)

    def add(self, item: CrawlUrl) -> bool:
        """Queue ``item`` unless its key was seen; return True if queued."""
        if item.key in self._seen or self._closed:
            return False
        self._seen.add(item.key)
        self._push(item, urgent=item.kind is UrlKind.REQUISITE)
        return True

    def _push(self, item: CrawlUrl, *, urgent: bool) -> None:
        """Put ``item`` on its host's queue and wake a waiting worker."""
        slot = self._slot(urls.host_of(item.url))
        (slot.urgent if urgent else slot.pending).append(item)
        self._queued += 1
        self._changed.set()

    def _slot(self, host: str) -> HostSlot:
        """Return the politeness slot of ``host``."""
        slot = self._hosts.get(host)
        if slot is None:
            slot = self._hosts[host] = HostSlot(delay=self.delay)
        return slot

    def set_host_delay(self, host: str, delay: float) -> None:
        """Raise the delay between requests to ``host`` (e.g. robots.txt Crawl-delay)."""
        slot = self._slot(host)
        slot.delay = max(slot.delay, delay)

    def back_off(self, host: str, seconds: float) -> None:
        """Start no request to ``host`` for ``seconds`` (Retry-After, 429/503)."""
        slot = self._slot(host)
        slot.next_start = max(slot.next_start, time.monotonic() + seconds)

    def retry(self, item: CrawlUrl) -> None:
        """Requeue a URL that is in flight for another attempt (it keeps its seen key)."""
        retried = CrawlUrl(url=item.url, key=item.key, kind=item.kind, depth=item.depth,
                           via=item.via, redirects=item.redirects, embeds=item.embeds,
                           attempt=item.attempt + 1)
        self._push(retried, urgent=True)

    def close(self) -> None:
        """Stop handing out URLs (graceful stop); waiting workers get None."""
        self._closed = True
        self._changed.set()

    def drain(self) -> list[CrawlUrl]:
        """Return and forget every queued URL (what a stopped crawl left undone)."""
        left: list[CrawlUrl] = []
        for slot in self._hosts.values():
            left.extend(slot.urgent)
            left.extend(slot.pending)
            slot.urgent.clear()
            slot.pending.clear()
        self._queued = 0
        return left

    async def get(self) -> CrawlUrl | None:
        """Return the next URL to fetch, waiting for politeness; None when the crawl is over."""
        while True:
            if self._closed:
                return None
            now = time.monotonic()
            wake_at: float | None = None
            for host, slot in self._hosts.items():
                if not slot.queued() or slot.active >= self.per_host:
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

    def release_host(self, item: CrawlUrl) -> None:
        """Free the host slot taken by ``item`` once its request is over.

        Called as soon as the response is read: politeness limits requests to a server, not
        our own writing and parsing, which would otherwise cap throughput per host.
        """
        slot = self._slot(urls.host_of(item.url))
        slot.active -= 1
        self._changed.set()

    def done(self, item: CrawlUrl, *, slot_released: bool = False) -> None:
        """Mark ``item`` finished (its links are queued); free its host slot if still held."""
        if not slot_released:
            self.release_host(item)
        self._in_flight -= 1
        self._changed.set()
