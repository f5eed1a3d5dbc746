"""Rescue of a site that is gone, from a real pywb as the remote archive (CDX server API,
TimeMaps, raw ``id_`` mementos): every page and image back with its bytes and date, with
provenance, replayable in pywb and ReplayWeb.page, continued after a kill, and the base a
later live crawl is compared with."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from conftest import Pywb, crawl, fast_settings, read_records, serve_archive_root, start_pywb
from test_takedown import settings_for
from test_viewers import _main_text
from viewers import ReplayWebPage

from crawler.archive.warc import timestamp17_of
from crawler.commands.cli import cli
from crawler.demo.sample_site import SampleSite
from crawler.jobs.pipeline import run_target

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Gone:
    """A crawled sample site, taken offline, its crawl served by pywb."""

    site_url: str
    port: int
    cdn_port: int
    origin: Path  # the archive root of the original crawl
    pywb: Pywb

    def source(self, *options: str) -> str:
        return ";".join([self.pywb.base.rstrip("/"), "rate=0", *options])


def _wait_for(url: str) -> None:
    for _ in range(200):
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


@pytest.fixture(scope="module")
def gone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gone]:
    base = tmp_path_factory.mktemp("gone")
    with SampleSite() as site:
        outcome = crawl(fast_settings(site.url, base / "origin"))
        url = site.url
        port = int(url.rsplit(":", 1)[1].strip("/"))
        cdn = int(site.cdn_url.rsplit(":", 1)[1].strip("/"))
    pywb, proc = start_pywb(base / "pywb", list(outcome.warcs), [outcome.index])
    try:
        _wait_for(f"{pywb.base}cdx?url={url}&output=json")
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, timeout=2)  # the site is gone
        yield Gone(url, port, cdn, base / "origin", pywb)
    finally:
        proc.terminate()
        proc.wait(10)


def _rows(root: Path, where: str = "") -> dict[str, sqlite3.Row]:
    db = sqlite3.connect(root / "catalog.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return {r["url"]: r for r in db.execute(
            "SELECT * FROM captures WHERE final = 1 AND record_type IN ('response', "
            f"'revisit') {where}")}
    finally:
        db.close()


def _rescue(root: Path, target: str, *args: str, cwd: Path) -> Any:
    """Run `crawler rescue` from another directory, with a root given relative to it."""
    relative = os.path.relpath(root, cwd)
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, ["rescue", target, "-o", relative, *args])
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def rescued(gone: Gone, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rescued") / "root"
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = _rescue(out, "rescued", "--source", gone.source(), "--url", gone.site_url,
                     cwd=elsewhere)
    assert result.exit_code == 0, result.output
    assert "rescued" in result.output and "complete" in result.output
    return out


def test_every_page_and_image_comes_back_with_its_bytes_and_date(gone: Gone,
                                                                  rescued: Path) -> None:
    original = {u: r for u, r in _rows(gone.origin).items() if u.startswith(gone.site_url)}
    back = _rows(rescued)
    assert len(original) > 100
    statuses = {r["status"] for r in original.values()}
    assert {200, 301, 302} <= statuses | {r["status"] for r in back.values()}
    for url, row in original.items():
        if row["status"] >= 400:
            assert url not in back, url  # an error capture is not the page
            continue
        assert url in back, url
        got = back[url]
        assert got["digest"] == row["digest"], url  # the original bytes
        assert timestamp17_of(got["fetched_at"]) == timestamp17_of(row["fetched_at"]), url
        assert got["status"] == row["status"], url
        assert got["location"] == row["location"], url  # redirects kept, to the original URL


def test_records_carry_provenance_and_no_made_up_requests(gone: Gone, rescued: Path) -> None:
    warcs = sorted(rescued.glob("rescued/*/warc/*.warc.gz"))
    records = read_records(warcs)
    types = {r.type for r in records}
    assert "request" not in types  # an archive keeps no request: none is invented
    original = {r.uri: r for r in read_records(sorted(gone.origin.glob("*/*/warc/*.warc.gz")))
                if r.type in ("response", "revisit")}
    responses = [r for r in records if r.type in ("response", "revisit")]
    assert responses
    for rec in responses:
        assert rec.warc["WARC-Crawler-Rescued-From"] == gone.pywb.base.split("/")[2]
        assert rec.warc["WARC-Crawler-Memento"].startswith(gone.pywb.base)
        assert "id_/" in rec.warc["WARC-Crawler-Memento"]
        assert rec.warc["WARC-Crawler-Retrieved"][:4] == time.strftime("%Y")
        assert rec.warc["WARC-Date"] == original[rec.uri].warc["WARC-Date"]
        if rec.type == "response" and original[rec.uri].type == "response":
            assert _headers(rec) == _headers(original[rec.uri]), rec.uri  # the origin's
            assert rec.line == original[rec.uri].line, rec.uri
    db = sqlite3.connect(rescued / "catalog.sqlite3")
    try:
        kinds = dict(db.execute("SELECT kind, count(*) FROM crawls GROUP BY kind").fetchall())
        assert kinds == {"rescue": 1}
        unmatched = db.execute(
            "SELECT count(*) FROM captures c LEFT JOIN provenance p ON p.capture = c.id "
            "WHERE c.record_type IN ('response', 'revisit') AND p.capture IS NULL").fetchone()
        assert unmatched[0] == 0
        assert db.execute("SELECT count(*) FROM provenance WHERE digest_match = 0"
                          ).fetchone()[0] == 0
    finally:
        db.close()


def _headers(rec: Any) -> list[tuple[str, str]]:
    """Return a record's HTTP headers as the origin sent them: without the length and
    framing our writer records about the bytes it stored."""
    skip = {"content-length", "x-orig-content-length", "x-orig-transfer-encoding"}
    return sorted((n.lower(), v) for n, v in rec.http or [] if n.lower() not in skip)


def test_report_counts_and_explains_what_is_missing(gone: Gone, rescued: Path) -> None:
    import json

    report = json.loads(next(rescued.glob("rescued/*/rescue.json")).read_text("utf-8"))
    urls = report["urls"]
    assert urls["rescued"] == len(_rows(rescued))
    assert urls["found"] == urls["rescued"] + urls["missing"] + urls["held"]
    reasons = {m["url"]: m["reason"] for m in report["missing"]}
    assert "only error captures" in reasons[gone.site_url + "missing.html"]
    tsv = next(rescued.glob("rescued/*/rescue-missing.tsv")).read_text("utf-8")
    assert tsv.count("\n") == urls["missing"] + 1
    persons = [s for s in report["sections"] if s["section"].endswith("/persons/")]
    assert persons and persons[0]["rescued"] >= 30 and persons[0]["first"] is not None
    status = CliRunner().invoke(cli, ["status", "-o", str(rescued)])
    assert status.exit_code == 0
    assert "rescue" in status.output and f"rescued {urls['rescued']}" in status.output
    verify = CliRunner().invoke(cli, ["verify", "rescued", "-o", str(rescued)])
    assert verify.exit_code == 0, verify.output


def test_rescued_collection_replays_in_pywb_and_replaywebpage(gone: Gone, rescued: Path,
                                                              tmp_path: Path) -> None:
    back = _rows(rescued)
    person = gone.site_url + "persons/1.html"
    ts = timestamp17_of(back[person]["fetched_at"])
    original_body = gone.pywb.get(ts, person, raw=True).content
    with serve_archive_root(rescued, "rescued") as pywb:
        _wait_for(pywb.base)
        got = pywb.get(ts, person, raw=True)
        assert got.status_code == 200 and got.content == original_body
        image = next(u for u, r in back.items() if (r["mime"] or "").startswith("image/"))
        raw = pywb.get(timestamp17_of(back[image]["fetched_at"]), image, raw=True)
        assert raw.status_code == 200 and raw.content
    wacz = CliRunner().invoke(cli, ["wacz", "rescued", "--output", str(rescued)])
    assert wacz.exit_code == 0, wacz.output
    package = Path(wacz.stdout.strip())
    check = subprocess.run([str(Path(sys.executable).parent / "wacz"), "validate", "-f",
                            str(package)], capture_output=True, text=True)
    assert check.returncode == 0 and "Validation succeeded" in check.stdout, check.stdout
    with ReplayWebPage(tmp_path / "rwp") as rwp:
        source = rwp.add(package)
        with rwp.session() as session:
            view = session.view(source, person, ts)
            shown = " ".join(view.text.split())
            assert _main_text(original_body)[:80] in shown, shown[:300]


def test_a_source_without_cdx_is_rescued_through_timemaps(gone: Gone, tmp_path: Path) -> None:
    out = tmp_path / "tm"
    result = _rescue(out, "tm", "--source", gone.source("cdx=none"), "--url", gone.site_url,
                     "--json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)
    assert report["sources"][0]["listing"] == "timemap"
    back = _rows(out)
    persons = [u for u in back if "/persons/" in u and u.endswith(".html")]
    assert len(persons) >= 30  # reached page by page, from the prefix
    original = _rows(gone.origin)
    for url in persons:
        assert back[url]["digest"] == original[url]["digest"]


def test_a_killed_rescue_continues_without_duplicates(gone: Gone, rescued: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "crawler", "rescue", "k", "--source", gone.source(),
            "--url", gone.site_url, "-o", str(out), "-q"]
    env = {**os.environ, "CRAWLER_FAILPOINT": "rescue-written:25"}
    first = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, timeout=300)
    assert first.returncode == -9, first.stderr[-2000:]
    second = subprocess.run(args[:-1], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "records a killed run wrote" in second.stderr  # entered, not fetched again
    records = read_records(sorted(out.glob("k/*/warc/*.warc.gz")))
    seen = [(r.uri, r.warc["WARC-Date"]) for r in records if r.type in ("response",
                                                                           "revisit")]
    assert len(seen) == len(set(seen))  # what was written before the kill: not again
    back, clean = _rows(out), _rows(rescued)  # the same as a rescue never killed
    assert set(back) == set(clean)
    assert all(back[u]["digest"] == clean[u]["digest"] for u in back)
    verify = CliRunner().invoke(cli, ["verify", "k", "-o", str(out)])
    assert verify.exit_code == 0, verify.output


def test_a_rescue_run_again_holds_what_it_has(gone: Gone, rescued: Path, tmp_path: Path) -> None:
    copy = tmp_path / "again"
    shutil.copytree(rescued, copy)
    result = _rescue(copy, "rescued", "--source", gone.source(), "--url", gone.site_url,
                     "--json", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)
    assert report["urls"]["rescued"] == 0 and report["urls"]["held"] == len(_rows(rescued))
    assert report["captures"]["written"] == 0


def test_a_site_that_comes_back_altered_is_caught(gone: Gone, rescued: Path,
                                                  tmp_path: Path) -> None:
    root = tmp_path / "back"
    shutil.copytree(rescued, root)
    with SampleSite(port=gone.port, cdn_port=gone.cdn_port) as site:
        site.content.takedown.removed = {"/persons/3.html": 404}
        run = asyncio.run(run_target(settings_for(site, root, target="rescued")))
    assert run.report is not None
    removed = [f for f in run.report["findings"] if f["url"].endswith("/persons/3.html")]
    assert removed and removed[0]["class"] == "removed", run.report["findings"][:5]
    unchanged = run.report["summary"]["classes"].get("unchanged", 0)
    assert unchanged > 20  # the rest compared equal to the rescued captures


def test_a_configured_target_already_gone_is_rescued_once(gone: Gone, tmp_path: Path) -> None:
    """Memorial's case: the site is gone before anyone configured it. The run's crawl
    captures nothing, so the run rescues it from the sources the config names; the next
    run, still dark, compares with the rescue and does not rescue it again."""
    config = tmp_path / "targets.toml"
    config.write_text(
        'archives = "archives"\n[[targets]]\nname = "lost"\n'
        f'seeds = ["{gone.site_url}"]\nretries = 0\ntimeout = "2s"\nsitemaps = false\n'
        f'sources = ["{gone.source()}"]\n', "utf-8")
    check = CliRunner().invoke(cli, ["config", "check", str(config)])
    assert check.exit_code == 0, check.output
    first = CliRunner().invoke(cli, ["run", "lost", "--config", str(config)])
    assert first.exit_code == 4, first.output  # the crawl failed: that is still the run's code
    assert "the site is dark: no seed could be captured" in first.output
    assert "rescue" in first.output and "complete" in first.output
    root = tmp_path / "archives"
    back = _rows(root)
    assert gone.site_url + "persons/1.html" in back and len(back) > 100
    # The rescue is now the base the next crawl is compared with: the site's pages are
    # confirmed unreachable (exit 6, an alert), and it is not rescued a second time.
    second = CliRunner().invoke(cli, ["run", "lost", "--config", str(config)])
    assert second.exit_code == 6, second.output
    assert "the site is dark: host-level takedown confirmed" in second.output
    assert "URLs found" not in second.output
    db = sqlite3.connect(root / "catalog.sqlite3")
    try:
        assert db.execute("SELECT count(*) FROM crawls WHERE kind = 'rescue'").fetchone()[0] == 1
    finally:
        db.close()


def test_bad_sources_in_a_config_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "targets.toml"
    config.write_text('[[targets]]\nname = "x"\nseeds = ["http://127.0.0.1:9/"]\n'
                      'sources = ["ftp://archive/"]\n', "utf-8")
    check = CliRunner().invoke(cli, ["config", "check", str(config)])
    assert check.exit_code == 3
    assert "targets.toml" in check.output and "targets[1].sources" in check.output


def test_a_rebuilt_catalog_keeps_the_rescue_and_its_provenance(rescued: Path,
                                                               tmp_path: Path) -> None:
    root = tmp_path / "rebuilt"
    shutil.copytree(rescued, root)
    before = sqlite3.connect(root / "catalog.sqlite3")
    try:
        provenance = before.execute("SELECT c.url, p.source, p.memento, p.source_digest FROM "
                                    "provenance p JOIN captures c ON c.id = p.capture "
                                    "ORDER BY 1").fetchall()
    finally:
        before.close()
    result = CliRunner().invoke(cli, ["reindex", "--output", str(root), "--force"])
    assert result.exit_code == 0, result.output
    after = sqlite3.connect(root / "catalog.sqlite3")
    try:
        assert after.execute("SELECT kind, status FROM crawls").fetchall() == [
            ("rescue", "complete")]
        assert after.execute("SELECT c.url, p.source, p.memento, p.source_digest FROM "
                             "provenance p JOIN captures c ON c.id = p.capture ORDER BY 1"
                             ).fetchall() == provenance
        assert after.execute("SELECT count(*) FROM url_states").fetchone()[0] == 0
    finally:
        after.close()


def test_an_interrupted_rescue_says_so_and_continues(gone: Gone, rescued: Path,
                                                     tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    args = [sys.executable, "-m", "crawler", "rescue", "s", "--source",
            gone.pywb.base.rstrip("/") + ";rate=20", "--url", gone.site_url, "-o", str(out)]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(3)
    proc.send_signal(2)  # SIGINT: finish what is in flight, write the report
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 5, stderr[-2000:]
    assert "interrupted" in stdout and "not tried" in stdout
    status = CliRunner().invoke(cli, ["status", "-o", str(out)])
    assert "`crawler rescue s` with the same URL, window and sources continues it" in \
        status.output
    args[6] = gone.pywb.base.rstrip("/") + ";rate=0"  # faster now: still the same rescue
    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert set(_rows(out)) == set(_rows(rescued))
    db = sqlite3.connect(out / "catalog.sqlite3")
    try:
        assert db.execute("SELECT count(*) FROM crawls").fetchone()[0] == 1  # one rescue
    finally:
        db.close()


def test_every_capture_of_a_history_replays_at_its_own_time(tmp_path: Path) -> None:
    """A source holding two crawls of the site (the second mostly revisits, one page edited
    in between) rescued with --all: every URL comes back twice; what did not change becomes
    our own revisits of the first rescued capture; pywb and ReplayWeb.page show each page as
    it was at each time."""
    person = "persons/1.html"
    with SampleSite() as site:
        first = crawl(fast_settings(site.url, tmp_path / "origin", extract_workers=0))
        site.content.takedown.rewrite = {"/" + person: (b"</h1>", b"</h1><p>Edited later.</p>")}
        second = crawl(fast_settings(site.url, tmp_path / "origin", extract_workers=0))
        url = site.url
    pywb, proc = start_pywb(tmp_path / "pywb", [*first.warcs, *second.warcs],
                            [first.index, second.index])
    try:
        _wait_for(f"{pywb.base}cdx?url={url}&output=json")
        source = ";".join([pywb.base.rstrip("/"), "rate=0"])
        out = tmp_path / "history"
        result = _rescue(out, "history", "--source", source, "--url", url, "--all",
                         cwd=tmp_path)
        assert result.exit_code == 0, result.output
    finally:
        proc.terminate()
        proc.wait(10)
    db = sqlite3.connect(out / "catalog.sqlite3")
    try:
        dates = [r[0] for r in db.execute("SELECT fetched_at FROM captures WHERE url = ? "
                                          "ORDER BY id", (url + person,))]
        revisits = db.execute("SELECT count(*) FROM captures WHERE record_type = 'revisit'"
                              ).fetchone()[0]
    finally:
        db.close()
    assert len(dates) == 2 and dates[0] < dates[1]
    assert revisits > 50  # unchanged pages: revisits of the first rescued capture
    stamps = [timestamp17_of(d) for d in dates]
    about = url + "about.html"
    about_stamps = [timestamp17_of(r["fetched_at"]) for r in _rows_all(out, about)]
    with serve_archive_root(out, "history") as replay:
        _wait_for(replay.base)
        old, new = (replay.get(ts, url + person, raw=True).content for ts in stamps)
        assert b"Edited later." not in old and b"Edited later." in new
        assert replay.get(about_stamps[1], about, raw=True).content == \
            replay.get(about_stamps[0], about, raw=True).content  # the revisit resolves
    wacz = CliRunner().invoke(cli, ["wacz", "history", "--output", str(out)])
    assert wacz.exit_code == 0, wacz.output
    with ReplayWebPage(tmp_path / "rwp") as rwp:
        address = rwp.add(Path(wacz.stdout.strip()))
        with rwp.session() as session:
            before = " ".join(session.view(address, url + person, stamps[0]).text.split())
            after = " ".join(session.view(address, url + person, stamps[1]).text.split())
            later = " ".join(session.view(address, about, about_stamps[1]).text.split())
    assert "Edited later." not in before and "Edited later." in after
    assert "Archived Page Not Found" not in later and later  # a revisit, shown


def _rows_all(root: Path, url: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(root / "catalog.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM captures WHERE url = ? AND record_type IN "
                          "('response', 'revisit') ORDER BY id", (url,)).fetchall()
    finally:
        db.close()


def test_a_cdx_server_that_stops_at_its_limit_is_not_taken_for_the_whole_site(
        gone: Gone, rescued: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pywb answers at most ``limit`` rows (100,000 by default), without a word. An answer
    of exactly the limit asked is cut short: the rescue says so, ends incomplete, and asks
    for the URLs its pages link to one by one instead of calling them missing."""
    from crawler.rescue import run as rescue_run
    from crawler.rescue import sources as rescue_sources
    from crawler.rescue.sources import parse_source

    monkeypatch.setattr(rescue_sources, "UNPAGED_LIMIT", 40)
    monkeypatch.setattr(rescue_run, "UNPAGED_LIMIT", 40)
    outcome = asyncio.run(rescue_run.run_rescue(rescue_run.RescueSettings(
        target="capped", output=tmp_path / "capped", sources=(parse_source(gone.source()),),
        url=gone.site_url)))
    source = outcome.report["sources"][0]
    assert not source["listing_done"] and "cut short at the server's limit" in source["note"]
    assert outcome.status == "incomplete" and int(outcome.exit_code) == 8
    back = _rows(tmp_path / "capped")
    persons = [u for u in _rows(rescued) if "/persons/" in u]
    assert all(u in back for u in persons)  # reached through links, asked one by one
