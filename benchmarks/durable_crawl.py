"""Large local crawls: flat memory, pages/s, and a kill -9 at 50 % followed by a resume.

    python benchmarks/durable_crawl.py --pages 100000 --small 10000

1. Crawls a --small site and a --pages site (benchsite.py) and prints URLs, pages/s and the
   peak RSS of the crawler's process tree for each, and the ratio of the two peaks.
2. Crawls the --pages site again, sends SIGKILL once half of the first run's URLs are in the
   catalog, runs `crawler resume`, and checks that the catalog and the WARCs hold every URL of
   the uninterrupted run exactly once.
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchsite import run_server
from crawl_vs_wget import tree_rss_kb

CLI = [sys.executable, "-m", "crawler"]


def serve(pages: int) -> tuple[str, multiprocessing.process.BaseProcess]:
    """Start the benchmark site in its own process; return its URL and the process."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=run_server, args=(pages, 0.0, child), daemon=True)
    proc.start()
    return f"http://127.0.0.1:{parent.recv()}/", proc


def archive_cmd(url: str, out: Path) -> list[str]:
    return [*CLI, "archive", url, "--target", "bench", "--output", str(out), "--scope", "host",
            "--delay", "0", "--per-host", "4", "--quiet"]


def captured(out: Path) -> int:
    """Return the number of committed final captures."""
    try:
        db = sqlite3.connect(f"file:{out / 'catalog.sqlite3'}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT count(*) FROM captures WHERE final=1").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def timed_crawl(cmd: list[str]) -> tuple[float, float]:
    """Run a crawl; return (wall seconds, peak tree RSS in MB)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss_kb(proc.pid))
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"crawl failed with {proc.returncode}")
    return time.monotonic() - start, peak / 1024


def measure(pages: int, work: Path) -> tuple[int, float, float, float]:
    """Crawl a site of ``pages``; return (URLs, seconds, pages/s, peak RSS MB)."""
    url, server = serve(pages)
    try:
        out = work / f"run-{pages}"
        wall, rss = timed_crawl(archive_cmd(url, out))
    finally:
        server.terminate()
    db = sqlite3.connect(out / "catalog.sqlite3")
    urls = db.execute("SELECT count(*) FROM captures WHERE final=1").fetchone()[0]
    page_count = db.execute("SELECT count(*) FROM captures WHERE final=1 AND kind IN "
                            "('seed','page') AND status=200").fetchone()[0]
    db.close()
    return urls, wall, page_count / wall, rss


def kill_and_resume(pages: int, expected: int, work: Path) -> None:
    """Kill a crawl at 50 %, resume it, and check for losses and duplicates."""
    url, server = serve(pages)
    out = work / "killed"
    try:
        proc = subprocess.Popen(archive_cmd(url, out))
        while captured(out) < expected // 2 and proc.poll() is None:
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill = captured(out)
        wall, _ = timed_crawl([*CLI, "resume", "bench", "--output", str(out), "--quiet"])
    finally:
        server.terminate()
    db = sqlite3.connect(out / "catalog.sqlite3")
    keys = Counter(row[0] for row in db.execute(
        "SELECT key FROM captures WHERE final=1"))
    db.close()
    responses: Counter[str] = Counter()
    for warc in sorted(out.glob("bench/*/warc/*.warc.gz")):
        with open(warc, "rb") as fh:
            for record in ArchiveIterator(fh):
                if record.rec_type == "response":
                    responses[record.rec_headers.get_header("WARC-Target-URI")] += 1
    dup_rows = sum(1 for n in keys.values() if n > 1)
    dup_records = sum(1 for n in responses.values() if n > 1)
    print(f"kill -9 at {at_kill} of {expected} URLs, resume took {wall:.1f} s: "
          f"{len(keys)} URLs in the catalog (expected {expected}), "
          f"{dup_rows} duplicated in the catalog, {dup_records} fetched twice in the WARCs, "
          f"{len(list(out.glob('bench/*/warc/*.open')))} .open files left")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--skip-kill", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = []
        for pages in (args.small, args.pages):
            rows.append((pages, *measure(pages, work)))
            print(f"{pages:>7} pages: {rows[-1][1]} URLs in {rows[-1][2]:.1f} s, "
                  f"{rows[-1][3]:.1f} pages/s, {rows[-1][1] / rows[-1][2]:.1f} URLs/s, "
                  f"peak RSS {rows[-1][4]:.1f} MB", flush=True)
        print(f"peak RSS {args.pages} vs {args.small} pages: {rows[1][4] / rows[0][4]:.2f}x")
        if not args.skip_kill:
            kill_and_resume(args.pages, rows[1][1], work)


if __name__ == "__main__":
    main()
