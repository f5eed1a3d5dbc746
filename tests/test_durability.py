"""Kill -9 and signals against a real crawler subprocess; then resume and check nothing is lost
or fetched twice, and that every WARC is valid and replays."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import read_records, start_pywb

from crawler.archive.recovery import iter_records
from crawler.demo.sample_site import SampleSite

CLI = [sys.executable, "-m", "crawler"]


def archive_cmd(site: SampleSite, out: Path, *extra: str) -> list[str]:
    """Return a deterministic crawl command for the sample site (the calendar trap excluded,
    since which months a trap cap lets through depends on timing)."""
    return [*CLI, "archive", site.url, "--target", "t", "--output", str(out), "--scope", "host",
            "--delay", "0", "--per-host", "2", "--exclude", "calendar", "--quiet", *extra]


def run(cmd: list[str], *, failpoint: str | None = None, timeout: float = 120) -> int:
    """Run a crawler command to its end; return the exit code."""
    env = {**os.environ}
    env.pop("CRAWLER_FAILPOINT", None)
    if failpoint:
        env["CRAWLER_FAILPOINT"] = failpoint
    return subprocess.run(cmd, env=env, timeout=timeout, capture_output=True).returncode


def final_urls(out: Path) -> list[str]:
    """Return the URLs of all final captures with a record, over every crawl of target t."""
    db = sqlite3.connect(out / "catalog.sqlite3")
    try:
        return [r[0] for r in db.execute(
            "SELECT url FROM captures WHERE final=1 AND record_type IS NOT NULL")]
    finally:
        db.close()


def crawl_state(out: Path) -> str:
    db = sqlite3.connect(out / "catalog.sqlite3")
    try:
        return db.execute("SELECT status FROM crawls ORDER BY id DESC LIMIT 1").fetchone()[0]
    finally:
        db.close()


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[str]]:
    """The URL set of an uninterrupted crawl."""
    out = tmp_path_factory.mktemp("clean")
    with SampleSite() as site:
        assert run(archive_cmd(site, out)) == 0
        yield {u.replace(site.url, "/").replace(site.cdn_url, "cdn/") for u in final_urls(out)}


def check_after_resume(site: SampleSite, out: Path, clean: set[str], tmp: Path) -> None:
    """Every URL of a clean crawl captured exactly once; WARCs valid; everything replays."""
    urls = final_urls(out)
    relative = Counter(u.replace(site.url, "/").replace(site.cdn_url, "cdn/") for u in urls)
    assert set(relative) == clean
    assert [u for u, n in relative.items() if n > 1] == []
    crawl_dir = next((out / "t").glob("2*"))
    warcs = sorted((crawl_dir / "warc").glob("*.warc.gz"))
    assert not list((crawl_dir / "warc").glob("*.open"))
    records = read_records(warcs)  # digests verified
    responses = Counter(r.uri for r in records if r.type == "response")
    assert [u for u, n in responses.items() if n > 1] == []  # nothing fetched twice
    for warc in warcs:
        check = subprocess.run([sys.executable, "-m", "warcio.cli", "check", str(warc)],
                               capture_output=True)
        assert check.returncode == 0, check.stdout + check.stderr
    server, proc = start_pywb(tmp / "pywb", warcs, [crawl_dir / "indexes" / "index.cdxj"])
    try:
        for path in site.content.page_paths()[:12] + site.content.image_paths()[:6]:
            url = site.url.rstrip("/") + path
            got = server.get("2", url, raw=True)
            assert got.status_code == 200, f"{path} does not replay"
            assert got.content == site.content.respond(path).body
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("failpoint", [
    "warc-mid-record:150",  # inside a gzip member: the partial record must be cut off
    "before-commit:25",  # record complete, catalog not told: must be entered, not refetched
    "warc-rotate:2",  # a full file fsynced but not yet renamed
    "warc-rotated:2",  # a file closed by rotation whose last records are not committed yet
])
def test_kill_at_failpoint_then_resume(failpoint: str, clean: set[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    with SampleSite() as site:
        extra = ["--warc-size", "30000"] if failpoint.startswith("warc-rotate") else []
        # The killed crawl's parser process must exit too: it holds the crawl's stdout and
        # stderr, so run() (which reads them to the end) would hang until the timeout.
        assert run(archive_cmd(site, out, *extra), failpoint=failpoint,
                   timeout=30) == -signal.SIGKILL
        assert crawl_state(out) == "running"  # killed mid-crawl
        assert marks_pass_no_missing_record(out) > 0
        assert run([*CLI, "resume", "t", "--output", str(out), "--quiet"]) == 0
        assert crawl_state(out) == "complete"
        check_after_resume(site, out, clean, tmp_path)


def marks_pass_no_missing_record(out: Path) -> int:
    """Check the WARC watermarks a killed crawl left: below each file's mark, every record
    the catalog should point at is in the catalog (else a resume, which reads only past the
    marks, would lose it). Return how many bytes the marks let a resume skip."""
    db = sqlite3.connect(out / "catalog.sqlite3")
    try:
        marks = dict(db.execute("SELECT warc_file, complete_to FROM warc_marks"))
        known = set(db.execute("SELECT warc_file, warc_offset FROM captures "
                               "WHERE warc_offset IS NOT NULL"))
    finally:
        db.close()
    warc_dir = next((out / "t").glob("2*")) / "warc"
    for name, mark in marks.items():
        path = warc_dir / name
        if not path.exists():
            path = warc_dir / (name + ".open")
        below = [r for r in iter_records(path, name, 0) if r.offset < mark]
        assert [r.offset for r in below if (name, r.offset) not in known] == [], name
    return sum(marks.values())


def test_kill_during_fetch_then_rerun_same_command(clean: set[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    with SampleSite(latency=0.05) as site:
        proc = subprocess.Popen(archive_cmd(site, out))
        time.sleep(1.5)  # mid-crawl: most of the time is spent waiting on responses
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        site.content.latency = 0
        assert run(archive_cmd(site, out)) == 0  # same command: resumes, not a new crawl
        assert len(list((out / "t").glob("2*"))) == 1
        check_after_resume(site, out, clean, tmp_path)


def test_sigterm_stops_cleanly_and_resumes(clean: set[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    with SampleSite(latency=0.05) as site:
        proc = subprocess.Popen(archive_cmd(site, out))
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 5  # ExitCode.INTERRUPTED
        assert crawl_state(out) == "interrupted"
        crawl_dir = next((out / "t").glob("2*"))
        assert not list((crawl_dir / "warc").glob("*.open"))  # WARCs closed
        assert (crawl_dir / "crawl.json").exists()
        assert len(final_urls(out)) < len(clean)  # it really stopped early
        site.content.latency = 0
        assert run([*CLI, "resume", "--output", str(out), "--quiet"]) == 0
        check_after_resume(site, out, clean, tmp_path)


def test_second_signal_exits_at_once_and_state_is_consistent(clean: set[str],
                                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    with SampleSite(latency=0.3) as site:
        proc = subprocess.Popen(archive_cmd(site, out, "--per-host", "8"))
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 5
        site.content.latency = 0
        assert run([*CLI, "resume", "t", "--output", str(out), "--quiet"]) == 0
        check_after_resume(site, out, clean, tmp_path)


def test_recrawl_killed_before_commit_resumes_with_its_revisits(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with SampleSite() as site:
        assert run(archive_cmd(site, out)) == 0
        time.sleep(1.1)  # the recrawl's timestamps differ from the first crawl's
        assert run(archive_cmd(site, out), failpoint="before-commit:25",
                   timeout=30) == -signal.SIGKILL
        assert run([*CLI, "resume", "t", "--output", str(out), "--quiet"]) == 0
        db = sqlite3.connect(out / "catalog.sqlite3")
        try:
            (second,) = db.execute("SELECT id FROM crawls ORDER BY id DESC LIMIT 1").fetchone()
            rows = db.execute("SELECT url, record_type, refers_to, status FROM captures "
                              "WHERE crawl=? AND final=1 AND record_type IS NOT NULL",
                              (second,)).fetchall()
        finally:
            db.close()
        assert len(rows) == len({r[0] for r in rows})  # each URL once
        revisits = [r for r in rows if r[1] == "revisit"]
        assert len(revisits) > 40 and all(r[2] is not None for r in revisits)
        crawl_dirs = sorted((out / "t").glob("2*"))
        records = read_records(sorted((crawl_dirs[1] / "warc").glob("*.warc.gz")))
        assert Counter(r.type for r in records)["revisit"] == len(revisits)
        warcs = [w for d in crawl_dirs for w in sorted((d / "warc").glob("*.warc.gz"))]
        server, proc = start_pywb(tmp_path / "pywb", warcs,
                                  [d / "indexes" / "index.cdxj" for d in crawl_dirs])
        try:
            for path in site.content.page_paths()[:12] + site.content.image_paths()[:6]:
                got = server.get("2100", site.url.rstrip("/") + path, raw=True)  # the latest
                assert got.status_code == 200, f"{path} does not replay"
                assert got.content == site.content.respond(path).body
        finally:
            proc.terminate()
            proc.wait(10)
