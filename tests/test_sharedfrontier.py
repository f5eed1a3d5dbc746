"""The queue distributed crawling stands on (archive/sharedfrontier.py), against a real
redis-server from Debian's packages, started here on 127.0.0.1 with append-only persistence:
once per URL, per-host politeness across workers, leases that run out and come back, a token
that tells a worker its lease was lost, and a Redis killed and restarted mid-queue."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
from conftest import RedisServer

from crawler.archive.sharedfrontier import SharedFrontier
from crawler.capture import urls
from crawler.core.models import CrawlUrl, UrlKind


@asynccontextmanager
async def frontier(server: RedisServer, **options: float) -> AsyncIterator[SharedFrontier]:
    client = redis.Redis(port=server.port)
    try:
        yield SharedFrontier(client, "c1", **options)  # type: ignore[arg-type]
    finally:
        await client.aclose()


def item(url: str, kind: UrlKind = UrlKind.PAGE) -> CrawlUrl:
    return CrawlUrl(url=url, key=urls.canonical_key(url), kind=kind, depth=1)


def test_each_url_once_and_requisites_first(redis_server: RedisServer) -> None:
    async def run() -> None:
        async with frontier(redis_server, delay=0.0) as one, \
                frontier(redis_server, delay=0.0) as two:
            assert await one.add([item("http://a.test/1"), item("http://a.test/2")]) == 2
            # another worker finds the same links: nothing new
            assert await two.add([item("http://a.test/1"), item("http://A.test/2")]) == 0
            assert await two.add([item("http://a.test/logo.png", UrlKind.REQUISITE)]) == 1
            got = []
            while (lease := await one.lease("w1")) is not None:
                got.append(lease.item.url)
                assert await one.complete(lease)
            assert got == ["http://a.test/logo.png", "http://a.test/1", "http://a.test/2"]
            counts = await two.counts()
            assert counts["seen"] == counts["completed"] == 3 and counts["queued"] == 0
            assert await two.finished()

    asyncio.run(run())


def test_politeness_holds_across_workers(redis_server: RedisServer) -> None:
    """Two workers leasing as fast as they can from one host (two requests in flight
    allowed): request starts 0.3 s apart, while another host is served meanwhile."""
    async def run() -> list[tuple[float, str]]:
        async with frontier(redis_server, delay=0.3, per_host=2) as one, \
                frontier(redis_server, delay=0.3, per_host=2) as two:
            await one.add([item(f"http://slow.test/{n}") for n in range(4)])
            await one.add([item(f"http://other.test/{n}") for n in range(4)])
            starts: list[tuple[float, str]] = []

            async def worker(f: SharedFrontier, name: str) -> None:
                while not await f.finished():
                    lease = await f.lease(name)
                    if lease is None:
                        await asyncio.sleep(0.01)
                        continue
                    host = urls.host_of(lease.item.url)
                    while (wait := await f.start(host)) > 0:  # the request starts here
                        await asyncio.sleep(wait)
                    starts.append((time.monotonic(), host))
                    assert await f.complete(lease)

            await asyncio.gather(worker(one, "w1"), worker(two, "w2"))
            return starts

    starts = asyncio.run(run())
    slow = [t for t, host in starts if host == "slow.test"]
    assert len(slow) == 4
    gaps = [b - a for a, b in itertools.pairwise(slow)]
    assert min(gaps) >= 0.28, gaps
    other = [t for t, host in starts if host == "other.test"]
    assert other[0] < slow[1]  # the other host did not wait for the slow one


def test_a_lost_lease_comes_back_and_its_holder_is_told(redis_server: RedisServer) -> None:
    async def run() -> None:
        async with frontier(redis_server, delay=0.0, lease_seconds=0.3) as one, \
                frontier(redis_server, delay=0.0, lease_seconds=0.3) as two:
            await one.add([item("http://a.test/1")])
            dead = await one.lease("killed-worker")  # never completes: the worker died
            assert dead is not None and await two.lease("w2") is None
            assert await two.reclaim() == 0  # not yet expired
            await asyncio.sleep(0.4)
            assert await two.reclaim() == 1
            again = await two.lease("w2")
            assert again is not None and again.item == dead.item
            assert not await one.complete(dead)  # too late: w2 holds it, w1's result is not
            assert await two.complete(again)
            counts = await two.counts()
            assert counts["completed"] == 1 and counts["reclaimed"] == 1
            assert await two.finished()

    asyncio.run(run())


def test_per_host_concurrency_across_workers(redis_server: RedisServer) -> None:
    async def run() -> None:
        async with frontier(redis_server, delay=0.0, per_host=2) as one:
            await one.add([item(f"http://a.test/{n}") for n in range(3)])
            first, second = await one.lease("w1"), await one.lease("w2")
            assert first is not None and second is not None
            assert await one.lease("w3") is None  # two of a.test in flight already
            assert await one.complete(first)
            assert await one.lease("w3") is not None

    asyncio.run(run())


def test_the_queue_survives_redis_killed_and_restarted(redis_server: RedisServer) -> None:
    async def before() -> str:
        async with frontier(redis_server, delay=0.0, per_host=2, lease_seconds=0.5) as f:
            await f.add([item(f"http://a.test/{n}") for n in range(5)])
            lease = await f.lease("w1")
            assert lease is not None
            done = await f.lease("w1")
            assert done is not None and await f.complete(done)
            return lease.item.url

    leased = asyncio.run(before())
    redis_server.kill()  # SIGKILL: only what the append-only file holds survives
    redis_server.start()

    async def after() -> list[str]:
        async with frontier(redis_server, delay=0.0, lease_seconds=0.5) as f:
            counts = await f.counts()
            assert counts["seen"] == 5 and counts["completed"] == 1 and counts["leased"] == 1
            assert await f.add([item("http://a.test/3")]) == 0  # still seen
            await asyncio.sleep(0.6)
            assert await f.reclaim() == 1  # the lease held before the restart ran out
            got = []
            while (lease := await f.lease("w2")) is not None:
                got.append(lease.item.url)
                assert await f.complete(lease)
            assert await f.finished()
            return got

    got = asyncio.run(after())
    assert len(got) == 4 and leased in got  # nothing lost, nothing twice


def test_retries_give_backs_slots_pauses_and_renewals(redis_server: RedisServer) -> None:
    import dataclasses

    import redis as blocking

    async def run() -> None:
        async with frontier(redis_server, delay=0.0, per_host=1, lease_seconds=0.4) as f:
            await f.add([item("http://a.test/1"), item("http://a.test/2")])
            first = await f.lease("w1")
            assert first is not None and first.item.url == "http://a.test/1"
            assert await f.lease("w2") is None  # one request to a.test in flight
            assert await f.release(first)  # its response is read: the slot is free
            second = await f.lease("w2")
            assert second is not None and second.item.url == "http://a.test/2"
            # A retry goes back to the front with its next attempt, for any worker.
            retry = dataclasses.replace(first.item, attempt=1)
            assert await f.requeue(first, retry, counter="retried")
            assert not await f.requeue(first, retry, counter="retried")  # token spent
            assert await f.complete(second)
            again = await f.lease("w3")
            assert again is not None and again.item == retry
            assert again.number > second.number  # a later lease, a higher number
            # A paused host is not due; the wait says when it is.
            await f.add([item("http://b.test/1")])
            await f.back_off("b.test", 5.0)
            wait = await f.take("w3")
            assert isinstance(wait, float) and 4.0 < wait <= 5.0
            # A lease renewed in time is not taken back.
            await asyncio.sleep(0.25)
            assert await f.renew([again]) == 1
            await asyncio.sleep(0.25)
            assert await f.reclaim() == 0
            # A worker giving a URL back unfinished.
            assert await f.requeue(again, again.item, counter="returned")
            counts = await f.counts()
            assert counts["retried"] == 1 and counts["returned"] == 1
            assert counts["completed"] == 1 and counts["queued"] == 2 and counts["leased"] == 0
            assert int(await f.client.hget(f.key("inflight"), "a.test")) == 0  # type: ignore[misc]

            # The query-variant trap rule, counted for all workers together.
            shared = type(f)(f.client, "c1", delay=0.0,
                             blocking=blocking.Redis(port=redis_server.port))
            assert shared.allow_variant("a.test/cal", "month=D", 2)
            assert shared.allow_variant("a.test/cal", "q=W", 2)
            assert shared.allow_variant("a.test/cal", "month=D", 2)  # known
            assert not shared.allow_variant("a.test/cal", "x=W", 2)

    asyncio.run(run())
