"""Archives open in the viewers archivists use and show every page as it was at each time.

Three crawls of one target: a baseline; an unchanged recrawl (identical-payload revisits and
304 revisits); a recrawl after pages were edited and removed. Each page is then looked at,
at each crawl's own capture time, in ReplayWeb.page (headless Chromium, from the target's
whole-history WACZ and from a single recrawl's WACZ) and in pywb (``crawler replay``'s
collection). A page must show what the site served at that crawl: never a later edit or
removal (a revisit resolved to the wrong original), never "Archived Page Not Found".
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner
from conftest import Pywb, fast_settings, free_port, pywb_with_wacz, serve_archive_root
from viewers import ReplayWebPage

from crawler.archive.catalog import Catalog
from crawler.archive.warc import timestamp17_of
from crawler.archive.warcread import read_record
from crawler.capture.settings import CrawlSettings, DetectSettings
from crawler.commands.cli import cli
from crawler.demo.sample_site import SampleSite
from crawler.jobs.pipeline import run_target

PERSONS = 12


@dataclass
class History:
    """Three crawls of the sample site and what each page showed at each."""

    site: SampleSite
    out: Path
    crawl_ids: list[str]
    # per crawl: URL -> (17-digit capture timestamp, the text the page's main part showed)
    shown: list[dict[str, tuple[str, str]]]


def _main_text(body: bytes) -> str:
    """Return a page's main text, whitespace collapsed (what a browser shows of it)."""
    soup = BeautifulSoup(body, "lxml")
    part = soup.find("main") or soup.body or soup
    return " ".join(part.get_text(" ").split())


def _settings(site: SampleSite, out: Path) -> CrawlSettings:
    return fast_settings(site.url, out, sitemaps=False, extract_workers=0,
                         detect=DetectSettings(recheck_probes=1, recheck_spacing=0.1))


def _captures(out: Path, crawl_id: str) -> dict[str, str]:
    """Return URL -> 17-digit timestamp of the pages a crawl captured (replayable records)."""
    catalog = Catalog.open(out)
    try:
        row = catalog.crawl("test", crawl_id)
        assert row is not None
        return {cap.url: timestamp17_of(cap.fetched_at) for cap in catalog.captures(row.pk)
                if cap.kind in ("seed", "page") and cap.record_type in ("response", "revisit")}
    finally:
        catalog.close()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    out = tmp_path_factory.mktemp("history")
    with SampleSite(persons=PERSONS) as site:
        crawl_ids: list[str] = []
        shown: list[dict[str, tuple[str, str]]] = []
        for n in range(3):
            if n == 2:  # between the second and the third crawl: edits and removals
                site.content.edited = {1, 2}
                site.content.takedown.removed = {"/persons/3.html": 404,
                                                 "/articles/2.html": 410}
                site.content.takedown.rewrite = {"/articles/1.html": (
                    b"</h1>", "</h1><p>Исправлено редакцией.</p>".encode())}
            expected = {site.url.rstrip("/") + p: _main_text(site.content.respond(p).body)
                        for p in site.content.page_paths()}
            run = asyncio.run(run_target(_settings(site, out)))
            crawl_ids.append(run.outcome.crawl_id)
            stamps = _captures(out, run.outcome.crawl_id)
            shown.append({url: (stamps[url], text) for url, text in expected.items()})
            # pywb resolves timestamps to the second: keep each crawl's captures of a URL in
            # seconds of their own, so the pywb half of the test can address them.
            time.sleep(1.1)
        yield History(site, out, crawl_ids, shown)


def test_the_history_has_what_the_test_needs(history: History) -> None:
    """The second crawl stored revisits of both kinds; the third saw edits and removals."""
    catalog = Catalog.open(history.out)
    try:
        second = catalog.crawl("test", history.crawl_ids[1])
        assert second is not None
        kinds = catalog.db.execute(
            "SELECT status, count(*) FROM captures WHERE crawl=? AND record_type='revisit' "
            "GROUP BY status", (second.pk,)).fetchall()
        statuses = {row[0] for row in kinds}
        assert 200 in statuses and 304 in statuses  # identical payload, and not modified
    finally:
        catalog.close()
    third = history.shown[2]
    assert "Страница не найдена" in third[history.site.url + "persons/3.html"][1]
    assert "Реабилитирован" in third[history.site.url + "persons/1.html"][1]
    assert "Исправлено" in third[history.site.url + "articles/1.html"][1]


def _wacz(out: Path, *args: str) -> Path:
    result = CliRunner().invoke(cli, ["wacz", "test", "--output", str(out), *args])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip())


def _assert_shows(view_text: str, expected: str, where: str) -> None:
    shown = " ".join(view_text.split())
    assert "Archived Page Not Found" not in shown, where
    assert expected in shown, f"{where}: expected {expected[:120]!r}, shown {shown[:300]!r}"


def test_replaywebpage_shows_every_page_as_it_was_at_each_crawl(history: History,
                                                               tmp_path: Path) -> None:
    whole = _wacz(history.out)
    with ReplayWebPage(tmp_path / "rwp") as rwp:
        source = rwp.add(whole)
        with rwp.session() as session:
            for n, pages in enumerate(history.shown):
                for url, (ts, expected) in pages.items():
                    view = session.view(source, url, ts)
                    _assert_shows(view.text, expected, f"crawl {n + 1}, {url} at {ts}")


def test_replaywebpage_opens_a_single_recrawl_on_its_own(history: History,
                                                         tmp_path: Path) -> None:
    """The second crawl is almost all revisits: its WACZ carries copies of the originals."""
    single = _wacz(history.out, "--crawl", history.crawl_ids[1])
    with ReplayWebPage(tmp_path / "rwp") as rwp:
        source = rwp.add(single)
        with rwp.session() as session:
            for url, (ts, expected) in history.shown[1].items():
                view = session.view(source, url, ts)
                _assert_shows(view.text, expected, f"crawl 2 alone, {url} at {ts}")


def _assert_pywb_shows_history(pywb: Pywb, history: History) -> None:
    for n, pages in enumerate(history.shown):
        for url, (ts, expected) in pages.items():
            got = pywb.get(ts, url, raw=True, follow=False)
            where = f"crawl {n + 1}, {url} at {ts}"
            assert got.headers.get("Memento-Datetime"), where
            assert got.status_code < 500, where
            _assert_shows(_main_text(got.content), expected, where)


@pytest.mark.pywb
def test_pywb_shows_every_page_as_it_was_at_each_crawl(history: History) -> None:
    """From the archive root, as `crawler replay` serves it."""
    with serve_archive_root(history.out, "test") as pywb:
        _assert_pywb_shows_history(pywb, history)


@pytest.mark.pywb
def test_pywb_shows_every_page_from_the_whole_history_wacz(history: History,
                                                          tmp_path: Path) -> None:
    with pywb_with_wacz(_wacz(history.out), tmp_path / "pywb") as pywb:
        _assert_pywb_shows_history(pywb, history)


@pytest.mark.pywb
def test_the_demo_wacz_opens_with_its_evidence(tmp_path: Path) -> None:
    """`crawler demo` tells the user to open its WACZ in ReplayWeb.page: it opens there,
    and the re-checks behind its confirmed removals replay too."""
    out = tmp_path / "demo-archive"
    result = CliRunner().invoke(cli, ["demo", "--output", str(out), "--persons", "10",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    catalog = Catalog.open(out)
    try:
        first, second = catalog.crawls("demo")
        rechecks = [(row["url"], row["fetched_at"], row["status"], _main_text(read_record(
            second.directory / "warc" / row["warc_file"], row["warc_offset"],
            row["warc_length"]).payload)) for row in catalog.db.execute(
            "SELECT * FROM captures WHERE crawl=? AND kind='recheck' "
            "AND record_type='response' ORDER BY id", (second.pk,))]
        seeds = {c.crawl_id: catalog.db.execute(
            "SELECT url, fetched_at FROM captures WHERE crawl=? AND kind='seed' AND final=1",
            (c.pk,)).fetchone() for c in (first, second)}
    finally:
        catalog.close()
    assert rechecks, "the demo confirmed its removals by re-checking them"
    index = (second.directory / "indexes" / "index.cdxj").read_text("utf-8")
    for url, fetched_at, _, _ in rechecks:  # the evidence is in the crawl's index
        assert f" {timestamp17_of(fetched_at)} " in index and url in index
    waczs = {p.name: p for p in (out / "demo").glob("demo-*.wacz")}
    assert set(waczs) == {f"demo-{first.crawl_id}.wacz", f"demo-{second.crawl_id}.wacz"}
    later = waczs[f"demo-{second.crawl_id}.wacz"]
    with ReplayWebPage(tmp_path / "rwp") as rwp, rwp.session() as session:
        for crawl_id, (home, fetched_at) in seeds.items():
            name = f"demo-{crawl_id}.wacz"
            view = session.view(rwp.add(waczs[name]), home, timestamp17_of(fetched_at))
            _assert_shows(view.text, "Архив памяти", f"{name}: home page")
        source = rwp.add(later, "later.wacz")
        for url, fetched_at, status, archived in rechecks:
            view = session.view(source, url, timestamp17_of(fetched_at))
            _assert_shows(view.text, archived, f"re-check of {url} ({status})")
    with pywb_with_wacz(later, tmp_path / "pywb") as pywb:  # the same file in pywb
        for url, fetched_at, status, archived in rechecks:
            got = pywb.get(timestamp17_of(fetched_at), url, raw=True, follow=False)
            assert got.status_code == status, url
            _assert_shows(_main_text(got.content), archived, f"pywb: re-check of {url}")


def test_replay_links_in_the_report_address_exact_captures(history: History) -> None:
    catalog = Catalog.open(history.out)
    try:
        third = catalog.crawl("test", history.crawl_ids[2])
        assert third is not None
        report = json.loads((third.directory / "report.json").read_text("utf-8"))
    finally:
        catalog.close()
    removed = next(f for f in report["findings"] if f["url"].endswith("/persons/3.html"))
    before, after = removed["before"], removed["after"]
    assert before["replay_path"] == (f"/test/{timestamp17_of(before['fetched_at'])}/"
                                     f"{removed['url']}")
    assert after["replay"] == "http://127.0.0.1:8080" + after["replay_path"]


@pytest.mark.pywb
def test_replay_refuses_a_port_in_use_and_stops_on_sigterm(history: History) -> None:
    import socket
    import sys

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    env_cmd = [sys.executable, "-m", "crawler", "replay", "test", "--output", str(history.out)]
    try:
        taken = subprocess.run([*env_cmd, "--port", str(port)], capture_output=True, text=True,
                               timeout=120)
    finally:
        busy.close()
    assert taken.returncode == 3, taken.stdout + taken.stderr
    assert f"port {port}" in taken.stderr and "in use" in taken.stderr
    assert "Replaying" not in taken.stdout

    port = free_port()
    proc = subprocess.Popen([*env_cmd, "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/test/" in first
        report_line = proc.stdout.readline()
        assert f"report.html?replay=http://127.0.0.1:{port}" in report_line
    finally:
        proc.terminate()  # SIGTERM
        assert proc.wait(30) == 0
        if proc.stdout is not None:
            proc.stdout.close()
    with socket.socket() as probe:  # pywb is gone: the port is free again
        probe.bind(("127.0.0.1", port))


def test_report_links_follow_the_replay_port(history: History, tmp_path: Path) -> None:
    """report.html opened with ?replay=… (as `crawler replay` prints it) links to that port,
    in a real browser."""
    from playwright.sync_api import sync_playwright
    from viewers import chromium_path

    catalog = Catalog.open(history.out)
    try:
        third = catalog.crawl("test", history.crawl_ids[2])
        assert third is not None
        page_path = third.directory / "report.html"
    finally:
        catalog.close()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.goto(page_path.as_uri() + "?replay=http://127.0.0.1:8123")
            hrefs = page.eval_on_selector_all("a[data-replay]", "els => els.map(e => e.href)")
            page.goto(page_path.as_uri())
            default = page.eval_on_selector_all("a[data-replay]", "els => els.map(e => e.href)")
            page.goto(page_path.as_uri() + "?replay=javascript:alert(1)")
            hostile = page.eval_on_selector_all("a[data-replay]", "els => els.map(e => e.href)")
        finally:
            browser.close()
    assert hrefs and all(h.startswith("http://127.0.0.1:8123/test/") for h in hrefs)
    assert all(h.startswith("http://127.0.0.1:8080/test/") for h in default)
    assert hostile == default


def test_dates_are_milliseconds_everywhere(history: History) -> None:
    """WARC-Date, WARC-Refers-To-Date and the index agree to the millisecond, the precision
    both viewers resolve (docs/warc.md#dates)."""
    from conftest import read_records

    catalog = Catalog.open(history.out)
    try:
        second = catalog.crawl("test", history.crawl_ids[1])
        assert second is not None
        warcs = sorted((second.directory / "warc").glob("*.warc.gz"))
        index = (second.directory / "indexes" / "index.cdxj").read_text("utf-8").splitlines()
    finally:
        catalog.close()
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    records = read_records(warcs)
    for rec in records:
        assert stamp.match(rec.warc["WARC-Date"]), rec.warc["WARC-Date"]
        if rec.type == "revisit":
            assert stamp.match(rec.warc["WARC-Refers-To-Date"])
    dates = {(r.uri, timestamp17_of(r.warc["WARC-Date"])) for r in records
             if r.type in ("response", "revisit")}
    for line in index:
        _, ts, data = line.split(" ", 2)
        assert len(ts) == 17
        assert (json.loads(data)["url"], ts) in dates


def test_moved_history_still_replays(history: History, tmp_path: Path) -> None:
    """A copy of the whole archive root, elsewhere, packages and verifies from another
    working directory (paths in the catalog are relative to the root)."""
    import os
    import shutil

    copy = tmp_path / "moved" / "archive"
    shutil.copytree(history.out, copy)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    before = Path.cwd()
    os.chdir(elsewhere)
    try:
        result = CliRunner().invoke(cli, ["verify", "--output", str(copy)])
        assert result.exit_code == 0, result.output
        wacz = _wacz(copy)
    finally:
        os.chdir(before)
    assert wacz.parent == copy / "test"
    import zipfile
    with zipfile.ZipFile(wacz) as zf:
        names = [n for n in zf.namelist() if n.startswith("archive/")]
    catalog = Catalog.open(copy)
    try:
        expected = {w.name for c in catalog.crawls("test")
                    for w in (c.directory / "warc").glob("*.warc.gz")}
    finally:
        catalog.close()
    assert {n.split("/", 1)[1] for n in names} == expected and expected
