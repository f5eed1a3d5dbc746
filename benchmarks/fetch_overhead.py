"""CPU per request of the crawler's HTTP client against a minimal asyncio HTTP/1.1 client.

    python benchmarks/fetch_overhead.py --requests 4000 --repeat 3
    python benchmarks/fetch_overhead.py --extra-path /tmp/sniffio-only   # a module set to try

Both clients fetch the same pages of the local benchmark site (benchsite.py, zero latency, in
its own process) with the same number of requests in flight over keep-alive connections. The
figure is the client process's CPU time (user + system) per request: what fetching costs the
crawl's event loop before any WARC writing or parsing. The minimal client is the floor: it
writes a GET, reads the head and a Content-Length body, and nothing else. Each client runs in
a fresh process, the two interleaved, --repeat pairs; medians are printed.

``--extra-path DIR`` puts DIR first on the crawler client's sys.path only (for measuring a
dependency, e.g. sniffio, with and without).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchsite import run_server

HERE = Path(__file__).resolve().parent


async def _crawler_client(base: str, paths: list[str], inflight: int) -> None:
    from crawler.capture.fetcher import Fetcher, FetchSettings

    settings = FetchSettings(max_connections=inflight)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for path in paths:
        queue.put_nowait(path)
    async with Fetcher(settings) as fetcher:
        async def worker() -> None:
            while not queue.empty():
                result = await fetcher.fetch(base + queue.get_nowait())
                assert result.status == 200, (result.status, result.failure_detail)
                if result.body is not None:
                    result.body.close()
        await asyncio.gather(*(worker() for _ in range(inflight)))


async def _minimal_client(base: str, paths: list[str], inflight: int) -> None:
    host, port = base.removeprefix("http://").rstrip("/").split(":")
    queue: asyncio.Queue[str] = asyncio.Queue()
    for path in paths:
        queue.put_nowait(path)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while not queue.empty():
            writer.write(f"GET {queue.get_nowait()} HTTP/1.1\r\nHost: {host}\r\n"
                         "Accept-Encoding: gzip\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:40]
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
        writer.close()
    await asyncio.gather(*(worker() for _ in range(inflight)))


def client_main() -> None:
    """Child process: run one client, print its CPU seconds and wall seconds as JSON."""
    kind, base, count, inflight = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    paths = [f"/p/{i % 2000}.html" for i in range(count)]
    client = _crawler_client if kind == "crawler" else _minimal_client
    asyncio.run(client(base, paths[:inflight], inflight))  # warm-up: connections, imports
    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(client(base, paths, inflight))
    print(json.dumps({"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}))


def run_client(kind: str, base: str, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ)
    if kind == "crawler" and args.extra_path:
        env["PYTHONPATH"] = os.pathsep.join([args.extra_path, env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, str(Path(__file__)), "--client", kind, base,
                          str(args.requests), str(args.inflight)],
                         check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--inflight", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--extra-path", default="")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=run_server, args=(2000, 0.0, child), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{parent.recv()}"
    runs: dict[str, list[dict[str, float]]] = {"crawler": [], "minimal": []}
    try:
        for _ in range(args.repeat):
            for kind in runs:
                runs[kind].append(run_client(kind, base, args))
    finally:
        server.terminate()
    print(f"{args.requests} requests, {args.inflight} in flight, zero latency, "
          f"median of {args.repeat} interleaved runs"
          + (f", crawler client with {args.extra_path} first on sys.path"
             if args.extra_path else ""))
    print(f"{'client':10} {'CPU µs/request':>15} {'requests/s':>11}")
    medians = {}
    for kind, results in runs.items():
        cpu = statistics.median(r["cpu"] for r in results) / args.requests * 1e6
        rate = args.requests / statistics.median(r["wall"] for r in results)
        medians[kind] = cpu
        print(f"{kind:10} {cpu:15.0f} {rate:11.0f}")
    print(f"crawler / minimal CPU per request: {medians['crawler'] / medians['minimal']:.1f}x")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main()
    else:
        main()
