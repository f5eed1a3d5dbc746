"""Throughput of one crawl alone against three crawls of different targets at the same time,
all three writing to ONE archive root (one ``catalog.sqlite3``).

    python benchmarks/concurrent_crawls.py                       # 6,000 persons per site
    python benchmarks/concurrent_crawls.py --persons 3000 --json
    python benchmarks/concurrent_crawls.py --init-root   # create the catalog before phase B

Several crawls on one root share the SQLite catalog; writers take turns through flock lock
files (crawler/writeturn.py) and a batching crawl commits early when another writer waits
(``Catalog.commit_if_due``). This measures what that costs and whether it works:

A. one `crawler archive` (target ``t1``) into a fresh root, against one site process;
B. N (default 3) `crawler archive` processes, targets ``t1``..``tN``, started at the same
   moment into ONE fresh root, each against its own site process (so that one server is
   not the bottleneck).

Each site is benchsite.py's ``listing`` profile (a name index: ``--persons`` person pages
reached through paged alphabetical listings), served on 127.0.0.1 in its own process. Crawls
run with ``--scope host --delay 0 --recheck 0`` and ``--per-host`` as given. The root is
empty when the crawls start, so they also race to create the catalog's schema; with
``--init-root`` a `crawler status` creates it first (untimed), which takes that race out.

Reported, all measured: per crawl its wall time (process start to exit), URLs captured
(final rows in ``captures`` of its crawl), the site's URLs it got a 200 for, its URLs/s and
exit code; per phase the wall time, total URLs, aggregate URLs/s (total URLs / phase wall
time), CPU seconds used by the crawl processes and by the site servers, the machine's load
average, and the ratio of phase B's aggregate to phase A's throughput. Every crawl must exit
0, end ``complete`` and print nothing with the word "locked" on stderr; anything else is
printed. The site servers run on the same machine and take CPU too: on a 2-core machine
three crawls and three servers compete for the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchsite import build_listing_site
from benchsite import serve_listing as serve

CLI = [sys.executable, "-m", "crawler"]


@dataclass
class CrawlRun:
    """One `crawler archive` process and what it did."""

    target: str
    url: str
    cmd: list[str]
    started: float = 0.0
    ended: float = 0.0
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    urls: int = 0
    site_ok: int = 0
    state: str = "?"
    problems: list[str] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return self.ended - self.started

    @property
    def rate(self) -> float:
        return self.urls / self.wall if self.wall > 0 else 0.0


@dataclass
class Phase:
    """One phase: its crawls, wall time and CPU use."""

    name: str
    runs: list[CrawlRun]
    wall: float = 0.0
    cpu: float = 0.0
    server_cpu: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at start and end

    @property
    def urls(self) -> int:
        return sum(run.urls for run in self.runs)

    @property
    def rate(self) -> float:
        return self.urls / self.wall if self.wall > 0 else 0.0



def archive_cmd(url: str, root: Path, target: str, per_host: int) -> list[str]:
    return [*CLI, "archive", url, "--target", target, "--output", str(root), "--scope", "host",
            "--delay", "0", "--per-host", str(per_host), "--recheck", "0", "--quiet", "--json"]


def process_cpu(pid: int | None) -> float:
    """Return user + system CPU seconds a running process has used (0 if unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """Return user + system CPU seconds of all waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_together(runs: list[CrawlRun], work: Path) -> tuple[float, float]:
    """Start every crawl at once, wait for all; return the phase's wall time and CPU s."""
    cpu0 = children_cpu()
    procs = []
    for run in runs:
        out = open(work / f"{run.target}.out", "w+")  # noqa: SIM115 (closed below)
        err = open(work / f"{run.target}.err", "w+")  # noqa: SIM115
        procs.append((run, out, err))
    start = time.monotonic()
    waiters = []
    for run, out, err in procs:
        run.started = time.monotonic()
        proc = subprocess.Popen(run.cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)

        def wait(run: CrawlRun = run, proc: subprocess.Popen[bytes] = proc) -> None:
            run.exit_code = proc.wait()
            run.ended = time.monotonic()

        waiter = threading.Thread(target=wait)
        waiter.start()
        waiters.append(waiter)
    for waiter in waiters:
        waiter.join()
    wall = time.monotonic() - start
    cpu = children_cpu() - cpu0
    for run, out, err in procs:
        out.seek(0)
        err.seek(0)
        run.stdout, run.stderr = out.read(), err.read()
        out.close()
        err.close()
    return wall, cpu


def read_catalog(root: Path, runs: list[CrawlRun], persons: int) -> None:
    """Fill in each run's URLs, site coverage and state from the shared catalog."""
    expected = set(build_listing_site(persons))
    catalog = root / "catalog.sqlite3"
    if not catalog.exists():
        for run in runs:
            run.problems.append(f"no catalog at {catalog}")
        return
    db = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=30)
    try:
        for run in runs:
            rows = db.execute("SELECT id, status FROM crawls WHERE target = ?",
                              (run.target,)).fetchall()
            if len(rows) != 1:
                run.problems.append(f"{len(rows)} crawls in the catalog for {run.target}")
            if not rows:
                continue
            crawl, run.state = rows[-1]
            run.urls = db.execute("SELECT count(*) FROM captures WHERE crawl = ? AND final = 1",
                                  (crawl,)).fetchone()[0]
            ok = {"/" + url.split("/", 3)[3] for (url,) in db.execute(
                "SELECT DISTINCT url FROM captures WHERE crawl = ? AND final = 1 AND status = 200",
                (crawl,))}
            run.site_ok = len(ok & expected)
    finally:
        db.close()


def check(run: CrawlRun, site_urls: int) -> None:
    """Note everything that says the crawl did not go cleanly."""
    if run.exit_code != 0:
        run.problems.append(f"exit code {run.exit_code}")
    if run.state != "complete":
        run.problems.append(f"catalog state {run.state!r}")
    if run.site_ok < site_urls:
        run.problems.append(f"only {run.site_ok:,} of the site's {site_urls:,} URLs got a 200")
    if re.search(r"\blocked\b", run.stderr, re.IGNORECASE):  # not "_run_locked" in a trace
        run.problems.append('"locked" on stderr')
    if run.stderr.strip():
        run.problems.append("stderr: " + run.stderr.strip()[-2000:])
    try:
        summary = json.loads(run.stdout)
    except json.JSONDecodeError:
        run.problems.append("no JSON summary on stdout: " + run.stdout.strip()[-500:])
        return
    fetched = summary.get("stats", {}).get("fetched")
    if fetched != run.urls:
        run.problems.append(f"JSON summary says {fetched} URLs fetched, catalog {run.urls}")
    if summary.get("status") != "complete":
        run.problems.append(f"JSON status {summary.get('status')!r} "
                            f"shortfall {summary.get('shortfall')}")


def phase(name: str, crawls: int, persons: int, per_host: int, *, init_root: bool) -> Phase:
    """Run ``crawls`` crawls at once into one fresh root, each against its own site."""
    servers = [serve(persons) for _ in range(crawls)]
    try:
        with tempfile.TemporaryDirectory(prefix="concurrent-crawls-") as tmp:
            root, work = Path(tmp) / "root", Path(tmp)
            runs = [CrawlRun(f"t{i}", url, archive_cmd(url, root, f"t{i}", per_host))
                    for i, (url, _) in enumerate(servers, 1)]
            if init_root:
                subprocess.run([*CLI, "status", "--output", str(root), "--json"], check=True,
                               capture_output=True)
            server0 = sum(process_cpu(server.pid) for _, server in servers)
            load0 = os.getloadavg()[0]
            wall, cpu = run_together(runs, work)
            load = (load0, os.getloadavg()[0])
            server_cpu = sum(process_cpu(server.pid) for _, server in servers) - server0
            read_catalog(root, runs, persons)
    finally:
        for _, server in servers:
            server.terminate()
        for _, server in servers:
            server.join(5)
    site_urls = len(build_listing_site(persons))
    for run in runs:
        check(run, site_urls)
    return Phase(name, runs, wall, cpu, server_cpu, load)


def code_version() -> str:
    """Return the commit the crawler code is at and whether crawler/ has local changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "crawler"], cwd=repo,
                               check=True, capture_output=True, text=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head}" + (f" with {len(dirty)} changed files under crawler/" if dirty else "")


def print_report(phases: list[Phase], persons: int, per_host: int, init_root: bool) -> None:
    site_urls = len(build_listing_site(persons))
    print(f"crawler code: {code_version()}")
    cores = os.cpu_count() or 0
    print(f"machine: {cores} CPUs (os.cpu_count); sched affinity "
          f"{len(os.sched_getaffinity(0))} CPUs")
    most = max(len(p.runs) for p in phases)
    if cores and most >= cores:
        print(f"  note: {most} crawls (plus {most} site servers, each its own process) share "
              f"{cores} cores, so concurrent crawls compete for CPU")
    print(f"site: benchsite 'listing' profile, {persons:,} persons = {site_urls:,} URLs per "
          f"site; --per-host {per_host} --delay 0 --recheck 0")
    print("root: " + ("catalog created by `crawler status` before the crawls start\n"
                      if init_root else "empty when the crawls start (they create the "
                      "catalog)\n"))

    print("per crawl:")
    print(f"  {'phase':<6} {'target':<6} {'URLs':>7} {'site 200s':>10} {'wall s':>7} "
          f"{'URLs/s':>7} {'exit':>4}  state")
    for p in phases:
        for run in p.runs:
            print(f"  {p.name:<6} {run.target:<6} {run.urls:>7,} {run.site_ok:>10,} "
                  f"{run.wall:>7.1f} {run.rate:>7.1f} {run.exit_code!s:>4}  {run.state}")

    print("\n1-min load average at start -> end of each phase (other work on the machine "
          "skews the figures): " + ", ".join(f"{p.name} {p.load[0]:.2f} -> {p.load[1]:.2f}"
                                             for p in phases))
    base = phases[0].rate
    print("\nper phase:")
    print(f"  {'phase':<6} {'crawls':>6} {'URLs per crawl':>16} {'wall s':>7} "
          f"{'aggr URLs/s':>11} {'per-crawl URLs/s':>18} {'crawl CPU s':>11} {'server CPU s':>12} "
          f"{'CPU/wall':>8} "
          f"{'vs A':>6}")
    for p in phases:
        per_crawl = "/".join(f"{run.urls:,}" for run in p.runs)
        rates = "/".join(f"{run.rate:.0f}" for run in p.runs)
        ratio = p.rate / base if base else 0.0
        print(f"  {p.name:<6} {len(p.runs):>6} {per_crawl:>16} {p.wall:>7.1f} "
              f"{p.rate:>11.1f} {rates:>18} {p.cpu:>11.1f} {p.server_cpu:>12.1f} "
              f"{(p.cpu + p.server_cpu) / p.wall:>8.2f} "
              f"{ratio:>5.2f}x")
    if len(phases) > 1:
        b = phases[1]
        print(f"\n{len(b.runs)} crawls at once on one root: aggregate {b.rate:.1f} URLs/s = "
              f"{b.rate / base:.2f}x one crawl alone ({base:.1f} URLs/s); "
              f"each crawl {min(r.rate for r in b.runs):.1f}-{max(r.rate for r in b.runs):.1f}"
              f" URLs/s = {min(r.rate for r in b.runs) / base:.2f}-"
              f"{max(r.rate for r in b.runs) / base:.2f}x.")

    problems = [(p.name, run) for p in phases for run in p.runs if run.problems]
    if problems:
        print("\nPROBLEMS:")
        for name, run in problems:
            for problem in run.problems:
                print(f"  {name} {run.target}: {problem}")
    else:
        print("\nall crawls exited 0, ended complete with every site URL, stderr clean "
              "(no 'locked')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=6000, help="persons per site")
    parser.add_argument("--crawls", type=int, default=3, help="crawls at once in phase B")
    parser.add_argument("--per-host", type=int, default=8)
    parser.add_argument("--init-root", action="store_true",
                        help="create the catalog (crawler status) before starting the crawls")
    parser.add_argument("--json", action="store_true", help="end with a JSON summary line")
    args = parser.parse_args()

    phases = [phase("A", 1, args.persons, args.per_host, init_root=args.init_root),
              phase("B", args.crawls, args.persons, args.per_host, init_root=args.init_root)]
    print_report(phases, args.persons, args.per_host, args.init_root)
    if args.json:
        base = phases[0].rate
        print(json.dumps({
            "cpus": os.cpu_count(),
            "code": code_version(),
            "persons": args.persons,
            "site_urls": len(build_listing_site(args.persons)),
            "per_host": args.per_host,
            "init_root": args.init_root,
            "phases": [{
                "phase": p.name, "crawls": len(p.runs), "wall_s": round(p.wall, 2),
                "urls": p.urls, "aggregate_urls_per_s": round(p.rate, 1),
                "crawl_cpu_s": round(p.cpu, 1),
                "load_avg_1min": [round(x, 2) for x in p.load],
                "server_cpu_s": round(p.server_cpu, 1),
                "ratio_to_one_crawl": round(p.rate / base, 3),
                "runs": [{"target": r.target, "urls": r.urls, "site_200s": r.site_ok,
                          "wall_s": round(r.wall, 2), "urls_per_s": round(r.rate, 1),
                          "exit_code": r.exit_code, "state": r.state,
                          "problems": r.problems} for r in p.runs],
            } for p in phases],
            "ok": not any(r.problems for p in phases for r in p.runs),
        }))


if __name__ == "__main__":
    main()
