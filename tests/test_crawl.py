"""End-to-end crawls of the sample site on 127.0.0.1: what is captured, once, and how."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

from conftest import crawl, fast_settings, read_records, responses

from crawler.archive.catalog import Catalog
from crawler.archive.warc import record_kind
from crawler.capture.robots import RobotsPolicy
from crawler.capture.scope import ScopeKind, ScopeRules
from crawler.core.errors import ExitCode
from crawler.core.models import UrlKind
from crawler.crawl.engine import CrawlOutcome, Limits, StopReason
from crawler.demo.sample_site import SampleSite


def test_full_crawl_captures_every_page_and_image_once(full_crawl: tuple[SampleSite,
                                                                          CrawlOutcome]) -> None:
    site, outcome = full_crawl
    # Everything in scope was fetched but what the calendar trap rules kept out, and the
    # crawl says exactly that (the sample site's calendar is endless).
    assert outcome.stop_reason is StopReason.COMPLETE
    assert outcome.exit_code is ExitCode.INCOMPLETE and outcome.status == "incomplete"
    assert set(outcome.shortfall) == {"trap"}
    got = responses(read_records(outcome.warcs))
    for path in site.content.page_paths() + site.content.image_paths():
        url = site.url.rstrip("/") + path
        assert url in got, f"not captured: {path}"
        assert len(got[url]) == 1, f"captured {len(got[url])} times: {path}"
        assert got[url][0].status == 200
    # Requisites on another host (the "CDN") are fetched even though the scope is the host.
    assert site.cdn_url + "lib/banner.png" in got
    assert site.cdn_url + "lib/archive.woff2" in got  # found via CSS @font-face url()
    # The document that is only in the gzipped sitemap behind the sitemap index was found.
    assert site.url + "sitemap-pages.xml.gz" in got


def test_each_server_request_made_once(full_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, _ = full_crawl
    repeated = {path: n for path, n in Counter(site.requests).items() if n > 1}
    assert repeated == {}


def test_robots_disallow_obeyed_and_recorded(full_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = full_crawl
    assert not any(r.startswith("/private/") for r in site.requests)
    assert outcome.stats["robots_blocked"] == 1
    got = responses(read_records(outcome.warcs))
    assert site.url + "robots.txt" in got  # robots.txt itself is archived as evidence
    info = next(r for r in read_records(outcome.warcs) if r.type == "warcinfo")
    assert b"robots: obey" in info.body


def test_redirect_hops_are_each_captured(full_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = full_crawl
    got = responses(read_records(outcome.warcs))
    chain = [("chain/1", 302, "/chain/2"), ("chain/2", 302, "/chain/3"),
             ("chain/3", 308, "/only-in-sitemap.html"), ("old-address.html", 301, "/about.html")]
    for path, status, location in chain:
        rec = got[site.url + path][0]
        assert rec.status == status
        assert rec.header("Location") == location


def test_404_is_recorded(full_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = full_crawl
    rec = responses(read_records(outcome.warcs))[site.url + "missing.html"][0]
    assert rec.status == 404
    assert "Страница не найдена".encode() in rec.body


def test_calendar_trap_is_cut_off(full_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = full_crawl
    calendar = [r for r in site.requests if r.startswith("/calendar")]
    # forward until two years ahead (future-date), backward until 20 months look alike
    assert 20 <= len(calendar) <= 50, len(calendar)
    assert set(outcome.stats["traps"]) <= {"trap:future-date", "trap:same-content"}
    assert sum(outcome.stats["traps"].values()) == 2  # one URL each way, recorded
    assert outcome.shortfall == {"trap": 2}


def test_cp1251_page_declared_only_in_meta_is_decoded(
        full_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = full_crawl
    got = responses(read_records(outcome.warcs))
    # The link in the windows-1251 page has a Cyrillic path; decoded wrongly it would differ.
    assert site.url + quote("поиск/Иванов.html") in got
    rec = got[site.url + "cp1251.html"][0]
    assert rec.header("Content-Type") == "text/html"  # no charset over HTTP
    assert rec.body == "Книга памяти".encode("cp1251").join(
        site.content.respond("/cp1251.html").body.split("Книга памяти".encode("cp1251")))


def test_gzip_body_is_stored_raw(full_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = full_crawl
    rec = responses(read_records(outcome.warcs))[site.url + "gzip.html"][0]
    assert rec.header("Content-Encoding") == "gzip"
    expected = gzip.compress(site.content.respond("/gzip.html").body, mtime=0)
    assert rec.body == expected
    assert rec.header("Content-Length") == str(len(expected))


def test_chunked_response_loses_transfer_encoding(
        full_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = full_crawl
    rec = responses(read_records(outcome.warcs))[site.url + "chunked.html"][0]
    assert rec.header("Transfer-Encoding") is None
    assert rec.header("X-Orig-Transfer-Encoding") == "chunked"
    assert rec.body == site.content.respond("/chunked.html").body  # de-chunked
    assert rec.header("Content-Length") == str(len(rec.body))


def test_records_follow_warc_conventions(full_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    _, outcome = full_crawl
    recs = read_records(outcome.warcs)
    assert recs[0].type == "warcinfo"
    ids = {r.warc["WARC-Record-ID"]: r for r in recs}
    for rec in recs:
        assert rec.warc["WARC-Date"].endswith("Z")
        if rec.type == "response":
            assert rec.http is not None
            assert rec.line.startswith("HTTP/1.1 ")
            assert rec.warc["WARC-IP-Address"] == "127.0.0.1"
            assert "WARC-Protocol" not in rec.warc  # the status line says HTTP/1.1 already
            assert not rec.uri.startswith("<")
            assert rec.header("Transfer-Encoding") is None
        if rec.type == "request":
            response = ids[rec.warc["WARC-Concurrent-To"]]
            assert response.uri == rec.uri
            assert rec.http is not None
            sent = {name.lower() for name, _ in rec.http}
            assert {"host", "user-agent", "accept", "accept-encoding"} <= sent
            assert "connection" not in sent  # HTTP/1.1 keeps the connection without it
            assert rec.line.startswith("GET /") and rec.line.endswith(" HTTP/1.1")
            assert rec.header("Host").startswith("127.0.0.1:")
            assert rec.header("Accept-Encoding") == "gzip, deflate"  # nothing replay can't decode
    kinds = {r.uri.rsplit("/", 1)[-1]: r.warc.get("WARC-Crawler-Kind")
             for r in recs if r.type == "response"}
    assert kinds["logo.png"] == "requisite" and kinds["robots.txt"] == "robots"
    assert kinds["1.html"] is None  # a page says so by carrying no kind


def test_each_record_is_its_own_gzip_member(full_crawl: tuple[SampleSite,
                                                               CrawlOutcome]) -> None:
    _, outcome = full_crawl
    for line in outcome.index.read_text("utf-8").splitlines():
        fields = json.loads(line.split(" ", 2)[2])
        path = outcome.directory / "warc" / fields["filename"]
        with open(path, "rb") as fh:
            fh.seek(int(fields["offset"]))
            member = fh.read(int(fields["length"]))
        text = gzip.decompress(member)  # a complete member on its own
        assert text.startswith(b"WARC/1.1\r\n")
        assert f"WARC-Target-URI: {fields['url']}\r\n".encode() in text


def test_index_pages_and_crawl_json(full_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = full_crawl
    lines = outcome.index.read_text("utf-8").splitlines()
    assert lines == sorted(lines)
    pages = outcome.pages.read_text("utf-8").splitlines()
    assert json.loads(pages[0]) == {"format": "json-pages-1.0", "id": "pages",
                                    "title": "All Pages"}
    entries = [json.loads(p) for p in pages[1:]]
    by_url = {e["url"]: e for e in entries}
    assert by_url[site.url]["title"] == "Архив памяти"
    assert all(e["ts"].endswith("Z") and e["id"] for e in entries)
    assert site.url + "img/logo.png" not in by_url  # requisites are not pages
    info = json.loads((outcome.directory / "crawl.json").read_text("utf-8"))
    assert info["exit_status"] == "incomplete" and info["status"] == "incomplete"
    assert info["shortfall"] == outcome.shortfall
    assert info["stats"]["fetched"] == outcome.stats["fetched"]
    assert info["settings"]["seeds"] == [site.url]
    assert (outcome.directory / "crawl.log").read_text("utf-8").count("\n") >= info["stats"][
        "fetched"]
    assert not list((outcome.directory / "warc").glob("*.open"))


def test_scope_page_fetches_only_the_seed_and_its_requisites(site: SampleSite,
                                                             tmp_path: Path) -> None:
    outcome = crawl(fast_settings(site.url + "articles/1.html", tmp_path,
                                  scope=ScopeRules(kind=ScopeKind.PAGE), sitemaps=False))
    got = set(responses(read_records(outcome.warcs)))
    base = site.url
    assert got == {base + "robots.txt", base + "articles/1.html", base + "style.css",
                   base + "print.css", base + "favicon.ico", base + "img/logo.png",
                   base + "img/bg.png", base + "img/photo-320.png", base + "img/photo-640.png",
                   site.cdn_url + "robots.txt", site.cdn_url + "lib/archive.woff2"}


def test_no_requisites_and_depth(site: SampleSite, tmp_path: Path) -> None:
    outcome = crawl(fast_settings(site.url, tmp_path, sitemaps=False, scope=ScopeRules(
        kind=ScopeKind.HOST, depth=1, requisites=False)))
    got = set(responses(read_records(outcome.warcs)))
    assert site.url + "articles/" in got  # depth 1
    assert site.url + "articles/1.html" not in got  # depth 2
    assert not any(u.endswith((".png", ".css")) for u in got)


def test_max_pages_limit(site: SampleSite, tmp_path: Path) -> None:
    outcome = crawl(fast_settings(site.url, tmp_path, limits=Limits(max_pages=5),
                                  sitemaps=False))
    assert outcome.stop_reason is StopReason.MAX_PAGES
    assert outcome.exit_code is ExitCode.INCOMPLETE  # pages were found and not fetched
    assert outcome.shortfall["limit"] > 0
    recs = read_records(outcome.warcs)
    page_kinds = {UrlKind.SEED.value, UrlKind.PAGE.value}
    pages = [r for r in recs if r.type == "response"
             and record_kind(r.warc).value in page_kinds]
    assert len(pages) == 5


def test_max_bytes_and_max_time_stop_the_crawl(site: SampleSite, tmp_path: Path) -> None:
    by_bytes = crawl(fast_settings(site.url, tmp_path / "b", limits=Limits(max_bytes=20_000)))
    assert by_bytes.stop_reason is StopReason.MAX_BYTES
    assert by_bytes.stats["bytes"] < 60_000
    slow = fast_settings(site.url, tmp_path / "t", limits=Limits(max_time=1.0))
    slow = replace(slow, politeness=replace(slow.politeness, delay=0.3, per_host=1))
    by_time = crawl(slow)
    assert by_time.stop_reason is StopReason.MAX_TIME
    assert by_time.stats["elapsed_seconds"] < 5
    assert by_time.stats["fetched"] < 10


def test_robots_ignore_fetches_disallowed_paths(site: SampleSite, tmp_path: Path) -> None:
    outcome = crawl(fast_settings(site.url, tmp_path, robots=RobotsPolicy.IGNORE,
                                  sitemaps=False))
    assert "/private/archive.html" in site.requests
    assert outcome.stats["robots_blocked"] == 0
    info = next(r for r in read_records(outcome.warcs) if r.type == "warcinfo")
    assert b"robots: ignore" in info.body


def test_warc_rotation_keeps_index_consistent(site: SampleSite, tmp_path: Path) -> None:
    outcome = crawl(fast_settings(site.url, tmp_path, warc_size=20_000, sitemaps=False))
    assert len(outcome.warcs) > 3
    names = [p.name for p in outcome.warcs]
    serials = [n.rsplit("-", 2)[1] for n in names]
    assert serials == [f"{i:05d}" for i in range(len(names))]
    for path in outcome.warcs:
        assert path.name.startswith("test-") and path.name.endswith(".warc.gz")
        recs = read_records([path])
        assert recs[0].type == "warcinfo"  # every file starts with warcinfo
    for line in outcome.index.read_text("utf-8").splitlines():
        fields = json.loads(line.split(" ", 2)[2])
        assert (outcome.directory / "warc" / fields["filename"]).exists()


def test_recrawl_checks_pages_that_left_the_navigation(site: SampleSite, tmp_path: Path) -> None:
    first = crawl(fast_settings(site.url, tmp_path, sitemaps=False))
    assert site.url + "persons/5.html" in responses(read_records(first.warcs))
    site.content.delisted = {5}  # still served, no longer linked from the index
    before = len(site.requests)
    second = crawl(fast_settings(site.url, tmp_path, sitemaps=False))
    assert second.directory != first.directory and second.directory.parent == first.directory.parent
    got = responses(read_records(second.warcs), ("response", "revisit"))
    assert site.url + "persons/5.html" in got  # queued from the first crawl's captures
    assert "/persons/5.html" in site.requests[before:]
    rec = got[site.url + "persons/5.html"][0]
    assert "WARC-Crawler-Kind" not in rec.warc  # a page: the kind said by saying none
    assert record_kind(rec.warc) is UrlKind.PAGE


def test_catalog_rows_describe_each_capture(full_crawl: tuple[SampleSite,
                                                               CrawlOutcome]) -> None:
    site, outcome = full_crawl
    catalog = Catalog.open(outcome.directory.parent.parent)
    try:
        (crawl_row,) = catalog.crawls("test")
        assert crawl_row.status == "incomplete" and crawl_row.exit_code == ExitCode.INCOMPLETE
        assert crawl_row.shortfall == {"trap": 2}
        rows = {c.url: c for c in catalog.captures(crawl_row.pk)}
        page = rows[site.url + "persons/1.html"]
        assert page.status == 200 and page.mime == "text/html" and page.kind == "page"
        assert page.title == "Иванов Иван Петрович" and page.outlinks == 5
        assert page.text_hash and len(page.text_hash) == 40
        assert page.peer_ip == "127.0.0.1" and page.digest.startswith("sha1:")
        assert page.warc_file in {p.name for p in outcome.warcs}
        assert page.record_type == "response" and page.warc_length > 0
        hop = rows[site.url + "old-address.html"]
        assert hop.status == 301 and hop.location == "/about.html"
        assert rows[site.url + "private/archive.html"].failure == "robots"
        assert rows[site.url + "private/archive.html"].record_type is None
        # Different people, different visible text.
        assert rows[site.url + "persons/13.html"].text_hash != page.text_hash
    finally:
        catalog.close()
