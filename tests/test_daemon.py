"""The daemon as a real subprocess against the sample site: schedules, no overlap, restarts,
SIGTERM mid-crawl and resume, SIGHUP reloads."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crawler.demo.sample_site import SampleSite
from crawler.schedule.daemon import next_runs

CLI = [sys.executable, "-m", "crawler"]


def config_text(site: SampleSite, *, every: str = "2s", name: str = "sample",
                more: str = "") -> str:
    return f'''archives = "arch"
max_concurrent_crawls = 2
[defaults]
delay = 0
per_host = 4
scope = "host"
exclude = ["calendar"]
sitemaps = false
[[targets]]
name = "{name}"
seeds = ["{site.url}"]
every = "{every}"
{more}'''


class Daemon:
    """A `crawler daemon` subprocess and its archive root."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.archives = config.parent / "arch"
        self.log = config.parent / "daemon.err"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        with open(self.log, "ab") as err:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([*CLI, "daemon", "--config", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=err)
        return self

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def crawls(self, target: str = "sample") -> list[sqlite3.Row]:
        path = self.archives / "catalog.sqlite3"
        if not path.exists():
            return []
        db = sqlite3.connect(path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            return db.execute("SELECT * FROM crawls WHERE target=? ORDER BY id",
                              (target,)).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(10)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def complete(rows: list[sqlite3.Row]) -> list[sqlite3.Row]:
    return [r for r in rows if r["status"] == "complete"]


def test_runs_on_schedule_and_writes_a_report_per_crawl(tmp_path: Path,
                                                        daemons: list[Daemon]) -> None:
    with SampleSite() as site:
        config = tmp_path / "t.toml"
        config.write_text(config_text(site), "utf-8")
        daemon = Daemon(config).start()
        daemons.append(daemon)
        wait_for(lambda: len(complete(daemon.crawls())) >= 2, 60, "two crawls")
        assert daemon.stop() == 0
    for row in complete(daemon.crawls()):
        assert (daemon.archives / row["directory"] / "report.json").exists()
        assert (daemon.archives / row["directory"] / "report.html").exists()
    log = (daemon.archives / "crawler.log").read_text("utf-8")
    assert "level=info logger=crawler.daemon" in log and 'msg="daemon stopped"' in log


def test_a_crawl_longer_than_its_interval_never_overlaps_itself(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    with SampleSite(latency=0.03) as site:  # ~1.5 s per crawl, started every second
        config = tmp_path / "t.toml"
        config.write_text(config_text(site, every="1s"), "utf-8")
        daemon = Daemon(config).start()
        daemons.append(daemon)
        wait_for(lambda: len(complete(daemon.crawls())) >= 3, 90, "three crawls")
        assert daemon.stop() == 0
    rows = daemon.crawls()
    for earlier, later in itertools.pairwise(rows):
        assert earlier["finished"] is not None
        assert later["started"] >= earlier["finished"], "two crawls of a target overlapped"


def test_restart_keeps_the_schedule(tmp_path: Path, daemons: list[Daemon]) -> None:
    with SampleSite() as site:
        config = tmp_path / "t.toml"
        config.write_text(config_text(site, every="1h"), "utf-8")
        daemon = Daemon(config).start()
        daemons.append(daemon)
        wait_for(lambda: "sample" in next_runs(daemon.archives), 30, "the job")
        first = next_runs(daemon.archives)["sample"]
        assert daemon.stop() == 0
        time.sleep(1.5)
        daemon.start()
        time.sleep(3)
        assert next_runs(daemon.archives)["sample"] == first  # not reset by the restart
        assert daemon.stop() == 0
        assert daemon.crawls() == []  # nothing was due


def test_sigterm_mid_crawl_leaves_valid_warcs_and_the_next_start_resumes(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    with SampleSite(latency=0.1) as site:
        config = tmp_path / "t.toml"
        config.write_text(config_text(site, every="1s"), "utf-8")
        daemon = Daemon(config).start()
        daemons.append(daemon)
        wait_for(lambda: any(r["status"] == "running" for r in daemon.crawls()), 30,
                 "a running crawl")
        time.sleep(1.0)
        assert daemon.stop() == 0
        (row,) = daemon.crawls()
        assert row["status"] == "interrupted"
        warc_dir = daemon.archives / row["directory"] / "warc"
        assert not list(warc_dir.glob("*.open"))
        for warc in warc_dir.glob("*.warc.gz"):
            check = subprocess.run([sys.executable, "-m", "warcio.cli", "check", str(warc)],
                                   capture_output=True)
            assert check.returncode == 0, check.stdout
        site.content.latency = 0
        daemon.start()
        wait_for(lambda: daemon.crawls()[0]["status"] == "complete", 60, "the resume")
        assert daemon.stop() == 0
    assert daemon.crawls()[0]["crawl_id"] == row["crawl_id"]  # resumed, not restarted
    assert "did not finish; resuming it now" in daemon.log.read_text("utf-8")


def test_sighup_applies_a_valid_config_and_rejects_an_invalid_one(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    with SampleSite() as site, SampleSite() as other:
        config = tmp_path / "t.toml"
        config.write_text(config_text(site, every="2s"), "utf-8")
        daemon = Daemon(config).start()
        daemons.append(daemon)
        wait_for(lambda: len(complete(daemon.crawls())) >= 1, 60, "a first crawl")
        config.write_text(config_text(site, every="2s") + f'''
[[targets]]
name = "added"
seeds = ["{other.url}"]
every = "2s"
''', "utf-8")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: len(complete(daemon.crawls("added"))) >= 1, 60, "the added target")
        config.write_text(config_text(site, every="2s") + "per_hosts = 3\n", "utf-8")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "configuration not reloaded" in daemon.log.read_text("utf-8"), 20,
                 "the rejection")
        before = len(complete(daemon.crawls("added")))
        wait_for(lambda: len(complete(daemon.crawls("added"))) > before, 60,
                 "the old configuration to stay in force")
        assert daemon.stop() == 0
    log = daemon.log.read_text("utf-8")
    assert "t.toml: targets[1].per_hosts: unknown key" in log


def test_status_with_config_shows_last_crawl_events_and_next_run(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    with SampleSite() as site:
        config = tmp_path / "t.toml"
        config.write_text(config_text(site, every="2s"), "utf-8")
        daemon = Daemon(config).start()
        daemons.append(daemon)
        wait_for(lambda: len(complete(daemon.crawls())) >= 1, 60, "a crawl")
        site.content.takedown.removed = {"/persons/3.html": 410}
        wait_for(lambda: len(complete(daemon.crawls())) >= 2, 60, "a second crawl")
        assert daemon.stop() == 0
    out = subprocess.run([*CLI, "status", "--config", str(config)], capture_output=True,
                         text=True, env={**os.environ}, check=True).stdout
    assert "sample: last crawl" in out and "next run 20" in out
    assert "removed" in out and "/persons/3.html" in out


def test_the_daemon_waits_for_a_manual_run_of_the_same_target(tmp_path: Path,
                                                             daemons: list[Daemon]) -> None:
    """A manual run holds the target: the daemon's scheduled run waits for it instead of
    failing or running beside it."""
    from crawler.archive.layout import lock_target

    with SampleSite() as site:
        config = tmp_path / "t.toml"
        config.write_text(config_text(site, every="3s"), "utf-8")
        held = lock_target(tmp_path / "arch", "sample")  # as `crawler archive` holds it
        try:
            daemon = Daemon(config).start()
            daemons.append(daemon)
            wait_for(lambda: (daemon.archives / "crawler.log").exists() and "waiting for it"
                     in (daemon.archives / "crawler.log").read_text("utf-8"), 30,
                     "the scheduled run to find the target held")
            time.sleep(2)
            assert daemon.crawls() == []  # waiting, not crawling
            log = (daemon.archives / "crawler.log").read_text("utf-8")
            assert "another run of this target is in progress; waiting for it" in log
        finally:
            held.close()
        wait_for(lambda: len(complete(daemon.crawls())) >= 1, 60, "the crawl after the wait")
        assert daemon.stop() == 0


def test_an_alert_waits_for_a_down_webhook_across_a_daemon_restart(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    """Before, a notification was retried three times and dropped: alerts raised while the
    webhook was down were never delivered. Now they wait in the outbox; the restarted daemon
    tries every queued one at once, and nothing is sent twice."""
    import json

    from test_phases import Webhook

    hook = Webhook()  # down
    try:
        with SampleSite() as site:
            config = tmp_path / "t.toml"
            config.write_text(config_text(site, every="3s", more=(
                f'notify = ["{hook.url}"]\nconfirm_runs = 2\n')).replace(
                "max_concurrent_crawls = 2", 'max_concurrent_crawls = 2\noutbox_interval = "1s"'),
                "utf-8")
            daemon = Daemon(config).start()
            daemons.append(daemon)
            wait_for(lambda: len(complete(daemon.crawls())) >= 1, 60, "a first crawl")
            site.content.takedown.removed = {"/persons/2.html": 410}

            def queued() -> int:
                listed = subprocess.run([*CLI, "outbox", "--output", str(daemon.archives),
                                         "--json"], capture_output=True, text=True)
                return len(json.loads(listed.stdout)["queued"]) if listed.stdout else 0

            wait_for(lambda: queued() >= 1, 60, "a queued alert")
            assert daemon.stop() == 0
            status = subprocess.run([*CLI, "status", "--output", str(daemon.archives)],
                                    capture_output=True, text=True)
            assert "queued" in status.stdout and "last error" in status.stdout
            waiting = queued()
            hook.up()
            daemon.start()
            wait_for(lambda: len(hook.received) >= waiting and queued() == 0, 60,
                     "the queued alerts delivered")
            assert daemon.stop() == 0
    finally:
        hook.down()
    ids = [m["message"].rsplit("crawler-message: ", 1)[1] for m in hook.received]
    assert len(ids) == len(set(ids))  # none twice
    assert any("/persons/2.html" in m["message"] for m in hook.received)
    db = sqlite3.connect(daemon.archives / "catalog.sqlite3")
    try:
        with_events = {row[0] for row in db.execute(
            "SELECT DISTINCT k.crawl_id FROM events e JOIN crawls k ON k.id = e.crawl")}
        undelivered = db.execute("SELECT count(*) FROM outbox WHERE delivered IS NULL"
                                 ).fetchone()[0]
    finally:
        db.close()
    assert {i.split("/", 1)[1] for i in ids} == with_events and undelivered == 0
