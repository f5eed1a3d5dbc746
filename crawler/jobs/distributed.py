"""Distributed crawls: several workers, on one machine or many, share one crawl's queue in
Redis; each writes its own WARCs; the merge makes them one crawl of the target.

* ``start`` (``crawler archive … --redis URL``): records the crawl in Redis (its id and
  settings), indexes the payloads of the target's earlier crawls for deduplication, queues
  the seeds and every URL earlier crawls captured, runs a worker itself, and when the crawl
  is over (or stopped) merges it under the target's lock (merging.py).
* ``join`` (``crawler worker --redis URL TARGET``): runs a worker of the crawl in progress.
* ``status`` and ``stop``: the whole crawl's counters and workers, from any machine; a stop
  asked for every worker (each finishes what it holds).

A worker writes into its own archive root, ``ROOT/.workers/<target>-<crawl id>/<worker>/``
(a catalog and WARCs of its own, named ``<target>-<worker>-…``): nothing collides, and a
worker killed at any point loses nothing the merge needs (archive/merge.py). Redis keys:
crawlqueue.py.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import redis.asyncio as redis
from redis.exceptions import RedisError

from crawler.archive.catalog import Catalog
from crawler.archive.layout import (
    lock_target,
    new_crawl_dir,
    save_notify,
)
from crawler.archive.redisfrontier import HEARTBEAT_EVERY, DistributedFrontier
from crawler.archive.sharedfrontier import SharedFrontier, text_of
from crawler.archive.store import original_of
from crawler.capture.settings import CrawlSettings
from crawler.core.errors import ConfigError, ExitCode
from crawler.core.outcome import CrawlOutcome, StopReason
from crawler.crawl.engine import Crawl, Shared, run_crawl
from crawler.jobs.crawlqueue import (
    LEASE_SECONDS,
    RedisUnavailable,
    connect,
    crawl_in_progress,
    current_key,
    queue_of,
    workers_dir,
)
from crawler.jobs.merging import merge_crawl
from crawler.jobs.pipeline import TargetRun

log = logging.getLogger("crawler.distributed")

HEARTBEAT_SECONDS = HEARTBEAT_EVERY  # how often a worker looks for a stop


@dataclass
class WorkerEnd:
    """What one worker did, and where the whole crawl stands."""

    worker: str
    root: Path
    outcome: CrawlOutcome
    counts: dict[str, int] = field(default_factory=dict)
    stopped_by: str | None = None
    superseded: int = 0
    undelivered: int = 0
    state_lost: bool = False  # Redis no longer held the crawl


def worker_name(given: str | None) -> str:
    """Return a worker's name: the one given (letters, digits, . _ -) or host-pid."""
    if given:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", given) or given.startswith("."):
            raise ConfigError("--name", "name", "a worker name is 1-64 letters, digits, "
                              ". _ or - (not starting with a dot)")
        return given
    host = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname().split(".")[0]) or "host"
    return f"{host}-{os.getpid()}"


def check_settings(settings: CrawlSettings) -> None:
    """Refuse what a distributed crawl cannot honour (said, not silently ignored)."""
    if settings.limits.max_pages is not None:
        raise ConfigError("--max-pages", "max_pages", "not supported with --redis: each "
                          "worker would count only its own pages (use --max-time)")
    if settings.politeness.adaptive:
        raise ConfigError("--adaptive-delay", "adaptive", "not supported with --redis: the "
                          "per-host delay is shared by all workers and fixed (--delay)")


async def start(settings: CrawlSettings, url: str, name: str | None,
                on_start: Callable[[Crawl], None] | None = None, *,
                lease: float = LEASE_SECONDS) -> TargetRun | WorkerEnd:
    """Start a distributed crawl, run a worker of it here, and merge it once it is over."""
    check_settings(settings)
    target = settings.target_name()
    client = await connect(url)
    lock = lock_target(settings.output, target)
    # Kept where only the owner reads them: a later `crawler merge` notifies with them.
    save_notify(settings.output, target, settings.detect.notify, settings.detect.vantage)
    try:
        catalog = Catalog.open(settings.output)
        try:
            catalog.check_integrity()
            crawl_id, directory = new_crawl_dir(settings.output, target)
            data = dict(settings.to_json())
            data["lease_seconds"] = lease
            prefix = f"crawler:{target}:{crawl_id}:"
            # Settings first: a worker that finds the crawl named finds its settings too.
            await client.set(prefix + "settings", json.dumps(data))
            if not await client.set(current_key(target), crawl_id, nx=True):
                running = await client.get(current_key(target))
                await client.delete(prefix + "settings")
                directory.rmdir()
                raise RedisUnavailable(
                    f"Redis at {url} already has a distributed crawl of {target} in progress "
                    f"({text_of(running) if running else '?'}): join it with `crawler worker "
                    f"--redis {url} {target}`, or end it with `crawler stop` and "
                    "`crawler merge`")
            try:
                if settings.dedup.dedup:  # workers write revisits of earlier crawls' payloads
                    queue = queue_of(client, target, crawl_id, settings, lease)
                    loaded = await queue.add_originals(
                        original_of(r) for r in catalog.history_originals(target))
                    log.info("%d payloads of earlier crawls of %s indexed for deduplication",
                             loaded, target)
            except BaseException:  # nothing was queued: the target is free again
                await client.delete(current_key(target), prefix + "settings", prefix + "digests")
                raise
            end = await _run_worker(client, target, crawl_id, data, settings.output,
                                    worker_name(name), history=catalog, on_start=on_start)
            if end.outcome.stop_reason is StopReason.INTERRUPTED and end.stopped_by is None:
                return end  # only this worker was stopped: the others go on
            return await merge_crawl(client, catalog, settings, target, crawl_id, [])
        finally:
            catalog.close()
    finally:
        lock.close()
        await client.aclose()


async def join(url: str, target: str, root: Path, name: str | None,
               on_start: Callable[[Crawl], None] | None = None) -> WorkerEnd:
    """Run a worker of the target's distributed crawl in progress."""
    client = await connect(url)
    try:
        crawl_id, data = await crawl_in_progress(client, url, target)
        return await _run_worker(client, target, crawl_id, data, root, worker_name(name),
                                 on_start=on_start)
    finally:
        await client.aclose()


async def _run_worker(client: redis.Redis, target: str, crawl_id: str, data: dict[str, Any],
                      root: Path, name: str, *, history: Catalog | None = None,
                      on_start: Callable[[Crawl], None] | None = None) -> WorkerEnd:
    """Run one worker of a crawl, in its own archive root under ``root``."""
    own = workers_dir(root, target, crawl_id) / name
    settings = replace(CrawlSettings.from_json(data), output=own, target=target,
                       warc_prefix=f"{target}-{name}", wacz=False)
    queue = queue_of(client, target, crawl_id, settings,
                   float(data.get("lease_seconds") or LEASE_SECONDS))
    info = {"root": str(own.resolve()), "crawl": f"{target}/{crawl_id}"}
    catalog = Catalog.open(own)
    try:
        box: list[Crawl] = []

        def started(crawl: Crawl) -> None:
            box.append(crawl)
            if on_start is not None:
                on_start(crawl)

        outcome = await run_crawl(settings, catalog=catalog, on_start=started,
                                  shared=Shared(queue, name, info, history))
    finally:
        catalog.close()
    frontier = box[0].frontier if box else None
    end = WorkerEnd(name, own, outcome)
    if isinstance(frontier, DistributedFrontier):
        end.stopped_by, end.superseded = frontier.stopped_by, frontier.superseded
        end.undelivered = frontier.undelivered
        end.state_lost = frontier.state_lost
    try:
        end.counts = await queue.counts()
    except RedisError as exc:
        log.warning("the crawl's counts could not be read from Redis: %s", exc)
    return end


async def stop(url: str, target: str, reason: str) -> str:
    """Ask every worker of the target's crawl in progress to stop; return the crawl id."""
    client = await connect(url)
    try:
        crawl_id, _ = await crawl_in_progress(client, url, target)
        await client.set(f"crawler:{target}:{crawl_id}:stop", reason)
        return crawl_id
    finally:
        await client.aclose()


async def status(url: str, target: str) -> dict[str, Any]:
    """Return the whole crawl's state as Redis holds it (the crawl in progress, or the last
    one merged)."""
    client = await connect(url)
    try:
        found = await client.get(current_key(target))
        crawl_id = text_of(found) if found else None
        if crawl_id is None:
            ids = sorted({k.decode().split(":")[2] async for k in client.scan_iter(
                match=f"crawler:{target}:*:counters")})
            if not ids:
                raise RedisUnavailable(f"Redis at {url} knows no distributed crawl of "
                                       f"{target}")
            crawl_id = ids[-1]
        prefix = f"crawler:{target}:{crawl_id}:"
        queue = SharedFrontier(client, f"{target}:{crawl_id}", delay=0.0)
        counts = await queue.counts()
        raw = await client.hgetall(prefix + "workers")
        workers = {text_of(k): json.loads(v) for k, v in raw.items()}
        merged = await client.get(prefix + "merged")
        stop_asked = await client.get(prefix + "stop")
        state = ("merged" if merged else "stopping" if stop_asked
                 else "finished" if counts.get("queued", 0) == 0 and counts["leased"] == 0
                 and counts.get("seen", 0) else "running")
        return {"target": target, "crawl_id": crawl_id, "state": state, "counts": counts,
                "merged": text_of(merged) if merged else None,
                "stop": text_of(stop_asked) if stop_asked else None, "workers": workers}
    finally:
        await client.aclose()


def status_lines(found: dict[str, Any]) -> list[str]:
    """Return ``status`` as text."""
    c = cast(dict[str, int], found["counts"])
    lines = [f"{found['target']}/{found['crawl_id']}: {found['state']}"
             + (f" ({found['merged']})" if found["merged"] else ""),
             f"  URLs: {c.get('seen', 0)} seen, {c.get('queued', 0)} queued, "
             f"{c.get('leased', 0)} leased now, {c.get('completed', 0)} done "
             f"({c.get('failed', 0)} failed), {c.get('retried', 0)} retries, "
             f"{c.get('reclaimed', 0)} taken back from lost workers"]
    if found["stop"]:
        lines.append(f"  stop asked: {found['stop']}")
    for name, entry in sorted(found["workers"].items()):
        lines.append(f"  worker {name}: {entry.get('state')}, {entry.get('completed', 0)} "
                     f"done, {entry.get('in_flight', 0)} in flight, last seen "
                     f"{entry.get('seen')} on {entry.get('host')}, writing to "
                     f"{entry.get('root')}")
    return lines


def worker_exit(end: WorkerEnd) -> ExitCode:
    """Return a worker's exit code: interrupted when it was stopped before the crawl was
    over (by a signal, or a stop asked for all workers), else OK."""
    return ExitCode.INTERRUPTED if end.outcome.stop_reason is not StopReason.COMPLETE \
        else ExitCode.OK


def worker_lines(end: WorkerEnd) -> list[str]:
    """Return what a worker says when it ends (its part, and where the crawl stands)."""
    totals = end.outcome.stats.get("totals", {})
    c = end.counts
    lines = [f"Worker {end.worker} of {end.outcome.target}: "
             + ("stopped" if worker_exit(end) is ExitCode.INTERRUPTED else "done")
             + (f" (a stop asked for all workers: {end.stopped_by})" if end.stopped_by else ""),
             f"  its part: {totals.get('urls', 0)} URLs, {totals.get('pages', 0)} pages, "
             f"WARCs in {end.outcome.directory / 'warc'}",
             f"  the crawl: {c.get('seen', 0)} URLs seen, {c.get('completed', 0)} done, "
             f"{c.get('queued', 0)} queued, {c.get('leased', 0)} leased by workers"]
    if end.superseded:
        lines.append(f"  {end.superseded} of its results came after its lease ran out: "
                     "another worker fetched those URLs again, and the merge keeps theirs")
    if end.state_lost:
        lines.append("  Redis no longer holds this crawl: merge what the workers wrote with "
                     f"`crawler merge {end.outcome.target} --crawl CRAWL-ID` (without --redis)")
    if end.undelivered:
        lines.append(f"  {end.undelivered} steps were not delivered to Redis: those URLs are "
                     "fetched again once their leases run out")
    lines.append("  the crawl is merged by the worker that started it, or by `crawler merge "
                 f"{end.outcome.target} --redis URL`")
    return lines


def worker_json(end: WorkerEnd) -> dict[str, Any]:
    """Return what a worker says when it ends, as JSON."""
    return {"worker": end.worker, "target": end.outcome.target, "root": str(end.root),
            "directory": str(end.outcome.directory), "exit_code": int(worker_exit(end)),
            "stopped_by": end.stopped_by, "superseded": end.superseded,
            "undelivered": end.undelivered, "state_lost": end.state_lost,
            "totals": end.outcome.stats.get("totals", {}),
            "crawl": end.counts}
