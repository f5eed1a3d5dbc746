"""A crawl survives a hostile server in bounded time, records every misbehaviour as what it
was, and still follows the links of the well-behaved pages on the same host."""

from __future__ import annotations

import gzip
import json
import sqlite3
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from hostile import HostileServer, Route, drip, reset, response, send, stall

from crawler.commands.cli import cli

GOOD = [f"/good/{n}.html" for n in range(1, 9)]


def _page(title: str, links: list[str] = ()) -> bytes:  # type: ignore[assignment]
    items = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    return f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{items}" \
           "</body></html>".encode()


def _gzip_bomb() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    data = packer.compress(b"<html><body>" + b"A" * 50_000_000)
    return data + packer.flush()


def _routes() -> dict[str, Route]:
    """Path -> misbehaviour. Each HTML misbehaviour that still carries a body links to one
    well-behaved page, so the test sees whether links of damaged pages are still followed."""
    html = b"text/html"
    good_link = _page("damaged but readable", [GOOD[7]])
    many_links = "".join(f'<a href="/many/{n}">{n}</a>' for n in range(200_000)).encode()
    digits = ("<table>" + "<tr><td>" + " ".join(str(n) for n in range(60_000))
              + "</td></tr></table>").encode()
    routes: dict[str, Route] = {
        # -- status lines and heads --------------------------------------------------------
        "/head/no-colon": send(b"HTTP/1.1 200 OK\r\nThis header has no colon\r\n"
                               b"Content-Length: 2\r\n\r\nok"),
        "/head/two-lengths": send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                  b"Content-Length: 5\r\n\r\nhello"),
        "/head/two-types": send(response(200, good_link, (b"Content-Type", b"image/png"))),
        "/head/nul-in-value": send(b"HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\n"
                                   b"Content-Length: 2\r\n\r\nok"),
        "/head/huge-header": send(response(200, b"ok", (b"X-Huge", b"x" * 200_000))),
        "/head/many-headers": send(response(200, b"ok", *((f"X-H{n}".encode(), b"v")
                                                           for n in range(20_000)))),
        "/head/garbage-status": send(b"HTTP/1.1 abc Whatever\r\nContent-Length: 2\r\n\r\nok"),
        "/head/status-999": send(response(999, b"odd")),
        "/head/http09": send(b"<html><body>no status line at all</body></html>"),
        "/head/binary-garbage": send(bytes(range(256)) * 40),
        "/head/obs-fold": send(b"HTTP/1.1 200 OK\r\nX-Folded: one\r\n two\r\n"
                               b"Content-Length: 2\r\n\r\nok"),
        "/head/latin1-values": send(response(200, good_link, (b"X-Name", "Ива\xffн".encode(
            "latin-1", "replace")))),
        "/head/unsolicited-100": send(b"HTTP/1.1 100 Continue\r\n\r\n" + response(200, b"ok")),
        "/head/http10-no-length": send(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n"
                                       + good_link),
        # -- framing -------------------------------------------------------------------------
        "/frame/length-too-long": send(response(200, b"short")[:-5].replace(
            b"Content-Length: 5", b"Content-Length: 500") + b"short"),
        "/frame/length-too-short": send(response(200, b"0123456789").replace(
            b"Content-Length: 10", b"Content-Length: 3")),
        "/frame/bad-chunk-size": send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                      b"zz\r\nhello\r\n0\r\n\r\n"),
        "/frame/chunked-cut": send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"5\r\nhello\r\n"),
        "/frame/chunked-and-length": send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                          b"Content-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "/frame/te-gzip-chunked": send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked"
                                       b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        # -- content codings -----------------------------------------------------------------
        "/coding/gzip-lie": send(response(200, good_link, (b"Content-Encoding", b"gzip"))),
        "/coding/double-gzip": send(response(200, gzip.compress(gzip.compress(good_link)),
                                             (b"Content-Encoding", b"gzip, gzip"))),
        "/coding/brotli-unasked": send(response(200, b"\x1b\x03\x00\xf8\xa5",
                                                (b"Content-Encoding", b"br"))),
        "/coding/gzip-bomb": send(response(200, _gzip_bomb(), (b"Content-Encoding", b"gzip"))),
        "/coding/deflate-raw": send(response(200, zlib.compress(good_link)[2:-4],
                                             (b"Content-Encoding", b"deflate"))),
        "/coding/png-as-html": send(response(200, b"\x89PNG\r\n\x1a\n" + bytes(2000),
                                             content_type=html)),
        "/coding/bad-utf8": send(response(200, b"<html><body>\xff\xfe\xc3(" + good_link)),
        "/coding/unknown-charset": send(response(200, good_link,
                                                 content_type=b"text/html; charset=x-klingon")),
        # -- time ----------------------------------------------------------------------------
        "/time/never-answers": stall(60),
        "/time/stall-after-head": stall(60, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
        "/time/drip": drip(response(200, b"x" * 100), 0.03),
        # -- connections ---------------------------------------------------------------------
        "/conn/reset-at-once": reset(),
        "/conn/reset-after-head": reset(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nab"),
        "/conn/close-silently": send(b""),
        # -- size ----------------------------------------------------------------------------
        "/size/huge-body": send(response(200, b"x" * 3_000_000, content_type=b"text/plain")),
        "/size/many-links": send(response(200, b"<html><body>" + many_links + b"</body>")),
        "/size/digit-runs": send(response(200, b"<html><body>" + digits + b"</body>")),
        # -- redirects -----------------------------------------------------------------------
        "/redirect/loop-a": send(response(302, b"", (b"Location", b"/redirect/loop-b"))),
        "/redirect/loop-b": send(response(302, b"", (b"Location", b"/redirect/loop-a"))),
        "/redirect/self": send(response(301, b"", (b"Location", b"/redirect/self"))),
        "/redirect/javascript": send(response(302, b"", (b"Location", b"javascript:alert(1)"))),
        "/redirect/tab": send(response(302, b"", (b"Location", b"/good/\t1.html"))),
        "/redirect/control": send(response(302, b"", (b"Location", b"/good/\x01x.html"))),
        "/redirect/empty": send(response(302, b"", (b"Location", b""))),
        "/redirect/none": send(response(302, b"")),
        "/redirect/two-locations": send(response(302, b"", (b"Location", GOOD[0].encode()),
                                                 (b"Location", b"/elsewhere"))),
        "/redirect/non-ascii": send(response(301, b"", (b"Location",
                                                        "/good/поиск имени.html".encode()))),
        # -- cookies -------------------------------------------------------------------------
        "/cookie/cyrillic": send(response(200, good_link,
                                          (b"Set-Cookie", "name=Иван; Path=/".encode()))),
        "/cookie/huge": send(response(200, good_link, (b"Set-Cookie",
                                                       b"big=" + b"z" * 100_000))),
        "/cookie/many": send(response(200, good_link, *((b"Set-Cookie", f"c{n}=v".encode())
                                                        for n in range(2000)))),
        # -- links ---------------------------------------------------------------------------
        "/links/hostile": send(response(200, (
            '<html><head><base href="http://elsewhere.invalid/"></head><body>'
            '<a href="javascript:alert(1)">js</a><a href="data:text/html,x">d</a>'
            '<a href="mailto:a@b">m</a><a href="http://[::bad">v6</a><a href="%zz">esc</a>'
            f'<a href="/{"a" * 5000}">long</a><a href="/good/1.html#frag">ok</a>'
            "</body></html>").encode())),
        # -- throttling ----------------------------------------------------------------------
        "/throttle/503-forever": send(response(503, b"busy", (b"Retry-After", b"999999"))),
        "/throttle/429-date": send(response(429, b"slow down", (
            b"Retry-After", b"Fri, 31 Dec 2100 23:59:59 GMT"))),
    }
    routes["/robots.txt"] = send(response(200, bytes(range(256)) * 4,
                                          content_type=b"text/plain"))
    for path in GOOD:
        routes[path] = send(response(200, _page(path)))
    routes["/good/%D0%BF%D0%BE%D0%B8%D1%81%D0%BA%20%D0%B8%D0%BC%D0%B5%D0%BD%D0%B8.html"] = \
        send(response(200, _page("non-ascii redirect target")))
    home = [p for p in routes if p not in ("/robots.txt", GOOD[7])
            and not p.startswith("/good/%")]
    routes["/"] = send(response(200, _page("home", home)))
    return routes


@dataclass
class Result:
    server: HostileServer
    out: Path
    summary: dict[str, object]
    seconds: float
    rows: dict[str, list[sqlite3.Row]]


@pytest.fixture(scope="module")
def hostile_crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Result]:
    out = tmp_path_factory.mktemp("hostile")
    with HostileServer(_routes()) as server:
        started = time.monotonic()
        result = CliRunner().invoke(cli, [
            "archive", server.url, "--target", "h", "--output", str(out), "--scope", "host",
            "--delay", "0", "--per-host", "4", "--timeout", "2", "--retries", "1",
            "--max-body", "1M", "--parse-workers", "1", "--recheck", "0", "--json",
            "--exclude", "/many/"])  # the 200,000 links are extracted (and capped), not fetched
        seconds = time.monotonic() - started
        assert result.exit_code in (0, 6, 8), result.output
        summary = json.loads(result.stdout)
        db = sqlite3.connect(out / "catalog.sqlite3")
        db.row_factory = sqlite3.Row
        rows: dict[str, list[sqlite3.Row]] = {}
        for row in db.execute("SELECT * FROM captures ORDER BY id"):
            rows.setdefault(row["url"].removeprefix(server.url[:-1]), []).append(row)
        db.close()
        yield Result(server, out, summary, seconds, rows)


def test_the_crawl_ends_in_bounded_time(hostile_crawl: Result) -> None:
    # 60 s stalls, a 999999 s Retry-After and a 2100 Retry-After did not hold it up
    assert hostile_crawl.seconds < 60, hostile_crawl.seconds


def test_the_summary_says_what_was_lost(hostile_crawl: Result) -> None:
    summary = hostile_crawl.summary
    assert summary["status"] == "incomplete" and summary["exit_code"] == 8
    shortfall = summary["shortfall"]
    assert set(shortfall) <= {"errors", "truncated", "parse-cap", "trap"}, shortfall
    assert shortfall["errors"] >= 5 and shortfall["truncated"] >= 2  # type: ignore[index]
    assert shortfall["parse-cap"] >= 2  # type: ignore[index]  # 200,000 links; the bomb


def test_every_misbehaviour_is_recorded(hostile_crawl: Result) -> None:
    missing = [path for path in _routes() if path != "/" and not path.startswith("/good/%")
               and path not in hostile_crawl.rows]
    assert not missing, missing
    for path, rows in hostile_crawl.rows.items():
        final = [r for r in rows if r["final"]]
        assert final, path
        row = final[-1]
        # either a response as received, or a failure saying what happened
        assert row["status"] is not None or row["failure"], (path, dict(row))


def test_well_behaved_pages_are_all_captured(hostile_crawl: Result) -> None:
    for path in GOOD:
        rows = [r for r in hostile_crawl.rows.get(path, []) if r["final"]]
        assert rows and rows[-1]["status"] == 200, path


def test_responses_with_odd_heads_are_kept_as_received(hostile_crawl: Result) -> None:
    """The redirect records themselves are kept, whatever their Location holds."""
    for path in ("/redirect/javascript", "/redirect/tab", "/redirect/control",
                 "/redirect/empty", "/redirect/none", "/redirect/two-locations"):
        rows = [r for r in hostile_crawl.rows[path] if r["final"]]
        assert rows[-1]["status"] == 302 or rows[-1]["status"] == 301, (path, dict(rows[-1]))
        assert rows[-1]["record_type"] == "response", path
