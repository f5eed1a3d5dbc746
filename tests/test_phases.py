"""A run is finished only when its report is written and its notifications delivered or
queued (issue 12): kill -9 during detection, report writing and notification, then resume;
a webhook that is down, then up."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from crawler.demo.sample_site import SampleSite

CLI = [sys.executable, "-m", "crawler"]


class Webhook:
    """A JSON webhook on a fixed loopback port that can go down and come back."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"json://127.0.0.1:{self.port}/hook"
        self.received: list[dict[str, Any]] = []
        self._server: HTTPServer | None = None

    def up(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self._server = HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def hook() -> Iterator[Webhook]:
    h = Webhook()
    yield h
    h.down()


def _archive(site: SampleSite, out: Path, *extra: str, failpoint: str | None = None,
             ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("CRAWLER_FAILPOINT", None)
    if failpoint:
        env["CRAWLER_FAILPOINT"] = failpoint
    return subprocess.run(
        [*CLI, "archive", site.url, "--target", "t", "--output", str(out), "--scope", "host",
         "--delay", "0", "--exclude", "calendar", "--quiet", *extra],
        capture_output=True, text=True, timeout=180, env=env, cwd="/")


def _cli(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "--output", str(out)], capture_output=True, text=True,
                          timeout=180, cwd="/")


def _last_crawl(out: Path) -> sqlite3.Row:
    db = sqlite3.connect(out / "catalog.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM crawls ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        db.close()


def _takedown(site: SampleSite, out: Path, hook: Webhook) -> list[str]:
    """Archive the site, remove a page; return the options of the run that should alert."""
    assert _archive(site, out, "--recheck", "0").returncode == 0
    site.content.takedown.removed = {"/persons/2.html": 404}
    return ["--recheck", "1", "--recheck-spacing", "0", "--notify", hook.url]


@pytest.mark.parametrize("failpoint", ["probe-written:1", "before-report:1", "before-notify:1"])
def test_a_kill_after_the_crawl_loses_no_alert(tmp_path: Path, hook: Webhook,
                                               failpoint: str) -> None:
    """Before, a kill during detection left the crawl "complete", nothing to resume, no
    report, a detect .open file, and the next crawl never reported the takedown."""
    out = tmp_path / "arch"
    hook.up()
    with SampleSite(persons=6) as site:
        options = _takedown(site, out, hook)
        killed = _archive(site, out, *options, failpoint=failpoint)
        assert killed.returncode == -9, killed.stderr
        row = _last_crawl(out)
        crawl_dir = out / row["directory"]
        assert row["status"] == "complete" and row["phase"] is not None
        if failpoint.startswith("probe"):
            assert list((crawl_dir / "warc").glob("*-detect-*.warc.gz.open"))
        assert not (crawl_dir / "report.json").exists() or failpoint.startswith("before-n")
        status = _cli(out, "status")
        assert "unfinished" in status.stdout and "crawler resume t" in status.stdout
        assert hook.received == []

        resumed = _cli(out, "resume", "t")
    assert resumed.returncode == 6, resumed.stdout + resumed.stderr
    row = _last_crawl(out)
    assert row["phase"] is None and row["exit_code"] == 6
    assert not list(crawl_dir.rglob("*.open")) and not list(crawl_dir.rglob("*.tmp"))
    report = json.loads((crawl_dir / "report.json").read_text("utf-8"))
    assert [e["url"].rsplit("/", 1)[1] for e in report["events"]] == ["2.html"]
    assert len(hook.received) == 1 and "/persons/2.html" in hook.received[0]["message"]
    assert _cli(out, "resume", "t").returncode == 3  # nothing left to do
    assert _cli(out, "verify", "t").returncode == 0


def test_a_new_run_first_finishes_a_run_killed_in_detection(tmp_path: Path,
                                                            hook: Webhook) -> None:
    """The next crawl must not compare against the gutted crawl without first reporting it."""
    out = tmp_path / "arch"
    hook.up()
    with SampleSite(persons=6) as site:
        options = _takedown(site, out, hook)
        assert _archive(site, out, *options, failpoint="probe-written:1").returncode == -9
        gutted = _last_crawl(out)
        following = _archive(site, out, *options)
    assert following.returncode in (0, 6), following.stderr
    db = sqlite3.connect(out / "catalog.sqlite3")
    try:
        events = db.execute("SELECT crawl, url, state FROM events ORDER BY id").fetchall()
        phases = db.execute("SELECT phase FROM crawls").fetchall()
    finally:
        db.close()
    # the gutted crawl's alert was raised (by the new run, before its own crawl) ...
    assert (events[0][0], events[0][1].rsplit("/", 1)[1]) == (gutted["id"], "2.html")
    assert events[0][2] in ("provisional", "confirmed")
    # ... and the new crawl at most confirmed it: never "recovered", never raised anew
    assert all(state == "confirmed" for _, _, state in events[1:]), events
    assert phases == [(None,), (None,), (None,)]
    assert gutted["crawl_id"] in hook.received[0]["title"]
    assert len(hook.received) == len({c for c, _, _ in events})


def test_an_alert_waits_in_the_outbox_while_the_webhook_is_down(tmp_path: Path,
                                                                 hook: Webhook) -> None:
    """Before, a failed notification was retried three times and dropped."""
    out = tmp_path / "arch"
    with SampleSite(persons=6) as site:
        options = _takedown(site, out, hook)
        run = _archive(site, out, *options)  # the webhook is down
    assert run.returncode == 6, run.stderr
    status = _cli(out, "status")
    assert "notifications: 0 delivered, 1 queued" in status.stdout, status.stdout
    assert "last error" in status.stdout
    listed = json.loads(_cli(out, "outbox", "--json").stdout)
    assert len(listed["queued"]) == 1 and listed["queued"][0]["attempts"] == 1
    assert hook.url not in (out / "catalog.sqlite3").read_bytes().decode("latin-1")

    still_down = _cli(out, "outbox", "--send")
    assert still_down.returncode == 9 and "failed 1" in still_down.stdout
    hook.up()
    sent = _cli(out, "outbox", "--send")
    assert sent.returncode == 0 and "delivered 1" in sent.stdout, sent.stdout + sent.stderr
    assert len(hook.received) == 1 and "/persons/2.html" in hook.received[0]["message"]
    again = _cli(out, "outbox", "--send")
    assert "delivered 0" in again.stdout and len(hook.received) == 1
    assert "No notifications waiting" in again.stdout
