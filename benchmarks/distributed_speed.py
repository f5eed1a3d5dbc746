"""Distributed crawling: throughput with 1, 2 and 4 workers, and the Redis queue's overhead.

    python benchmarks/distributed_speed.py --hosts 8 --pages 150 --latency-ms 50

Serves ``--hosts`` copies of the benchmark site (benchsite.py), each on its own port (its own
host for politeness), every response ``--latency-ms`` late, and starts a redis-server of its
own on 127.0.0.1 (append-only, fsync every second: the documented setting). Then:

1. The peer: one ordinary `crawler archive` (SQLite queue) of all hosts.
2. The same crawl distributed over 1, 2 and 4 workers (`crawler archive --redis` plus
   `crawler worker` processes), each worker with the same --concurrency, politeness fixed per
   host (--per-host, --delay) for all workers together.

For each: URLs in the final collection, wall time (start to the merged crawl's end, merge
included), URLs/s, CPU per URL (every crawler process, plus redis-server), and the politeness
actually kept: the shortest gap between two request starts to one host, from the WARC dates.
Ratios are against the peer run in the same benchmark.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchsite import run_server

CLI = [sys.executable, "-m", "crawler"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_hosts(hosts: int, pages: int, latency: float) -> list[str]:
    """Start one benchmark site per host; return their URLs."""
    ctx = multiprocessing.get_context("spawn")
    found = []
    for _ in range(hosts):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=run_server, args=(pages, latency, child), daemon=True)
        proc.start()
        found.append(f"http://127.0.0.1:{parent.recv()}/")
    return found


class Redis:
    """A redis-server of the benchmark's own."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis
        deadline = time.monotonic() + 20
        while True:
            try:
                if redis.Redis(port=self.port).ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@dataclass
class Run:
    label: str
    urls: int
    wall: float
    cpu: float  # crawler processes
    redis_cpu: float
    min_gap: float  # shortest gap between request starts to one host
    close_gaps: int  # gaps shorter than the delay (minus 10 ms of clock jitter)
    merge: float = 0.0  # seconds the merge took (copy, enter, index), detection not counted

    @property
    def rate(self) -> float:
        return self.urls / self.wall

    @property
    def cpu_ms(self) -> float:
        return 1000 * (self.cpu + self.redis_cpu) / max(1, self.urls)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def crawl_args(seeds: list[str], out: Path, args: argparse.Namespace) -> list[str]:
    return ["archive", *seeds, "--target", "bench", "--output", str(out), "--scope", "host",
            "--concurrency", str(args.concurrency), "--per-host", str(args.per_host),
            "--delay", str(args.delay), "--parse-workers", "1", "--quiet"]


def politeness(out: Path, delay: float) -> tuple[float, int]:
    """Return the shortest gap between two request starts to one host, and how many gaps
    were shorter than the delay (less 10 ms of jitter), from the merged WARCs (robots.txt
    left out: every crawler reads it just before a host's first URL)."""
    starts: dict[str, list[datetime]] = defaultdict(list)
    for path in sorted(out.glob("bench/*/warc/*.warc.gz")):
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh):
                if record.rec_type != "request":
                    continue
                uri = record.rec_headers.get_header("WARC-Target-URI")
                if uri.endswith("/robots.txt"):
                    continue  # read before a host's first URL, outside its politeness
                date = record.rec_headers.get_header("WARC-Date")
                host = uri.split("/")[2]
                starts[host].append(datetime.fromisoformat(date.replace("Z", "+00:00")))
    gaps = []
    for times in starts.values():
        times.sort()
        gaps += [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    return (min(gaps) if gaps else 0.0), sum(1 for g in gaps if g < delay - 0.010)


def final_urls(out: Path) -> int:
    import sqlite3
    db = sqlite3.connect(f"file:{out / 'catalog.sqlite3'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT id FROM crawls WHERE target='bench' ORDER BY id DESC "
                         "LIMIT 1").fetchone()
        return int(db.execute("SELECT count(*) FROM captures WHERE crawl=? AND final=1 AND "
                              "warc_file IS NOT NULL", row).fetchone()[0])
    finally:
        db.close()


def run_single(seeds: list[str], work: Path, args: argparse.Namespace) -> Run:
    out = work / "single"
    cpu0, t0 = children_cpu(), time.monotonic()
    subprocess.run([*CLI, *crawl_args(seeds, out, args)], check=False)
    wall, cpu = time.monotonic() - t0, children_cpu() - cpu0
    gap, close = politeness(out, args.delay)
    return Run("crawler archive (SQLite queue)", final_urls(out), wall, cpu, 0.0, gap, close)


def run_distributed(seeds: list[str], work: Path, workers: int, args: argparse.Namespace,
                    ) -> Run:
    out = work / f"dist{workers}"
    redis_dir = work / f"redis{workers}"
    redis_dir.mkdir()
    server = Redis(redis_dir)
    try:
        import redis
        probe = redis.Redis(port=server.port)
        cpu0, t0 = children_cpu(), time.monotonic()
        first = subprocess.Popen([*CLI, *crawl_args(seeds, out, args), "--redis", server.url,
                                  "--worker-name", "w1"])
        while probe.get("crawler:bench:current") is None:
            time.sleep(0.01)
        others = [subprocess.Popen([*CLI, "worker", "bench", "--redis", server.url,
                                    "--name", f"w{n}", "--output", str(out), "--quiet"])
                  for n in range(2, workers + 1)]
        for proc in others:
            proc.wait()
        first.wait()
        wall, cpu = time.monotonic() - t0, children_cpu() - cpu0
        redis_cpu = server.cpu_seconds()
    finally:
        server.close()
    gap, close = politeness(out, args.delay)
    merged = json.loads(next(out.glob("bench/*/crawl.json")).read_text())
    return Run(f"{workers} worker(s), Redis queue", final_urls(out), wall, cpu, redis_cpu,
               gap, close, merged["distributed"]["seconds"])


def redis_memory(urls_count: int, work: Path) -> tuple[float, float]:
    """Return Redis's memory per URL for a queue of ``urls_count`` person-page URLs: while
    all are queued, and once only the seen-set holds them."""
    import asyncio

    import redis
    import redis.asyncio as aredis

    from crawler.archive.sharedfrontier import SharedFrontier
    from crawler.capture import urls
    from crawler.core.models import CrawlUrl, UrlKind

    directory = work / "redis-memory"
    directory.mkdir()
    server = Redis(directory)
    try:
        probe = redis.Redis(port=server.port)
        base = int(probe.info("memory")["used_memory"])

        async def fill() -> None:
            client = aredis.Redis(port=server.port)
            queue = SharedFrontier(client, "memorial:20261202T000000Z", delay=0.0)
            for start in range(0, urls_count, 2000):
                batch = []
                for n in range(start, min(start + 2000, urls_count)):
                    url = f"https://base.memo.ru/person/show/{1_000_000 + n}"
                    batch.append(CrawlUrl(url=url, key=urls.canonical_key(url),
                                          kind=UrlKind.PAGE, depth=3,
                                          via="https://base.memo.ru/person/list?page=17"))
                await queue.add(batch)
            await client.aclose()

        asyncio.run(fill())
        queued = int(probe.info("memory")["used_memory"]) - base
        for key in probe.scan_iter("crawler:*:queue:*"):
            probe.delete(key)
        seen = int(probe.info("memory")["used_memory"]) - base
    finally:
        server.close()
    return queued / urls_count, seen / urls_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--pages", type=int, default=150, help="pages per host")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=2, help="per worker")
    parser.add_argument("--per-host", type=int, default=1)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--memory-urls", type=int, default=200_000,
                        help="URLs queued to measure Redis's memory per URL (0: skip)")
    args = parser.parse_args()
    seeds = serve_hosts(args.hosts, args.pages, args.latency_ms / 1000)
    runs = []
    with tempfile.TemporaryDirectory(prefix="distbench-") as tmp:
        work = Path(tmp)
        runs.append(run_single(seeds, work, args))
        for workers in (int(w) for w in args.workers.split(",")):
            runs.append(run_distributed(seeds, work, workers, args))
        memory = redis_memory(args.memory_urls, work) if args.memory_urls else None
    peer = runs[0]
    cap = args.hosts * min(args.per_host / (args.latency_ms / 1000),
                           1 / args.delay if args.delay else float("inf"))
    print(f"{args.hosts} hosts x {args.pages} pages, {args.latency_ms:g} ms per response, "
          f"--concurrency {args.concurrency} per worker, --per-host {args.per_host}, "
          f"--delay {args.delay:g} (politeness allows at most {cap:.0f} requests/s in all)")
    print("| run | URLs | wall s | of which merge | URLs/s | vs SQLite | CPU ms/URL | "
          "of which Redis | shortest gap per host | gaps < delay |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in runs:
        print(f"| {run.label} | {run.urls} | {run.wall:.1f} | {run.merge:.1f} | "
              f"{run.rate:.1f} | "
              f"{run.rate / peer.rate:.2f}x | {run.cpu_ms:.2f} | "
              f"{1000 * run.redis_cpu / max(1, run.urls):.2f} | {run.min_gap * 1000:.0f} ms | "
              f"{run.close_gaps} |")
    if memory is not None:
        print(f"Redis memory, {args.memory_urls} person-page URLs: {memory[0]:.0f} B per URL "
              f"while queued, {memory[1]:.0f} B per URL once only the seen-set holds it")
    print(json.dumps([run.__dict__ for run in runs]))


if __name__ == "__main__":
    main()
