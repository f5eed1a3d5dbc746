"""Crawls finish what they start, and say exactly what they did not fetch and why.

Each failure the issue names is reproduced with a real server on 127.0.0.1: pagination and
id pages past the old 100-variants trap, an endless calendar, robots.txt that errs once or
always, a host that never answers, time-boxed runs that must converge, a site that archives
nothing, and case-distinct URLs.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import fast_settings
from hostile import HostileServer, Route, response, send, stall

from crawler.capture.fetcher import FetchSettings
from crawler.capture.settings import DetectSettings, Politeness
from crawler.commands.cli import cli
from crawler.core.errors import ExitCode
from crawler.jobs.pipeline import run_target


def _page(title: str, links: list[str] | tuple[str, ...] = ()) -> bytes:
    items = "".join(f'<li><a href="{link}">{link}</a></li>' for link in links)
    return (f"<html><head><title>{title}</title></head><body><h1>{title}</h1><ul>{items}</ul>"
            "</body></html>").encode()


def _html(title: str, links: list[str] | tuple[str, ...] = ()) -> Route:
    return send(response(200, _page(title, links)))


def _crawl(server: HostileServer, out: Path, *args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(cli, [
        "archive", server.url, "--target", "t", "--output", str(out), "--scope", "host",
        "--delay", "0", "--per-host", "4", "--parse-workers", "0", "--no-sitemaps",
        "--recheck", "0", "--json", *args])
    assert result.exit_code != ExitCode.INTERNAL, result.output
    return result.exit_code, json.loads(result.stdout)


def _rows(out: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    db = sqlite3.connect(out / "catalog.sqlite3")
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def _fetched(out: Path) -> set[str]:
    """Return the paths of every URL captured with an HTTP response, over all crawls."""
    return {str(u).split("/", 3)[3] for (u,) in _rows(
        out, "SELECT DISTINCT url FROM captures WHERE status IS NOT NULL")}


# -- pagination, ids and traps ---------------------------------------------------------------

def _listing_site() -> dict[str, Route]:
    """Letters with 164 listing pages each (?page=N), person pages by ?id=, records with
    alphanumeric ids, and a listing of case numbers only: 300+ query variants of single
    paths and hundreds of look-alike pages, none of them a trap."""
    routes: dict[str, Route] = {}
    letters = ["А", "Б"]
    for n, letter in enumerate(letters):
        for page in range(1, 165):
            nxt = [f"/list?letter={n}&page={page + 1}"] if page < 164 else []
            people = [f"/person?id={n * 1000 + page}"]
            routes[f"/list?letter={n}&page={page}"] = _html(f"{letter}, page {page}",
                                                            nxt + people)
            routes[f"/person?id={n * 1000 + page}"] = _html(f"Person {letter}{page}")
    for page in range(1, 80):  # only numbers on these pages, and not those of the URL
        cases = " ".join(f"Дело № {page * 1000 + k}" for k in range(5))
        nxt = [f"/cases?page={page + 1}"] if page < 79 else []
        routes[f"/cases?page={page}"] = send(response(200, _page(cases, nxt)))
    codes = [f"Ab{n}x{n * 7}" for n in range(120)]
    for code in codes:
        routes[f"/doc?code={code}"] = _html(f"Document {code}")
    routes["/"] = _html("home", ["/list?letter=0&page=1", "/list?letter=1&page=1",
                                 "/cases?page=1", *(f"/doc?code={c}" for c in codes)])
    return routes


def test_pagination_and_id_pages_are_never_traps(tmp_path: Path) -> None:
    routes = _listing_site()
    with HostileServer(routes) as server:
        code, summary = _crawl(server, tmp_path)
    assert code == ExitCode.OK, summary
    assert summary["status"] == "complete" and summary["shortfall"] == {}
    expected = {p.lstrip("/") for p in routes if p != "/"}
    missing = expected - _fetched(tmp_path)
    assert not missing, sorted(missing)[:10]


def _calendar(month: str) -> Route:
    year, mon = (int(x) for x in month.split("-"))
    prev = f"{year - 1}-12" if mon == 1 else f"{year}-{mon - 1:02d}"
    return send(response(200, f"<html><body><h1>Events of {month}</h1><p>No events.</p>"
                              f'<a href="/calendar?month={prev}">earlier</a></body></html>'
                         .encode()))


class _Calendar(dict[str, Route]):
    """Every month answers, back to the year 1: an endless calendar."""

    def get(self, path: str, default: Route | None = None) -> Route | None:  # type: ignore[override]
        if path.startswith("/calendar?month="):
            return _calendar(path.split("=", 1)[1])
        return super().get(path, default)


def test_an_endless_calendar_is_a_trap_and_is_reported(tmp_path: Path) -> None:
    routes = _Calendar({"/": _html("home", ["/calendar?month=2026-11", "/about"]),
                        "/about": _html("about")})
    with HostileServer(routes) as server:
        started = time.monotonic()
        code, summary = _crawl(server, tmp_path)
    assert time.monotonic() - started < 60
    assert code == ExitCode.INCOMPLETE
    assert summary["status"] == "incomplete"
    assert summary["shortfall"] == {"trap": 1}
    (trapped,) = _rows(tmp_path, "SELECT url, detail FROM captures WHERE failure='trap'")
    assert "calendar?month=" in str(trapped[0]) and trapped[1] == "trap:same-content"
    months = [p for p in _fetched(tmp_path) if p.startswith("calendar")]
    assert 20 <= len(months) <= 30, len(months)  # the rule needs 20 look-alike pages
    listed = CliRunner().invoke(cli, ["list", "t", "--output", str(tmp_path), "--failure",
                                      "trap"])
    assert "calendar?month=" in listed.stdout


# -- robots.txt ----------------------------------------------------------------------------------

def _flaky_robots(errors: int) -> Route:
    """robots.txt that answers 503 ``errors`` times, then a real file."""
    count = {"n": 0}

    async def route(writer: asyncio.StreamWriter, request: bytes) -> None:
        count["n"] += 1
        if count["n"] <= errors:
            writer.write(response(503, b"busy"))
        else:
            writer.write(response(200, b"User-agent: *\nDisallow: /private/\n",
                                  content_type=b"text/plain"))
        await writer.drain()
    return route


def test_robots_server_error_is_asked_again_before_it_counts(tmp_path: Path) -> None:
    routes = {"/robots.txt": _flaky_robots(2), "/": _html("home", ["/a", "/private/x"]),
              "/a": _html("a"), "/private/x": _html("secret")}
    with HostileServer(routes) as server:
        code, summary = _crawl(server, tmp_path, "--retries", "2")
    assert server.hits["/robots.txt"] == 3
    assert code == ExitCode.OK, summary
    assert "a" in _fetched(tmp_path) and "private/x" not in _fetched(tmp_path)


def test_robots_that_always_errs_is_a_reported_shortfall(tmp_path: Path) -> None:
    routes = {"/robots.txt": _flaky_robots(1000), "/": _html("home", ["/a"]), "/a": _html("a")}
    with HostileServer(routes) as server:
        code, summary = _crawl(server, tmp_path, "--retries", "1")
    assert code == ExitCode.CRAWL_FAILED  # not one page could be archived: said plainly
    assert summary["status"] == "failed"
    rows = _rows(tmp_path, "SELECT failure, detail FROM captures WHERE failure IS NOT NULL "
                 "AND kind != 'robots'")
    assert rows and all(f == "robots-unreachable" and "503" in str(d) for f, d in rows)
    assert summary["shortfall"] == {"robots-unreachable": 1}


# -- a host that never answers ---------------------------------------------------------------

def test_a_host_that_never_answers_is_given_up_in_bounded_time(tmp_path: Path) -> None:
    hung = [f"/hung/{n}" for n in range(40)]
    routes: dict[str, Route] = {path: stall(60) for path in hung}
    routes["/"] = _html("home", hung)
    with HostileServer(routes) as server:
        settings = fast_settings(server.url, tmp_path, sitemaps=False,
                                 detect=DetectSettings(recheck_probes=0),
                                 fetch=FetchSettings(read_timeout=0.5, connect_timeout=0.5,
                                                     total_timeout=2),
                                 politeness=Politeness(concurrency=4, per_host=4, delay=0.0,
                                                       retries=1, backoff=0.1, hang_limit=4,
                                                       hang_pause=0.5, hang_trips=3))
        started = time.monotonic()
        run = asyncio.run(run_target(settings))
        elapsed = time.monotonic() - started
    assert elapsed < 30, elapsed  # 40 URLs x 2 attempts x 0.5 s would be 40 s at the least
    assert run.outcome.status == "incomplete"
    hung_rows = _rows(tmp_path, "SELECT count(*) FROM captures WHERE failure='host-hung'")
    assert hung_rows[0][0] >= 20
    assert run.outcome.shortfall.get("host-hung") == hung_rows[0][0]
    assert run.outcome.shortfall.get("errors", 0) + hung_rows[0][0] == 40


def test_one_retry_after_does_not_freeze_a_host(tmp_path: Path) -> None:
    routes = {"/": _html("home", ["/busy", "/a", "/b"]), "/a": _html("a"), "/b": _html("b"),
              "/busy": send(response(503, b"busy", (b"Retry-After", b"86400")))}
    with HostileServer(routes) as server:
        started = time.monotonic()
        code, _ = _crawl(server, tmp_path)
    assert time.monotonic() - started < 20
    assert {"a", "b"} <= _fetched(tmp_path)
    (row,) = _rows(tmp_path, "SELECT status, final FROM captures WHERE url LIKE '%/busy'")
    assert row == (503, 1)  # recorded as it was, final: not retried a day later
    assert code == ExitCode.OK


# -- time-boxed runs converge -------------------------------------------------------------------

def _tree_site(pages: int) -> dict[str, Route]:
    """A site where each page links to the next few: reachable only page by page."""
    routes = {f"/p/{n}": _html(f"page {n}", [f"/p/{n + k}" for k in (1, 2) if n + k < pages])
              for n in range(pages)}
    routes["/"] = _html("home", ["/p/0"])
    return routes


def test_limited_runs_continue_where_the_last_stopped_and_converge(tmp_path: Path) -> None:
    routes = _tree_site(120)
    statuses = []
    with HostileServer(routes) as server:
        for _ in range(8):
            code, summary = _crawl(server, tmp_path, "--max-pages", "40")
            statuses.append(summary["status"])
            if summary["status"] == "complete":
                break
            assert code == ExitCode.INCOMPLETE
            assert summary["shortfall"].get("limit", 0) > 0  # type: ignore[union-attr]
    assert statuses[-1] == "complete", statuses
    assert {p.lstrip("/") for p in routes if p != "/"} <= _fetched(tmp_path)
    assert len(statuses) <= 6, statuses  # each run adds new pages: no run starts over


def test_a_crawl_stopped_by_max_time_is_incomplete_and_continued(tmp_path: Path) -> None:
    routes = _tree_site(60)
    slow = {path: _slow(route) for path, route in routes.items()}
    with HostileServer(slow) as server:
        code, summary = _crawl(server, tmp_path, "--max-time", "2", "--per-host", "1")
        assert code == ExitCode.INCOMPLETE and summary["stop_reason"] == "max-time"
        left = summary["shortfall"]["limit"]  # type: ignore[index]
        assert left > 0
        first = _fetched(tmp_path)
        code, summary = _crawl(server, tmp_path, "--max-time", "2", "--per-host", "1")
    assert summary["stats"]["continued"] >= 1  # type: ignore[index]
    assert len(_fetched(tmp_path)) > len(first)  # progress past the first box


def _slow(route: Route) -> Route:
    async def slowed(writer: asyncio.StreamWriter, request: bytes) -> None:
        await asyncio.sleep(0.1)
        await route(writer, request)
    return slowed


# -- truthful ends ---------------------------------------------------------------------------------

def test_a_site_that_archives_nothing_says_so(tmp_path: Path) -> None:
    routes = {"/": send(response(403, b"<p>Access denied</p>"))}
    with HostileServer(routes) as server:
        code, summary = _crawl(server, tmp_path)
    assert code == ExitCode.CRAWL_FAILED
    assert summary["status"] == "failed"
    result = CliRunner().invoke(cli, ["status", "--output", str(tmp_path)])
    assert "failed" in result.stdout and "exit 4" in result.stdout


def test_status_shows_the_exit_code_the_run_really_had(tmp_path: Path) -> None:
    routes = {"/": _html("home", ["/a"]), "/a": _html("a")}
    with HostileServer(routes) as server:
        _crawl(server, tmp_path)
        server.routes["/a"] = send(response(404, b"gone"))
        code, _ = _crawl(server, tmp_path, "--recheck", "1", "--recheck-spacing", "0.1")
    assert code == ExitCode.TAKEDOWN
    status = json.loads(CliRunner().invoke(cli, ["status", "--output", str(tmp_path),
                                                 "--json"]).stdout)
    assert [c["exit_code"] for c in status["t"]] == [0, int(ExitCode.TAKEDOWN)]


# -- URL identity keeps case ------------------------------------------------------------------

def test_urls_that_differ_in_case_are_different_urls(tmp_path: Path) -> None:
    routes = {"/doc?id=Ab3": _html("first document"), "/doc?id=aB3": _html("second document"),
              "/wiki/Memorial": _html("the article"), "/wiki/MEMORIAL": _html("the acronym"),
              "/": _html("home", ["/doc?id=Ab3", "/doc?id=aB3", "/wiki/Memorial",
                                  "/wiki/MEMORIAL", "/wiki/Memorial"])}
    with HostileServer(routes) as server:
        code, _ = _crawl(server, tmp_path)
        assert code == ExitCode.OK
        assert all(server.hits[p] == 1 for p in routes), dict(server.hits)
    keys = _rows(tmp_path, "SELECT key, surt FROM captures WHERE url LIKE '%doc%' "
                 "OR url LIKE '%wiki%'")
    assert len({k for k, _ in keys}) == 4  # four URLs to the crawler...
    assert len({s for _, s in keys}) == 2  # ...two SURTs to pywb's index (it folds case)


# -- per-page steps never hold the crawl ------------------------------------------------------

def test_one_raw_non_ascii_cookie_does_not_break_the_host(tmp_path: Path) -> None:
    """The seed sets a cookie with raw UTF-8 bytes; every page after it is still fetched."""
    pages = [f"/after/{n}" for n in range(6)]
    routes: dict[str, Route] = {p: _html(p) for p in pages}
    routes["/"] = send(response(200, _page("home", pages),
                                (b"Set-Cookie", "имя=Иван; Path=/".encode()),
                                (b"Set-Cookie", b"session=abc123; Path=/")))
    with HostileServer(routes) as server:
        code, _ = _crawl(server, tmp_path)
        assert code == ExitCode.OK
        cookies = [r for r in server.requests if r[0].startswith("/after/")]
    assert {p.lstrip("/") for p in pages} <= _fetched(tmp_path)
    # the well-formed cookie is sent back, the raw one is not (and broke nothing)
    assert all(b"session=abc123" in head and "Иван".encode() not in head
               for _, head in cookies)


def test_a_parse_that_takes_too_long_costs_its_links_not_the_crawl(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every parse here outlasts the (shortened) limit: each page's links are given up and
    recorded, the parser process is replaced, and the crawl ends on its own."""
    from crawler.crawl import engine

    monkeypatch.setattr(engine, "PARSE_TIMEOUT", 0.0001)
    routes = {"/": _html("home", ["/a", "/b"]), "/a": _html("a"), "/b": _html("b")}
    with HostileServer(routes) as server:
        settings = fast_settings(server.url, tmp_path, sitemaps=False, extract_workers=1,
                                 detect=DetectSettings(recheck_probes=0))
        run = asyncio.run(run_target(settings))
    assert run.outcome.status == "incomplete"
    assert run.outcome.shortfall == {"parse-cap": 1}  # the home page: its links were lost
    assert run.outcome.stats["capped"] == {"parse-time": 1}
