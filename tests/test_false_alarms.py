"""Detection an archivist can trust (issue 13, first part): pages *about* censorship are not
block pages. Each scenario is a baseline crawl of the sample site, a change, and a recrawl,
with the innocent variants that could trip a rule beside the guilty ones."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_takedown import alerts, classes, scenario, settings_for

from crawler.pipeline import run_target
from crawler.sample_site import SampleSite
from crawler.settings import Limits

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
    from crawler.report import summary_lines
    from crawler.takedown_sim import WALLS

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
    from crawler.outcome import shortfall_lines
    from crawler.takedown_sim import WALLS

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
    from crawler.takedown_sim import WALLS

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
    from crawler.takedown_sim import OUTAGES

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
    import asyncio
    from dataclasses import replace

    from test_takedown import DETECT, settings_for

    from crawler.pipeline import run_target
    from crawler.takedown_sim import OUTAGES

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
