"""Misbehaving servers and garbage links: each is recorded as what it was; nothing crashes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from conftest import crawl, fast_settings, read_records, responses

from crawler.capture.fetcher import FetchSettings
from crawler.core.errors import ExitCode
from crawler.crawl.engine import CrawlOutcome
from crawler.demo.sample_site import SampleSite


@pytest.fixture(scope="module")
def bad_crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SampleSite,
                                                                         CrawlOutcome]]:
    with SampleSite(bad=True, persons=3, stall_seconds=3.0) as site:
        settings = fast_settings(site.url, tmp_path_factory.mktemp("bad"), sitemaps=False,
                                 fetch=FetchSettings(read_timeout=1.0, total_timeout=10.0))
        settings = replace(settings, politeness=replace(settings.politeness, retries=1,
                                                        backoff=0.1))
        yield site, crawl(settings)


def _final(outcome: CrawlOutcome, url: str) -> list:  # type: ignore[type-arg]
    """Return all records (any type) about ``url``, in WARC order."""
    return [r for r in read_records(outcome.warcs) if r.uri == url and r.type != "request"]


def test_crawl_survives_and_warcs_are_valid(bad_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = bad_crawl
    # It survived, and says what the misbehaving pages cost it.
    assert outcome.exit_code is ExitCode.INCOMPLETE
    assert set(outcome.shortfall) <= {"errors", "parse-cap", "trap", "truncated"}
    assert outcome.shortfall["errors"] >= 1 and outcome.shortfall["parse-cap"] == 1  # the bomb
    assert outcome.stats["statuses"].get("internal-error", 0) == 0
    read_records(outcome.warcs)  # every digest verifies
    got = responses(read_records(outcome.warcs))
    assert site.url + "articles/1.html" in got  # linked from the malformed page


def test_truncated_body_is_marked(bad_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = bad_crawl
    recs = [r for r in _final(outcome, site.url + "bad/truncated.html") if r.type == "response"]
    assert recs, "truncated response not recorded"
    for rec in recs:  # first attempt and its retry: both evidence
        assert rec.warc["WARC-Truncated"] == "disconnect"
        assert rec.body == b"<html><body>only part of the"
        assert rec.header("Content-Length") == str(len(rec.body))  # truthful
        assert rec.header("X-Orig-Content-Length") == str(len(rec.body) + 5000)


def test_stalled_body_is_marked_time(bad_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = bad_crawl
    recs = [r for r in _final(outcome, site.url + "bad/stall.html") if r.type == "response"]
    assert recs and all(r.warc["WARC-Truncated"] == "time" for r in recs)
    assert recs[0].body == b"<html><body>the server stops here"


def test_gzip_bomb_is_stored_and_extraction_capped(
        bad_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = bad_crawl
    rec = responses(read_records(outcome.warcs))[site.url + "bad/bomb.html"][0]
    assert rec.header("Content-Encoding") == "gzip"
    assert len(rec.body) < 1_000_000  # stored compressed, as sent


def test_endless_redirects_stop(bad_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = bad_crawl
    loops = [r for r in site.requests if r.startswith("/bad/loop")]
    assert 1 <= len(loops) <= 11
    assert outcome.stats["traps"].get("trap:redirect-chain") == 1
    assert site.requests.count("/bad/self-redirect") == 1


def test_non_http_garbage_and_reset_are_recorded_as_failures(
        bad_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = bad_crawl
    garbage = _final(outcome, site.url + "bad/garbage")
    assert garbage and all(r.type == "metadata" for r in garbage)
    assert b"fetch-failure: protocol" in garbage[-1].body
    reset = _final(outcome, site.url + "bad/reset")
    assert reset and all(r.type == "metadata" for r in reset)
    assert b"fetch-failure: reset" in reset[-1].body
    assert len(reset) == 2  # first attempt and one retry, each recorded


def test_flaky_503_is_retried_and_index_points_at_success(
        bad_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = bad_crawl
    url = site.url + "bad/flaky.html"
    recs = [r for r in _final(outcome, url) if r.type == "response"]
    assert [r.status for r in recs] == [503, 200]  # the 503 is kept as evidence
    index = [line for line in outcome.index.read_text("utf-8").splitlines()
             if f'"url": "{url}"' in line]
    assert len(index) == 1 and '"status": "200"' in index[0]


def test_wrong_charset_page_is_stored_unchanged(
        bad_crawl: tuple[SampleSite, CrawlOutcome]) -> None:
    site, outcome = bad_crawl
    rec = responses(read_records(outcome.warcs))[site.url + "bad/wrong-charset.html"][0]
    assert rec.body == "<html><body>Неправильная кодировка</body></html>".encode("cp1251")


def test_size_cap_truncates_with_length(site: SampleSite, tmp_path) -> None:  # type: ignore[no-untyped-def]
    outcome = crawl(fast_settings(site.url + "docs/report.pdf", tmp_path, sitemaps=False,
                                  fetch=FetchSettings(max_body_bytes=50)))
    rec = responses(read_records(outcome.warcs))[site.url + "docs/report.pdf"][0]
    assert rec.warc["WARC-Truncated"] == "length"
    assert len(rec.body) == 50
    assert rec.header("Content-Length") == "50"


def test_unreachable_seed_is_a_failed_crawl_with_evidence(tmp_path) -> None:  # type: ignore[no-untyped-def]
    outcome = crawl(fast_settings("http://nowhere.invalid/", tmp_path, sitemaps=False))
    assert outcome.exit_code is ExitCode.CRAWL_FAILED
    recs = read_records(outcome.warcs)
    failures = [r for r in recs if r.type == "metadata" and r.uri == "http://nowhere.invalid/"]
    assert failures and b"fetch-failure: dns" in failures[0].body
