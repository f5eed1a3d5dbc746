"""The cheapest crawl the mandated libraries allow, against GNU wget and `crawler archive`.

    python benchmarks/library_floor.py --pages 10000 --repeat 3 --scratch /dev/shm

Issue 15 asks the crawler for wget's URLs per second within 2x its CPU per URL. This
benchmark asks whether any crawler built on httpx, warcio and BeautifulSoup could: it runs a
"floor" crawl that does only what every archiving crawl must do with them, and nothing else:

* fetch each URL with httpx (16 in flight, keep-alive), either with a plain ``AsyncClient``
  (``httpx``) or with the crawler's own ``Fetcher`` (``fetcher``: httpx with the crawler's
  leaner connection keeping, the cheapest use of httpx we know);
* write a request and a response record with warcio's ``WARCWriter`` (gzip, as wget does);
* parse each HTML page with BeautifulSoup (lxml) for ``a``/``link``/``img``/``script``
  links, and each stylesheet for ``url()``, and queue the same host's new URLs.

No robots.txt, politeness, catalog, deduplication, crawl log, text extraction, search index,
resume marks or parser process: the floor is a lower bound on the CPU per URL of a crawler
on these libraries, all in one process (so no hand-off costs either). wget and the crawler
crawl the same site from the same server process, interleaved with the floor runs; the
ratios are medians over the --repeat rounds. CPU is user + system of the tool's processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crawl_vs_wget import (
    Run,
    count_responses,
    measure,
    median_run,
    run_crawler,
    run_rounds,
    run_wget,
    use_scratch,
)

HERE = Path(__file__).resolve()
CSS_URL = re.compile(rb"url\(\s*['\"]?([^'\")\s]+)")
PARTS: dict[int, dict[str, float]] = {}  # id(Run) -> the floor child's CPU split
LINK_ATTRS = {"a": "href", "link": "href", "img": "src", "script": "src"}


async def floor_crawl(start: str, warc_path: Path, client_kind: str,
                      inflight: int) -> dict[str, float]:
    """Crawl ``start``'s host with httpx + warcio + BeautifulSoup and nothing else; return
    the CPU seconds spent writing records (warcio) and finding links (bs4)."""
    import httpx
    from bs4 import BeautifulSoup
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    host = urlsplit(start).netloc
    spent = {"warcio": 0.0, "bs4": 0.0}  # CPU seconds in the two synchronous steps
    seen = {start}
    queue: asyncio.Queue[str] = asyncio.Queue()
    queue.put_nowait(start)
    busy = 0

    def found(page_url: str, body: bytes, content_type: str, coding: str) -> None:
        started = time.process_time()
        links: list[str] = []
        if coding == "gzip" and content_type.startswith(("text/html", "text/css")):
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)  # the WARC keeps it coded
        if content_type.startswith("text/html"):
            soup = BeautifulSoup(body, "lxml")
            for tag in soup.find_all(list(LINK_ATTRS)):
                value = tag.get(LINK_ATTRS[tag.name])
                if isinstance(value, str):
                    links.append(value)
        elif content_type.startswith("text/css"):
            links = [m.decode("latin-1") for m in CSS_URL.findall(body)]
        for link in links:
            url = urljoin(page_url, link).partition("#")[0]
            if url not in seen and urlsplit(url).netloc == host:
                seen.add(url)
                queue.put_nowait(url)
        spent["bs4"] += time.process_time() - started

    with open(warc_path, "wb") as out:
        writer = WARCWriter(out, gzip=True)

        def archive(url: str, request_head: list[tuple[str, str]], status: str,
                    headers: list[tuple[str, str]], body: bytes) -> None:
            from io import BytesIO
            started = time.process_time()
            path = urlsplit(url).path or "/"
            request = writer.create_warc_record(
                url, "request", payload=BytesIO(b""),
                http_headers=StatusAndHeaders(f"GET {path} HTTP/1.1", request_head,
                                              is_http_request=True))
            response = writer.create_warc_record(
                url, "response", payload=BytesIO(body),
                http_headers=StatusAndHeaders(status, headers, protocol="HTTP/1.1"))
            writer.write_record(response)
            writer.write_record(request)
            spent["warcio"] += time.process_time() - started

        async def with_httpx() -> None:
            nonlocal busy
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=inflight)) as c:
                async def worker() -> None:
                    nonlocal busy
                    while True:
                        url = await queue.get()
                        busy += 1
                        async with c.stream("GET", url) as response:
                            body = b"".join([chunk async for chunk in response.aiter_raw()])
                        archive(url, list(response.request.headers.items()),
                                f"{response.status_code} {response.reason_phrase}",
                                list(response.headers.items()), body)
                        found(url, body, response.headers.get("content-type", ""),
                              response.headers.get("content-encoding", ""))
                        busy -= 1
                        queue.task_done()
                await run_workers(worker)

        async def with_fetcher() -> None:
            from crawler.capture.fetcher import Fetcher, FetchSettings
            async with Fetcher(FetchSettings(max_connections=inflight)) as fetcher:
                async def worker() -> None:
                    nonlocal busy
                    while True:
                        url = await queue.get()
                        busy += 1
                        result = await fetcher.fetch(url)
                        assert result.body is not None, (url, result.failure_detail)
                        result.body.seek(0)
                        body = result.body.read()
                        result.body.close()
                        headers = [(k.decode("latin-1"), v.decode("latin-1"))
                                   for k, v in result.headers]
                        request_head = [tuple(line.split(": ", 1)) for line in
                                        result.request_head.decode("latin-1").split("\r\n")[1:]
                                        if ": " in line]
                        archive(url, request_head,  # type: ignore[arg-type]
                                f"{result.status} {result.reason}", headers, body)
                        named = {k.lower(): v for k, v in headers}
                        found(url, body, named.get("content-type", ""),
                              named.get("content-encoding", ""))
                        busy -= 1
                        queue.task_done()
                await run_workers(worker)

        async def run_workers(worker: object) -> None:
            tasks = [asyncio.create_task(worker()) for _ in range(inflight)]  # type: ignore[operator]
            await queue.join()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        await (with_httpx() if client_kind == "httpx" else with_fetcher())
    return spent


def run_floor(url: str, work: Path, client_kind: str, inflight: int) -> Run:
    """Run the floor crawl in a child process and measure it as the other tools are."""
    warc = work / "floor.warc.gz"
    cmd = [sys.executable, str(HERE), "--floor-child", url, str(warc), client_kind,
           str(inflight)]
    wall, cpu, rss = measure(cmd, work)
    run = Run(count_responses([warc]), wall, cpu, rss)
    PARTS[id(run)] = json.loads((work / "spent.json").read_text())
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--inflight", type=int, default=16)
    parser.add_argument("--per-host", type=int, default=4, help="for `crawler archive`")
    parser.add_argument("--scratch", help="directory for every tool's output and temporary "
                                          "files, e.g. /dev/shm (default: the system's)")
    args = parser.parse_args()
    use_scratch(args.scratch)
    args.concurrency, args.crawler_arg = args.inflight, []  # what run_crawler reads
    tools: dict[str, Callable[[str, Path], Run]] = {
        "wget": run_wget,
        "floor-httpx": lambda url, work: run_floor(url, work, "httpx", args.inflight),
        "floor-fetcher": lambda url, work: run_floor(url, work, "fetcher", args.inflight),
        "crawler": lambda url, work: run_crawler(url, work, args)}
    runs = run_rounds(args.pages, 0.0, args.repeat, tools)
    print(f"site: {args.pages} pages, zero latency, {args.inflight} in flight, "
          f"median of {args.repeat} rounds (the run with the median wall time)")
    print(f"{'tool':14} {'URLs':>6} {'wall s':>7} {'URLs/s':>8} {'CPU ms/URL':>11} "
          f"{'peak RSS MB':>12} {'URLs/s vs wget':>15} {'CPU/URL vs wget':>16}")
    for tool in tools:
        r = median_run(runs[tool])
        pairs = list(zip(runs[tool], runs["wget"], strict=True))
        rate = statistics.median(t.rate / w.rate for t, w in pairs)
        cpu = statistics.median(t.cpu_per_url_ms / w.cpu_per_url_ms for t, w in pairs)
        print(f"{tool:14} {r.urls:6d} {r.wall:7.2f} {r.rate:8.1f} {r.cpu_per_url_ms:11.2f} "
              f"{r.peak_rss_mb:12.1f} {rate:14.2f}x {cpu:15.2f}x")
    wget_rate = statistics.median(w.rate for w in runs["wget"])
    wget_cpu = statistics.median(w.cpu_per_url_ms for w in runs["wget"])
    print(f"floor CPU ms per URL by step (median; the main process only), wget's whole "
          f"crawl {wget_cpu:.2f}:")
    for tool in ("floor-httpx", "floor-fetcher"):
        split = {step: statistics.median(PARTS[id(r)][step] / r.urls * 1000 for r in runs[tool])
                 for step in ("process", "warcio", "bs4")}
        rest = split["process"] - split["warcio"] - split["bs4"]
        print(f"  {tool:14} fetching and the rest {rest:.2f}, warcio {split['warcio']:.2f}, "
              f"bs4 {split['bs4']:.2f}")
    for tool in ("floor-httpx", "floor-fetcher"):
        cpu_ms = statistics.median(t.cpu_per_url_ms for t in runs[tool])
        print(f"{tool}: even spread perfectly over 2 cores with nothing else running, "
              f"2000 / {cpu_ms:.2f} ms = {2000 / cpu_ms:.0f} URLs/s at most, "
              f"{2000 / cpu_ms / wget_rate:.2f}x wget's median")


def floor_child() -> None:
    """Child process entry: ``--floor-child URL WARC CLIENT INFLIGHT``."""
    url, warc, client_kind, inflight = sys.argv[2], Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    spent = asyncio.run(floor_crawl(url, warc, client_kind, inflight))
    spent["process"] = time.process_time()  # imports and fetching are the rest
    (warc.parent / "spent.json").write_text(json.dumps(spent))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--floor-child":
        floor_child()
    else:
        main()
