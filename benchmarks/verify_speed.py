"""How fast `crawler verify` proves an archive whole, against `warcio check` on the same WARCs.

    python benchmarks/verify_speed.py --pages 2000            # heavy pages: ~100 MB of WARC
    python benchmarks/verify_speed.py --pages 10000 --profile light

The generated site (benchsite.py, its own process on 127.0.0.1) is crawled twice into one
archive root (the second crawl is a recrawl: revisits whose originals verify must check),
then both tools read the archive: `crawler verify` (every WARC to its end with digests, every
catalog row against its record, revisits' originals, indexes) and warcio's `check`
(block and payload digests of every record), the tool archivists already use. Reported per
tool: wall seconds, CPU seconds (user+system of the process tree), WARC megabytes read per
wall second, and the ratio crawler/warcio. Each tool runs --repeat times; the median is shown.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchsite import run_server


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, int]:
    """Run a command; return (wall seconds, CPU seconds, exit code)."""
    cpu = _cpu_of_children()
    start = time.monotonic()
    code = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode
    return time.monotonic() - start, _cpu_of_children() - cpu, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--profile", choices=["light", "heavy"], default="heavy")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=run_server, args=(args.pages, 0.0, child, args.profile),
                         daemon=True)
    server.start()
    url = f"http://127.0.0.1:{parent.recv()}/"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "archive"
        crawl = [sys.executable, "-m", "crawler", "archive", url, "--scope", "host", "--delay",
                 "0", "--per-host", "4", "--quiet", "--output", str(root), "--target", "bench"]
        for _ in range(2):
            subprocess.run(crawl, check=True, cwd=work)
            time.sleep(1.1)
        server.terminate()
        warcs = sorted(root.glob("bench/*/warc/*.warc.gz"))
        megabytes = sum(w.stat().st_size for w in warcs) / 1e6
        tools = {
            "crawler verify": [sys.executable, "-m", "crawler", "verify", "--output",
                               str(root)],
            "warcio check": [sys.executable, "-m", "warcio.cli", "check", *map(str, warcs)],
        }
        results = {}
        for name, cmd in tools.items():
            runs = [timed(cmd, work) for _ in range(args.repeat)]
            if any(code != 0 for _, _, code in runs):
                raise SystemExit(f"{name} reported a problem on a sound archive: {runs}")
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            results[name] = (wall, cpu)
    print(f"archive: {args.pages} {args.profile} pages crawled twice; {len(warcs)} WARC files, "
          f"{megabytes:.1f} MB")
    print(f"{'tool':16} {'wall s':>8} {'CPU s':>8} {'MB/s':>8}")
    for name, (wall, cpu) in results.items():
        print(f"{name:16} {wall:8.2f} {cpu:8.2f} {megabytes / wall:8.1f}")
    ours, peer = results["crawler verify"], results["warcio check"]
    print(f"crawler verify / warcio check: wall {ours[0] / peer[0]:.2f}x, "
          f"CPU {ours[1] / peer[1]:.2f}x")


if __name__ == "__main__":
    main()
