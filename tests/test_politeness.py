"""Adaptive politeness: a host's delay follows its answers, within bounds (AutoThrottle)."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import fast_settings
from test_frontier import new_catalog

from crawler.archive.frontier import Adaptive, Frontier
from crawler.capture.settings import Politeness
from crawler.commands.cli import cli
from crawler.crawl.engine import run_crawl

HOST = "h.example"


def adaptive(delay: float = 1.0, per_host: int = 2, low: float = 0.1,
             high: float = 30.0) -> Frontier:
    catalog, pk = new_catalog()
    return Frontier(catalog.db, pk, per_host=per_host, delay=delay,
                    adaptive=Adaptive(min_delay=low, max_delay=high))


def test_quick_full_answers_lower_the_delay_to_the_minimum() -> None:
    f = adaptive(delay=1.0)
    f.observe(HOST, 0.02, trouble=False, may_lower=True)
    assert f.host_delay(HOST) == pytest.approx(0.505)  # halfway toward 0.02 / 2 per host
    for _ in range(20):
        f.observe(HOST, 0.02, trouble=False, may_lower=True)
    assert f.host_delay(HOST) == 0.1  # not below --min-delay


def test_a_slow_answer_raises_the_delay_at_once() -> None:
    f = adaptive(delay=0.5, per_host=2)
    f.observe(HOST, 4.0, trouble=False, may_lower=True)
    assert f.host_delay(HOST) == 2.0  # response time / requests in flight


def test_trouble_doubles_the_delay_up_to_the_maximum() -> None:
    f = adaptive(delay=0.5, high=3.0)
    delays = []
    for _ in range(4):
        f.observe(HOST, 0.01, trouble=True, may_lower=False)
        delays.append(f.host_delay(HOST))
    assert delays == [1.0, 2.0, 3.0, 3.0]


def test_quick_error_pages_and_redirects_do_not_lower_it() -> None:
    f = adaptive(delay=1.0)
    for _ in range(5):
        f.observe(HOST, 0.001, trouble=False, may_lower=False)  # a 404, a 301
    assert f.host_delay(HOST) == 1.0
    f.observe(HOST, 3.0, trouble=False, may_lower=False)  # but a slow one still raises it
    assert f.host_delay(HOST) == 1.5


def test_robots_crawl_delay_stays_a_floor() -> None:
    f = adaptive(delay=0.5, high=2.0)
    f.set_host_delay(HOST, 5.0)
    for _ in range(10):
        f.observe(HOST, 0.001, trouble=False, may_lower=True)
    assert f.host_delay(HOST) == 5.0  # above --max-delay: the site asked for it


def test_without_the_option_the_delay_is_fixed() -> None:
    catalog, pk = new_catalog()
    f = Frontier(catalog.db, pk, per_host=2, delay=0.5)
    f.observe(HOST, 10.0, trouble=True, may_lower=False)
    f.observe(HOST, 0.001, trouble=False, may_lower=True)
    assert f.host_delay(HOST) == 0.5


class _Timed(BaseHTTPRequestHandler):
    """Pages 0..14 linked in a chain; records when each request started."""

    starts: list[float]

    def do_GET(self) -> None:
        if not self.path.strip("/").isdigit() and self.path != "/":
            self.send_error(404)  # robots.txt, favicon
            return
        type(self).starts.append(time.monotonic())
        n = int(self.path.strip("/") or 0)
        link = f'<a href="/{n + 1}">next</a>' if n < 14 else ""
        body = f"<html><body><p>page {n}</p>{link}</body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def timed_site() -> Iterator[tuple[str, list[float]]]:
    starts: list[float] = []
    handler = type("Handler", (_Timed,), {"starts": starts})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", starts
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("adapt", [False, True])
def test_a_quick_server_is_crawled_at_its_pace_only_when_asked(
        timed_site: tuple[str, list[float]], tmp_path: Path, adapt: bool) -> None:
    url, starts = timed_site
    settings = fast_settings(url, tmp_path, sitemaps=False, politeness=Politeness(
        concurrency=1, per_host=1, delay=0.4, adaptive=adapt, min_delay=0.05))
    outcome = asyncio.run(run_crawl(settings))
    assert outcome.stats["pages"] == 15
    pages = starts
    assert len(pages) == 15
    gaps = [b - a for a, b in itertools.pairwise(pages)]
    # Gaps are measured where requests arrive, so one request sent late makes the next gap
    # short: medians, not single gaps.
    if adapt:
        assert statistics.median(gaps[-6:]) < 0.2, gaps  # fallen from 0.4 toward 0.05
    else:
        assert statistics.median(gaps) >= 0.39, gaps  # starts kept 0.4 s apart
        assert min(gaps) >= 0.3, gaps


def test_min_delay_above_max_delay_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["archive", "http://127.0.0.1:9/", "--output",
                                      str(tmp_path), "--min-delay", "5", "--max-delay", "1"])
    assert result.exit_code == 2
    assert "--min-delay" in result.output and "above --max-delay" in result.output
    assert not (tmp_path / "catalog.sqlite3").exists()
