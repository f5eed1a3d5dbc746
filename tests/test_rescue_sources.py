"""Rescue against hostile sources: a Wayback-Machine-like archive on 127.0.0.1 that pages its
CDX answers with resume keys, rate-limits (429 + Retry-After), fails transiently, holds
block pages, soft-404s, its own error pages, redirects and revisits; and the pure readers of
CDX answers, TimeMaps and memento headers, with the innocent pages that could trip them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import read_records

from crawler.capture import extract
from crawler.core.models import FetchResult
from crawler.rescue.memento import page_problem, restore
from crawler.rescue.run import RescueSettings, run_rescue
from crawler.rescue.sources import (
    Memento,
    in_window,
    normal_digest,
    parse_cdx,
    parse_source,
    parse_timemap,
    window_bound,
)

SITE = "http://memorial.test/"
BLOCK = ("<html><head><title>Доступ ограничен</title></head><body><p>Доступ к "
         "информационному ресурсу ограничен на основании решения. Роскомнадзор.</p>"
         "</body></html>")
SOFT_404 = ("<html><head><title>Page not found</title></head><body><p>Sorry, nothing "
            "here.</p></body></html>")
ARCHIVE_PAGE = ("<html><head><title>Wayback Machine</title></head><body>Hrm. The Wayback "
                "Machine has not archived that URL.</body></html>")
LONG_ARTICLE = ("<html><head><title>How the registry blocks sites</title></head><body>"
                + "".join(f'<a href="/n{i}.html">note {i}</a>' for i in range(8))
                + "<p>" + "Роскомнадзор внёс сайт в реестр запрещённой информации. " * 60
                + "</p></body></html>")
PERSON_NOT_FOUND = ("<html><head><title>Ivanov, Ivan (1899-1938)</title></head><body><h1>"
                    "Ivanov, Ivan</h1><p>Born 1899 in Tver.</p><p>Shot in 1938. His grave "
                    "was not found until 1991.</p></body></html>")


def _page(title: str) -> str:
    return f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"


def _sha1(body: bytes) -> str:
    return base64.b32encode(hashlib.sha1(body).digest()).decode()


@dataclass
class Cap:
    """A capture the fake archive holds."""

    path: str
    ts: str
    status: int
    body: str = ""
    how: str = "good"  # good | archive-page | flaky | revisit
    location: str | None = None

    @property
    def url(self) -> str:
        return SITE + self.path.lstrip("/")


CAPS = [
    Cap("/", "20210101000000", 200, _page("Memorial")),
    Cap("/a.html", "20220101000000", 200, BLOCK),
    Cap("/a.html", "20210101000000", 200, _page("Person A")),
    Cap("/b.html", "20220101000000", 200, _page("B gone"), how="archive-page"),
    Cap("/b.html", "20200101000000", 200, _page("Person B")),
    Cap("/c.html", "20210601000000", 200, _page("Person C"), how="revisit"),
    Cap("/d.html", "20210101000000", 302, "", location="/e.html"),
    Cap("/e.html", "20210101000001", 200, _page("Person E")),
    Cap("/f.html", "20210101000000", 200, _page("Person F"), how="flaky"),
    Cap("/g.html", "20230101000000", 200, SOFT_404),
    Cap("/g.html", "20190101000000", 200, _page("Person G")),
    Cap("/h.html", "20210101000000", 404, _page("404")),
    Cap("/i.html", "20210101000000", 200, LONG_ARTICLE),
    Cap("/j.html", "20210101000000", 200, PERSON_NOT_FOUND),
    Cap("/m.html", "20210101000000", 200, _page("M"), how="archive-page"),
    # the archive sends its own redirect to another second of the same URL
    Cap("/p.html", "20210101000000", 200, _page("Person P"), how="inexact"),
    # an archived redirect that the archive serves without Memento-Datetime
    Cap("/q.html", "20210101000000", 301, "", how="bare", location="/r.html"),
    Cap("/k.html", "20200101000000", 200, _page("K, as first published")),
    Cap("/k.html", "20220101000000", 200, _page("K, corrected")),
]


@dataclass
class FakeWayback:
    """The archive's state: what it was asked, when."""

    server: ThreadingHTTPServer
    requests: list[tuple[float, str]] = field(default_factory=list)
    caps: list[Cap] = field(default_factory=lambda: list(CAPS))
    failures_left: dict[str, int] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def _handler(fake: dict[str, FakeWayback]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            state = fake["it"]
            state.requests.append((time.monotonic(), self.path))
            if self.path.startswith("/cdx/search/cdx"):
                self._cdx(state)
            elif self.path.startswith("/web/timemap/link/"):
                self._timemap(state)
            elif self.path.startswith("/web/"):
                self._memento(state)
            else:
                self._send(404, b"", [])

        def _send(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _cdx(self, state: FakeWayback) -> None:
            if state.failures_left.get("cdx", 0) > 0:  # rate-limited once
                state.failures_left["cdx"] -= 1
                self._send(429, b"slow down", [("Retry-After", "1")])
                return
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            if query.get("resumeKey") == "8" and state.failures_left.get("page-3", 0) > 0:
                state.failures_left["page-3"] -= 1  # down for a while, mid-listing
                self._send(502, b"bad gateway", [])
                return
            rows = [["urlkey", "timestamp", "original", "mimetype", "statuscode", "digest",
                     "length"]]
            start = int(query.get("resumeKey", "0"))
            page = state.caps[start:start + 4]  # four captures a page
            for cap in page:
                revisit = cap.how == "revisit"
                rows.append([cap.path, cap.ts, cap.url,
                             "warc/revisit" if revisit else "text/html",
                             "-" if revisit else str(cap.status),
                             _sha1(cap.body.encode()), "100"])
            if start + 4 < len(state.caps):
                rows += [[], [str(start + 4)]]
            self._send(200, json.dumps(rows).encode(), [("Content-Type", "application/json")])

        def _timemap(self, state: FakeWayback) -> None:
            """A TimeMap in pages: the first names the next (rel="timemap"), the second
            holds the captures."""
            rest = self.path[len("/web/timemap/link/"):]
            url, _, page = rest.partition("?page=")
            caps = [c for c in state.caps if c.url == url and c.status < 400]
            if not caps:
                self._send(404, b"", [])
                return
            lines = [f'<{url}>; rel="original"',
                     f'<{state.base}{self.path}>; rel="self"; type="application/link-format"']
            if page != "2":
                lines.append(f'<{state.base}/web/timemap/link/{url}?page=2>; rel="timemap"; '
                             'type="application/link-format"')
            else:
                lines += [f'<{state.base}/web/{c.ts}/{c.url}>; rel="memento"; '
                          f'datetime="{c.ts}"' for c in caps]
            self._send(200, ",\n".join(lines).encode(),
                       [("Content-Type", "application/link-format")])

        def _memento(self, state: FakeWayback) -> None:
            rest = self.path[len("/web/"):]
            ts, _, url = rest.partition("id_/")
            cap = next((c for c in state.caps if c.url == url and c.ts[:12] == ts[:12]),
                       None)
            if cap is not None and cap.how == "inexact" and ts == cap.ts:
                self._send(302, b"", [("Location", f"{state.base}/web/{ts[:12]}05id_/{url}")])
                return
            if cap is not None and cap.how != "inexact" and ts != cap.ts:
                cap = None
            if cap is None or cap.how == "archive-page":
                self._send(200 if cap else 404, ARCHIVE_PAGE.encode(),
                           [("Content-Type", "text/html"), ("Server", "nginx")])
                return
            if url.endswith("/j.html") and state.failures_left.get("cut", 0) > 0:
                state.failures_left["cut"] -= 1  # the connection drops mid-body
                self.send_response(200)
                self.send_header("Content-Length", "5000")
                self.send_header("Memento-Datetime", "Fri, 01 Jan 2021 00:00:00 GMT")
                self.end_headers()
                self.wfile.write(cap.body.encode()[:100])
                self.close_connection = True
                return
            key = f"{url}@{ts}"
            if cap.how == "flaky" and state.failures_left.setdefault(key, 2) > 0:
                state.failures_left[key] -= 1
                self._send(503, b"busy", [("Server", "nginx")])
                return
            moment = datetime.strptime(ts, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
            dated = cap.how != "bare"
            headers = [("Server", "nginx"), ("Date", "Tue, 01 Dec 2026 00:00:00 GMT"),
                       ("X-Archive-Orig-Server", "Apache/2.2 (orig)"),
                       ("X-Archive-Orig-Date", moment.strftime("%a, %d %b %Y %H:%M:%S GMT")),
                       ("Content-Type", "text/html; charset=utf-8"),
                       *([("Memento-Datetime", moment.strftime("%a, %d %b %Y %H:%M:%S GMT"))]
                         if dated else []),
                       ("Link", f'<{url}>; rel="original", <{state.base}/web/timemap/link/'
                                f'{url}>; rel="timemap"'),
                       ("X-Archive-Src", "crawl-2021/part-1.warc.gz")]
            if cap.location:
                headers.append(("Location",
                                f"{state.base}/web/{ts}id_/{SITE}{cap.location.lstrip('/')}"))
            self._send(cap.status, cap.body.encode(), headers)

    return Handler


@pytest.fixture
def wayback() -> Iterator[FakeWayback]:
    box: dict[str, FakeWayback] = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(box))
    box["it"] = FakeWayback(server, failures_left={"cdx": 1})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box["it"]
    finally:
        server.shutdown()
        server.server_close()


def _settings(wayback: FakeWayback, out: Path, **extra: Any) -> RescueSettings:
    # parse_source picks the Wayback Machine's CDX path only for its own host: name it here
    source = parse_source(f"{wayback.base}/web;cdx={wayback.base}/cdx/search/cdx;rate=0;"
                          "name=fake-wayback")
    base: dict[str, Any] = {"target": "memorial", "output": out, "sources": (source,),
                            "url": SITE, "backoff": 0.05, "attempts": 4}
    base.update(extra)
    return RescueSettings(**base)


def test_hostile_source_gives_the_good_captures_and_says_why_not_the_others(
        wayback: FakeWayback, tmp_path: Path) -> None:
    outcome = asyncio.run(run_rescue(_settings(wayback, tmp_path)))
    report = outcome.report
    # 15 URLs listed, the 8 notes the long article links to and the target of q's redirect,
    # which no source holds
    assert report["urls"] == {"found": 24, "rescued": 13, "held": 0, "missing": 11,
                              "failed": 0, "pending": 0}, report["missing"]
    assert outcome.status == "complete" and int(outcome.exit_code) == 0
    reasons = {m["url"]: m["reason"] for m in report["missing"]}
    assert "only error captures" in reasons[SITE + "h.html"]
    assert "the archive's own answer" in reasons[SITE + "m.html"]
    assert reasons[SITE + "n3.html"] == "no capture in any source"
    rejected = report["rejected"]
    assert rejected.get("block page") == 1 and any("soft-404" in r for r in rejected)
    records = {r.uri: r for r in read_records(list(outcome.warcs)) if r.type == "response"}
    chosen = {uri: r.warc["WARC-Date"][:4] for uri, r in records.items()}
    assert chosen[SITE + "a.html"] == "2021"  # the block page of 2022 is not the page
    assert chosen[SITE + "b.html"] == "2020"  # the archive's own page of 2022 neither
    assert chosen[SITE + "g.html"] == "2019"  # nor the soft-404 of 2023
    assert SITE + "i.html" in chosen and SITE + "j.html" in chosen  # innocent pages kept
    redirect = records[SITE + "d.html"]
    assert redirect.status == 302 and redirect.header("Location") == SITE + "e.html"
    revisit = records[SITE + "c.html"]  # listed as a revisit, served as the page
    assert revisit.header("Server") == "Apache/2.2 (orig)"  # the origin's, not the archive's
    assert revisit.header("Date", ) == "Tue, 01 Jun 2021 00:00:00 GMT"
    for name in ("Memento-Datetime", "X-Archive-Src", "X-Archive-Orig-Server"):
        assert revisit.header(name) is None, name
    assert revisit.warc["WARC-Crawler-Source-Digest"] == "sha1:" + _sha1(revisit.body)
    assert records[SITE + "f.html"].body.startswith(b"<html>")  # after two 503s
    # The archive's redirect to the capture it has: followed, dated as that capture.
    assert records[SITE + "p.html"].warc["WARC-Date"] == "2021-01-01T00:00:05.000Z"
    # An archived redirect without Memento-Datetime is still the capture, not followed.
    bare = records[SITE + "q.html"]
    assert bare.status == 301 and bare.header("Location") == SITE + "r.html"
    assert chosen[SITE + "k.html"] == "2022"  # latest: the newest good capture only
    assert sum(r.uri == SITE + "k.html" for r in read_records(list(outcome.warcs))) == 1
    # Politeness: the 429's Retry-After was waited out; the listing was paged.
    cdx = [t for t, path in wayback.requests if path.startswith("/cdx/")]
    assert cdx[1] - cdx[0] >= 0.9
    assert sum("resumeKey=" in p for _, p in wayback.requests) == 4
    assert report["sources"][0]["requests"] == len(wayback.requests)


def test_a_window_leaves_out_captures_outside_it(wayback: FakeWayback, tmp_path: Path) -> None:
    outcome = asyncio.run(run_rescue(_settings(wayback, tmp_path, start=window_bound(
        "2022", end=False), end=window_bound("2022-12", end=True))))
    rescued = {r.uri: r.warc["WARC-Date"] for r in read_records(list(outcome.warcs))
               if r.type == "response"}
    # 2022 holds a block page of a, an archive error page for b, and k as corrected
    assert list(rescued) == [SITE + "k.html"] and rescued[SITE + "k.html"][:4] == "2022"
    assert outcome.report["urls"] == {"found": 4, "rescued": 1, "held": 0, "missing": 3,
                                      "failed": 0, "pending": 0}


# -- the pure readers -------------------------------------------------------------------------

def test_cdx_answers_in_three_shapes() -> None:
    ndjson = (b'{"urlkey": "a", "timestamp": "20261202013821", "url": "http://x/", "mime": '
              b'"warc/revisit", "digest": "B44OMVRYMNQZYO63IONPGX6467T6SZKF"}\n'
              b'{"urlkey": "b", "timestamp": "20261202013821", "url": "http://x/y", '
              b'"status": "200", "is_fuzzy": "1"}\n')
    page = parse_cdx(ndjson)
    assert len(page.mementos) == 1 and page.resume is None  # the fuzzy look-alike is dropped
    assert page.mementos[0].status is None and page.mementos[0].is_revisit
    assert page.mementos[0].digest == "sha1:B44OMVRYMNQZYO63IONPGX6467T6SZKF"
    arrays = json.dumps([["urlkey", "timestamp", "original", "mimetype", "statuscode",
                          "digest", "length"], ["k", "20200101000000", "http://x/",
                                                "text/html", "301", "-", "5"], [], ["KEY"]])
    page = parse_cdx(arrays.encode())
    assert page.resume == "KEY" and page.mementos[0].status == 301
    assert page.mementos[0].digest == ""
    text = b"k 20200101000000 http://x/ text/html 200 AAAA 5\n\nNEXT\n"
    page = parse_cdx(text)
    assert page.resume == "NEXT" and page.mementos[0].url == "http://x/"
    assert parse_cdx(b"").mementos == ()
    hexed = hashlib.sha1(b"x").hexdigest()
    assert normal_digest(hexed) == "sha1:" + _sha1(b"x")


def test_timemap_in_link_format() -> None:
    body = (b'<http://a/coll/timemap/link/http://x/>; rel="self"; type="application/link-'
            b'format",\n<http://a/coll/http://x/>; rel="timegate",\n<http://x/>; '
            b'rel="original",\n<http://a/coll/20261202013818mp_/http://x/>; rel="memento"; '
            b'datetime="Wed, 02 Dec 2026 01:38:18 GMT"; collection="coll",\n'
            b'<http://a/web/http://x/>; rel="first memento"; datetime="Tue, 01 Dec 2026 '
            b'01:00:00 GMT"\n')
    found = parse_timemap(body)
    assert [(m.url, m.timestamp) for m in found] == [("http://x/", "20261202013818"),
                                                    ("http://x/", "20261201010000")]


def test_sources_and_windows() -> None:
    ia = parse_source("https://web.archive.org/web/")
    assert ia.cdx == "https://web.archive.org/cdx/search/cdx" and ia.is_wayback
    assert ia.memento_url("2020", "http://x/") == "https://web.archive.org/web/2020id_/http://x/"
    local = parse_source("http://127.0.0.1:8080/coll;cdx=none;rate=5;name=mine")
    assert (local.cdx, local.rate, local.name) == (None, 5.0, "mine")
    assert local.timemap_url("http://x/") == "http://127.0.0.1:8080/coll/timemap/link/http://x/"
    for bad in ("ftp://x/", "http://x/;speed=3", "http://x/;rate=-1"):
        with pytest.raises(Exception, match="source"):
            parse_source(bad)
    assert window_bound("2021-03", end=False) == "20210301000000"
    assert window_bound("2021", end=True) == "20211231235959"
    assert in_window("20210615000000123", "20210101000000", "20211231235959")
    assert not in_window("20220101000000", None, "20211231235959")


def _served(headers: list[tuple[str, str]], body: bytes = b"<html></html>",
            status: int = 200) -> FetchResult:
    import io

    return FetchResult(url="http://a/coll/20200101000000id_/http://x/",
                       started=datetime.now(UTC), status=status,
                       headers=[(n.encode(), v.encode()) for n, v in headers],
                       body=io.BytesIO(body), body_length=len(body),
                       payload_digest="sha1:" + _sha1(body), request_head=b"GET / HTTP/1.1")


def test_pywb_headers_are_restored_to_the_origins() -> None:
    source = parse_source("http://a/coll")
    served = _served([
        ("X-Archive-Orig-Server", "BaseHTTP/0.6"), ("X-Archive-Orig-Date", "Wed, 02 Dec 2026"),
        ("Content-Type", "text/html; charset=utf-8"), ("X-Probe", "hello"),
        ("Set-Cookie", "sess=abc; Path=/"), ("Content-Length", "13"),
        ("Memento-Datetime", "Wed, 01 Jan 2020 00:00:00 GMT"),
        ("Link", '<http://x/>; rel="original", <http://a/coll/http://x/>; rel="timegate"'),
        ("Content-Location", "http://a/coll/20200101000000id_/http://x/"),
        ("Date", "Thu, 03 Dec 2026 00:00:00 GMT"), ("Server", "pywb")])
    memento = Memento("http://x/", "20200101000000", 200, "text/html", "sha1:" +
                      _sha1(b"<html></html>"))
    restored = restore(served, memento, source)
    got = [(n.decode(), v.decode()) for n, v in restored.result.headers]
    assert got == [("Server", "BaseHTTP/0.6"), ("Date", "Wed, 02 Dec 2026"),
                   ("Content-Type", "text/html; charset=utf-8"), ("X-Probe", "hello"),
                   ("Set-Cookie", "sess=abc; Path=/")]  # (Content-Length: the writer's)
    assert restored.digest_match is True and restored.result.request_head == b""
    assert restored.result.started == datetime(2020, 1, 1, tzinfo=UTC)
    assert restored.result.url == "http://x/"


def test_the_archives_own_policies_are_not_taken_for_the_origins() -> None:
    """The Wayback Machine's answer: every origin header renamed; its own security and
    caching headers unrenamed beside them."""
    served = _served([
        ("Server", "nginx"), ("Content-Type", "text/html"), ("X-Archive-Orig-Server", "Apache"),
        ("X-Archive-Orig-Cache-Control", "max-age=60"), ("Cache-Control", "max-age=1800"),
        ("Strict-Transport-Security", "max-age=31536000"), ("Referrer-Policy", "no-referrer"),
        ("Content-Security-Policy", "default-src 'self' web.archive.org"),
        ("X-Archive-Orig-Location", "http://x/new"),
        ("Location", "https://web.archive.org/web/2020id_/http://x/new"),
        ("Memento-Datetime", "Wed, 01 Jan 2020 00:00:00 GMT"), ("Server-Timing", "x;dur=1"),
        ("X-Ts", "301"), ("X-App-Server", "wwwb-app1")], status=301)
    restored = restore(served, Memento("http://x/", "20200101000000", 301, "", ""),
                       parse_source("https://web.archive.org/web"))
    got = [(n.decode(), v.decode()) for n, v in restored.result.headers]
    assert got == [("Content-Type", "text/html"), ("Server", "Apache"),
                   ("Cache-Control", "max-age=60"), ("Location", "http://x/new")]


def test_a_decoded_gzip_capture_does_not_claim_gzip() -> None:
    served = _served([("X-Archive-Orig-Content-Encoding", "gzip"),
                      ("Content-Type", "text/html"),
                      ("Memento-Datetime", "Wed, 01 Jan 2020 00:00:00 GMT")])
    restored = restore(served, Memento("http://x/", "20200101000000", 200, "", "sha1:X"),
                       parse_source("http://a/coll"))
    assert all(n.lower() != b"content-encoding" for n, _ in restored.result.headers)
    assert restored.digest_match is False


@pytest.mark.parametrize(("html", "expected"), [
    (BLOCK, "block page"),
    (SOFT_404, "soft-404"),
    ("<html><title>Технические работы</title><body>Сайт временно недоступен</body></html>",
     "outage page"),
    (LONG_ARTICLE, None),  # an article about blocking, with its links
    (PERSON_NOT_FOUND, None),  # "not found" in a person's story
    (_page("Not Foundland: a history of Newfoundland"), None),
])
def test_page_problems_and_the_innocent_pages_that_could_look_like_them(
        html: str, expected: str | None) -> None:
    result = _served([("Content-Type", "text/html; charset=utf-8")], html.encode())
    found = extract.extract_safely(result.url, "text/html", html.encode(),
                                   "text/html; charset=utf-8", None)
    verdict = page_problem(result, html.encode(), found)
    if expected is None:
        assert verdict is None
    else:
        assert verdict is not None and verdict.startswith(expected)


def test_a_listing_cut_short_is_said_and_continued_from_its_resume_key(
        wayback: FakeWayback, tmp_path: Path) -> None:
    wayback.failures_left["page-3"] = 99  # the third page of the listing never comes
    first = asyncio.run(run_rescue(_settings(wayback, tmp_path, attempts=3)))
    assert first.status == "incomplete" and int(first.exit_code) == 8
    source = first.report["sources"][0]
    assert not source["listing_done"] and "502" in source["note"]
    assert source["listed"] == 8  # two pages of four
    wayback.failures_left["page-3"] = 0
    wayback.requests.clear()
    second = asyncio.run(run_rescue(_settings(wayback, tmp_path, attempts=3)))
    assert second.rescue_id == first.rescue_id  # the same rescue, continued
    cdx = [path for _, path in wayback.requests if path.startswith("/cdx/")]
    assert "resumeKey=8" in cdx[0]  # from where it stopped, not from the start
    assert second.status == "complete" and int(second.exit_code) == 0
    assert second.report["urls"]["rescued"] == 13 and second.report["sources"][0]["note"] is None
    written = [(r.uri, r.warc["WARC-Date"]) for r in read_records(list(second.warcs))
               if r.type == "response"]
    assert len(written) == len(set(written)) == 13  # nothing written twice across the runs


def test_a_source_that_keeps_failing_leaves_the_url_to_try_again(wayback: FakeWayback,
                                                                 tmp_path: Path) -> None:
    """Two tries are not enough for the flaky capture: the URL is "source failed", not
    "missing", the rescue incomplete; the next run tries it again and gets it."""
    first = asyncio.run(run_rescue(_settings(wayback, tmp_path, attempts=2)))
    assert first.report["urls"]["failed"] == 1 and first.status == "incomplete"
    failed = [m for m in first.report["missing"] if m["outcome"] == "failed"]
    assert failed[0]["url"] == SITE + "f.html" and "503" in failed[0]["reason"]
    assert int(first.exit_code) == 8
    second = asyncio.run(run_rescue(_settings(wayback, tmp_path, attempts=2)))
    assert second.report["urls"]["failed"] == 0 and second.status == "complete"
    assert second.report["urls"]["rescued"] == 13


def test_all_keeps_every_good_capture_the_newest_entered_last(wayback: FakeWayback,
                                                               tmp_path: Path) -> None:
    import sqlite3

    outcome = asyncio.run(run_rescue(_settings(wayback, tmp_path, every=True)))
    dates = sorted(r.warc["WARC-Date"][:4] for r in read_records(list(outcome.warcs))
                   if r.uri == SITE + "k.html")
    assert dates == ["2020", "2022"]
    db = sqlite3.connect(tmp_path / "catalog.sqlite3")
    try:  # the capture a later crawl is compared with (the last entered) is the newest
        last = db.execute("SELECT fetched_at FROM captures WHERE url = ? ORDER BY id DESC",
                          (SITE + "k.html",)).fetchone()[0]
    finally:
        db.close()
    assert last.startswith("2022")
    assert outcome.report["urls"]["rescued"] == 13 and outcome.status == "complete"
    # A new rescue of the same: every capture is held already; nothing is called rescued.
    again = asyncio.run(run_rescue(_settings(wayback, tmp_path, every=True,
                                             start=window_bound("2015", end=False))))
    assert again.rescue_id != outcome.rescue_id
    assert again.report["urls"]["rescued"] == 0 and again.report["urls"]["held"] == 13
    assert again.report["captures"]["written"] == 0


def test_a_prefix_covers_both_schemes_and_www_as_cdx_servers_match_it(
        wayback: FakeWayback, tmp_path: Path) -> None:
    """The archive lists http://memorial.test/… for https://www.memorial.test/: the same
    site to a CDX server (SURT), so no URL is asked for again one by one."""
    outcome = asyncio.run(run_rescue(_settings(wayback, tmp_path,
                                               url="https://www.memorial.test/")))
    assert outcome.report["urls"]["rescued"] == 13
    assert not [p for _, p in wayback.requests if "matchType=exact" in p]
    notes = [m for m in outcome.report["missing"] if "/n3.html" in m["url"]]
    assert notes and notes[0]["reason"] == "no capture in any source"  # linked, in scope


def test_bad_rescue_options_are_named(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from crawler.commands.cli import cli

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["rescue", "t", "-o", str(tmp_path), *args])

    bad_source = run("--source", "ftp://archive.example/", "--url", SITE)
    assert bad_source.exit_code == 3 and "--source" in bad_source.output
    neither = run("--source", "http://127.0.0.1:9/coll")
    assert neither.exit_code == 2 and "--url PREFIX or --domain" in neither.output
    bad_date = run("--source", "http://127.0.0.1:9/coll", "--url", SITE, "--from", "May 2021")
    assert bad_date.exit_code == 3 and "--from/--to" in bad_date.output
    assert not (tmp_path / "catalog.sqlite3").exists()  # nothing was started


def test_max_urls_stops_and_says_how_many_were_not_tried(wayback: FakeWayback,
                                                          tmp_path: Path) -> None:
    outcome = asyncio.run(run_rescue(_settings(wayback, tmp_path, max_urls=5)))
    urls = outcome.report["urls"]
    assert urls["rescued"] + urls["missing"] == 5 and urls["pending"] == urls["found"] - 5
    assert outcome.status == "incomplete" and int(outcome.exit_code) == 8
    import sqlite3

    db = sqlite3.connect(tmp_path / "catalog.sqlite3")
    try:
        assert db.execute("SELECT stop_reason FROM crawls").fetchone()[0] == "max-urls"
    finally:
        db.close()


def test_a_capture_cut_short_is_not_taken_for_the_page(wayback: FakeWayback,
                                                       tmp_path: Path) -> None:
    wayback.failures_left["cut"] = 99
    first = asyncio.run(run_rescue(_settings(wayback, tmp_path, attempts=2)))
    failed = {m["url"]: m["reason"] for m in first.report["missing"]
              if m["outcome"] == "failed"}
    assert "cut short" in failed[SITE + "j.html"] and first.status == "incomplete"
    assert SITE + "j.html" not in {r.uri for r in read_records(list(first.warcs))}
    wayback.failures_left["cut"] = 0
    second = asyncio.run(run_rescue(_settings(wayback, tmp_path, attempts=2)))
    assert second.status == "complete" and second.report["urls"]["rescued"] == 13


def test_unreadable_cdx_lines_are_skipped_and_counted() -> None:
    body = (b'{"timestamp": "20200101000000", "url": "http://x/a", "status": "200"}\n'
            b'<html>502 Bad Gateway</html>\n'
            b'{"timestamp": "20200101000000", "url": "http://x/b", "status": "200"}\n'
            b'{"timestamp": "2020\n')
    page = parse_cdx(body)
    assert [m.url for m in page.mementos] == ["http://x/a", "http://x/b"]
    assert page.unreadable == 2


NAVIGATION = "".join(f'<li><a href="/section{i}/">Section {i}</a></li>' for i in range(12))
TEMPLATE_404 = ("<html><head><title>Page not found – Memorial</title></head><body><nav><ul>"
                + NAVIGATION + "</ul></nav><main><h1>Oops! That page can’t be found.</h1>"
                + "<p>" + "Try the search or the sections above. " * 80 + "</p></main></body>"
                "</html>")
HOME = ("<html><head><title>Memorial</title></head><body><nav><ul>" + NAVIGATION
        + "</ul></nav><main><h1>Memorial</h1><p>" + "News of the society. " * 120
        + "</p></main></body></html>")


def test_a_template_served_for_many_urls_is_told_from_the_page(wayback: FakeWayback,
                                                               tmp_path: Path) -> None:
    """A site's not-found page with full navigation, served with 200 for four removed URLs
    (the Wayback Machine captured it four times, one body): rejected for the good capture
    before it, or, with none, the URL is missing. Four addresses of the home page (one body,
    navigation, nothing wrong with it) are all rescued."""
    wayback.caps = [
        Cap("/s1.html", "20230101000000", 200, TEMPLATE_404),
        Cap("/s1.html", "20200101000000", 200, _page("Person S1")),
        Cap("/s2.html", "20230101000000", 200, TEMPLATE_404),
        Cap("/s2.html", "20200101000000", 200, _page("Person S2")),
        Cap("/s3.html", "20230101000000", 200, TEMPLATE_404),
        Cap("/s4.html", "20230101000000", 200, TEMPLATE_404),
        Cap("/", "20230101000000", 200, HOME),
        Cap("/index.html", "20230101000000", 200, HOME),
        Cap("/?utm=a", "20230101000000", 200, HOME),
        Cap("/?utm=b", "20230101000000", 200, HOME),
    ]
    wayback.failures_left.clear()
    outcome = asyncio.run(run_rescue(_settings(wayback, tmp_path)))
    records = {r.uri: r.warc["WARC-Date"][:4] for r in read_records(list(outcome.warcs))
               if r.type in ("response", "revisit")}
    assert records[SITE + "s1.html"] == "2020" and records[SITE + "s2.html"] == "2020"
    assert SITE + "s3.html" not in records and SITE + "s4.html" not in records
    reasons = {m["url"]: m["reason"] for m in outcome.report["missing"]}
    assert reasons[SITE + "s3.html"].startswith("soft-404") and "3 other URLs" in \
        reasons[SITE + "s3.html"]
    for home in ("", "index.html", "?utm=a", "?utm=b"):
        assert records[SITE + home] == "2023", home  # the same bytes, and the page


def test_a_timemap_in_pages_is_read_to_its_end(wayback: FakeWayback, tmp_path: Path) -> None:
    """A source without CDX whose TimeMaps come in pages: the captures are on the second."""
    source = parse_source(f"{wayback.base}/web;cdx=none;timemap={wayback.base}/web/timemap/"
                          "link;rate=0;name=paged")
    outcome = asyncio.run(run_rescue(RescueSettings(
        target="paged", output=tmp_path, sources=(source,), url=SITE, backoff=0.05)))
    assert outcome.report["urls"]["rescued"] == 1  # the home page, which links nowhere
    assert [p for _, p in wayback.requests if "?page=2" in p]
    assert not [p for _, p in wayback.requests if p.startswith("/cdx/")]
