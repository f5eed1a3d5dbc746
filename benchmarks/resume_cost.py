"""What a resume reads after a kill -9, with the WARC watermarks and without them.

    python benchmarks/resume_cost.py --sizes 5000,40000

For each size: crawl a benchsite of that many pages, kill -9 the crawl once 90 % of them are
in the catalog, copy the killed archive twice, and run the resume's recovery step
(``recover_warcs``: close open files, find the records the catalog lacks) on each copy: once
reading from the marks the crawl committed (what `crawler resume` does), once reading every
file whole (what it did before the marks). Printed per size: WARC bytes on disk, bytes read,
seconds, and the records found and entered, which must be the same both ways.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from durable_crawl import archive_cmd, captured, serve

from crawler.archive.catalog import Catalog
from crawler.archive.recovery import recover_warcs
from crawler.crawl.engine import MAX_EXTRACT_BYTES


def killed_crawl(pages: int, work: Path) -> Path:
    """Crawl ``pages`` and kill -9 the crawl at 90 %; return the archive root."""
    url, server = serve(pages)
    out = work / f"killed-{pages}"
    try:
        proc = subprocess.Popen(archive_cmd(url, out))
        while proc.poll() is None and captured(out) < pages * 0.9:
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        server.terminate()
    return out


def recovery(root: Path, *, with_marks: bool) -> tuple[float, int, int]:
    """Run the recovery step of a resume on ``root``; return (seconds, bytes read, orphans)."""
    catalog = Catalog.open(root)
    try:
        crawl = catalog.crawls("bench")[-1]
        warc_dir = crawl.directory / "warc"
        started = time.perf_counter()
        found = recover_warcs(warc_dir, lambda name: catalog.record_offsets(crawl.pk, name),
                              payload_cap=MAX_EXTRACT_BYTES,
                              marks=catalog.warc_marks(crawl.pk) if with_marks else None)
        seconds = time.perf_counter() - started
    finally:
        catalog.close()
    read = sum(found.read_to.values()) - found.skipped_bytes
    return seconds, read, len(found.orphans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5000,40000")
    args = parser.parse_args()
    print(f"{'pages':>7} {'WARC MB':>8} {'marks: MB read':>15} {'s':>6} {'orphans':>8}   "
          f"{'whole: MB read':>15} {'s':>6} {'orphans':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for pages in (int(s) for s in args.sizes.split(",")):
            killed = killed_crawl(pages, work)
            warc_mb = sum(p.stat().st_size for p in killed.rglob("*.warc.gz*")) / 1e6
            results = []
            for with_marks in (True, False):
                copy = work / f"copy-{pages}-{with_marks}"
                shutil.copytree(killed, copy)
                results.append(recovery(copy, with_marks=with_marks))
            (m_s, m_read, m_orphans), (w_s, w_read, w_orphans) = results
            if m_orphans != w_orphans:
                raise SystemExit(f"the marks lost records: {m_orphans} found, {w_orphans} "
                                 "in the files")
            print(f"{pages:>7} {warc_mb:>8.1f} {m_read / 1e6:>15.2f} {m_s:>6.2f} "
                  f"{m_orphans:>8}   {w_read / 1e6:>15.2f} {w_s:>6.2f} {w_orphans:>8}")


if __name__ == "__main__":
    main()
