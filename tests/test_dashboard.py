"""The dashboard (`crawler serve`, `crawler daemon --web`) over a real archive with a takedown.

The archive is made by the real `crawler archive`, twice, of a site on 127.0.0.1 whose pages
carry hostile markup in their titles and text; between the crawls a person's page is taken
down (404), which the second crawl confirms. Pages are read through Starlette's test client
for the many small checks, and through a real `crawler serve` in headless Chromium (Debian's
chromium, playwright as the driver) with the bundled pywb for the click-through.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from hostile import HostileServer, Route, response, send
from starlette.testclient import TestClient

from crawler.archive import textindex
from crawler.archive.catalog import Catalog
from crawler.core.errors import ExitCode
from crawler.evidence import signing
from crawler.evidence.verify import verify as verify_package
from crawler.web.app import WebSettings, create_app

CLI = [sys.executable, "-m", "crawler"]
EVIL_TITLE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
EVIL_TEXT = "<script>window.__pwned=3</script>"  # as text on the page (escaped in its HTML)
NAMES = ["Розенфельд Абрам Моисеевич", "Гаврилова Мария Степановна", "Щукин Пётр Ильич",
         "Семенов Иван Фомич"]
REMOVED = NAMES[0]  # /p/1.html answers 404 in the second crawl


def _page(title: str, body: str) -> Route:
    return send(response(200, (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
                               f"{title}</title></head><body><nav>Меню · Розенфельд в меню"
                               f"</nav><main>{body}</main></body></html>").encode()))


def _listing(names: list[str]) -> Route:
    links = "".join(f"<p><a href='/p/{NAMES.index(n) + 1}.html'>{n}</a></p>" for n in names)
    return _page("Список имён", links + "<p><a href='/evil.html'>другое</a></p>")


def _routes() -> dict[str, Route]:
    routes = {"/": _listing(NAMES),
              "/evil.html": _page(EVIL_TITLE, "<h1>&lt;script&gt;window.__pwned=3&lt;/script"
                                              "&gt;</h1><p>Страница о судьбе семьи.</p>"
                                              "<script>window.__pwned=4</script>")}
    for i, name in enumerate(NAMES, 1):
        routes[f"/p/{i}.html"] = _page(name, f"<h1>{name}</h1><p>Родился в 1890 году. "
                                             f"Арестован в 1937 году.</p>")
    return routes


@dataclass
class Archive:
    root: Path
    site: str  # the site's base URL (it is down once the fixture is built)
    cwd: Path  # where commands run: not the archive root

    def db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / "catalog.sqlite3")
        db.row_factory = sqlite3.Row
        return db


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    base = tmp_path_factory.mktemp("dash")
    root, cwd = base / "arch", base / "elsewhere"
    cwd.mkdir()
    routes = _routes()
    with HostileServer(routes) as server:
        for run in (1, 2):
            if run == 2:  # one person's page taken down; another cut from the list
                routes["/p/1.html"] = send(response(404, b"<p>not here</p>"))
                routes["/"] = _listing(NAMES[:3])
            done = subprocess.run([*CLI, "archive", server.url, "--target", "hostile",
                                   "--output", str(root), "--scope", "host", "--delay", "0",
                                   "--recheck-spacing", "0.2s", "--quiet"], cwd=cwd,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == (0 if run == 1 else 6), done.stderr
        return Archive(root, server.url, cwd)


def _client(archive: Archive, **settings: object) -> TestClient:
    app = create_app(WebSettings(root=archive.root, **settings))  # type: ignore[arg-type]
    return TestClient(app, base_url="http://127.0.0.1:8008", raise_server_exceptions=True)


def _removal_event(archive: Archive) -> int:
    db = archive.db()
    try:
        row = db.execute("SELECT id FROM events WHERE url LIKE '%/p/1.html' AND "
                         "class='removed' AND state='confirmed'").fetchone()
    finally:
        db.close()
    assert row is not None, "the second crawl confirmed no removal"
    return int(row[0])


# -- pages, through the test client -------------------------------------------------------------

def test_every_page_answers_and_says_what_the_archive_holds(archive: Archive) -> None:
    client = _client(archive)
    event = _removal_event(archive)
    home = client.get("/")
    assert home.status_code == 200
    assert "hostile" in home.text and "complete" in home.text
    # /p/1.html removed and the list's loss of a name confirmed by re-checks; /p/4.html, no
    # longer linked, only suspected; nobody has acknowledged any of them
    assert ('<span class="alert">2 confirmed</span>, <span class="warn">1 suspected</span>'
            '<br>3 not acknowledged') in home.text

    target = client.get("/t/hostile")
    assert target.status_code == 200
    assert f'href="/event/{event}"' in target.text and "removed" in target.text
    assert "<svg" in target.text and "?class=removed" in target.text  # a clickable bar

    page = client.get(f"/event/{event}")
    assert page.status_code == 200
    text = page.text
    assert "re-checks after the crawl reproduced it" in text  # the detection's reason
    assert "yes: fetched again after the crawl, with the same result" in text
    assert "before (last good)" in text and "/record/" in text and "/capture/" in text
    assert f"<b>{REMOVED} — Родился в 1890 году." in text  # the page, named as it was
    assert f"<code>crawler evidence hostile {event}</code>" in text  # how to package it
    # the diff of the main text: the removed person's lines are gone
    assert re.search(r"<del[^>]*>- розенфельд абрам моисеевич</del>", text), text

    # the list that lost a name: the name named as removed, and highlighted in the diff
    db = archive.db()
    (partial,) = db.execute("SELECT id FROM events WHERE class='partial-removal'").fetchone()
    db.close()
    gutted = client.get(f"/event/{partial}").text
    assert "<li><del>Семенов Иван Фомич</del></li>" in gutted  # as the list wrote it
    assert '<del class="named">- семенов иван фомич</del>' in gutted
    assert "  розенфельд абрам моисеевич" in gutted  # a line kept, not marked

    crawl_ids = [r[0] for r in archive.db().execute("SELECT crawl_id FROM crawls ORDER BY id")]
    listing = client.get(f"/t/hostile/c/{crawl_ids[1]}?class=removed")
    assert listing.status_code == 200 and "/p/1.html" in listing.text
    assert "/p/2.html" not in listing.text  # only the class asked for
    hosts = client.get("/t/hostile/hosts")
    assert hosts.status_code == 200
    host = archive.site.split("/")[2]  # 127.0.0.1:PORT, from its SURT form
    assert f"<h2 id=\"{host}\">{host}</h2>" in hosts.text
    assert "3 in a takedown class" in hosts.text and "removed 1" in hosts.text
    assert "partial-removal 1" in hosts.text and "delisted 1" in hosts.text
    assert client.get(f"/t/hostile/c/{crawl_ids[1]}/report").status_code == 200

    history = client.get("/t/hostile/url", params={"u": archive.site + "p/1.html"})
    assert history.status_code == 200
    # the capture before, the second crawl's 404 and its two re-checks: all recorded
    statuses = re.findall(r"<td>(\d{3})</td>", history.text)
    assert statuses == ["200", "404", "404", "404"], statuses
    assert history.text.count("/capture/") == 4 and "Now confirmed: removed" in history.text

    for missing in ("/t/nobody", "/event/99999", "/capture/99999", "/t/hostile/c/nope",
                    "/t/hostile/url?u=http://nowhere.invalid/"):
        assert client.get(missing).status_code == 404, missing


def test_a_record_download_is_the_record_byte_for_byte(archive: Archive) -> None:
    db = archive.db()
    row = db.execute("SELECT c.id, c.warc_file, c.warc_offset, c.warc_length, k.directory "
                     "FROM captures c JOIN crawls k ON k.id = c.crawl WHERE c.url LIKE "
                     "'%/p/1.html' AND c.status = 200").fetchone()
    db.close()
    got = _client(archive).get(f"/record/{row['id']}")
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/warc"
    assert got.headers["content-disposition"].startswith("attachment")
    with open(archive.root / row["directory"] / "warc" / row["warc_file"], "rb") as fh:
        fh.seek(row["warc_offset"])
        assert got.content == fh.read(row["warc_length"])


def test_hostile_titles_and_text_are_shown_as_text(archive: Archive) -> None:
    """The evil page's title and text reach every page that shows them escaped, and no
    page has a script (the policy forbids any)."""
    client = _client(archive)
    db = archive.db()
    crawl_ids = [r[0] for r in db.execute("SELECT crawl_id FROM crawls ORDER BY id")]
    db.close()
    pages = [client.get(f"/t/hostile/c/{crawl_ids[0]}"),
             client.get("/t/hostile/url", params={"u": archive.site + "evil.html"}),
             client.get("/search", params={"q": "pwned"}),
             client.get("/search", params={"q": "судьбе"})]
    for page in pages:
        assert page.status_code == 200
        assert "<script" not in page.text.lower(), page.url
        assert "onerror=" not in page.text.replace("onerror=&#34;", "").replace(
            "onerror=&quot;", ""), page.url
        assert "script-src" not in page.headers["content-security-policy"]  # none allowed
        assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in pages[1].text  # the title
    # the snippet: the matched word marked, the rest of the hostile text escaped
    assert "&lt;script&gt;window.__<mark>pwned</mark>=3&lt;/script&gt;" in pages[2].text


# -- search -------------------------------------------------------------------------------------

def test_search_finds_a_removed_person_in_every_crawl(archive: Archive) -> None:
    client = _client(archive)
    page = client.get("/search", params={"q": "Розенфельд Абрам"})
    assert page.status_code == 200
    hits = re.findall(r'<li><a href="(/t/hostile/url\?u=[^"]+)"><b>([^<]+)</b>', page.text)
    # the person's page first (the name is its title), then the list that names them; the
    # menu's "Розенфельд" on every page is not main text, so no other page matches
    assert [h[1] for h in hits] == [REMOVED, "Список имён"]
    assert "p%2F1.html" in hits[0][0]
    first = page.text.split("<li>")[1]
    captures = re.findall(r'<a href="/capture/(\d+)">', first)
    assert len(captures) == 1  # the page as it was; the later 404 has no such text
    db = archive.db()
    (status,) = db.execute("SELECT status FROM captures WHERE id=?", (captures[0],)).fetchone()
    db.close()
    assert status == 200
    # one word, case folded, and "ё" found as "е" and as itself, the snippet as written
    for spelling in ("петр", "ПЁТР", "Пётр Ильич"):
        found = client.get("/search", params={"q": spelling}).text
        assert "<b>Щукин Пётр Ильич</b>" in found, spelling
        assert "пётр" in found.replace("<mark>", "").replace("</mark>", "").lower()
    # and the other way round: "ё" typed finds the page that prints "е"
    assert "<b>Семенов Иван Фомич</b>" in client.get("/search", params={"q": "Семёнов"}).text
    assert "Nothing found" in client.get("/search", params={"q": "Сидоров"}).text


@pytest.mark.parametrize("query", ['"', "OR", "NEAR(a b)", "a-b", "*", "col:x", "Розенфельд)",
                                   "'", "AND AND", "^Щукин", "title:Щукин", "Щукин -Пётр"])
def test_no_query_is_a_syntax_error(archive: Archive, query: str) -> None:
    """What a researcher types is words, never FTS5 syntax: nothing typed breaks a page."""
    page = _client(archive).get("/search", params={"q": query})
    assert page.status_code == 200
    assert "cannot answer" not in page.text


def _without_index(archive: Archive, root: Path) -> Path:
    """Copy the archive to ``root`` as an archive made before the search index existed (its
    catalog at schema 10: the next open upgrades it, as it would a real one)."""
    shutil.copytree(archive.root, root)
    db = sqlite3.connect(root / "catalog.sqlite3")
    db.executescript("DROP TABLE page_texts; DROP TABLE page_search; DROP TABLE event_acks; "
                     "DROP TABLE target_controls; DROP TABLE search_backlog; "
                     "DROP INDEX captures_text; DROP INDEX events_key; PRAGMA user_version=10;")
    db.close()
    return root


def test_an_archive_from_before_the_index_is_filled_by_search_index(
        archive: Archive, tmp_path: Path) -> None:
    root = _without_index(archive, tmp_path / "old")
    client = TestClient(create_app(WebSettings(root=root)), base_url="http://127.0.0.1:8008")
    before = client.get("/search", params={"q": "Гаврилова"})
    assert "Nothing found" in before.text
    assert "page text(s) are not searched yet (captured before the search index" in \
        before.text
    done = subprocess.run([*CLI, "search-index", "--output", str(root)], cwd=archive.cwd,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    catalog = Catalog.open(root, read_only=True)
    try:
        assert textindex.unindexed(catalog.db) == 0
        texts = catalog.db.execute("SELECT count(*) FROM page_texts").fetchone()[0]
        assert f"search index: {texts} page text(s) indexed of {texts} missing" in done.stdout
        found = textindex.search(catalog.db, "Гаврилова")
    finally:
        catalog.close()
    assert [h.title for h in found.hits] == [NAMES[1], "Список имён"]
    assert len(found.hits[0].captures) == 2  # both crawls, one text
    after = client.get("/search", params={"q": "Гаврилова"})
    assert NAMES[1] in after.text and "not searched yet" not in after.text
    cli = subprocess.run([*CLI, "search", "Гаврилова", "--output", str(root), "--json"],
                         cwd=archive.cwd, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert '"title": "Гаврилова Мария Степановна"' in cli.stdout


def test_a_crawl_without_the_index_leaves_its_texts_for_search_index(tmp_path: Path) -> None:
    """--no-search-index: the crawl indexes nothing, searches say how many texts they do not
    see, and `crawler search-index` adds them later."""
    root = tmp_path / "arch"
    with HostileServer(_routes()) as server:
        done = subprocess.run([*CLI, "archive", server.url, "--target", "later", "--output",
                               str(root), "--scope", "host", "--delay", "0", "--quiet",
                               "--no-search-index"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(root / "catalog.sqlite3")
    texts = db.execute("SELECT count(DISTINCT text_hash) FROM captures").fetchone()[0]
    assert db.execute("SELECT count(*) FROM page_texts").fetchone()[0] == 0
    db.close()
    client = TestClient(create_app(WebSettings(root=root)), base_url="http://127.0.0.1:8008")
    page = client.get("/search", params={"q": "Гаврилова"}).text
    assert "Nothing found" in page
    assert f"{texts} page text(s) are not searched yet" in page
    filled = subprocess.run([*CLI, "search-index", "--output", str(root)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert filled.returncode == 0, filled.stderr
    assert f"{texts} page text(s) indexed of {texts} missing" in filled.stdout
    assert "<b>Гаврилова Мария Степановна</b>" in client.get(
        "/search", params={"q": "Гаврилова"}).text


def test_a_damaged_archive_says_what_search_index_could_not_read(
        archive: Archive, tmp_path: Path) -> None:
    root = _without_index(archive, tmp_path / "damaged")
    first = sorted(root.glob("hostile/*/warc/*.warc.gz"))[0]
    first.unlink()  # the first crawl's WARC is lost; the second's texts are still readable
    db = sqlite3.connect(root / "catalog.sqlite3")
    texts, readable = db.execute(
        "SELECT count(DISTINCT text_hash), count(DISTINCT CASE WHEN crawl = 2 AND record_type "
        "= 'response' THEN text_hash END) FROM captures WHERE text_hash IS NOT NULL").fetchone()
    db.close()
    assert 0 < readable < texts  # the second crawl stored some texts whole, revisited others
    done = subprocess.run([*CLI, "search-index", "--output", str(root)], cwd=archive.cwd,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == ExitCode.DAMAGED, done.stdout + done.stderr
    # what only the lost file held (directly, or as the original of a revisit) is counted
    assert (f"{readable} page text(s) indexed of {texts} missing" in done.stdout
            and f"{texts - readable} could not be read back" in done.stdout), done.stdout


# -- access -------------------------------------------------------------------------------------

def test_a_token_guards_a_dashboard_off_loopback(archive: Archive) -> None:
    token = "t0ken-t0ken-t0ken-42"
    client = _client(archive, host="0.0.0.0", token=token)
    assert client.get("/").status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer wrong-wrong-wrong"}).status_code \
        == 401
    assert client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    entered = client.get(f"/t/hostile?token={token}", follow_redirects=False)
    assert entered.status_code == 303 and entered.headers["location"] == "/t/hostile"
    assert "httponly" in entered.headers["set-cookie"].lower()
    assert client.get("/t/hostile").status_code == 200  # the cookie now
    refused = subprocess.run([*CLI, "serve", "--archives", str(archive.root), "--host",
                              "0.0.0.0", "--port", "0", "--no-replay"], cwd=archive.cwd,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "give an access token" in refused.stderr


def test_another_host_name_and_a_foreign_form_are_refused(archive: Archive) -> None:
    client = _client(archive)
    assert client.get("/", headers={"Host": "attacker.example"}).status_code == 421
    assert client.post("/do/pause/hostile", data={"key": "guessed"}).status_code == 403
    db = archive.db()
    assert db.execute("SELECT count(*) FROM target_controls").fetchone()[0] == 0
    db.close()


def test_an_event_downloads_as_a_signed_evidence_package(
        archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a read-only dashboard too: the package is made outside the archive root."""
    key = signing.generate(tmp_path / "keys" / "k.pem")
    monkeypatch.setattr(signing, "DEFAULT_KEY", key.path)
    client = _client(archive, read_only=True)
    catalog = archive.root / "catalog.sqlite3"
    before = catalog.read_bytes()
    event = _removal_event(archive)
    assert f'href="/event/{event}/evidence.zip"' in client.get(f"/event/{event}").text
    got = client.get(f"/event/{event}/evidence.zip")
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
    assert f'filename="evidence-hostile-event{event}.zip"' in got.headers[
        "content-disposition"]
    package = tmp_path / "downloaded.zip"
    package.write_bytes(got.content)
    verdict = verify_package(package)
    assert verdict.ok, verdict.checks
    assert any(key.fingerprint in line for line in verdict.proves)  # signed with that key
    with zipfile.ZipFile(package) as zf:
        (readme,) = [n for n in zf.namelist() if n.endswith("data/README.txt")]
        assert REMOVED in zf.read(readme).decode("utf-8")  # named
    assert catalog.read_bytes() == before  # nothing written to the root
    assert client.get("/event/999999/evidence.zip").status_code == 404


def test_read_only_has_no_actions_and_writes_nothing(archive: Archive) -> None:
    client = _client(archive, read_only=True)
    catalog = archive.root / "catalog.sqlite3"
    before = catalog.read_bytes()
    page = client.get("/t/hostile")
    assert page.status_code == 200 and "<form class=\"inline\"" not in page.text
    event = _removal_event(archive)
    assert "Acknowledge" not in client.get(f"/event/{event}").text
    key = client.app.state.board.settings.form_key  # type: ignore[attr-defined]
    assert client.post(f"/do/ack/{event}", data={"key": key}).status_code == 403
    assert client.post("/do/pause/hostile", data={"key": key}).status_code == 403
    assert catalog.read_bytes() == before


def test_acknowledging_an_event(archive: Archive, tmp_path: Path) -> None:
    root = tmp_path / "ack"
    shutil.copytree(archive.root, root)
    client = TestClient(create_app(WebSettings(root=root)), base_url="http://127.0.0.1:8008")
    key = client.app.state.board.settings.form_key  # type: ignore[attr-defined]
    event = _removal_event(archive)
    done = client.post(f"/do/ack/{event}", data={"key": key}, follow_redirects=True)
    assert done.status_code == 200 and "Acknowledged." in done.text
    assert "Acknowledge</button>" not in done.text
    assert "<br>2 not acknowledged" in client.get("/").text  # of 3: the other two remain


# -- the daemon with its dashboard --------------------------------------------------------------

def _form_key(html: str) -> str:
    found = re.search(r'name="key" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _people_config(directory: Path, seed: str, more: str = "") -> Path:
    """Write a configuration of one target, "people", crawling ``seed``."""
    config = directory / "t.toml"
    config.write_text(f'''archives = "arch"
[defaults]
delay = 0
scope = "host"
sitemaps = false
[[targets]]
name = "people"
seeds = ["{seed}"]
{more}''', "utf-8")
    return config


def test_daemon_web_pause_skips_runs_and_run_now_runs(tmp_path: Path) -> None:
    routes = _routes()
    port = free_port()
    with HostileServer(routes) as server:
        config = _people_config(tmp_path, server.url, 'every = "3s"\n')
        log = tmp_path / "daemon.err"
        with open(log, "wb") as err:
            proc = subprocess.Popen([*CLI, "daemon", "--config", str(config), "--web",
                                     "--port", str(port), "--no-replay"],
                                    cwd=tmp_path.parent, stdout=subprocess.DEVNULL, stderr=err)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait(lambda: _crawls(tmp_path / "arch") >= 1, 60, "a first scheduled crawl")
            home = httpx.get(base + "/", timeout=10)
            assert home.status_code == 200 and "every 3s" in home.text.replace("every 3 s",
                                                                                "every 3s")
            paused = httpx.post(base + "/do/pause/people", data={"key": _form_key(home.text)},
                                follow_redirects=True, timeout=10)
            assert "schedule paused" in paused.text
            _wait(lambda: "scheduled run skipped" in log.read_text("utf-8"), 30,
                  "a skipped run")
            time.sleep(1)  # a crawl that started before the pause may still be ending
            held = _crawls(tmp_path / "arch")
            time.sleep(4)  # more than one interval: nothing new while paused
            assert _crawls(tmp_path / "arch") == held
            ran = httpx.post(base + "/do/run/people", data={"key": _form_key(paused.text)},
                             follow_redirects=True, timeout=10)
            assert "run started" in ran.text, ran.text
            _wait(lambda: _crawls(tmp_path / "arch") == held + 1, 60, "the run asked for")
        finally:
            proc.terminate()
            proc.wait(60)
    assert proc.returncode == 0, log.read_text("utf-8")
    # a dashboard without the configuration still shows when the daemon runs it next
    alone = TestClient(create_app(WebSettings(root=tmp_path / "arch")),
                       base_url="http://127.0.0.1:8008").get("/")
    assert "scheduled by a daemon" in alone.text and re.search(r"next: 20\d\d-", alone.text)


def test_daemon_web_on_a_port_in_use_starts_nothing(tmp_path: Path) -> None:
    import socket

    config = tmp_path / "t.toml"
    config.write_text('archives = "arch"\n[[targets]]\nname = "x"\n'
                      'seeds = ["http://127.0.0.1:9/"]\nevery = "1s"\n', "utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*CLI, "daemon", "--config", str(config), "--web", "--port",
                               str(port), "--no-replay"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == ExitCode.CONFIG, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert _crawls(tmp_path / "arch") == 0 and "daemon started" not in done.stderr


def test_serve_with_a_config_runs_a_target_now(tmp_path: Path) -> None:
    """`crawler serve --config`: Run now runs the configured target in the serving process
    (no daemon), refuses a second run while one is on, and says so."""
    from crawler.schedule.daemon import Daemon

    with HostileServer(_routes()) as server:
        config = _people_config(tmp_path, server.url)
        (tmp_path / "arch").mkdir()
        daemon = Daemon(config)
        client = TestClient(create_app(WebSettings(root=tmp_path / "arch"), daemon=daemon),
                            base_url="http://127.0.0.1:8008")
        key = client.app.state.board.settings.form_key  # type: ignore[attr-defined]
        try:
            ran = client.post("/do/run/people", data={"key": key}, follow_redirects=True)
            assert "people: run started" in ran.text
            again = client.post("/do/run/people", data={"key": key}, follow_redirects=True)
            assert "not started: a run of people is in progress" in again.text
            other = client.post("/do/run/nobody", data={"key": key}, follow_redirects=True)
            assert "nobody is not in t.toml" in other.text
            _wait(lambda: _crawls(tmp_path / "arch") == 1 and not daemon.running(), 120,
                  "the run asked for")
        finally:
            daemon.stop()
        home = client.get("/")
        assert "people" in home.text and "complete" in home.text


def _crawls(root: Path) -> int:
    if not (root / "catalog.sqlite3").exists():
        return 0
    db = sqlite3.connect(root / "catalog.sqlite3", timeout=30)
    try:
        return int(db.execute("SELECT count(*) FROM crawls WHERE status != 'running'")
                   .fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def _wait(check: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {seconds} s")


# -- in a real browser --------------------------------------------------------------------------

@pytest.fixture
def served(archive: Archive) -> Iterator[str]:
    """A real `crawler serve` with the bundled pywb, started from another directory."""
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--archives", str(archive.root), "--port",
                             str(port)], cwd=archive.cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _answers(base), 60, "dashboard")
        yield base
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        assert b"Traceback" not in err, err.decode()


def _answers(base: str) -> bool:
    try:
        return httpx.get(base + "/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.pywb
@pytest.mark.rwp
def test_click_through_in_chromium(archive: Archive, served: str, tmp_path: Path) -> None:
    """Target → event → diff → replay; then a search for the removed person's name and its
    capture; no script of an archived page runs in the dashboard, and no page errs."""
    from playwright.sync_api import sync_playwright
    from viewers import chromium_path

    shots = tmp_path / "shots"
    shots.mkdir()
    problems: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}")
                    if m.type == "error" and page.url.startswith(served) and
                    "127.0.0.1:" + served.rsplit(":", 1)[1] in (m.location or {}).get("url", "")
                    else None)

            def check(step: str) -> str:
                page.screenshot(path=str(shots / f"{step}.png"), full_page=True)
                assert (shots / f"{step}.png").stat().st_size > 5000, step  # not blank
                text = page.inner_text("body")
                for bad in ("Internal Server Error", "Traceback", "Not found", "Refused"):
                    assert bad not in text, f"{step}: {bad}"
                assert page.evaluate("typeof window.__pwned") == "undefined", step
                return text

            page.goto(served + "/")
            check("targets")
            page.click("text=hostile")
            text = check("target")
            assert "removed" in text
            page.click("svg.timeline a[href*='class=removed']")  # the timeline's bar
            text = check("crawl-removed")
            assert "/p/1.html" in text and "/p/2.html" not in text
            page.goto(served + "/t/hostile/hosts")
            check("hosts")
            page.goto(served + "/t/hostile")
            page.click(f"a[href='/event/{_removal_event(archive)}']")
            text = check("event")
            assert "- розенфельд абрам моисеевич" in text
            assert page.locator("pre.diff del").count() >= 1
            page.click("text=replay")  # the capture before the removal
            _replayed(page, REMOVED)
            check("replay")

            page.fill("header input[name=q]", "Розенфельд Абрам")
            page.press("header input[name=q]", "Enter")
            text = check("search")
            assert REMOVED in text
            page.click("ol.hits a[href^='/capture/']")
            _replayed(page, REMOVED)
            check("search-capture")

            page.goto(served + "/search?q=" + "pwned")  # the evil page's text and title
            text = check("hostile-search")
            assert EVIL_TEXT in text  # shown, as text
            page.click("ol.hits a[href^='/t/']")
            text = check("hostile-history")
            assert EVIL_TITLE in text
            page.click("a[href^='/capture/']")  # its replay: its scripts run in pywb only
            _replayed(page, "window.__pwned=3")
            check("hostile-replay")
        finally:
            browser.close()
    assert dialogs == []
    assert problems == [], problems


def _replayed(page: object, expected: str) -> None:
    """Wait until the replay frame (pywb, another origin) shows ``expected``."""
    deadline = time.monotonic() + 90
    seen = ""
    while time.monotonic() < deadline:
        for frame in page.frames:  # type: ignore[attr-defined]
            if "/hostile/" not in frame.url:
                continue
            try:
                seen = frame.inner_text("body", timeout=2000)
            except Exception:  # playwright: the frame is still loading, or was replaced
                continue
            if expected in seen:
                return
        text = page.inner_text("body")  # type: ignore[attr-defined]
        assert "not available" not in text and "Nothing to replay" not in text, text
        time.sleep(0.5)
        if "is starting" in text:
            page.reload()  # type: ignore[attr-defined]
    raise AssertionError(f"the replay frame never showed {expected!r} (last: {seen[:300]!r})")
