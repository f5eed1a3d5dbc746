"""Recrawls store only what changed: revisit records (payload digest and 304), proven by
replaying them in a real pywb, directly from the archive root and from a WACZ."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from conftest import (
    Pywb,
    Rec,
    crawl,
    fast_settings,
    free_port,
    pywb_bin,
    read_records,
    serve_archive_root,
)

from crawler.archive.catalog import Catalog
from crawler.archive.replay import start_wayback
from crawler.archive.warc import IDENTICAL_PAYLOAD, SERVER_NOT_MODIFIED, received_head
from crawler.capture.settings import DedupSettings
from crawler.commands.cli import cli
from crawler.crawl.engine import CrawlOutcome
from crawler.demo.sample_site import SampleSite

STATIC = ("/img/", "/favicon.ico", "/about.html", "/articles/1", "/articles/2", "/articles/3",
          "/cp1251.html")  # the sample site sends ETag/Last-Modified for these


@dataclass
class Recrawls:
    """Three crawls of one site: baseline, unchanged (clock still ticking), then changed."""

    site: SampleSite
    out: Path
    crawls: list[CrawlOutcome]
    records: list[list[Rec]]

    def urls(self) -> list[str]:
        """Return every HTML page and image of the site as full URLs."""
        paths = self.site.content.page_paths() + self.site.content.image_paths()
        return [self.site.url.rstrip("/") + p for p in paths]

    def of(self, n: int, uri: str, kind: str) -> list[Rec]:
        """Return the records of crawl ``n`` for ``uri`` of one type."""
        return [r for r in self.records[n] if r.uri == uri and r.type == kind]

    def stamp(self, n: int, uri: str) -> str:
        """Return the CDXJ timestamp of ``uri`` in crawl ``n``."""
        for line in self.crawls[n].index.read_text("utf-8").splitlines():
            _, ts, data = line.split(" ", 2)
            if json.loads(data)["url"] == uri:
                return ts
        raise KeyError(uri)


def _next_second() -> None:
    """Wait so that the next crawl's captures fall in seconds of their own (pywb resolves
    timestamps to the second; ReplayWeb.page to the millisecond)."""
    time.sleep(1.1)


@pytest.fixture(scope="module")
def recrawls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recrawls]:
    out = tmp_path_factory.mktemp("recrawls")
    with SampleSite() as site:
        site.content.clock = True  # article bytes differ on every request; their ETag does not
        settings = fast_settings(site.url, out, sitemaps=False)
        outcomes = [crawl(settings)]
        _next_second()
        outcomes.append(crawl(settings))
        _next_second()
        site.content.edited = {3}
        site.content.moved = {"/about.html": "/about-us.html"}
        outcomes.append(crawl(settings))
        yield Recrawls(site, out, outcomes, [read_records(o.warcs) for o in outcomes])


def test_unchanged_recrawl_writes_revisits_that_name_their_originals(recrawls: Recrawls) -> None:
    for uri in recrawls.urls():
        assert recrawls.of(1, uri, "response") == [], f"{uri} stored in full again"
        (revisit,) = recrawls.of(1, uri, "revisit")
        (original,) = recrawls.of(0, uri, "response")
        headers = revisit.warc
        assert headers["WARC-Refers-To-Target-URI"] == uri
        assert headers["WARC-Refers-To"] == original.warc["WARC-Record-ID"]
        assert headers["WARC-Refers-To-Date"] == original.warc["WARC-Date"]
        assert headers["WARC-Payload-Digest"] == original.warc["WARC-Payload-Digest"]
        assert revisit.body == b""  # no payload stored again
        static = any(s in uri for s in STATIC)
        assert headers["WARC-Profile"] == (SERVER_NOT_MODIFIED if static else IDENTICAL_PAYLOAD)
        assert revisit.status == 200 and revisit.header("Content-Type")  # replayable head
        (request,) = [r for r in recrawls.records[1] if r.type == "request"
                      and r.warc["WARC-Concurrent-To"] == headers["WARC-Record-ID"]]
        if static:
            assert request.header("If-None-Match") == original.header("ETag")
            assert revisit.line == original.line  # the original's status line and headers
            assert revisit.http == original.http
            # what the server answered, kept on the revisit itself, not in another record
            received = received_head(revisit.fields)
            assert received is not None and received.startswith(b"HTTP/1.1 304 Not Modified\r\n")
            assert received.endswith(b"\r\n\r\n")
            assert f'ETag: {original.header("ETag")}\r\n'.encode() in received
            assert not [r for r in recrawls.records[1] if r.type == "metadata"
                        and r.warc.get("WARC-Concurrent-To") == headers["WARC-Record-ID"]]
            assert request.header("If-Modified-Since") is None  # ignored beside If-None-Match
        else:
            assert request.header("If-None-Match") is None  # the server sent no validators


def test_catalog_records_revisits_and_their_originals(recrawls: Recrawls) -> None:
    catalog = Catalog.open(recrawls.out)
    try:
        first, second, _ = catalog.crawls("test")
        originals = {c.url: c for c in catalog.captures(first.pk)}
        ids = dict(catalog.db.execute("SELECT url, id FROM captures WHERE crawl=?",
                                      (first.pk,)).fetchall())
        rows = {c.url: c for c in catalog.captures(second.pk)}
        article = recrawls.site.url + "articles/1.html"
        assert rows[article].status == 304 and rows[article].record_type == "revisit"
        assert rows[article].mime == "text/html" and rows[article].etag
        assert rows[article].title == originals[article].title  # links and text re-extracted
        person = recrawls.site.url + "persons/1.html"
        assert rows[person].status == 200 and rows[person].record_type == "revisit"
        assert rows[person].digest == originals[person].digest
        assert rows[person].refers_to == ids[person]
        assert rows[person].outlinks == originals[person].outlinks
        totals = catalog.crawl_totals(second.pk)
        assert totals["pages"] == catalog.crawl_totals(first.pk)["pages"]
        in_warc = sum(r.type == "revisit" for r in recrawls.records[1])
        assert totals["revisits"] == in_warc >= len(recrawls.urls())
    finally:
        catalog.close()


def test_changed_page_is_stored_in_full_and_moved_bytes_refer_to_the_old_url(
        recrawls: Recrawls) -> None:
    base = recrawls.site.url
    (edited,) = recrawls.of(2, base + "persons/3.html", "response")
    assert "Реабилитирован".encode() in edited.body
    (moved,) = recrawls.of(2, base + "about-us.html", "revisit")
    (original,) = recrawls.of(0, base + "about.html", "response")
    assert moved.warc["WARC-Profile"] == IDENTICAL_PAYLOAD
    assert moved.warc["WARC-Refers-To-Target-URI"] == base + "about.html"
    assert moved.warc["WARC-Refers-To"] == original.warc["WARC-Record-ID"]
    (hop,) = recrawls.of(2, base + "about.html", "response")
    assert hop.status == 301


def _memento(ts: str) -> str:
    when = datetime.strptime(ts[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return format_datetime(when, usegmt=True)


def assert_replays_at(pywb: Pywb, recrawls: Recrawls, n: int, expected: dict[str, bytes]) -> None:
    """Every URL replays at crawl ``n``'s timestamp, raw and rewritten, from that capture."""
    for uri, body in expected.items():
        ts = recrawls.stamp(n, uri)
        raw = pywb.get(ts, uri, raw=True, follow=False)
        assert raw.status_code == 200, f"{uri}: {raw.status_code}"
        assert raw.headers["Memento-Datetime"] == _memento(ts), uri
        assert raw.content == body, f"raw bytes differ for {uri}"
        image = uri.endswith((".png", ".ico"))
        rewritten = pywb.get(ts, uri, raw=False, follow=False, mode="im_" if image else "mp_")
        assert rewritten.status_code == 200, f"{uri}: {rewritten.status_code}"
        assert rewritten.headers["Memento-Datetime"] == _memento(ts), uri
        if image:
            assert rewritten.content == body


def _first_payloads(recrawls: Recrawls) -> dict[str, bytes]:
    """Return what crawl 0 stored for every page and image, as a client decodes it."""
    found = {}
    for uri in recrawls.urls():
        (rec,) = recrawls.of(0, uri, "response")
        gzipped = rec.header("Content-Encoding") == "gzip"
        found[uri] = gzip.decompress(rec.body) if gzipped else rec.body
    return found


@pytest.mark.pywb
def test_recrawl_replays_from_the_archive_root_in_pywb(recrawls: Recrawls,
                                                       tmp_path: Path) -> None:
    with serve_archive_root(recrawls.out, "test") as pywb:
        first = _first_payloads(recrawls)
        assert_replays_at(pywb, recrawls, 1, first)
        base = recrawls.site.url
        changed = {base + "persons/3.html": recrawls.site.content.respond("/persons/3.html").body,
                   base + "about-us.html": first[base + "about.html"]}
        assert_replays_at(pywb, recrawls, 2, changed)


@pytest.mark.pywb
def test_wacz_of_a_recrawl_validates_and_replays_on_its_own(recrawls: Recrawls,
                                                            tmp_path: Path) -> None:
    crawl_id = recrawls.crawls[1].crawl_id
    result = CliRunner().invoke(cli, ["wacz", "test", "--crawl", crawl_id, "--output",
                                      str(recrawls.out)])
    assert result.exit_code == 0, result.output
    wacz = Path(result.stdout.strip())
    assert wacz == recrawls.out / "test" / f"test-{crawl_id}.wacz"
    with zipfile.ZipFile(wacz) as zf:
        names = zf.namelist()
        archives = [i for i in zf.infolist() if i.filename.startswith("archive/")]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in archives)
        assert any("originals" in i.filename for i in archives)  # crawl 0's records, copied
        assert zf.read("pages/pages.jsonl").decode().splitlines()[0] == json.dumps(
            {"format": "json-pages-1.0", "id": "pages", "title": "All Pages"})
        package = json.loads(zf.read("datapackage.json"))
        assert package["wacz_version"] == "1.1.1"
        assert {r["path"] for r in package["resources"]} == set(names) - {
            "datapackage.json", "datapackage-digest.json"}
    check = subprocess.run([str(Path(sys.executable).parent / "wacz"), "validate", "-f",
                            str(wacz)], capture_output=True, text=True)
    assert check.returncode == 0 and "Validation succeeded" in check.stdout, check.stdout

    bindir = pywb_bin()
    root = tmp_path / "pywb"
    root.mkdir()
    subprocess.run([str(bindir / "wb-manager"), "init", "coll"], cwd=root, check=True,
                   capture_output=True)
    subprocess.run([str(bindir / "wb-manager"), "add", "--unpack-wacz", "coll", str(wacz)],
                   cwd=root, check=True, capture_output=True)
    port = free_port()
    proc = start_wayback(root, port, bindir)
    try:
        pywb = Pywb(f"http://127.0.0.1:{port}/coll/", root)
        assert_replays_at(pywb, recrawls, 1, _first_payloads(recrawls))
    finally:
        proc.terminate()
        proc.wait(10)


def test_without_conditional_requests_changing_bytes_are_stored_again(tmp_path: Path) -> None:
    with SampleSite() as site:
        site.content.clock = True
        crawl(fast_settings(site.url, tmp_path, sitemaps=False))
        second = crawl(fast_settings(site.url, tmp_path, sitemaps=False,
                                     dedup=DedupSettings(conditional=False)))
    records = read_records(second.warcs)
    article = site.url + "articles/1.html"
    assert [r.type for r in records if r.uri == article and r.type != "request"] == ["response"]
    assert not any(r.header("If-None-Match") for r in records if r.type == "request")
    image = site.url + "img/persons/1.png"
    (revisit,) = [r for r in records if r.uri == image and r.type == "revisit"]
    assert revisit.warc["WARC-Profile"] == IDENTICAL_PAYLOAD  # unchanged bytes still dedup


def test_dedup_never_refers_to_a_crawl_that_did_not_finish(tmp_path: Path) -> None:
    with SampleSite() as site:
        first = crawl(fast_settings(site.url, tmp_path, sitemaps=False))
        catalog = Catalog.open(tmp_path)
        catalog.db.execute("UPDATE crawls SET status='interrupted'")  # as if killed, never resumed
        catalog.close()
        second = crawl(fast_settings(site.url, tmp_path, sitemaps=False))
    first_ids = {r.warc["WARC-Record-ID"] for r in read_records(first.warcs)}
    records = read_records(second.warcs)
    assert [r.uri for r in records if r.warc.get("WARC-Refers-To") in first_ids] == []
    assert not any(r.header("If-None-Match") for r in records if r.type == "request")


@pytest.mark.pywb
def test_replay_command_serves_every_crawl_of_the_target(recrawls: Recrawls) -> None:
    port = free_port()
    env = {**os.environ, "PYWB_VENV": str(pywb_bin().parent)}
    proc = subprocess.Popen([sys.executable, "-m", "crawler", "replay", "test", "--output",
                             str(recrawls.out), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/test/" in line
        uri = recrawls.site.url + "persons/2.html"
        for n in (0, 1):
            ts = recrawls.stamp(n, uri)
            got = httpx.get(f"http://127.0.0.1:{port}/test/{ts}id_/{uri}", timeout=30)
            assert got.status_code == 200 and got.headers["Memento-Datetime"] == _memento(ts)
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops pywb too
        assert proc.wait(20) == 0
        if proc.stdout is not None:
            proc.stdout.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
