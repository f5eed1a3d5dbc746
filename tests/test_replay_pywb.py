"""Replay a crawl through a real pywb (in its own virtual environment) using our own CDXJ."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Pywb, start_pywb

from crawler.crawl.engine import CrawlOutcome
from crawler.demo.sample_site import SampleSite

pytestmark = pytest.mark.pywb


@pytest.fixture(scope="module")
def pywb(full_crawl: tuple[SampleSite, CrawlOutcome],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pywb]:
    _, outcome = full_crawl
    server, proc = start_pywb(tmp_path_factory.mktemp("pywb"), list(outcome.warcs),
                              [outcome.index])
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _timestamps(index: Path) -> dict[str, str]:
    """Return url -> 14-digit timestamp from our CDXJ."""
    found = {}
    for line in index.read_text("utf-8").splitlines():
        _, ts, data = line.split(" ", 2)
        found[json.loads(data)["url"]] = ts
    return found


def test_every_page_and_image_replays_raw_and_rewritten(
        full_crawl: tuple[SampleSite, CrawlOutcome], pywb: Pywb) -> None:
    site, outcome = full_crawl
    stamps = _timestamps(outcome.index)
    paths = site.content.page_paths() + site.content.image_paths()
    for path in paths:
        url = site.url.rstrip("/") + path
        ts = stamps[url]
        expected = site.content.respond(path).body
        raw = pywb.get(ts, url, raw=True)
        assert raw.status_code == 200, f"{path}: {raw.status_code}"
        assert raw.content == expected, f"raw bytes differ for {path}"
        is_image = path.endswith((".png", ".ico"))
        rewritten = pywb.get(ts, url, raw=False, mode="im_" if is_image else "mp_")
        assert rewritten.status_code == 200, f"{path}: {rewritten.status_code}"
        assert "Memento-Datetime" in rewritten.headers
        if is_image:
            assert rewritten.content == expected
        else:  # rewritten HTML: links now point into the archive
            assert f"/coll/{ts}".encode() in rewritten.content
        framed = pywb.get(ts, url, raw=False, mode="")  # what a browser opens first
        assert framed.status_code == 200
    # Page requisites from the other host replay too.
    banner = site.cdn_url + "lib/banner.png"
    assert pywb.get(stamps[banner], banner, raw=True).status_code == 200


def test_special_responses_replay(full_crawl: tuple[SampleSite, CrawlOutcome],
                                  pywb: Pywb) -> None:
    site, outcome = full_crawl
    stamps = _timestamps(outcome.index)
    # A redirect replays as a redirect.
    url = site.url + "old-address.html"
    hop = pywb.get(stamps[url], url, raw=True, follow=False)
    assert hop.status_code == 301
    assert hop.headers["location"].endswith("/about.html")
    # A 404 replays as the 404 the server sent.
    url = site.url + "missing.html"
    assert pywb.get(stamps[url], url, raw=True).status_code == 404
    # The gzip page is served with its encoding and decodes to the original.
    url = site.url + "gzip.html"
    got = pywb.get(stamps[url], url, raw=True)
    assert got.content == site.content.respond("/gzip.html").body
    # The windows-1251 page keeps its bytes.
    url = site.url + "cp1251.html"
    assert pywb.get(stamps[url], url, raw=True).content == site.content.respond(
        "/cp1251.html").body
    # The rewritten HTML page shows the archived text.
    url = site.url + "persons/1.html"
    page = pywb.get(stamps[url], url, raw=False)
    assert "Иванов Иван Петрович" in page.text
