"""Detection an archivist can trust (issue 13, first part): pages *about* censorship are not
block pages. Each scenario is a baseline crawl of the sample site, a change, and a recrawl,
with the innocent variants that could trip a rule beside the guilty ones."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import free_port
from test_takedown import (
    DETECT,
    PERSONS,
    alerts,
    classes,
    scenario,
    settings_for,
    streamed_as_held,
)

from crawler.capture.fetcher import FetchSettings
from crawler.capture.settings import CrawlSettings, DetectSettings, Limits, Politeness, proxy_name
from crawler.core.outcome import shortfall_lines
from crawler.demo.proxy_sim import VantageProxy
from crawler.demo.sample_site import SampleSite
from crawler.demo.takedown_sim import OUTAGES, WALLS
from crawler.detection.listing import listing_key
from crawler.jobs.pipeline import run_target
from crawler.reporting.report import summary_lines

ARTICLE = "/articles/3.html"  # quotes "Роскомнадзор", "реестр запрещённых", "доступ ограничен"


def _rewrite(old: str, new: str) -> object:
    def change(site: SampleSite) -> None:
        site.content.takedown.rewrite[ARTICLE] = (old.encode(), new.encode())
    return change


@pytest.mark.parametrize("change", [
    # a sentence of the article changes
    _rewrite("Мы продолжаем публиковать документы о репрессиях.",
             "Мы продолжаем публиковать документы и письма о репрессиях."),
    # a legal label is inserted above it, quoting block-page phrases that are new to the page
    _rewrite("<h1>Статья 3</h1>", "<h1>Статья 3</h1><p>Материал внесён в реестр запрещённых "
                                  "сайтов; доступ к ресурсу ограничен по решению суда.</p>"),
], ids=["sentence-edited", "legal-label-inserted"])
def test_an_article_about_blocking_that_changes_is_no_block_page(tmp_path: Path,
                                                                 change: object) -> None:
    site, run = scenario(tmp_path, change)  # type: ignore[arg-type]
    assert classes(run, site)[ARTICLE] == "edited"
    assert alerts(run) == [] and run.exit_code == 0


def test_an_article_about_blocking_that_moves_is_moved(tmp_path: Path) -> None:
    def move(site: SampleSite) -> None:
        site.content.moved[ARTICLE] = "/articles/3-blocking.html"

    site, run = scenario(tmp_path, move)
    assert classes(run, site)[ARTICLE] == "moved"
    assert alerts(run) == []


def test_the_same_article_replaced_by_a_block_page_is_a_block_page(tmp_path: Path) -> None:
    """The guilty twin: its content gone, block-page phrases it never had."""
    _site, run = scenario(tmp_path, lambda s: setattr(s.content.takedown, "block_all", True))
    (finding,) = [f for f in run.report["findings"] if f["url"].endswith(ARTICLE)]
    assert finding["class"] == "block-page"
    assert "доступ к информационному ресурсу" in finding["detail"]


@pytest.mark.parametrize("wall", ["cloudflare-503", "ddos-guard-200", "captcha-403"])
def test_a_bot_wall_in_front_of_the_site_is_a_bot_wall_never_a_removal(
        tmp_path: Path, wall: str) -> None:
    """Before: hundreds of confirmed server errors (503 challenge), confirmed soft-404s (200
    check page), `forbidden` for a 403 captcha, and the crawl ended "complete (exit ok)"."""
    site, run = scenario(tmp_path, lambda s: setattr(s.content.takedown, "wall", WALLS[wall]))
    found = classes(run, site)
    persons = [p for p in found if p.startswith("/persons/") and p.endswith(".html")]
    assert len(persons) >= 25 and all(found[p] == "bot-wall" for p in persons), found
    assert alerts(run) == [] and run.report["hosts"] == []
    # never "complete (exit ok)": not one page of the site was archived, only its wall (a
    # 200 check page is archived too, but it is not a page of the site): failed, 4
    assert run.exit_code == 4 and run.outcome.status == "failed"
    assert run.outcome.shortfall.get("bot-wall", 0) >= 25
    assert any("WARNING" in line and "challenge page" in line
               for line in summary_lines(run.report))


@pytest.mark.parametrize("wall", ["ddos-guard-200", "captcha-403"])
def test_a_first_crawl_behind_a_wall_fails_and_says_why(tmp_path: Path, wall: str) -> None:
    """No earlier capture to compare with: the crawl itself recognises the challenge page,
    so a site first archived behind a wall never reads as a complete baseline."""
    with SampleSite() as site:
        site.content.takedown.wall = WALLS[wall]
        run = asyncio.run(run_target(settings_for(site, tmp_path)))
    assert run.exit_code == 4 and run.outcome.status == "failed"
    assert run.outcome.shortfall == {"bot-wall": 1}  # the seed answered with the wall
    assert run.report is not None and run.report["summary"]["classes"] == {"bot-wall": 1}
    assert "challenge page" in shortfall_lines(run.outcome.shortfall)[0]


def test_new_urls_behind_a_wall_never_make_a_complete_crawl(tmp_path: Path) -> None:
    """A limit-stopped crawl's continuation whose remaining URLs meet a DDoS-Guard check
    page (200): they are not "new" pages, and the crawl that met them is not complete."""
    limited = {"limits": Limits(max_pages=8)}
    with SampleSite() as site:
        first = asyncio.run(run_target(settings_for(site, tmp_path, **limited)))
        assert first.outcome.status == "incomplete" and first.outcome.shortfall["limit"] > 0
        site.content.takedown.wall = WALLS["ddos-guard-200"]
        second = asyncio.run(run_target(settings_for(site, tmp_path)))
    assert second.report is not None
    walled = second.outcome.shortfall.get("bot-wall", 0)
    assert walled > 0 and second.outcome.status in ("incomplete", "failed"), second.outcome
    assert second.exit_code != 0
    counts = second.report["summary"]["classes"]
    assert counts.get("bot-wall", 0) >= walled and "new" not in counts, counts


def test_a_short_page_about_ddos_protection_is_a_page(tmp_path: Path) -> None:
    """The innocent twins of the crawl-time rule: a short news item that names DDoS-Guard and
    Cloudflare, in the site's layout (with its navigation), is archived as a page."""
    notice = ("<h1>О проекте</h1><p>Сайт теперь защищён DDoS-Guard: если вы видите страницу "
              "«Проверка браузера», подождите. Performance &amp; security by Cloudflare.</p>")
    with SampleSite() as site:
        site.content.takedown.rewrite["/about.html"] = ("<h1>О проекте</h1>".encode(),
                                                        notice.encode())
        run = asyncio.run(run_target(settings_for(site, tmp_path)))
    assert run.exit_code == 0 and run.outcome.shortfall == {}, run.outcome.shortfall
    assert run.report is not None and "bot-wall" not in run.report["summary"]["classes"]


def test_an_article_about_captchas_that_changes_is_edited(tmp_path: Path) -> None:
    """The innocent twin: wall phrases new to a page whose own content is still there."""
    change = _rewrite("<h1>Статья 3</h1>", "<h1>Статья 3</h1><p>При атаке сайт показывает "
                      "страницу DDoS-Guard «Проверка браузера»: подтвердите, что вы не "
                      "робот.</p>")
    site, run = scenario(tmp_path, change)  # type: ignore[arg-type]
    assert classes(run, site)[ARTICLE] == "edited"
    assert run.exit_code == 0 and run.report["warnings"] == []


@pytest.mark.parametrize("outage", ["maintenance-200", "maintenance-503", "db-error-500"])
def test_a_site_wide_outage_is_an_outage_and_rechecks_never_confirm_it(
        tmp_path: Path, outage: str) -> None:
    """Before: a maintenance or database-error page on every URL was confirmed as mass
    soft-404 or server error by re-checks seconds apart."""
    site, run = scenario(tmp_path, lambda s: setattr(s.content.takedown, "outage",
                                                     OUTAGES[outage]))
    found = classes(run, site)
    persons = [p for p in found if p.startswith("/persons/") and p.endswith(".html")]
    assert len(persons) >= 25 and all(found[p] == "outage" for p in persons), found
    assert alerts(run) == []  # suspected only: re-checks reproduce an outage, proving nothing
    assert {e["state"] for e in run.report["events"]} == {"suspected"}
    assert [h["class"] for h in run.report["hosts"]] == ["outage"]


def test_an_outage_is_confirmed_only_when_it_lasts_over_runs_and_time(tmp_path: Path) -> None:
    """Scheduled runs: three crawls of a site in maintenance, minutes apart, never confirm
    with the default of 6 hours; with 0 they confirm at the second crawl, saying why."""
    with SampleSite() as site:
        def run(detect: object) -> object:
            return asyncio.run(run_target(settings_for(site, tmp_path, detect=detect)))

        scheduled = replace(DETECT, recheck_probes=0, confirm_runs=2)
        run(scheduled)
        site.content.takedown.outage = OUTAGES["maintenance-200"]
        states = [[e.state for e in run(scheduled).events] for _ in range(3)]
        assert set(states[0]) == {"suspected"} and states[1] == states[2] == []
        confirmed = run(replace(scheduled, outage_confirm_after=0)).events
    assert confirmed and {e.state for e in confirmed} == {"confirmed"}
    assert all("consecutive crawls over" in e.detail for e in confirmed)


def test_person_pages_behind_a_login_are_a_login_wall(tmp_path: Path) -> None:
    """Before: pages redirected to /login?next=… were classed moved (harmless) and missed."""
    walled = {f"/persons/{n}.html" for n in range(1, 9)}

    def lock(site: SampleSite) -> None:
        site.content.takedown.login = set(walled)
        site.content.takedown.unauthorized = {"/persons/9.html"}

    site, run = scenario(tmp_path, lock)
    found = classes(run, site)
    assert {p: found[p] for p in [*walled, "/persons/9.html"]} == dict.fromkeys(
        [*walled, "/persons/9.html"], "login-wall")
    assert {e["url"].replace(site.url, "/") for e in alerts(run)} >= walled  # re-checked


def test_a_page_moved_to_an_address_with_login_in_its_name_is_moved(tmp_path: Path) -> None:
    """The innocent twin: "log-in" in a file name is not a login page."""
    def move(site: SampleSite) -> None:
        site.content.moved["/articles/2.html"] = "/articles/how-to-log-in-to-the-archive.html"

    site, run = scenario(tmp_path, move)
    assert classes(run, site)["/articles/2.html"] == "moved"
    assert alerts(run) == []


def test_a_page_that_was_always_404_is_not_delisted_when_unlinked(tmp_path: Path) -> None:
    """Before: "delisted … still served" for a URL that never served anything."""
    link = '<li><a href="/missing.html">Удалённая страница</a></li>'.encode()

    def unlink(site: SampleSite) -> None:
        site.content.takedown.rewrite["/"] = (link, b"")

    site, run = scenario(tmp_path, unlink)
    assert "/missing.html" not in classes(run, site)  # quiet: still 404, as it always was
    assert not any(e["url"].endswith("/missing.html") for e in run.report["events"])


def test_a_redirect_that_now_lands_on_a_block_page_is_not_unchanged(tmp_path: Path) -> None:
    """/old-address.html redirects, as always, to a page that is now a block page."""
    site, run = scenario(tmp_path, lambda s: setattr(s.content.takedown, "block_all", True))
    found = classes(run, site)
    assert found["/old-address.html"] == "block-page"
    (finding,) = [f for f in run.report["findings"] if f["url"].endswith("/old-address.html")]
    assert "redirects to" in finding["detail"] and "block-page" in finding["detail"]


def _per_page(n: int) -> object:
    def change(site: SampleSite) -> None:
        site.content.per_page = n
    return change


@pytest.mark.parametrize(("before", "after"), [(25, 10), (10, 25)], ids=["25-to-10", "10-to-25"])
def test_a_listing_shown_with_another_page_size_loses_no_names(
        tmp_path: Path, before: int, after: int) -> None:
    """Before: 25 -> 10 names a page gave confirmed partial removals of names still listed.
    Fewer pages: the last page answers 404, and every name it held is listed elsewhere."""
    site, run = scenario(tmp_path, _per_page(after), setup=_per_page(before))
    found = classes(run, site)
    assert "partial-removal" not in found.values() and "removed" not in found.values(), found
    assert alerts(run) == [] and run.exit_code == 0
    if after > before:
        assert found["/persons/?page=3"] == "moved"  # its 10 names are on pages 1 and 2


def test_names_dropped_from_a_reflowing_listing_are_exactly_those_names(tmp_path: Path) -> None:
    """Before: three names dropped from page 1 (later names move up) were reported as the
    removal of three other people, still listed on page 2."""
    site, run = scenario(tmp_path, lambda s: setattr(s.content, "delisted", {2, 3, 4}))
    found = classes(run, site)
    assert found["/persons/?page=1"] == "partial-removal"
    removed = [f["removed"] for f in run.report["findings"] if f["class"] == "partial-removal"]
    names = [site.content.name(n).casefold() for n in (2, 3, 4)]
    assert removed == [names], removed
    assert found.get("/persons/?page=2") != "partial-removal"
    assert found.get("/persons/?page=3") != "partial-removal"


@pytest.mark.parametrize(("url", "key"), [
    ("https://m.example/persons/?page=2", "https://m.example/persons/"),
    ("https://m.example/persons/?letter=%D0%90&page=3",
     "https://m.example/persons/?letter=%D0%90"),
    ("https://m.example/news/page/4/", "https://m.example/news/"),
    ("https://m.example/?p=123", None),  # a WordPress post, not a page number
    ("https://m.example/persons/12.html", None),
])
def test_listing_keys(url: str, key: str | None) -> None:

    assert listing_key(url) == key


def test_a_host_that_stops_answering_is_a_confirmed_timeout_in_bounded_time(
        tmp_path: Path) -> None:
    """The host accepts connections and never answers: the crawl's circuit breaker gives it
    up, and a few re-checks of the host (not one per URL, each waiting out its timeout)
    confirm unreachable-timeout for every page, never "not checked"."""
    hang = {"fetch": FetchSettings(read_timeout=0.5, connect_timeout=0.5, total_timeout=1.0),
            "detect": replace(DETECT, recheck_spacing=0.5),
            "politeness": Politeness(concurrency=8, per_host=4, delay=0.0, retries=1,
                                     backoff=0.1, hang_limit=4, hang_pause=0.5, hang_trips=2)}
    started: list[float] = []

    def stop_answering(site: SampleSite) -> None:
        site.content.latency = 120.0
        started.append(time.monotonic())

    site, run = scenario(tmp_path, stop_answering, after=hang)
    elapsed = time.monotonic() - started[0]
    found = classes(run, site)
    assert found["/"] == "unreachable-timeout"
    assert all(found[p] == "unreachable-timeout" for p in PERSONS), found
    assert [h["class"] for h in run.report["hosts"]] == ["unreachable-timeout"]
    events = [(e["class"], e["state"]) for e in run.report["events"]]
    assert ("unreachable-timeout", "confirmed") in events, events
    assert elapsed < 45, elapsed
    # every page not asked once the host hung, past the re-checked sample, is a plain
    # finding: confirmed with the sample, judged as when all are held
    streamed = streamed_as_held(tmp_path)
    assert streamed.plain >= len(PERSONS) - 3 and streamed.confirmed_groups


def test_a_site_only_our_network_path_loses_is_blocked_here_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The site stops answering us (our ISP drops its packets) and answers everyone else:
    the crawl gives the host up, and the few pages of its sample fetched through a vantage
    point stand for every page, held or plain: blocked here, not a timeout. (Past the cap
    of re-checks, as on a large site, most pages are plain.)"""
    from crawler.detection import comparison as module

    monkeypatch.setattr(module, "MAX_RECHECKS", 4)
    hang = {"fetch": FetchSettings(read_timeout=0.5, connect_timeout=0.5, total_timeout=1.0),
            "politeness": Politeness(concurrency=8, per_host=4, delay=0.0, retries=1,
                                     backoff=0.1, hang_limit=4, hang_pause=0.5, hang_trips=2)}
    with VantageProxy() as proxy:
        site, run = scenario(tmp_path, lambda s: setattr(s.content, "local_latency", 120.0),
                             after={**hang, "detect": replace(DETECT, vantage=(proxy.url,))})
        through = proxy.requests
    found = classes(run, site)
    assert all(found[p] == "blocked-here" for p in PERSONS), found
    assert [h["class"] for h in run.report["hosts"]] == ["blocked-here"]
    assert 0 < len(through) <= 4  # the host's sample, not every page
    streamed = streamed_as_held(tmp_path)
    assert streamed.plain >= len(PERSONS) - 3 and streamed.samples
    assert {f.cls.value for f in streamed.findings + list(streamed.samples.values())} >= {
        "blocked-here"}


def test_a_redirect_is_judged_by_its_target_even_where_the_crawl_did_not_go(
        tmp_path: Path) -> None:
    """Before: a redirect whose target the crawl did not fetch (a limit, a trap rule, the
    scope) was "moved (not captured)", whatever the target was. The target is fetched as
    evidence: a page moved with its content is moved, one sent to a 404 is removed."""
    def move(site: SampleSite) -> None:
        site.content.moved = {"/persons/5.html": "/elsewhere/5.html",
                              "/persons/6.html": "/elsewhere/6.html"}
        site.content.takedown.removed = {"/elsewhere/6.html": 404}

    with SampleSite() as probe_site:
        scope = settings_for(probe_site, tmp_path).scope
    fenced = {"scope": replace(scope, exclude=(*scope.exclude, re.compile("/elsewhere/")))}
    site, run = scenario(tmp_path, move, after=fenced)
    found = classes(run, site)
    assert found["/persons/5.html"] == "moved"
    assert found["/persons/6.html"] == "removed"
    details = {f["url"].replace(site.url, "/", 1): f["detail"] for f in run.report["findings"]}
    assert "not captured" not in details["/persons/5.html"]
    assert "404" in details["/persons/6.html"]
    db = sqlite3.connect(tmp_path / "catalog.sqlite3")
    landed = {u.replace(site.url, "/", 1) for (u,) in db.execute(
        "SELECT url FROM captures WHERE kind = 'landing'")}
    assert landed == {"/elsewhere/5.html", "/elsewhere/6.html"}


def _block_locally(site: SampleSite) -> None:
    site.content.takedown.local = {"/persons/3.html", "/persons/4.html"}  # our ISP's block
    site.content.takedown.removed = {"/persons/6.html": 404}  # gone for everyone


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_a_page_blocked_only_on_our_network_path_is_blocked_here(tmp_path: Path,
                                                                  kind: str) -> None:
    """Second vantage point: a proxy whose requests reach the site from another address. A
    page blocked for our address but fine through the proxy is blocked-here, not a block
    page; a page gone for everyone stays removed, and says the proxy saw the same."""
    with VantageProxy(kind) as proxy:
        vantage = {"detect": replace(DETECT, vantage=(proxy.url,))}
        site, run = scenario(tmp_path, _block_locally, after=vantage)
        through = proxy.requests
    found = classes(run, site)
    assert found["/persons/3.html"] == found["/persons/4.html"] == "blocked-here", found
    assert found["/persons/6.html"] == "removed"
    details = {f["url"].replace(site.url, "/", 1): f["detail"] for f in run.report["findings"]}
    assert f"through {proxy.url}" in details["/persons/3.html"]
    assert f"the same through {proxy.url}" in details["/persons/6.html"]
    if kind == "http":  # (a SOCKS5 proxy sees connections, not URLs)
        assert {u.replace(site.url, "/", 1) for u in through} == {
            "/persons/3.html", "/persons/4.html", "/persons/6.html"}
    else:
        assert through and set(through) == {site.url.split("/")[2]}
    events = {(e["url"].replace(site.url, "/", 1), e["class"], e["state"]): e["detail"]
              for e in run.report["events"]}
    assert ("/persons/3.html", "blocked-here", "confirmed") in events, events
    # the report says why each alert is believed, vantage points included
    why = events[("/persons/6.html", "removed", "confirmed")]
    assert f"the same through {proxy.url}" in why and "re-checks" in why, why
    db = sqlite3.connect(tmp_path / "catalog.sqlite3")
    kinds = {k for (k,) in db.execute("SELECT kind FROM captures WHERE detail LIKE 'vantage:%'")}
    assert kinds == {"vantage"}


def test_without_a_vantage_point_a_local_block_is_a_block_page(tmp_path: Path) -> None:
    """The same block seen from one place only: it is what the crawl saw, a block page."""
    site, run = scenario(tmp_path, _block_locally)
    assert classes(run, site)["/persons/3.html"] == "block-page"


def test_a_vantage_url_must_be_a_proxy_url(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from crawler.commands.cli import cli

    result = CliRunner().invoke(cli, ["archive", "http://127.0.0.1:9/", "--output",
                                      str(tmp_path), "--vantage", "ftp://user:secret@x:21"])
    assert result.exit_code == 2 and "not a proxy URL" in result.output
    assert "secret" not in result.output


def _scheduled_runs(tmp_path: Path, site: SampleSite, runs: int) -> list[list[tuple[str, str]]]:
    """Run the target ``runs`` times as the daemon does (no re-checks; confirmed by two
    consecutive crawls); return each run's (path, class) of confirmed events."""
    scheduled = replace(DETECT, recheck_probes=0, confirm_runs=2)
    confirmed = []
    for _ in range(runs):
        run = asyncio.run(run_target(settings_for(site, tmp_path, detect=scheduled)))
        confirmed.append([(e.url.replace(site.url, "/", 1), e.cls) for e in run.events
                          if e.state == "confirmed"])
    return confirmed


def test_a_rotating_block_in_the_main_content_raises_no_partial_removal(tmp_path: Path) -> None:
    """Every page shows 1-4 random documents "from the archive" inside <main>: between any
    two crawls lines vanish. Four scheduled runs confirm nothing."""
    with SampleSite() as site:
        site.content.takedown.rotating = True
        confirmed = _scheduled_runs(tmp_path, site, 4)
    assert confirmed == [[], [], [], []], confirmed


def test_names_removed_beside_a_rotating_block_are_still_confirmed(tmp_path: Path) -> None:
    """The guilty twin: the same rotation, and three names dropped from the listing:
    confirmed by the second run after the removal, as without a rotating block."""
    with SampleSite() as site:
        site.content.takedown.rotating = True
        _scheduled_runs(tmp_path, site, 1)
        site.content.delisted = {2, 3, 4}
        runs = _scheduled_runs(tmp_path, site, 2)
    confirmed = [event for run in runs for event in run]
    assert ("/persons/?page=1", "partial-removal") in confirmed, runs
    assert not [e for e in confirmed if e[1] == "partial-removal" and e[0] != "/persons/?page=1"]


def test_a_vantage_proxy_password_is_never_written_in_clear(tmp_path: Path) -> None:
    proxy = "socks5://archivist:pa55word@proxy.example:1080"
    settings = CrawlSettings(seeds=("http://127.0.0.1:9/",), output=tmp_path,
                             detect=DetectSettings(vantage=(proxy, "http://open.example:3128")))
    saved = settings.to_json()
    assert "pa55word" not in str(saved)
    assert saved["detect"]["vantage"][1] == "http://open.example:3128"  # nothing to hide
    assert proxy_name(proxy) == "socks5://proxy.example:1080"  # how reports name it


def test_pages_linked_only_from_a_page_that_failed_are_not_delisted(tmp_path: Path) -> None:
    """The home page answers 503 this time: the pages only it links to are still fetched
    (known from the last crawl) and no longer linked, because their link went unseen."""
    site, run = scenario(tmp_path, lambda s: s.content.takedown.removed.update({"/": 503}))
    found = classes(run, site)
    assert found["/"] == "server-error"
    assert "delisted" not in found.values(), found


def test_suspects_past_the_vantage_cap_are_said_to_be_unchecked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crawler.detection import comparison, probes

    for module in (comparison, probes):  # the cap, and what the report says
        monkeypatch.setattr(module, "MAX_VANTAGE_CHECKS", 1)
    with VantageProxy() as proxy:
        vantage = {"detect": replace(DETECT, vantage=(proxy.url,))}
        _site, run = scenario(tmp_path, _block_locally, after=vantage)
        assert len(proxy.requests) == 1
    assert any(w.startswith("2 suspected URL(s) were not fetched through the vantage")
               for w in run.report["warnings"]), run.report["warnings"]


def test_a_vantage_proxy_that_fails_is_said_to_have_failed(tmp_path: Path) -> None:
    """A proxy that refuses us tells nothing about the page: the finding keeps its class and
    says the proxy failed, not that the site is unreachable from there."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens
    vantage = {"detect": replace(DETECT, vantage=(dead,))}
    site, run = scenario(tmp_path, _block_locally, after=vantage)
    found = classes(run, site)
    assert found["/persons/3.html"] == "block-page" and found["/persons/6.html"] == "removed"
    details = {f["url"].replace(site.url, "/", 1): f["detail"] for f in run.report["findings"]}
    assert f"not seen through {dead}: the proxy failed" in details["/persons/6.html"]
    assert "unreachable" not in details["/persons/6.html"]
