"""Crawl a generated local site with `crawler archive` and with GNU wget; print both and ratios.

    python benchmarks/crawl_vs_wget.py --pages 2000                       # zero latency
    python benchmarks/crawl_vs_wget.py --pages 400 --latency-ms 50 --per-host 8
    python benchmarks/crawl_vs_wget.py --pages 10000 --skip-wget          # peak RSS
    python benchmarks/crawl_vs_wget.py --pages 10000,100000 --repeat 3      # issue 15
    python benchmarks/crawl_vs_wget.py --pages 10000 --scratch /dev/shm     # no disk noise

Both tools crawl the same site from the same server process (benchsite.py) on 127.0.0.1, one
after the other, each writing a gzipped WARC. Reported per tool: URLs fetched (response
records in its WARC), wall seconds, URLs/s, CPU seconds per URL (user+system of the tool and
all its child processes), and peak RSS (sum over the tool's process tree, sampled every 20 ms).
Each tool runs --repeat times; the median run is shown.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchsite import run_server


@dataclass
class Run:
    """One measured crawl."""

    urls: int
    wall: float
    cpu: float
    peak_rss_mb: float

    @property
    def rate(self) -> float:
        return self.urls / self.wall

    @property
    def cpu_per_url_ms(self) -> float:
        return self.cpu / self.urls * 1000


def tree_rss_kb(pid: int) -> int:
    """Return the summed VmRSS of a process and its descendants."""
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def measure(cmd: list[str], cwd: Path) -> tuple[float, float, float]:
    """Run ``cmd``; return (wall seconds, CPU seconds incl. children, peak tree RSS in MB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_kb(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    wall = time.monotonic() - start
    done.set()
    sampler.join()
    if proc.returncode not in (0, 8):  # wget exits 8 when some URL returned an error
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, peak / 1024


def count_responses(warcs: list[Path]) -> int:
    """Return the number of response records in WARC files."""
    total = 0
    for path in warcs:
        with open(path, "rb") as fh:
            total += sum(1 for r in ArchiveIterator(fh) if r.rec_type == "response")
    return total


def run_crawler(url: str, work: Path, args: argparse.Namespace) -> Run:
    out = work / "crawl-output"  # not "crawler": a folder of that name in the working
    # directory would shadow an editable install of the package in the parser process
    cmd = [sys.executable, "-m", "crawler", "archive", url, "--scope", "host",
           "--delay", "0", "--per-host", str(args.per_host), "--concurrency",
           str(args.concurrency), "--quiet", "--output", str(out), "--target", "bench",
           *args.crawler_arg]
    wall, cpu, rss = measure(cmd, work)
    warcs = sorted(out.glob("bench/*/warc/*.warc.gz"))
    return Run(count_responses(warcs), wall, cpu, rss)


def run_wget(url: str, work: Path) -> Run:
    out = work / "wget"
    out.mkdir()
    cmd = ["wget", "--quiet", "--recursive", "--level=inf", "--page-requisites",
           "--compression=auto", "--warc-file=bench", "--no-warc-keep-log", url]
    wall, cpu, rss = measure(cmd, out)
    return Run(count_responses([out / "bench.warc.gz"]), wall, cpu, rss)


def use_scratch(directory: str | None) -> None:
    """Make every tool write its output and temporary files under ``directory``.

    wget writes each fetched file and a temporary file per record; on this machine's disk
    (ext4 mounted with ``discard``) file creation sometimes slows down after a large
    deletion, which moved wget's figures by up to 4x between runs of one benchmark.
    A tmpfs (``/dev/shm``) keeps that noise out of both tools' figures.
    """
    if directory:
        os.environ["TMPDIR"] = directory  # inherited by wget and the crawler's processes
        tempfile.tempdir = directory


def median_run(runs: list[Run]) -> Run:
    """Return the run with the median wall time."""
    return sorted(runs, key=lambda r: r.wall)[len(runs) // 2]


def run_rounds(pages: int, latency: float, repeat: int,
               tools: dict[str, Callable[[str, Path], Run]]) -> dict[str, list[Run]]:
    """Serve a site of ``pages`` from its own process and run every tool on it ``repeat``
    times, interleaved (one round: each tool in turn, each in a fresh temporary directory)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=run_server, args=(pages, latency, child), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{parent.recv()}/"
    runs: dict[str, list[Run]] = {tool: [] for tool in tools}
    try:
        for _ in range(repeat):
            for tool, run in tools.items():
                with tempfile.TemporaryDirectory() as tmp:
                    runs[tool].append(run(url, Path(tmp)))
    finally:
        server.terminate()
    return runs


def measure_size(pages: int, args: argparse.Namespace) -> dict[str, list[Run]]:
    """Crawl a site of ``pages`` ``args.repeat`` times with each tool, interleaved."""
    tools: dict[str, Callable[[str, Path], Run]] = {
        "crawler": lambda url, work: run_crawler(url, work, args)}
    if not args.skip_wget:
        tools["wget"] = run_wget
    return run_rounds(pages, args.latency_ms / 1000, args.repeat, tools)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", default="2000",
                        help="site size, or several comma-separated (each measured in turn)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--per-host", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-wget", action="store_true")
    parser.add_argument("--crawler-arg", action="append", default=[],
                        help="an extra option for `crawler archive` (repeatable), e.g. "
                             "--crawler-arg=--no-search-index")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--scratch", help="directory for both tools' output and temporary "
                                          "files, e.g. /dev/shm (default: the system's)")
    args = parser.parse_args()
    use_scratch(args.scratch)
    if not args.skip_wget and shutil.which("wget") is None:
        raise SystemExit("GNU wget is needed: apt-get install wget")
    sizes = [int(p) for p in str(args.pages).split(",")]
    measured = {pages: measure_size(pages, args) for pages in sizes}
    if args.json:
        print(json.dumps({pages: {tool: [{**r.__dict__, "rate": r.rate,
                                          "cpu_per_url_ms": r.cpu_per_url_ms} for r in rs]
                                  for tool, rs in runs.items()}
                          for pages, runs in measured.items()}, indent=2))
        return
    for pages, runs in measured.items():
        results = {tool: median_run(r) for tool, r in runs.items()}
        print(f"site: {pages} pages, latency {args.latency_ms:g} ms, crawler --per-host "
              f"{args.per_host} --concurrency {args.concurrency}, median of {args.repeat} "
              "(the run with the median wall time)")
        print(f"{'tool':8} {'URLs':>6} {'wall s':>7} {'URLs/s':>8} {'CPU ms/URL':>11} "
              f"{'peak RSS MB':>12}")
        for tool, r in results.items():
            print(f"{tool:8} {r.urls:6d} {r.wall:7.2f} {r.rate:8.1f} {r.cpu_per_url_ms:11.2f} "
                  f"{r.peak_rss_mb:12.1f}")
        if "wget" in runs:
            pairs = list(zip(runs["crawler"], runs["wget"], strict=True))
            rate = statistics.median(c.rate / w.rate for c, w in pairs)
            cpu = statistics.median(c.cpu_per_url_ms / w.cpu_per_url_ms for c, w in pairs)
            rss = statistics.median(c.peak_rss_mb / w.peak_rss_mb for c, w in pairs)
            print(f"ratio crawler/wget, median of {len(pairs)} interleaved pairs: URLs/s "
                  f"{rate:.2f}x, CPU per URL {cpu:.2f}x, peak RSS {rss:.2f}x")
        print()
    if len(sizes) > 1:
        peaks = {pages: statistics.median(r.peak_rss_mb for r in runs["crawler"])
                 for pages, runs in measured.items()}
        small, large = peaks[min(sizes)], peaks[max(sizes)]
        print(f"crawler peak RSS, median: {small:.1f} MB at {min(sizes)} pages, {large:.1f} MB "
              f"at {max(sizes)} pages ({(large / small - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
