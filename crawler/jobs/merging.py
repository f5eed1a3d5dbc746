"""The merge of a distributed crawl: the workers' WARC records made one crawl of the target
(``crawler merge``, and the starting worker when the crawl is over), then detection, the
report and the package as after any crawl. What is kept and why: archive/merge.py and
docs/distributed.md."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from crawler.archive.catalog import Catalog
from crawler.archive.layout import lock_target, saved_notify, target_is_locked, write_json
from crawler.archive.merge import MergeCount, choose, copy_kept, worker_warcs
from crawler.archive.package import index_entries, page_entries, write_cdxj, write_pages
from crawler.archive.sharedfrontier import text_of
from crawler.archive.warc import WarcSettings, WarcWriter
from crawler.capture.settings import CrawlSettings
from crawler.core.errors import ConfigError, OutputError
from crawler.core.outcome import CrawlOutcome, CrawlStats, StopReason
from crawler.crawl.engine import judge_end, lost_in_crawl, snapshot_of
from crawler.jobs.crawlqueue import (
    connect,
    crawl_in_progress,
    current_key,
    queue_of,
    workers_dir,
)
from crawler.jobs.pipeline import TargetRun, finish_run
from crawler.jobs.reindex import ReindexResult, enter_records, started_of

log = logging.getLogger("crawler.distributed")

LOCK_WAIT = 120.0  # seconds the merge waits for local workers to close their files
_SKIPPED = ("robots", "out-of-scope", "trap", "robots-unreachable", "host-hung")




async def merge(target: str, root: Path, *, url: str | None, crawl_id: str | None,
                extra: list[Path], settings: CrawlSettings | None = None) -> TargetRun:
    """Merge a distributed crawl into the target's catalog (``crawler merge``)."""
    client = await connect(url) if url else None
    lock = lock_target(root, target)
    try:
        if client is not None and crawl_id is None:
            crawl_id, data = await crawl_in_progress(client, url or "", target)
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
            return await merge_crawl(client, catalog, merged, target, crawl_id, extra)
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


async def merge_crawl(client: redis.Redis | None, catalog: Catalog, settings: CrawlSettings,
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
        queue = queue_of(client, target, crawl_id, settings)
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
    reason = StopReason.STOPPED if stopped or left else StopReason.COMPLETE
    code, status = judge_end(catalog.db, pk, totals, shortfall)
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
    write_json(directory / "crawl.json",
               snapshot_of(crawl_id, target, status, shortfall, code, reason, settings, stats,
                           warcs, distributed=merge_info))
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


