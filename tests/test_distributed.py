"""Distributed crawls (jobs/distributed.py) with the real thing: a redis-server from Debian's
packages with append-only persistence, workers as separate `crawler` processes, the sample
site on 127.0.0.1. One worker is killed mid-crawl with a record written but not reported;
Redis is restarted mid-crawl; the merged crawl must hold exactly a single-process crawl's
URLs, each once, verify, and replay."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import redis as sync_redis
from conftest import RedisServer, crawl, fast_settings, read_records, serve_archive_root
from viewers import ReplayWebPage

from crawler.archive.catalog import Catalog
from crawler.archive.warc import timestamp17_of
from crawler.capture.scope import ScopeKind, ScopeRules, TrapRules
from crawler.core.errors import ExitCode
from crawler.crawl.engine import Politeness
from crawler.demo.sample_site import SampleSite

# The sample site's endless calendar is left out of both crawls: how far any crawler walks
# into a trap before its rules stop it depends on timing (the order pages arrive in), so
# only a site without one has a single right URL set to compare.
_CRAWL_ARGS = ["--exclude", "calendar", "--scope", "host", "--max-query-variants", "12",
               "--concurrency", "4",
               "--per-host", "2", "--delay", "0.02", "--retries", "2", "--parse-workers", "0"]


def _crawler(args: list[str], cwd: Path, log: Path,
             env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `crawler ARGS` in ``cwd`` (not the archive root), logging to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "crawler", *args], cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})


def _wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _final_rows(root: Path, target: str) -> set[tuple[str, str]]:
    """Return (url, status or failure) of every final capture of the target's latest crawl."""
    catalog = Catalog.open(root, read_only=True)
    try:
        row = catalog.latest_crawl(target)
        assert row is not None
        return {(url, str(status) if status is not None else failure)
                for url, status, failure in catalog.db.execute(
                    "SELECT url, status, failure FROM captures WHERE crawl=? AND final=1",
                    (row.pk,))}
    finally:
        catalog.close()


def test_three_workers_a_killed_worker_and_a_restarted_redis(
        tmp_path: Path, redis_server: RedisServer) -> None:
    with SampleSite(persons=90) as site:
        site_name_7 = site.content.name(7)
        # The reference: one process, the same settings.
        single = crawl(fast_settings(site.url, tmp_path / "single", target="site",
                                     scope=ScopeRules(kind=ScopeKind.HOST,
                                                      exclude=(re.compile("calendar"),),
                                                      traps=TrapRules(max_query_variants=12)),
                                     politeness=Politeness(concurrency=4, per_host=2,
                                                           delay=0.0, retries=2)))
        assert single.exit_code in (ExitCode.OK, ExitCode.INCOMPLETE)

        work = tmp_path / "elsewhere"  # every command runs away from the archive root
        work.mkdir()
        root = tmp_path / "archive"
        url = redis_server.url
        first = _crawler(["archive", site.url, "--target", "site", "--redis", url,
                          "--worker-name", "w1", "--lease", "3s", "--output", str(root),
                          *_CRAWL_ARGS], work, tmp_path / "w1.log")
        probe = sync_redis.Redis(port=redis_server.port)
        _wait_for(lambda: probe.get("crawler:site:current") is not None, 60, "the crawl")
        # w2 dies the 8th time it is about to commit: its record is in its WARC, its lease
        # is not reported done; another worker must fetch that URL again.
        second = _crawler(["worker", "site", "--redis", url, "--name", "w2", "-o", str(root)],
                          work, tmp_path / "w2.log", env={"CRAWLER_FAILPOINT": "before-commit:8"})
        third = _crawler(["worker", "site", "--redis", url, "--name", "w3", "-o", str(root)],
                         work, tmp_path / "w3.log")
        second.wait(120)
        assert second.returncode == -9, (tmp_path / "w2.log").read_text()
        # Redis goes down and comes back (a service restart) while w1 and w3 crawl on.
        redis_server.stop()
        time.sleep(1.5)
        redis_server.start()
        assert third.wait(300) == 0, (tmp_path / "w3.log").read_text()
        code = first.wait(300)
        log = (tmp_path / "w1.log").read_text()
        assert code == int(single.exit_code), log
        assert "Redis does not answer" in log and "answers again" in log

    merged = _final_rows(root, "site")
    assert merged == _final_rows(tmp_path / "single", "site")

    catalog = Catalog.open(root, read_only=True)
    try:
        row = catalog.latest_crawl("site")
        assert row is not None
        info = json.loads((row.directory / "crawl.json").read_text())["distributed"]
    finally:
        catalog.close()
    assert sorted(info["workers"]) == ["w1", "w2", "w3"]
    assert info["superseded"] >= 1  # w2's uncommitted record: fetched again, left out
    assert info["queue"]["reclaimed"] >= 1 and info["queue"]["queued"] == 0

    # Each URL once in the final collection (no retries happen on this site).
    warcs = sorted((row.directory / "warc").glob("*.warc.gz"))
    records = read_records(warcs)
    main = Counter(r.uri for r in records if r.type in ("response", "revisit", "metadata")
                   and "WARC-Concurrent-To" not in r.warc)
    assert main and max(main.values()) == 1, [u for u, n in main.items() if n > 1]
    requests = Counter(r.uri for r in records if r.type == "request")
    assert max(requests.values()) == 1
    # w2's WARC (left .open by the kill) holds the record of the lease it lost, which
    # another worker fetched again: that record is not in the merged collection.
    w2_warcs = list((root / ".workers").glob("site-*/w2/site/*/warc/*.warc.gz.open"))
    assert len(w2_warcs) == 1
    w2_ids = {r.warc["WARC-Record-ID"] for r in read_records(w2_warcs) if r.type == "response"}
    kept = {r.warc["WARC-Record-ID"] for r in records if r.type == "response"}
    assert len(w2_ids - kept) >= 1

    verify = subprocess.run([sys.executable, "-m", "crawler", "verify", "site", "-o",
                             str(root)], cwd=work, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    status = subprocess.run([sys.executable, "-m", "crawler", "status", "site", "--redis",
                             url, "--json"], cwd=work, capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["state"] == "merged" and set(state["workers"]) == {"w1", "w2", "w3"}

    replayed = 0
    with serve_archive_root(root, "site") as pywb:
        for rec in records:
            if rec.type == "response" and rec.uri.endswith(("/persons/7.html", "/style.css")):
                stamp = "".join(c for c in rec.warc["WARC-Date"] if c.isdigit())[:14]
                page = pywb.get(stamp, rec.uri, raw=True)
                assert page.status_code == 200 and page.content == rec.body
                replayed += 1
    assert replayed == 2

    # ReplayWeb.page, from a WACZ of the merged crawl, in headless Chromium.
    wacz = subprocess.run([sys.executable, "-m", "crawler", "wacz", "site", "-o", str(root)],
                          cwd=work, capture_output=True, text=True)
    assert wacz.returncode == 0, wacz.stderr
    package = Path(wacz.stdout.strip())
    check = subprocess.run([str(Path(sys.executable).parent / "wacz"), "validate", "-f",
                            str(package)], capture_output=True, text=True)
    assert check.returncode == 0 and "Validation succeeded" in check.stdout, check.stdout
    person = next(r for r in records if r.type == "response"
                  and r.uri.endswith("/persons/7.html"))
    with ReplayWebPage(tmp_path / "rwp") as rwp:
        source = rwp.add(package)
        with rwp.session() as session:
            view = session.view(source, person.uri, timestamp17_of(person.warc["WARC-Date"]))
    assert not view.not_found and site_name_7 in " ".join(view.text.split())


def test_stop_every_worker_and_merge_what_was_done(tmp_path: Path,
                                                   redis_server: RedisServer) -> None:
    with SampleSite(persons=200) as site:
        root = tmp_path / "archive"
        url = redis_server.url
        first = _crawler(["archive", site.url, "--target", "site", "--redis", url,
                          "--worker-name", "w1", "--output", str(root), "--delay", "0.2",
                          "--per-host", "1", "--parse-workers", "0"], tmp_path,
                         tmp_path / "w1.log")
        probe = sync_redis.Redis(port=redis_server.port)
        _wait_for(lambda: probe.get("crawler:site:current") is not None, 60, "the crawl")
        second = _crawler(["worker", "site", "--redis", url, "--name", "w2", "-o",
                           str(root)], tmp_path, tmp_path / "w2.log")
        time.sleep(3)
        stop = subprocess.run([sys.executable, "-m", "crawler", "stop", "site", "--redis", url],
                              capture_output=True, text=True)
        assert stop.returncode == 0, stop.stderr
        assert second.wait(60) == int(ExitCode.INTERRUPTED)
        code = first.wait(120)
        log = (tmp_path / "w1.log").read_text()
        assert code == int(ExitCode.INCOMPLETE), log
        assert "still queued or leased in the shared queue" in log
    catalog = Catalog.open(root, read_only=True)
    try:
        row = catalog.latest_crawl("site")
        assert row is not None and row.status == "incomplete"
        assert row.shortfall["not-fetched"] > 0
        done = catalog.crawl_totals(row.pk)["urls"]
    finally:
        catalog.close()
    assert 0 < done < 400


def test_clear_errors(tmp_path: Path, redis_server: RedisServer) -> None:
    closed = f"redis://127.0.0.1:{_closed_port()}/0"
    gone = subprocess.run([sys.executable, "-m", "crawler", "archive", "http://127.0.0.1:9/",
                           "--redis", closed, "-o", str(tmp_path)],
                          capture_output=True, text=True)
    assert gone.returncode == int(ExitCode.CONFIG)
    assert f"Redis at {closed} does not answer" in gone.stderr
    nothing = subprocess.run([sys.executable, "-m", "crawler", "worker", "site", "--redis",
                              redis_server.url, "-o", str(tmp_path)],
                             capture_output=True, text=True)
    assert nothing.returncode == int(ExitCode.CONFIG)
    assert "has no distributed crawl of site in progress" in nothing.stderr
    # A merge while the crawl's workers still have URLs to do is refused, not cut short.
    probe = sync_redis.Redis(port=redis_server.port)
    probe.set("crawler:site:current", "20261202T000000Z")
    probe.set("crawler:site:20261202T000000Z:settings",
              json.dumps(fast_settings("http://127.0.0.1:9/", tmp_path).to_json()))
    probe.hset("crawler:site:20261202T000000Z:counters", mapping={"seen": 3, "queued": 2})
    early = subprocess.run([sys.executable, "-m", "crawler", "merge", "site", "--redis",
                            redis_server.url, "-o", str(tmp_path)], capture_output=True,
                           text=True)
    assert early.returncode == int(ExitCode.CONFIG)
    assert "is not over (2 URLs queued, 0 leased)" in early.stderr
    second = subprocess.run([sys.executable, "-m", "crawler", "archive", "http://127.0.0.1:9/",
                             "--target", "site", "--redis", redis_server.url, "-o",
                             str(tmp_path)], capture_output=True, text=True)
    assert second.returncode == int(ExitCode.CONFIG)
    assert "already has a distributed crawl of site in progress (20261202T000000Z)" \
        in second.stderr
    assert probe.get("crawler:site:current") == b"20261202T000000Z"  # left as it was
    limited = subprocess.run([sys.executable, "-m", "crawler", "archive",
                              "http://127.0.0.1:9/", "--redis", redis_server.url,
                              "--max-pages", "5", "-o", str(tmp_path)],
                             capture_output=True, text=True)
    assert limited.returncode == int(ExitCode.CONFIG)
    assert "--max-pages" in limited.stderr and "not supported with --redis" in limited.stderr


def _closed_port() -> int:
    from conftest import free_port
    return free_port()


def test_a_retry_goes_back_to_the_shared_queue(tmp_path: Path,
                                               redis_server: RedisServer) -> None:
    """A 503 is retried through the shared queue as the URL's next attempt; the merge keeps
    both attempts, the retry final, as a single-machine crawl does."""
    import http.server
    import threading

    hits: Counter[str] = Counter()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[self.path] += 1
            if self.path == "/a" and hits["/a"] == 1:
                self.send_response(503)
                self.send_header("Retry-After", "1")
                body = b"busy"
            else:
                self.send_response(200)
                body = (b'<html><a href="/a">a</a> <a href="/b">b</a></html>'
                        if self.path == "/" else b"<html>page " + self.path.encode() + b"</html>")
            self.send_header("Content-Type", "text/html" if body != b"busy" else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        site = f"http://127.0.0.1:{server.server_address[1]}/"
        root = tmp_path / "archive"
        done = subprocess.run([sys.executable, "-m", "crawler", "archive", site, "--target",
                               "tiny", "--redis", redis_server.url, "-o", str(root),
                               "--delay", "0", "--parse-workers", "0", "--json"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    assert hits["/a"] == 2
    summary = json.loads(done.stdout)
    assert summary["stats"]["merge"]["queue"]["retried"] == 1
    catalog = Catalog.open(root, read_only=True)
    try:
        row = catalog.latest_crawl("tiny")
        assert row is not None and row.status == "complete"
        attempts = catalog.db.execute(
            "SELECT status, final FROM captures WHERE crawl=? AND url=? ORDER BY fetched_at",
            (row.pk, site + "a")).fetchall()
    finally:
        catalog.close()
    assert [tuple(a) for a in attempts] == [(503, 0), (200, 1)]


def test_redis_losing_the_crawl_is_said_and_the_workers_folders_merge_without_it(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """A Redis restarted without its data: the worker says so and stops; `crawler merge
    --crawl` enters what was fetched, and the crawl is incomplete (what was left is not
    known), never complete."""
    with SampleSite(persons=200) as site:
        root = tmp_path / "archive"
        first = _crawler(["archive", site.url, "--target", "site", "--redis",
                          redis_server.url, "--worker-name", "w1", "--output", str(root),
                          "--delay", "0.1", "--per-host", "1", "--parse-workers", "0"],
                         tmp_path, tmp_path / "w1.log")
        probe = sync_redis.Redis(port=redis_server.port)
        _wait_for(lambda: int(probe.hget("crawler:site:" + probe.get(
            "crawler:site:current").decode() + ":counters", "completed") or 0) >= 10
            if probe.get("crawler:site:current") else False, 60, "ten URLs done")
        crawl_id = probe.get("crawler:site:current").decode()
        redis_server.kill()
        for leftover in redis_server.directory.rglob("*"):
            if leftover.is_file():
                leftover.unlink()  # its data is gone
        redis_server.start()
        code = first.wait(120)
        log = (tmp_path / "w1.log").read_text()
        assert code == int(ExitCode.INTERRUPTED), log
        assert "Redis no longer holds this crawl" in log
    refused = subprocess.run([sys.executable, "-m", "crawler", "merge", "site", "--redis",
                              redis_server.url, "-o", str(root)], capture_output=True,
                             text=True)
    assert refused.returncode == int(ExitCode.CONFIG)
    assert "has no distributed crawl of site in progress" in refused.stderr
    merged = subprocess.run([sys.executable, "-m", "crawler", "merge", "site", "--crawl",
                             crawl_id, "-o", str(root)], cwd=tmp_path, capture_output=True,
                            text=True)
    assert merged.returncode == int(ExitCode.INCOMPLETE), merged.stderr
    assert "whether URLs were left queued is not known" in merged.stdout
    catalog = Catalog.open(root, read_only=True)
    try:
        row = catalog.latest_crawl("site")
        assert row is not None and row.status == "incomplete" and row.crawl_id == crawl_id
        assert catalog.crawl_totals(row.pk)["urls"] >= 10
    finally:
        catalog.close()
    verify = subprocess.run([sys.executable, "-m", "crawler", "verify", "site", "-o",
                             str(root)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_distributed_recrawl_refers_to_the_earlier_crawls_payloads(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """The shared digest index: workers write revisits of payloads the target's earlier
    crawls hold (records on the merging machine); the merged recrawl is compared with the
    earlier crawl, verifies and replays."""
    from crawler.capture.settings import DedupSettings

    root = tmp_path / "archive"
    with SampleSite(persons=30) as site:
        for run in range(2):
            if run == 1:  # between the crawls, a person's page is taken down
                site.content.takedown.removed = {"/persons/5.html": 404}
            done = subprocess.run([sys.executable, "-m", "crawler", "archive", site.url,
                                   "--target", "site", "--redis", redis_server.url,
                                   "--exclude", "calendar", "-o", str(root), "--delay", "0",
                                   "--parse-workers", "0", "--recheck", "0", "--quiet"],
                                  cwd=tmp_path, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
    catalog = Catalog.open(root, read_only=True)
    try:
        first, second = catalog.crawls("site")[:2]
        first_dir, second_dir = first.directory, second.directory
    finally:
        catalog.close()
    # The merged recrawl is compared with the first crawl, as any crawl is: the page taken
    # down is found removed (a first sighting, suspected: not yet an alert), nothing else.
    report = json.loads((second_dir / "report.json").read_text())
    found = {f["url"].rsplit("/", 2)[-2:][-1]: f["class"] for f in report["findings"]
             if "/persons/" in f["url"]}
    assert found == {"5.html": "removed"}
    before = read_records(sorted((first_dir / "warc").glob("*.warc.gz")))
    after = read_records(sorted((second_dir / "warc").glob("*.warc.gz")))
    held = {r.warc["WARC-Payload-Digest"]: r for r in before if r.type == "response"}
    revisits = [r for r in after if r.type == "revisit"]
    assert len(revisits) >= 10
    for revisit in revisits:  # each refers to the earlier crawl's record, exactly
        original = held[revisit.warc["WARC-Payload-Digest"]]
        assert revisit.warc["WARC-Refers-To"] == original.warc["WARC-Record-ID"]
        assert revisit.warc["WARC-Refers-To-Date"] == original.warc["WARC-Date"]
    again = [r for r in after if r.type == "response" and r.warc["WARC-Payload-Digest"] in held
             and len(r.body) >= DedupSettings().min_size and r.status is not None
             and 200 <= r.status < 300]
    assert again == []  # no page's payload stored twice (errors are never revisits)
    verify = subprocess.run([sys.executable, "-m", "crawler", "verify", "site", "-o",
                             str(root)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with serve_archive_root(root, "site") as pywb:
        revisit = next(r for r in revisits if r.uri.endswith("/persons/3.html"))
        stamp = "".join(c for c in revisit.warc["WARC-Date"] if c.isdigit())[:14]
        page = pywb.get(stamp, revisit.uri, raw=True)
        assert page.status_code == 200
        assert page.content == held[revisit.warc["WARC-Payload-Digest"]].body
