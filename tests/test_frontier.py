"""Frontier scheduling: once per key, per-host limits and delays, termination."""

from __future__ import annotations

import asyncio
import itertools
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.frontier import Frontier
from crawler.models import CrawlUrl, UrlKind


def item(url: str, kind: UrlKind = UrlKind.PAGE) -> CrawlUrl:
    return CrawlUrl(url=url, key=url, kind=kind, depth=0)


def test_requisites_first_and_round_robin_between_hosts() -> None:
    async def run() -> list[str]:
        f = Frontier(per_host=10, delay=0)
        for u in ("http://a/1", "http://a/2", "http://b/1"):
            f.add(item(u))
        f.add(item("http://a/img.png", UrlKind.REQUISITE))
        order = []
        while (got := await f.get()) is not None:
            order.append(got.url)
            f.done(got)
        return order

    order = asyncio.run(run())
    assert order[0] == "http://a/img.png"
    assert order.index("http://b/1") < order.index("http://a/2")


def test_per_host_limit_and_delay() -> None:
    async def run() -> tuple[int, list[float]]:
        f = Frontier(per_host=1, delay=0.1)
        for n in range(4):
            f.add(item(f"http://a/{n}"))
        starts: list[float] = []
        peak = 0
        active = 0

        async def worker() -> None:
            nonlocal peak, active
            while (got := await f.get()) is not None:
                active += 1
                peak = max(peak, active)
                starts.append(time.monotonic())
                await asyncio.sleep(0.01)
                active -= 1
                f.done(got)

        await asyncio.gather(*(worker() for _ in range(4)))
        return peak, starts

    peak, starts = asyncio.run(run())
    assert peak == 1
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 3 and min(gaps) >= 0.09


def test_delay_off_is_fast() -> None:
    """The delay test above must be able to fail: without a delay the gaps vanish."""
    async def run() -> float:
        f = Frontier(per_host=1, delay=0)
        for n in range(4):
            f.add(item(f"http://a/{n}"))
        start = time.monotonic()
        while (got := await f.get()) is not None:
            f.done(got)
        return time.monotonic() - start

    assert asyncio.run(run()) < 0.05


def test_back_off_and_retry_requeue() -> None:
    async def run() -> tuple[list[int], float]:
        f = Frontier(per_host=2, delay=0)
        f.add(item("http://a/x"))
        first = await f.get()
        assert first is not None
        f.back_off("a", 0.2)
        f.retry(first)
        f.done(first)
        start = time.monotonic()
        second = await f.get()
        assert second is not None
        waited = time.monotonic() - start
        f.done(second)
        assert await f.get() is None
        return [first.attempt, second.attempt], waited

    attempts, waited = asyncio.run(run())
    assert attempts == [0, 1] and waited >= 0.18


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([f"http://h{n % 3}/{n}" for n in range(12)]), max_size=40))
def test_never_yields_a_key_twice_and_loses_none(adds: list[str]) -> None:
    async def run() -> list[str]:
        f = Frontier(per_host=2, delay=0)
        out = []
        for u in adds:
            f.add(item(u))
        while (got := await f.get()) is not None:
            out.append(got.key)
            f.add(item(got.url))  # rediscovery must not requeue
            f.done(got)
        return out

    out = asyncio.run(run())
    assert sorted(out) == sorted(set(adds))
