"""Frontier scheduling: once per key, per-host limits and delays, termination."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from crawler.archive.catalog import Catalog
from crawler.archive.frontier import Frontier
from crawler.core.models import CrawlUrl, UrlKind


def new_catalog() -> tuple[Catalog, int]:
    """Return a fresh catalog in a temporary directory and a crawl row in it."""
    catalog = Catalog.open(Path(tempfile.mkdtemp()))
    return catalog, catalog.add_crawl("t", "c1", Path("x"), {})


def frontier(per_host: int, delay: float, catalog: tuple[Catalog, int] | None = None,
             buffer: int = 256) -> Frontier:
    """Return a frontier over a (new) catalog."""
    cat, pk = catalog or new_catalog()
    return Frontier(cat.db, pk, per_host=per_host, delay=delay, buffer_per_host=buffer)


def item(url: str, kind: UrlKind = UrlKind.PAGE) -> CrawlUrl:
    return CrawlUrl(url=url, key=url, kind=kind, depth=0)


def test_requisites_first_and_round_robin_between_hosts() -> None:
    async def run() -> list[str]:
        f = frontier(10, 0)
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
        f = frontier(1, 0.1)
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
        f = frontier(1, 0)
        for n in range(4):
            f.add(item(f"http://a/{n}"))
        start = time.monotonic()
        while (got := await f.get()) is not None:
            f.done(got)
        return time.monotonic() - start

    assert asyncio.run(run()) < 0.05


def test_back_off_and_retry_requeue() -> None:
    async def run() -> tuple[list[int], float]:
        f = frontier(2, 0)
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
        f = frontier(2, 0)
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


def test_memory_buffer_is_bounded_and_refilled_from_sqlite() -> None:
    async def run() -> list[str]:
        f = frontier(1, 0, buffer=3)
        for n in range(10):
            f.add(item(f"http://a/{n}"))
        assert f._hosts["a"].buffered() == 3 and f._hosts["a"].in_db == 7
        out = []
        while (got := await f.get()) is not None:
            out.append(got.url)
            f.finish(got)
            f.done(got)
        return out

    assert asyncio.run(run()) == [f"http://a/{n}" for n in range(10)]  # order kept


def _drain(f: Frontier, limit: int | None = None) -> list[str]:
    """Take up to ``limit`` URLs, finishing each; return their keys."""
    async def run() -> list[str]:
        out: list[str] = []
        while (limit is None or len(out) < limit) and (got := await f.get()) is not None:
            out.append(got.key)
            f.finish(got)
            f.done(got)
        return out

    return asyncio.run(run())


def test_resume_requeues_in_flight_and_keeps_done() -> None:
    cat = new_catalog()
    first = frontier(4, 0, cat, buffer=2)
    for n in range(6):
        first.add(item(f"http://h/{n}"))
    done_before = _drain(first, limit=2)
    # Crash: two more were handed out (in flight) but never finished.
    async def take_two() -> None:
        await first.get()
        await first.get()
    asyncio.run(take_two())
    second = frontier(4, 0, cat, buffer=2)  # a new session on the same database
    assert second.queued == 4
    assert not second.add(item("http://h/0"))  # done URLs are still known
    done_after = _drain(second)
    assert sorted(done_before + done_after) == [f"http://h/{n}" for n in range(6)]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([f"http://h{n % 3}/{n}" for n in range(15)]), max_size=30),
       st.integers(min_value=0, max_value=30), st.integers(min_value=1, max_value=4))
def test_never_yields_twice_nor_loses_across_restarts(adds: list[str], before: int,
                                                      buffer: int) -> None:
    cat = new_catalog()
    first = frontier(2, 0, cat, buffer=buffer)
    for u in adds:
        first.add(item(u))
    taken = _drain(first, limit=before)
    second = frontier(2, 0, cat, buffer=buffer)
    for u in adds:  # rediscovery after the restart must not requeue anything
        second.add(item(u))
    taken += _drain(second)
    assert sorted(taken) == sorted(set(adds))


def test_a_full_disk_inside_a_transaction_is_said_as_the_catalog_says_it() -> None:
    """A frontier write that fails inside an open batch (no savepoint of its own) still
    reaches the crawl as the catalog's NoSpace, which stops it cleanly, not as SQLite's
    bare error."""
    import pytest

    from crawler.core.errors import NoSpace

    catalog, pk = new_catalog()
    f = Frontier(catalog.db, pk, per_host=2, delay=0, transaction=catalog.transaction,
                 write_failure=catalog.write_failure)
    pages = catalog.db.execute("PRAGMA page_count").fetchone()[0]
    catalog.db.execute(f"PRAGMA max_page_count={pages + 2}")  # room for almost nothing
    catalog.begin_batch()
    with catalog.transaction():  # opens the batch's transaction, which stays open
        f.add(item("http://a/first"))
    with pytest.raises(NoSpace):
        for n in range(5000):  # outside any group of the caller
            f.add(item(f"http://a/{n}-" + "x" * 200))
    if catalog.db.in_transaction:
        catalog.db.execute("ROLLBACK")
