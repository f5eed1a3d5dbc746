"""Recrawl an unchanged local site and report how many WARC bytes the recrawl writes.

    python benchmarks/recrawl_dedup.py                      # 2,000 pages, every profile
    python benchmarks/recrawl_dedup.py --pages 500 --cases heavy+validators

For each case the same site (benchsite.py, in its own process on 127.0.0.1) is crawled twice
into one archive root with `crawler archive`; the second crawl is a recrawl of an unchanged
site. Reported: WARC bytes of each crawl, the recrawl/first ratio, records written, and wall
time. GNU wget is the peer: it crawls the same site twice with --warc-cdx, then
--warc-dedup against the first crawl's CDX (wget's own payload-digest deduplication).

Cases: light / heavy page weights (see benchsite.py), each with and without validators (ETag
and Last-Modified; with them our recrawl uses conditional requests and gets 304s).
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchsite import run_server

CASES = ["light", "light+validators", "heavy", "heavy+validators"]


@dataclass
class CrawlBytes:
    """One crawl's WARC output."""

    warc_bytes: int
    records: dict[str, int]
    wall: float
    type_bytes: dict[str, int]  # compressed bytes per record type


def warc_stats(paths: list[Path], wall: float) -> CrawlBytes:
    """Return the size, record counts and bytes per record type of WARC files."""
    records: collections.Counter[str] = collections.Counter()
    sizes: collections.Counter[str] = collections.Counter()
    for path in paths:
        with open(path, "rb") as fh:
            iterator = ArchiveIterator(fh)
            for record in iterator:
                records[record.rec_type] += 1
                iterator.read_to_end(record)
                sizes[record.rec_type] += iterator.get_record_length()
    return CrawlBytes(sum(p.stat().st_size for p in paths), dict(records), wall, dict(sizes))


def crawler_twice(url: str, work: Path, per_host: int) -> list[CrawlBytes]:
    """Crawl with `crawler archive` twice into one root; return both crawls' output."""
    out = work / "crawl-output"  # not "crawler": see crawl_vs_wget.py
    cmd = [sys.executable, "-m", "crawler", "archive", url, "--scope", "host", "--delay",
           "0", "--per-host", str(per_host), "--quiet", "--output", str(out), "--target",
           "bench"]
    found = []
    for _ in range(2):
        start = time.monotonic()
        subprocess.run(cmd, check=True, cwd=work)
        wall = time.monotonic() - start
        latest = sorted((out / "bench").glob("2*"))[-1]
        found.append(warc_stats(sorted((latest / "warc").glob("*.warc.gz")), wall))
        time.sleep(1.1)  # distinct crawl ids and timestamps
    return found


def wget_twice(url: str, work: Path) -> list[CrawlBytes]:
    """Crawl with GNU wget twice, the second deduplicating against the first's CDX."""
    found = []
    for n, extra in enumerate((["--warc-cdx"], [f"--warc-dedup={work / 'w0' / 'w0.cdx'}"])):
        folder = work / f"w{n}"
        folder.mkdir()
        cmd = ["wget", "--quiet", "--recursive", "--level=inf", "--page-requisites",
               "--compression=auto", f"--warc-file=w{n}", "--no-warc-keep-log", *extra, url]
        start = time.monotonic()
        code = subprocess.run(cmd, cwd=folder).returncode
        if code not in (0, 8):
            raise SystemExit(f"wget failed ({code})")
        found.append(warc_stats([folder / f"w{n}.warc.gz"], time.monotonic() - start))
    return found


def run_case(case: str, pages: int, per_host: int, with_wget: bool) -> dict[str, object]:
    """Serve one case's site and measure both tools on it."""
    profile, _, validators = case.partition("+")
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=run_server, args=(pages, 0.0, child, profile, bool(validators)),
                         daemon=True)
    server.start()
    url = f"http://127.0.0.1:{parent.recv()}/"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result: dict[str, object] = {"case": case,
                                         "crawler": crawler_twice(url, Path(tmp), per_host)}
        if with_wget:
            with tempfile.TemporaryDirectory() as tmp:
                result["wget"] = wget_twice(url, Path(tmp))
    finally:
        server.terminate()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--per-host", type=int, default=4)
    parser.add_argument("--cases", default=",".join(CASES),
                        help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--skip-wget", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with_wget = not args.skip_wget and shutil.which("wget") is not None
    results = [run_case(c, args.pages, args.per_host, with_wget) for c in args.cases.split(",")]
    if args.json:
        print(json.dumps(results, default=lambda o: o.__dict__, indent=2))
        return
    print(f"site: {args.pages} pages; WARC bytes of the first crawl and of a recrawl of the "
          "unchanged site")
    print(f"{'case':18} {'tool':8} {'first':>12} {'recrawl':>12} {'ratio':>7} "
          f"{'recrawl s':>9}  recrawl records")
    for result in results:
        for tool in ("crawler", "wget"):
            if tool not in result:
                continue
            first, second = result[tool]  # type: ignore[misc]
            print(f"{result['case']:18} {tool:8} {first.warc_bytes:12,d} "
                  f"{second.warc_bytes:12,d} {second.warc_bytes / first.warc_bytes:7.2%} "
                  f"{second.wall:9.2f}  {second.records}")
    print("\nrecrawl: bytes per record of each type (gzip member, WARC headers and block)")
    for result in results:
        for tool in ("crawler", "wget"):
            if tool in result:
                second = result[tool][1]  # type: ignore[index]
                per = ", ".join(f"{kind} {second.type_bytes[kind] / n:,.0f} B"
                                for kind, n in sorted(second.records.items()))
                print(f"{result['case']:18} {tool:8} {per}")


if __name__ == "__main__":
    main()
