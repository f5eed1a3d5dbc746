"""Distributed crawls: several workers, on one machine or many, share one crawl's queue in
Redis; each writes its own WARCs; the merge makes them one crawl of the target.

* ``start`` (``crawler archive … --redis URL``): records the crawl in Redis (its id and
  settings), queues the seeds and every URL earlier crawls of the target captured, runs a
  worker itself, and when the crawl is over (or stopped) merges it, under the target's lock,
  then runs detection, the report and the package as after any crawl.
* ``join`` (``crawler worker --redis URL TARGET``): runs a worker of the crawl in progress.
* ``merge`` (``crawler merge TARGET``): the merge alone (the starting worker was lost, or
  workers' folders were copied here from other machines).
* ``status`` and ``stop``: the whole crawl's counters and workers, from any machine; a stop
  asked for every worker (each finishes what it holds).

A worker writes into its own archive root, ``ROOT/.workers/<target>-<crawl id>/<worker>/``
(a catalog and WARCs of its own, named ``<target>-<worker>-…``): nothing collides, and a
worker killed at any point loses nothing the merge needs (merge.py). Redis keys are under
``crawler:<target>:<crawl id>:``; ``crawler:<target>:current`` names the crawl in progress.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import redis as sync_redis
import redis.asyncio as redis
from redis.exceptions import RedisError

from crawler import __version__
from crawler.archive.catalog import Catalog, CrawlStatus
from crawler.archive.layout import (
    lock_target,
    new_crawl_dir,
    save_notify,
    saved_notify,
    target_is_locked,
)
from crawler.archive.merge import MergeCount, choose, copy_kept, worker_warcs
from crawler.archive.package import index_entries, page_entries, write_cdxj, write_pages
from crawler.archive.redisfrontier import HEARTBEAT_EVERY, DistributedFrontier
from crawler.archive.sharedfrontier import SharedFrontier, text_of
from crawler.archive.store import original_of
from crawler.archive.warc import WarcSettings, WarcWriter
from crawler.capture.settings import CrawlSettings
from crawler.core.errors import ConfigError, ExitCode, OutputError
from crawler.core.outcome import CrawlOutcome, CrawlStats, StopReason
from crawler.crawl.engine import Crawl, Shared, lost_in_crawl, run_crawl
from crawler.jobs.pipeline import TargetRun, finish_run
from crawler.jobs.reindex import ReindexResult, enter_records, started_of

log = logging.getLogger("crawler.distributed")

WORKERS_DIR = ".workers"
LEASE_SECONDS = 300.0  # renewed every quarter of it while the worker lives
HEARTBEAT_SECONDS = HEARTBEAT_EVERY  # how often a worker looks for a stop
LOCK_WAIT = 120.0  # seconds the merge waits for local workers to close their files
_SKIPPED = ("robots", "out-of-scope", "trap", "robots-unreachable", "host-hung")


class RedisUnavailable(OutputError):
    """Redis could not be reached, or holds no such crawl."""


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


def current_key(target: str) -> str:
    """Return the Redis key naming a target's distributed crawl in progress."""
    return f"crawler:{target}:current"


async def connect(url: str) -> redis.Redis:
    """Return a client of the Redis at ``url``, or say clearly why there is none."""
    try:
        client: redis.Redis = redis.Redis.from_url(
            url, socket_connect_timeout=10, socket_timeout=30, health_check_interval=30)
        await client.ping()
    except (RedisError, ValueError, OSError) as exc:
        raise RedisUnavailable(
            f"Redis at {url} does not answer ({exc}): start redis-server there (with "
            "appendonly yes, see docs/distributed.md) or check --redis") from exc
    return client


def worker_name(given: str | None) -> str:
    """Return a worker's name: the one given (letters, digits, . _ -) or host-pid."""
    if given:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", given) or given.startswith("."):
            raise ConfigError("--name", "name", "a worker name is 1-64 letters, digits, "
                              ". _ or - (not starting with a dot)")
        return given
    host = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname().split(".")[0]) or "host"
    return f"{host}-{os.getpid()}"


def workers_dir(root: Path, target: str, crawl_id: str) -> Path:
    """Return where the workers of a crawl that run on this machine write."""
    return root / WORKERS_DIR / f"{target}-{crawl_id}"


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
            if not await client.set(current_key(target), crawl_id, nx=True):
                running = await client.get(current_key(target))
                directory.rmdir()
                raise RedisUnavailable(
                    f"Redis at {url} already has a distributed crawl of {target} in progress "
                    f"({text_of(running) if running else '?'}): join it with `crawler worker "
                    f"--redis {url} {target}`, or end it with `crawler stop` and "
                    "`crawler merge`")
            data["lease_seconds"] = lease
            if settings.dedup.dedup:  # workers write revisits of the target's earlier payloads
                queue = _queue(client, target, crawl_id, settings, lease)
                loaded = await queue.add_originals(
                    original_of(r) for r in catalog.history_originals(target))
                log.info("%d payloads of earlier crawls of %s indexed for deduplication",
                         loaded, target)
            await client.set(f"crawler:{target}:{crawl_id}:settings", json.dumps(data))
            end = await _run_worker(client, target, crawl_id, data, settings.output,
                                    worker_name(name), history=catalog, on_start=on_start)
            if end.outcome.stop_reason is StopReason.INTERRUPTED and end.stopped_by is None:
                return end  # only this worker was stopped: the others go on
            return await _merge_locked(client, catalog, settings, target, crawl_id, [])
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
        crawl_id, data = await _crawl_in_progress(client, url, target)
        return await _run_worker(client, target, crawl_id, data, root, worker_name(name),
                                 on_start=on_start)
    finally:
        await client.aclose()


async def _crawl_in_progress(client: redis.Redis, url: str,
                             target: str) -> tuple[str, dict[str, Any]]:
    """Return the id and settings of the target's crawl in progress in Redis."""
    found = await client.get(current_key(target))
    raw = await client.get(f"crawler:{target}:{text_of(found)}:settings") if found else None
    if found is None or raw is None:
        raise RedisUnavailable(f"Redis at {url} has no distributed crawl of {target} in "
                               f"progress: start one with `crawler archive SEED --target "
                               f"{target} --redis {url}`")
    return text_of(found), json.loads(raw)


def _queue(client: redis.Redis, target: str, crawl_id: str, settings: CrawlSettings,
           lease: float = LEASE_SECONDS) -> SharedFrontier:
    pol = settings.politeness
    kwargs = client.connection_pool.connection_kwargs
    blocking = sync_redis.Redis(host=kwargs.get("host", "localhost"),
                                port=kwargs.get("port", 6379), db=kwargs.get("db", 0),
                                username=kwargs.get("username"),
                                password=kwargs.get("password"), socket_timeout=30,
                                socket_connect_timeout=10)
    return SharedFrontier(client, f"{target}:{crawl_id}", delay=pol.delay,
                          per_host=pol.per_host, lease_seconds=lease, blocking=blocking)


async def _run_worker(client: redis.Redis, target: str, crawl_id: str, data: dict[str, Any],
                      root: Path, name: str, *, history: Catalog | None = None,
                      on_start: Callable[[Crawl], None] | None = None) -> WorkerEnd:
    """Run one worker of a crawl, in its own archive root under ``root``."""
    own = workers_dir(root, target, crawl_id) / name
    settings = replace(CrawlSettings.from_json(data), output=own, target=target,
                       warc_prefix=f"{target}-{name}", wacz=False)
    queue = _queue(client, target, crawl_id, settings,
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


async def merge(target: str, root: Path, *, url: str | None, crawl_id: str | None,
                extra: list[Path], settings: CrawlSettings | None = None) -> TargetRun:
    """Merge a distributed crawl into the target's catalog (``crawler merge``)."""
    client = await connect(url) if url else None
    lock = lock_target(root, target)
    try:
        if client is not None and crawl_id is None:
            crawl_id, data = await _crawl_in_progress(client, url or "", target)
        elif crawl_id is not None:
            data = _settings_on_disk(root, target, crawl_id, client)
            if client is not None:
                raw = await client.get(f"crawler:{target}:{crawl_id}:settings")
                data = json.loads(raw) if raw else data
        else:
            raise ConfigError("crawler merge", "--crawl", "without --redis, name the crawl "
                              "to merge (its id, as in .workers/<target>-<id>)")
        merged = settings or _with_secrets(CrawlSettings.from_json(data), root, target)
        merged = replace(merged, output=root, target=target)
        catalog = Catalog.open(root)
        try:
            catalog.check_integrity()
            return await _merge_locked(client, catalog, merged, target, crawl_id, extra)
        finally:
            catalog.close()
    finally:
        lock.close()
        if client is not None:
            await client.aclose()


def _with_secrets(settings: CrawlSettings, root: Path, target: str) -> CrawlSettings:
    """Return stored settings with the notification URLs and proxies that ``start`` kept
    (stored settings have them redacted)."""
    detect = replace(settings.detect, notify=tuple(saved_notify(root, target)),
                     vantage=tuple(saved_notify(root, target, "vantage")))
    return replace(settings, detect=detect)


def _settings_on_disk(root: Path, target: str, crawl_id: str,
                      client: redis.Redis | None) -> dict[str, Any]:
    """Return a crawl's settings from a worker's catalog (when Redis is not asked)."""
    for worker in sorted(workers_dir(root, target, crawl_id).glob("*/")):
        catalog = Catalog.open(worker, read_only=True)
        try:
            row = catalog.latest_crawl(target)
            if row is not None:
                return dict(row.settings)
        finally:
            catalog.close()
    raise ConfigError("crawler merge", "--crawl", f"no worker folder of {target}/{crawl_id} "
                      f"under {workers_dir(root, target, crawl_id)}")


async def _merge_locked(client: redis.Redis | None, catalog: Catalog, settings: CrawlSettings,
                        target: str, crawl_id: str, extra: list[Path]) -> TargetRun:
    """Merge the workers' records into the crawl ``crawl_id`` of the target, then run the
    phases after a crawl (detection, report, package)."""
    root = catalog.root
    if catalog.crawl(target, crawl_id) is not None:
        raise OutputError(f"{target}/{crawl_id} is merged already")
    counts: dict[str, int] = {}
    workers: dict[str, dict[str, str]] = {}
    stopped = False
    if client is not None:
        queue = _queue(client, target, crawl_id, settings)
        counts = await queue.counts()
        raw = await client.hgetall(queue.key("workers"))
        workers = {text_of(k): json.loads(v) for k, v in raw.items()}
        stopped = await client.get(queue.key("stop")) is not None
        if not counts.get("seen"):
            raise OutputError(
                f"Redis holds no queue for {target}/{crawl_id} (restarted without "
                "persistence, or its keys deleted): merge what the workers wrote with "
                f"`crawler merge {target} --crawl {crawl_id}` (without --redis; the crawl is "
                "then recorded incomplete, as what was left queued is not known)")
        left = counts.get("queued", 0) + counts.get("leased", 0)
        if left and not stopped:
            raise OutputError(
                f"{target}/{crawl_id} is not over ({counts.get('queued', 0)} URLs queued, "
                f"{counts.get('leased', 0)} leased): let its workers finish (`crawler worker` "
                "joins it), or stop them first with `crawler stop`")
    sources = sorted(p for p in workers_dir(root, target, crawl_id).glob("*") if p.is_dir())
    sources += [p.resolve() for p in extra if p.resolve() not in sources]
    _wait_for_workers(sources, target)
    found = {str(p.resolve()) for p in sources}
    missing = {name: entry for name, entry in workers.items()
               if entry.get("root") not in found
               and not any(Path(entry.get("root", "")).name == p.name for p in sources)}
    for name, entry in missing.items():
        log.warning("worker %s wrote to %s on %s, not found here: its %s URLs are not in the "
                    "merge", name, entry.get("root"), entry.get("host"),
                    entry.get("completed", "?"))
    directory = root / target / crawl_id
    warc_dir = directory / "warc"
    warc_dir.mkdir(parents=True, exist_ok=True)
    for leftover in warc_dir.glob("*"):  # an earlier merge cut short: it starts over
        leftover.unlink()
    paths = [p for source in sources for p in worker_warcs(source)]
    began = time.monotonic()
    count = MergeCount()
    keep, ends = await asyncio.to_thread(choose, paths, count)
    writer = WarcWriter(WarcSettings(
        directory=warc_dir, prefix=settings.warc_prefix or target, max_size=settings.warc_size,
        warcinfo={"isPartOf": f"{target}/{crawl_id}",
                  "description": "seeds: " + " ".join(settings.seeds) + "; merged from "
                                 f"{len(sources)} worker(s) of a distributed crawl"}))
    await asyncio.to_thread(copy_kept, paths, ends, keep, writer, count)
    pk = catalog.add_crawl(target, crawl_id, directory, settings.to_json())
    with catalog.transaction() as db:  # it began when the crawl id was given, not now
        db.execute("UPDATE crawls SET started=? WHERE id=?", (started_of(crawl_id), pk))
    row = catalog.crawl(target, crawl_id)
    assert row is not None
    entered = ReindexResult()
    enter_records(catalog, row, entered)
    _settle_finals(catalog, pk)
    skipped = sum(_copy_skipped(catalog, pk, source, target) for source in sources)
    left = counts.get("queued", 0) + counts.get("leased", 0)
    shortfall = lost_in_crawl(catalog.db, pk)
    if left:
        shortfall["not-fetched"] = left
    if client is None:
        shortfall["queue-unknown"] = 1
    lost = sum(int(e.get("completed", 0) or 0) for e in missing.values())
    if missing:
        shortfall["worker-missing"] = lost or len(missing)
    totals = catalog.crawl_totals(pk)
    seeds_ok = catalog.db.execute(
        "SELECT count(*) FROM captures WHERE crawl=? AND kind='seed' AND final=1 "
        "AND status IS NOT NULL", (pk,)).fetchone()[0]
    reason = StopReason.STOPPED if stopped or left else StopReason.COMPLETE
    if seeds_ok == 0 or totals["pages"] == 0:
        code, status = ExitCode.CRAWL_FAILED, CrawlStatus.FAILED
    elif shortfall:
        code, status = ExitCode.INCOMPLETE, CrawlStatus.INCOMPLETE
    else:
        code, status = ExitCode.OK, CrawlStatus.COMPLETE
    index = directory / "indexes" / "index.cdxj"
    pages = directory / "pages" / "pages.jsonl"
    write_cdxj(index_entries(catalog, pk), index)
    write_pages(page_entries(catalog, pk), pages)
    catalog.finish_crawl(pk, status, reason.value, int(code), shortfall)
    merge_info = {"workers": sorted(workers) or [p.name for p in sources],
                  "worker_files": count.files, "records": count.records, "kept": count.kept,
                  "superseded": count.superseded, "kept_for_revisits": count.kept_for_revisits,
                  "duplicate_robots": count.duplicate_robots, "torn_bytes": count.torn_bytes,
                  "skipped_rows": skipped, "unreadable": entered.unreadable,
                  "missing_workers": sorted(missing), "queue": counts,
                  "seconds": round(time.monotonic() - began, 3)}
    warcs = tuple(sorted(warc_dir.glob("*.warc.gz")))
    stats: dict[str, Any] = {**CrawlStats().as_dict(), "totals": totals, "merge": merge_info}
    snapshot = {"software": f"crawler/{__version__}", "crawl_id": crawl_id, "target": target,
                "status": status, "shortfall": shortfall, "exit_status": code.name.lower(),
                "exit_code": int(code), "stop_reason": reason.value,
                "finished": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "seeds": list(settings.seeds), "settings": settings.to_json(), "stats": stats,
                "distributed": merge_info, "warcs": [p.name for p in warcs]}
    tmp = directory / "crawl.json.tmp"
    tmp.write_text(json.dumps(snapshot, indent=2, ensure_ascii=False) + "\n", "utf-8")
    os.replace(tmp, directory / "crawl.json")
    if client is not None:
        await _retire(client, target, crawl_id)
    log.info("merged %s/%s: %d records kept from %d worker files (%d superseded)", target,
             crawl_id, count.kept, count.files, count.superseded)
    outcome = CrawlOutcome(crawl_id=crawl_id, target=target, directory=directory, warcs=warcs,
                           index=index, pages=pages, stop_reason=reason, exit_code=code,
                           stats=stats, status=status, shortfall=shortfall)
    row = catalog.crawl(target, crawl_id)
    assert row is not None
    return await finish_run(catalog, row, settings, outcome)


def _wait_for_workers(sources: list[Path], target: str) -> None:
    """Wait until the workers writing into ``sources`` here have closed their files."""
    deadline = time.monotonic() + LOCK_WAIT
    while busy := [p for p in sources if target_is_locked(p, target)]:
        if time.monotonic() > deadline:
            raise OutputError(f"workers still running in {', '.join(map(str, busy))}: stop "
                              "them (crawler stop) before merging")
        time.sleep(0.2)


def _settle_finals(catalog: Catalog, pk: int) -> None:
    """Leave one final capture per URL, the latest (workers' files are entered one worker
    after another, not in time order: a retry's later attempt may be entered first)."""
    with catalog.transaction() as db:
        db.execute(
            "UPDATE captures SET final = (id = (SELECT c.id FROM captures c WHERE c.crawl=? "
            "AND c.key=captures.key AND c.kind IN ('seed','page','requisite','sitemap',"
            "'robots') ORDER BY c.fetched_at DESC, c.id DESC LIMIT 1)) WHERE crawl=? AND kind "
            "IN ('seed','page','requisite','sitemap','robots')", (pk, pk))


def _copy_skipped(catalog: Catalog, pk: int, source: Path, target: str) -> int:
    """Copy the rows of URLs a worker deliberately did not fetch (robots.txt, scope, traps:
    they have no record) from its catalog, once per URL; return how many."""
    path = source / "catalog.sqlite3"
    if not path.exists():
        return 0
    db = catalog.db
    columns = [r[1] for r in db.execute("PRAGMA table_info(captures)")
               if r[1] not in ("id", "crawl")]
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in _SKIPPED)
    db.execute("ATTACH DATABASE ? AS w", (str(path),))
    try:
        with catalog.transaction():
            cur = db.execute(
                f"INSERT INTO captures (crawl, {names}) SELECT ?, {names} FROM w.captures "
                f"WHERE crawl IN (SELECT id FROM w.crawls WHERE target=?) AND failure IN "
                f"({marks}) AND warc_file IS NULL AND key NOT IN (SELECT key FROM captures "
                "WHERE crawl=?) GROUP BY key", (pk, target, *_SKIPPED, pk))
            return max(cur.rowcount, 0)
    finally:
        db.execute("DETACH DATABASE w")


async def _retire(client: redis.Redis, target: str, crawl_id: str) -> None:
    """After the merge: drop the crawl's queue and seen-set from Redis, keep its counters
    and workers for ``status``, and free the target for a new distributed crawl."""
    prefix = f"crawler:{target}:{crawl_id}:"
    keep = {prefix + n for n in ("counters", "workers", "settings", "stop")}
    doomed = [k async for k in client.scan_iter(match=prefix + "*", count=1000)
              if k.decode() not in keep]
    for start in range(0, len(doomed), 500):
        await client.unlink(*doomed[start:start + 500])
    await client.set(prefix + "merged", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if await client.get(current_key(target)) == crawl_id.encode():
        await client.delete(current_key(target))


async def stop(url: str, target: str, reason: str) -> str:
    """Ask every worker of the target's crawl in progress to stop; return the crawl id."""
    client = await connect(url)
    try:
        crawl_id, _ = await _crawl_in_progress(client, url, target)
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
