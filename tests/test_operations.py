"""Safe operations on a shared archive root (issue 12, in part): the target's lock covers a
whole run, detection and report included."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from crawler.demo.sample_site import SampleSite

CLI = [sys.executable, "-m", "crawler"]


def _crawls(out: Path) -> list[str]:
    """Return the status of every crawl, oldest first."""
    db = sqlite3.connect(out / "catalog.sqlite3")
    try:
        return [row[0] for row in db.execute("SELECT status FROM crawls ORDER BY id")]
    finally:
        db.close()


def test_a_second_run_is_refused_while_the_first_is_still_comparing(tmp_path: Path) -> None:
    """Before, the lock was released when the crawl ended: a second run started during
    detection compared against states being written and could announce "recovered"."""
    out = tmp_path / "arch"
    with SampleSite(persons=6) as site:
        base = [*CLI, "archive", site.url, "--target", "t", "--output", str(out), "--scope",
                "host", "--delay", "0", "--exclude", "calendar", "--quiet"]
        assert subprocess.run([*base, "--recheck", "0"], capture_output=True,
                              timeout=120).returncode == 0
        site.content.takedown.removed = {"/persons/2.html": 404}
        # re-checks 3 s apart: the run spends several seconds comparing after its crawl
        first = subprocess.Popen([*base, "--recheck", "2", "--recheck-spacing", "3"])
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (
                    len(_crawls(out)) < 2 or _crawls(out)[-1] == "running"):
                time.sleep(0.1)  # until its crawl has ended and its comparing begun
            assert first.poll() is None, "the first run should still be comparing"
            second = subprocess.run([*base, "--recheck", "0"], capture_output=True, text=True,
                                    timeout=60)
            assert first.poll() is None  # the refusal happened while it was comparing
        finally:
            code = first.wait(120)
    assert code == 6  # the first run confirmed the removal
    assert second.returncode == 3, second.stderr
    assert "another run of 't' is in progress" in second.stderr
    db = sqlite3.connect(out / "catalog.sqlite3")
    try:
        assert db.execute("SELECT count(*) FROM crawls").fetchone()[0] == 2  # no third crawl
    finally:
        db.close()


def test_a_seed_host_of_dots_stays_inside_the_archive_root() -> None:
    from crawler.capture.settings import CrawlSettings

    for seed in ("http://../x", "http://.../", "http://./"):
        name = CrawlSettings(seeds=(seed,)).target_name()
        assert name not in ("", ".", "..") and not name.startswith("."), (seed, name)


def test_ctrl_c_stops_the_crawl_without_a_traceback(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole process group, parser processes included."""
    import os
    import signal

    with SampleSite(persons=200, latency=0.05) as site:
        proc = subprocess.Popen(
            [*CLI, "archive", site.url, "--target", "t", "--output", str(tmp_path / "arch"),
             "--scope", "host", "--delay", "0", "--parse-workers", "1", "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        time.sleep(3)  # the parser process is up and the crawl under way
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 5, err  # interrupted, cleanly
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def _wait_for_crawl_rows(catalog: Path, wanted: int) -> None:
    """Wait until the catalog holds ``wanted`` crawls (each crawl enters its row just after
    it starts; a read before that rightly answers that there is no such crawl)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if catalog.exists():
            db = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True, timeout=30)
            try:
                if db.execute("SELECT count(*) FROM crawls").fetchone()[0] >= wanted:
                    return
            except sqlite3.OperationalError:  # the schema is still being created
                pass
            finally:
                db.close()
        time.sleep(0.1)
    raise AssertionError(f"fewer than {wanted} crawls in {catalog} after 60 s")


def test_two_crawls_and_read_commands_share_one_archive_root(tmp_path: Path) -> None:
    """Before, the second crawl died with "database is locked" after 30 s: the first held
    the catalog's write transaction almost continuously. Here two crawls run side by side
    for longer than that, while status, list and verify read the root."""
    out = tmp_path / "arch"
    with SampleSite(persons=500, latency=0.03) as site:
        runs = [subprocess.Popen(
            [*CLI, "archive", site.url, "--target", name, "--output", str(out), "--scope",
             "host", "--delay", "0", "--exclude", "calendar", "--quiet", "--recheck", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name in ("first", "second")]
        _wait_for_crawl_rows(out / "catalog.sqlite3", 2)  # before: "no crawls of 'first'"
        reads: list[subprocess.CompletedProcess[str]] = []
        started = time.monotonic()
        while any(r.poll() is None for r in runs):
            for command in (["status"], ["list", "first"], ["diff", "second"],
                            ["verify", "first"]):
                reads.append(subprocess.run([*CLI, *command, "--output", str(out)],
                                            capture_output=True, text=True, timeout=60))
            time.sleep(0.5)
        overlap = time.monotonic() - started
        results = [r.communicate() for r in runs]
        verify = subprocess.run([*CLI, "verify", "first", "--output", str(out)],
                                capture_output=True, text=True, timeout=120)
    for run, (_, err) in zip(runs, results, strict=True):
        assert run.returncode == 0, err
        assert "locked" not in err, err
    assert overlap > 35, f"the crawls ran side by side for only {overlap:.0f} s"
    failed = [r for r in reads if r.returncode != 0 or "Traceback" in r.stderr]
    assert not failed, failed[0].stderr
    assert len(reads) > 20
    assert verify.returncode == 0, verify.stdout + verify.stderr
    packaged = subprocess.run([*CLI, "wacz", "second", "--output", str(out), "--file",
                               str(tmp_path / "second.wacz")], capture_output=True, text=True,
                              timeout=120)
    assert packaged.returncode == 0, packaged.stderr
    db = sqlite3.connect(out / "catalog.sqlite3")
    try:
        rows = db.execute(
            "SELECT k.target, k.status, count(c.id) FROM crawls k JOIN captures c "
            "ON c.crawl = k.id AND c.final = 1 GROUP BY k.id ORDER BY k.target").fetchall()
    finally:
        db.close()
    assert [r[:2] for r in rows] == [("first", "complete"), ("second", "complete")]
    assert rows[0][2] == rows[1][2] > 1000  # the same site, every URL in both
