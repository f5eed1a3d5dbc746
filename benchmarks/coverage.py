"""Coverage of a large name-index site, by `crawler archive` and by GNU wget, and of the same
kind of site by a sequence of time-boxed runs.

    python benchmarks/coverage.py                              # 100,000 persons
    python benchmarks/coverage.py --persons 20000 --box 10 --boxed-persons 5000

The site (benchsite.py, profile ``listing``, its own process on 127.0.0.1) is built like
Memorial's database: person pages (``/person?id=N``) reached only through alphabetical
listings paged by ``?page=N``, several letters with more than 150 listing pages. Reported:

1. one crawl with default settings (but no politeness delay): URLs of the site fetched, of
   how many, coverage, wall time, and the end the crawler declared; the same for
   ``wget --recursive`` on the same site (its coverage from the response records of its
   WARC);
2. a scheduled-style sequence: `crawler archive --max-time BOX` again and again on a
   smaller site of the same kind, as a daemon would, until a run ends complete: coverage
   after each run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchsite import build_listing_site
from benchsite import serve_listing as serve


def expected_paths(persons: int) -> set[str]:
    """Return every path of the site (what full coverage means)."""
    return set(build_listing_site(persons))


def crawler_paths(root: Path) -> set[str]:
    """Return the paths the crawler captured with a response, over every crawl."""
    db = sqlite3.connect(root / "catalog.sqlite3")
    try:
        rows = db.execute("SELECT DISTINCT url FROM captures WHERE status IS NOT NULL")
        return {"/" + url.split("/", 3)[3] for (url,) in rows}
    finally:
        db.close()


def crawl(url: str, root: Path, *extra: str) -> tuple[float, dict[str, object]]:
    """Run one `crawler archive`; return its wall time and its JSON summary."""
    cmd = [sys.executable, "-m", "crawler", "archive", url, "--scope", "host", "--delay", "0",
           "--per-host", "8", "--quiet", "--json", "--output", str(root), "--target",
           "bench", "--recheck", "0", *extra]
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return time.monotonic() - start, json.loads(done.stdout)


def wget_paths(url: str, work: Path) -> tuple[float, set[str]]:
    """Crawl with GNU wget; return its wall time and the paths of its response records."""
    start = time.monotonic()
    subprocess.run(["wget", "--quiet", "--recursive", "--level=inf", "--page-requisites",
                    "--warc-file=w", "--no-warc-keep-log", "--no-verbose", url], cwd=work,
                   check=False)
    wall = time.monotonic() - start
    found = set()
    with open(work / "w.warc.gz", "rb") as fh:
        for record in ArchiveIterator(fh):
            if record.rec_type == "response":
                uri = record.rec_headers.get_header("WARC-Target-URI")
                found.add("/" + uri.split("/", 3)[3])
    return wall, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--boxed-persons", type=int, default=10_000)
    parser.add_argument("--box", type=float, default=15.0, help="seconds per time-boxed run")
    parser.add_argument("--skip-wget", action="store_true")
    args = parser.parse_args()

    expected = expected_paths(args.persons)
    url, server = serve(args.persons)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wall, summary = crawl(url, Path(tmp))
            got = crawler_paths(Path(tmp)) & expected
        print(f"site: {args.persons:,} persons, {len(expected):,} URLs")
        print(f"crawler  {len(got):>8,} of {len(expected):,}  {len(got) / len(expected):8.3%}"
              f"  {wall:7.1f} s  ended {summary['status']} {summary['shortfall']}")
        if not args.skip_wget and shutil.which("wget"):
            with tempfile.TemporaryDirectory() as tmp:
                wall, found = wget_paths(url, Path(tmp))
            found &= expected
            print(f"wget     {len(found):>8,} of {len(expected):,}  "
                  f"{len(found) / len(expected):8.3%}  {wall:7.1f} s")
    finally:
        server.terminate()

    expected = expected_paths(args.boxed_persons)
    url, server = serve(args.boxed_persons)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            print(f"\ntime-boxed runs of {args.box:g} s on {len(expected):,} URLs:")
            for run in range(1, 41):
                wall, summary = crawl(url, root, "--max-time", f"{args.box:g}")
                got = crawler_paths(root) & expected
                print(f"  run {run:>2}: {wall:5.1f} s, ended {summary['status']:<10} "
                      f"coverage {len(got):>7,} of {len(expected):,} "
                      f"({len(got) / len(expected):.2%})")
                if summary["status"] == "complete":
                    break
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
