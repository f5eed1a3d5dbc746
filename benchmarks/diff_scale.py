"""Detection of a three-million-page target in bounded memory: time and peak RSS of comparing
two crawls of a synthetic catalog of N URLs each (default 1,000,000).

    python benchmarks/diff_scale.py                          # 1,000,000 URLs, both cases
    python benchmarks/diff_scale.py --urls 100000 --cases recrawl

The catalog is built with the real schema (``Catalog.open``) and rows shaped as a crawl
writes them; the pages whose text changed have real WARC records (written by the crawler's
own ``WarcWriter``), because their comparison reads the text back. Cases:

* ``recrawl``: a recrawl of a large site where little changed: of N person pages, 1 % were
  edited, 0.25 % removed (404), 0.25 % are new, 0.5 % are still served but no longer linked
  (delisted), and the rest are unchanged, half by payload digest (200) and half by 304;
* ``site-gone``: every one of the N pages answers 404 (a site taken down whole);
* ``site-dark``: the host stopped answering, so every one of the N pages was recorded as not
  fetched (``host-hung``: the crawl's circuit breaker gave the host up), as after a court
  order took the server off the network.

Each case is measured in fresh processes started from a directory other than the archive
root: ``crawler diff --json`` (compare and report, read-only) as a user would run it; then the
steps detection runs after a crawl: ``compare`` (offline classification), ``apply_states``
(classes, states and events written to the catalog) and the report (``report.json`` and
``findings.jsonl``). Peak RSS is each process's own maximum resident set (``VmHWM``),
imports included.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crawler.archive.catalog import Catalog
from crawler.archive.warc import WarcSettings, WarcWriter
from crawler.capture import urls
from crawler.core.models import FetchResult

HOST = "memorial.example"
TARGET = "bench"
FIRST, SECOND = "20261101T000000Z", "20261201T000000Z"
CASES = ("recrawl", "site-gone", "site-dark")
COLUMNS = ("crawl", "url", "key", "kind", "depth", "fetched_at", "status", "mime", "digest",
           "length", "warc_file", "warc_offset", "warc_length", "record_type", "text_hash",
           "final", "surt", "record_id", "etag", "failure")


def page(n: int, edited: bool) -> bytes:
    """Return the HTML of person page ``n`` (its edited version if ``edited``)."""
    case = "".join("абвгдежзик"[int(c)] for c in str(n))  # each page's own edit: a block
    # that changed the same way on many pages would be taken for a rotating block
    fate = "Арестован в 1937 году." + (f" Реабилитирован, дело «{case}»." if edited else "")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Person {n}</title></head>"
            f"<body><main><h1>Person {n}</h1><p>Born {1880 + n % 40}.</p><p>{fate}</p>"
            f"</main></body></html>").encode()


def archived(writer: WarcWriter, url: str, body: bytes, when: datetime) -> dict[str, object]:
    """Write a real response record; return its catalog fields."""
    entry = writer.write_exchange(FetchResult(
        url=url, started=when, status=200, reason="OK",
        headers=[(b"Content-Type", b"text/html; charset=utf-8")], body=io.BytesIO(body),
        body_length=len(body), peer_ip="127.0.0.1",
        request_head=f"GET {url} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()))
    return {"warc_file": entry.filename, "warc_offset": entry.offset,
            "warc_length": entry.length, "digest": entry.digest, "record_type": "response",
            "record_id": entry.record_id}


def build(root: Path, n: int, case: str) -> None:
    """Create the archive root with two crawls of ``n`` URLs each."""
    catalog = Catalog.open(root)
    keys = [f"{urls.canonical_key(f'http://{HOST}/')}person/{i}" for i in range(n + n)]
    assert keys[7] == urls.canonical_key(f"http://{HOST}/person/7")
    seed = f"http://{HOST}/"
    try:
        pks = []
        for crawl_id in (FIRST, SECOND):
            directory = root / TARGET / crawl_id
            (directory / "warc").mkdir(parents=True)
            pks.append(catalog.add_crawl(TARGET, crawl_id, directory, {"seeds": [seed]}))
        edited = set(range(0, n, 100)) if case == "recrawl" else set()  # 1 %
        removed = (set(range(1, n, 400)) if case == "recrawl"  # 0.25 %
                   else set(range(n)) if case == "site-gone" else set())
        dark = case == "site-dark"
        delisted = set(range(2, n, 200)) if case == "recrawl" else set()  # 0.5 %
        new = range(n, n + n // 400) if case == "recrawl" else range(0)  # 0.25 % new
        for index, (pk, crawl_id) in enumerate(zip(pks, (FIRST, SECOND), strict=True)):
            when = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=30 * index)
            stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
            writer = WarcWriter(WarcSettings(directory=root / TARGET / crawl_id / "warc"))
            rows: list[tuple[object, ...]] = []
            linked: list[tuple[int, str]] = []
            people = list(range(n)) + (list(new) if index == 1 else [])
            for i in people:
                url = f"http://{HOST}/person/{i}"
                row: dict[str, object] = {
                    "crawl": pk, "url": url, "key": keys[i], "kind": "page", "depth": 1,
                    "fetched_at": stamp, "status": 200, "mime": "text/html",
                    "digest": f"sha1:P{i:031d}", "length": 300,
                    "warc_file": "x.warc.gz", "warc_offset": i, "warc_length": 500,
                    "record_type": "response", "text_hash": f"T{i}", "final": 1,
                    "surt": keys[i].lower(), "record_id": f"<urn:uuid:{pk}-{i}>",
                    "etag": None, "failure": None}
                if index == 1 and dark:
                    row.update(status=None, failure="host-hung", mime=None, digest=None,
                               length=None, warc_file=None, warc_offset=None,
                               warc_length=None, record_type=None, text_hash=None,
                               record_id=None)
                elif index == 1 and i in removed:
                    row.update(status=404, digest=f"sha1:G{i:031d}", text_hash=f"G{i}")
                elif i in edited:
                    row.update(archived(writer, url, page(i, index == 1), when))
                    row["text_hash"] = f"E{i}-{index}"
                elif index == 1 and i < n and i % 2:  # the server answered 304
                    row.update(status=304, record_type="revisit")
                if not (index == 1 and (i in delisted or i in removed or dark)):
                    linked.append((pk, keys[i]))
                rows.append(tuple(row[c] for c in COLUMNS))
                if len(rows) >= 50_000:
                    _insert(catalog, rows, linked)
            _insert(catalog, rows, linked)
            writer.close()
            catalog.finish_crawl(pk, "complete", "done", 0)
    finally:
        catalog.close()


def _insert(catalog: Catalog, rows: list[tuple[object, ...]],
            linked: list[tuple[int, str]]) -> None:
    with catalog.transaction():
        catalog.db.executemany(f"INSERT INTO captures ({', '.join(COLUMNS)}) VALUES "
                               f"({', '.join('?' * len(COLUMNS))})", rows)
        catalog.db.executemany("INSERT OR IGNORE INTO linked (crawl, key) VALUES (?, ?)",
                               linked)
    rows.clear()
    linked.clear()


def peak_rss_mb() -> float:
    """Return this process's own peak resident set (VmHWM), in MB.

    Not ``getrusage``: on Linux its ``ru_maxrss`` survives ``exec``, so a process started by
    this benchmark after it built a million-URL catalog in memory reports the builder's peak
    (320 MB), not its own."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def detect(root: Path) -> dict[str, object]:
    """Run detection's steps on the latest crawl; return times, peak RSS and counts."""
    from crawler.capture.settings import DetectSettings
    from crawler.detection.comparison import compare
    from crawler.detection.states import apply_states
    from crawler.reporting import report

    catalog = Catalog.open(root)
    try:
        after = catalog.crawls(TARGET)[-1]
        started = time.perf_counter()
        comparison = compare(catalog, after)
        compared = time.perf_counter()
        events = apply_states(catalog, comparison, DetectSettings())
        applied = time.perf_counter()
        data = report.build(catalog, comparison, events)
        report.write(data, after.directory, report.detail_lines(catalog, comparison, events))
        reported = time.perf_counter()
    finally:
        catalog.close()
    return {"compare_s": compared - started, "states_s": applied - compared,
            "report_s": reported - applied,
            "peak_rss_mb": peak_rss_mb(),
            "classes": comparison.counts(), "events": len(events),
            "held": len(comparison.findings)}


def diff(root: Path) -> dict[str, object]:
    """Run ``crawler diff --json`` in this process; return its time and peak RSS."""
    from crawler.commands.cli import cli

    started = time.perf_counter()
    with open(root.parent / "diff.json", "w") as sink, contextlib.redirect_stdout(sink):
        cli.main(["diff", TARGET, "--output", str(root), "--json"], standalone_mode=False)
    return {"diff_s": time.perf_counter() - started,
            "diff_peak_rss_mb": peak_rss_mb()}


def inner(step: str, root: Path, cwd: Path) -> dict[str, object]:
    """Run one step in a fresh process (its own peak RSS), from ``cwd``."""
    out = subprocess.run([sys.executable, __file__, f"--{step}", str(root)], cwd=cwd,
                         check=True, capture_output=True, text=True)
    found: dict[str, object] = json.loads(out.stdout)
    return found


def run_case(case: str, n: int) -> dict[str, object]:
    """Build one case in a temporary root and measure it."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "archives"
        start = time.perf_counter()
        build(root, n, case)
        built = time.perf_counter() - start
        work = Path(tmp) / "elsewhere"  # run from a directory other than the archive root
        work.mkdir()
        result = {"case": case, "urls": n, "build_s": built,
                  "catalog_mb": (root / "catalog.sqlite3").stat().st_size / 1e6,
                  **inner("diff", root, work), **inner("detect", root, work)}
        shutil.rmtree(root)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", type=int, default=1_000_000, help="URLs per crawl")
    parser.add_argument("--cases", default=",".join(CASES), help=", ".join(CASES))
    parser.add_argument("--detect", type=Path, help=argparse.SUPPRESS)  # inner processes
    parser.add_argument("--diff", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.detect or args.diff:
        print(json.dumps(detect(args.detect) if args.detect else diff(args.diff)))
        return
    results = [run_case(case, args.urls) for case in args.cases.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'case':10} {'URLs/crawl':>10} {'catalog':>9} {'compare':>8} {'states':>8} "
          f"{'report':>7} {'peak RSS':>9} {'held':>9} {'crawler diff':>13} {'diff RSS':>9}")
    for r in results:
        print(f"{r['case']:10} {r['urls']:10,d} {r['catalog_mb']:7.0f}MB "
              f"{r['compare_s']:7.1f}s {r['states_s']:7.1f}s {r['report_s']:6.1f}s "
              f"{r['peak_rss_mb']:7.1f}MB {r['held']:9,d} {r['diff_s']:12.1f}s "
              f"{r['diff_peak_rss_mb']:7.1f}MB")
    for r in results:
        print(f"{r['case']}: classes {r['classes']}; {r['events']} events")


if __name__ == "__main__":
    main()
