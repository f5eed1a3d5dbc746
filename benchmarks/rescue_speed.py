"""Speed, memory and completeness of `crawler rescue` against a local pywb holding a whole site.

    python benchmarks/rescue_speed.py --pages 300            # quick check
    python benchmarks/rescue_speed.py                         # 10,000 pages
    python benchmarks/rescue_speed.py --pages 10000 --concurrency 16 --keep

Steps, all on 127.0.0.1 (never the live web):

1. the generated site (benchsite.py, light profile, its own process) is served and crawled
   once with ``crawler archive --delay 0 --concurrency 8 --per-host 8 -t origin``;
2. the site is stopped (it is "gone"); a pywb collection is built from that crawl's WARCs and
   CDXJ index (as ``tests/conftest.py``'s ``start_pywb`` does) and pywb's ``wayback`` is
   started on a free port;
3. the peer, GNU wget, fetches the same raw captures (every capture pywb's CDX server lists
   under the site, as ``…/coll/TIMESTAMPid_/URL``) with ``wget -i LIST -O /dev/null
   --warc-file``: one connection, no judging, no headers restored;
4. ``crawler rescue rescued --source http://127.0.0.1:PORT/coll;rate=0 --url SITE -o OUT
   --json --concurrency C`` runs in a fresh process, from a working directory other than OUT.

Measured for the rescue: wall seconds; CPU seconds (user+system of the rescue process and its
children, ``getrusage(RUSAGE_CHILDREN)`` before/after); peak RSS (the process's own VmHWM,
read from /proc every 50 ms, and the largest summed VmRSS of its process tree); pywb's CPU
seconds over the same time (from /proc/PID/stat). URLs/s and CPU ms/URL are per URL found
(every URL the rescue decided, rescued or not). From the rescue's JSON report: URLs found,
rescued, held, missing, failed, pending and captures written.

Completeness: of the original crawl's final 2xx/3xx response and revisit captures
(``catalog.sqlite3``, table ``captures``, ``final = 1``), how many have a capture of the same
URL in the rescued catalog with the same payload digest and the same ``fetched_at`` to the
millisecond (pywb's 17-digit timestamps carry milliseconds); up to 10 that differ are listed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawl_vs_wget import tree_rss_kb

from crawler.archive import replay

BENCH = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SHOWN_DIFFERENCES = 10


@dataclass
class Measured:
    """One timed child process."""

    wall: float
    cpu: float
    hwm_mb: float  # the process's own peak RSS (VmHWM)
    tree_mb: float  # the largest summed VmRSS of its process tree seen
    returncode: int
    stdout: str
    stderr: str
    pywb_cpu: float = 0.0


@dataclass
class Completeness:
    """The original crawl's captures found again, exactly, in the rescue."""

    total: int = 0
    complete: int = 0
    differ: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET http://127.0.0.1:port/path directly (no proxy); return status and body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for(port: int, path: str, what: str, proc: subprocess.Popen[bytes],
             timeout: float = 120.0) -> bytes:
    """Wait until GET path answers 200 with a body; return the body."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited at start-up (code {proc.returncode})")
        try:
            status, body = http_get(port, path)
            if status == 200 and body.strip():
                return body
            last = f"HTTP {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise SystemExit(f"{what} did not answer {path} within {timeout:.0f} s ({last})")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate a process we started and reap it."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def status_kb(pid: int, field_name: str) -> int:
    """Return a field of /proc/PID/status in kB (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def proc_cpu(pid: int) -> float:
    """Return the user+system CPU seconds a running process used so far."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def measure(cmd: list[str], cwd: Path, watch: int | None = None) -> Measured:
    """Run ``cmd`` from ``cwd``; return its wall and CPU time, peak RSS and output.
    ``watch``: the pid of another process (pywb) whose CPU over the same time is added."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    other = proc_cpu(watch) if watch else 0.0
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    hwm = tree = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal hwm, tree
        while not done.is_set():
            hwm = max(hwm, status_kb(proc.pid, "VmHWM"))
            tree = max(tree, tree_rss_kb(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = proc.communicate()
    finally:
        done.set()
        sampler.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measured(wall, cpu, hwm / 1024, tree / 1024, proc.returncode,
                    stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"),
                    proc_cpu(watch) - other if watch else 0.0)


def crawler_cmd(*args: str) -> list[str]:
    """Return the command line of ``crawler ARGS`` in this interpreter."""
    return [sys.executable, "-m", "crawler", *args]


def crawl_origin(pages: int, tmp: Path, work: Path) -> tuple[Path, Measured, str]:
    """Serve the site, crawl it into ``tmp/origin-root``, stop the site; return the crawl's
    directory, its measurement and the site's URL."""
    port = free_port()
    site_url = f"http://127.0.0.1:{port}/"
    site: subprocess.Popen[bytes] | None = None
    try:
        site = subprocess.Popen([sys.executable, str(BENCH / "benchsite.py"), "--pages",
                                 str(pages), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(port, "/", "benchsite.py", site)
        root = tmp / "origin-root"
        measured = measure(crawler_cmd("archive", site_url, "-o", str(root), "--delay", "0",
                                       "--concurrency", "8", "--per-host", "8", "-t",
                                       "origin", "--quiet"), work)
    finally:
        stop(site)  # the site is gone from here on
    if measured.returncode != 0:
        raise SystemExit(f"crawler archive failed ({measured.returncode}):\n"
                         f"{measured.stderr[-3000:]}")
    crawls = sorted(p for p in (root / "origin").iterdir() if (p / "warc").is_dir())
    if len(crawls) != 1:
        raise SystemExit(f"expected one crawl under {root / 'origin'}, found {crawls}")
    return crawls[0], measured, site_url


def start_pywb(root: Path, crawl_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Build a pywb collection ``coll`` from a crawl's WARCs and index; start wayback."""
    bindir = replay.pywb_bin(create=False)
    root.mkdir(parents=True)
    subprocess.run([str(bindir / "wb-manager"), "init", "coll"], cwd=root, check=True,
                   capture_output=True)
    coll = root / "collections" / "coll"
    warcs = sorted((crawl_dir / "warc").glob("*.warc.gz"))
    if not warcs:
        raise SystemExit(f"no WARCs in {crawl_dir / 'warc'}")
    for warc in warcs:
        try:
            os.link(warc, coll / "archive" / warc.name)
        except OSError:
            shutil.copy(warc, coll / "archive" / warc.name)
    index = crawl_dir / "indexes" / "index.cdxj"
    lines = sorted(index.read_text("utf-8").splitlines())
    (coll / "indexes" / "index.cdxj").write_text("\n".join(lines) + "\n", "utf-8")
    port = free_port()
    return replay.start_wayback(root, port, bindir), port


def fetch_with_wget(port: int, site_url: str, where: Path, work: Path,
                    pywb_pid: int) -> dict[str, Any]:
    """The peer: GNU wget fetching the same raw captures from the same pywb into a WARC
    (``wget -i LIST --warc-file``, one connection), the list built from pywb's CDX answer
    (every capture under the site, its ``id_`` address), before the rescue runs."""
    where.mkdir()
    query = urllib.parse.urlencode({"url": site_url, "matchType": "prefix", "output": "json"})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", f"/coll/cdx?{query}")
    lines = conn.getresponse().read().decode("utf-8").splitlines()
    conn.close()
    addresses = []
    for line in lines:
        row = json.loads(line)
        addresses.append(f"http://127.0.0.1:{port}/coll/{row['timestamp']}id_/{row['url']}")
    listing = where / "mementos.txt"
    listing.write_text("\n".join(addresses) + "\n", "utf-8")
    done = measure(["wget", "-q", "-i", str(listing), "-O", "/dev/null", "--warc-file",
                    str(where / "peer"), "--no-warc-keep-log", "--tries", "1"], work,
                   watch=pywb_pid)
    return {"urls": len(addresses), "wall_s": done.wall, "cpu_s": done.cpu,
            "pywb_cpu_s": done.pywb_cpu, "peak_rss_mb": done.hwm_mb,
            "exit_code": done.returncode,
            "urls_per_s": len(addresses) / done.wall if done.wall else 0.0,
            "cpu_ms_per_url": done.cpu / len(addresses) * 1000 if addresses else 0.0}


def fetched_ms(value: str) -> str:
    """Return an ISO 8601 time truncated to the millisecond, in UTC."""
    when = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def read_captures(root: Path, where: str) -> list[sqlite3.Row]:
    """Return url, status, digest, fetched_at and record_type of a root's captures."""
    db = sqlite3.connect(f"file:{root / 'catalog.sqlite3'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT url, status, digest, fetched_at, record_type, final FROM "
                          f"captures WHERE {where} ORDER BY url").fetchall()
    finally:
        db.close()


def completeness(origin_root: Path, rescued_root: Path) -> Completeness:
    """Compare the original crawl's captures with the rescued ones (module docstring)."""
    original = read_captures(origin_root, "final = 1 AND record_type IN ('response', "
                                          "'revisit') AND status BETWEEN 200 AND 399")
    rescued: dict[str, list[sqlite3.Row]] = {}
    for row in read_captures(rescued_root, "record_type IN ('response', 'revisit')"):
        rescued.setdefault(row["url"], []).append(row)
    result = Completeness(total=len(original))
    for row in original:
        found = rescued.get(row["url"], [])
        when = fetched_ms(row["fetched_at"])
        if any(r["digest"] == row["digest"] and fetched_ms(r["fetched_at"]) == when
               for r in found):
            result.complete += 1
            continue
        if not found:
            reason = "not rescued"
            detail = f"{row['url']}: not in the rescued catalog"
        else:
            same_digest = [r for r in found if r["digest"] == row["digest"]]
            other = (same_digest or found)[-1]
            reason = "fetched_at differs" if same_digest else "digest differs"
            detail = (f"{row['url']}: original {row['record_type']} {row['status']} "
                      f"{row['digest']} {row['fetched_at']}; rescued {other['record_type']} "
                      f"{other['status']} {other['digest']} {other['fetched_at']} "
                      f"({len(found)} capture(s))")
        result.reasons[reason] = result.reasons.get(reason, 0) + 1
        if len(result.differ) < SHOWN_DIFFERENCES:
            result.differ.append(detail)
    return result


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Crawl, serve through pywb, rescue, compare; return the results."""
    work = tmp / "work"  # the working directory of both runs: not the archive roots
    work.mkdir()
    crawl_dir, crawl, site_url = crawl_origin(args.pages, tmp, work)
    origin_captures = len(read_captures(tmp / "origin-root",
                                        "record_type IN ('response', 'revisit')"))
    pywb: subprocess.Popen[bytes] | None = None
    try:
        pywb, port = start_pywb(tmp / "pywb", crawl_dir)
        query = urllib.parse.urlencode({"url": site_url, "output": "json"})
        wait_for(port, f"/coll/cdx?{query}", "pywb", pywb)
        peer = fetch_with_wget(port, site_url, tmp / "wget", work, pywb.pid) \
            if args.peer else None
        out = tmp / "rescued-root"
        cmd = crawler_cmd("rescue", "rescued", "--source", f"http://127.0.0.1:{port}/coll;rate=0",
                          "--url", site_url, "-o", str(out), "--json", "--concurrency",
                          str(args.concurrency))
        rescue = measure(cmd, work, watch=pywb.pid)
    finally:
        stop(pywb)
    try:
        report: dict[str, Any] = json.loads(rescue.stdout)
    except ValueError:
        raise SystemExit(f"crawler rescue exited {rescue.returncode} without a JSON report:\n"
                         f"stdout: {rescue.stdout[-2000:]}\nstderr: {rescue.stderr[-5000:]}"
                         ) from None
    found = int(report["urls"]["found"])
    return {
        "pages": args.pages, "concurrency": args.concurrency, "site": site_url,
        "crawl": {"wall_s": crawl.wall, "cpu_s": crawl.cpu, "captures": origin_captures},
        "rescue": {"exit_code": rescue.returncode, "exit_status": report.get("exit_status"),
                   "status": report.get("status"), "wall_s": rescue.wall,
                   "cpu_s": rescue.cpu, "pywb_cpu_s": rescue.pywb_cpu,
                   "peak_rss_mb": rescue.hwm_mb, "tree_rss_mb": rescue.tree_mb,
                   "urls": report["urls"], "captures": report["captures"],
                   "requests": report.get("requests_this_run"),
                   "rejected": report.get("rejected"),
                   "missing": report.get("missing", [])[:SHOWN_DIFFERENCES],
                   "urls_per_s": found / rescue.wall if rescue.wall else 0.0,
                   "cpu_ms_per_url": rescue.cpu / found * 1000 if found else 0.0,
                   "stderr_tail": rescue.stderr[-2000:] if rescue.returncode else ""},
        "completeness": completeness(tmp / "origin-root", out).__dict__,
        "wget": peer,
    }


def show(r: dict[str, Any]) -> None:
    """Print the results as small tables."""
    c, s, k = r["crawl"], r["rescue"], r["completeness"]
    u, w = s["urls"], s["captures"]
    print(f"site: {r['pages']} pages (benchsite.py, light), crawled once: {c['captures']} "
          f"captures in {c['wall_s']:.1f} s; rescue --concurrency {r['concurrency']}, "
          "source pywb ;rate=0")
    print(f"{'found':>6} {'rescued':>8} {'held':>5} {'missing':>8} {'failed':>7} "
          f"{'pending':>8} {'captures':>9} {'revisits':>9} {'requests':>9}")
    print(f"{u['found']:6d} {u['rescued']:8d} {u['held']:5d} {u['missing']:8d} "
          f"{u['failed']:7d} {u['pending']:8d} {w['written']:9d} {w['revisits']:9d} "
          f"{s['requests'] or 0:9d}")
    print(f"{'wall s':>7} {'URLs/s':>8} {'CPU s':>7} {'CPU ms/URL':>11} {'pywb CPU s':>11} "
          f"{'peak RSS MB':>12} {'tree RSS MB':>12} {'exit':>5}")
    print(f"{s['wall_s']:7.1f} {s['urls_per_s']:8.1f} {s['cpu_s']:7.1f} "
          f"{s['cpu_ms_per_url']:11.2f} {s['pywb_cpu_s']:11.1f} {s['peak_rss_mb']:12.1f} "
          f"{s['tree_rss_mb']:12.1f} {s['exit_code']:5d}")
    print(f"rescue status: {s['status']} ({s['exit_status']}); digest differs from source: "
          f"{w['digest_differs_from_source']}; dated {w['first']} to {w['last']}")
    if s["rejected"]:
        print(f"captures not taken: {s['rejected']}")
    for m in s["missing"]:
        print(f"  missing: {m['url']} ({m['outcome']}: {m['reason']})")
    g = r["wget"] or {}
    if g:
        print(f"peer: wget -i (the same {g['urls']} raw captures from the same pywb, one "
              f"connection, into a WARC): {g['wall_s']:.1f} s, {g['urls_per_s']:.1f} "
              f"URLs/s, CPU {g['cpu_ms_per_url']:.2f} ms/URL, pywb CPU "
              f"{g['pywb_cpu_s']:.1f} s, peak RSS {g['peak_rss_mb']:.1f} MB, "
              f"exit {g['exit_code']}")
    else:
        print("peer: not run (--no-peer)")
    if g.get("urls_per_s") and g.get("cpu_ms_per_url"):
        print(f"rescue / wget: URLs/s {s['urls_per_s'] / g['urls_per_s']:.2f}x, CPU per URL "
              f"{s['cpu_ms_per_url'] / g['cpu_ms_per_url']:.2f}x (the rescue also judges "
              "each page, extracts its links and restores the origin's headers)")
    share = k["complete"] / k["total"] * 100 if k["total"] else 0.0
    print(f"complete: {k['complete']} of {k['total']} ({share:.1f}%)")
    if k["reasons"]:
        print("differ: " + ", ".join(f"{why} {n}" for why, n in k["reasons"].items()))
    for line in k["differ"]:
        print(f"  {line}")
    if s["stderr_tail"]:
        print(f"rescue stderr (tail):\n{s['stderr_tail']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=10000, help="site size (HTML pages)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="crawler rescue --concurrency")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (roots, pywb collection)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--no-peer", dest="peer", action="store_false",
                        help="skip wget (one connection: about 50 ms a capture from pywb)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rescue-speed-"))
    try:
        results = run(args, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        show(results)


if __name__ == "__main__":
    main()
