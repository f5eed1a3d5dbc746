"""Takedown detection, scenario by scenario: the sample site is crawled, something happens to
it (takedown_sim switches), it is crawled again, and every URL's class is checked."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import streamcheck
from click.testing import CliRunner
from conftest import fast_settings, free_port

from crawler.archive.catalog import Catalog
from crawler.capture.fetcher import FetchSettings
from crawler.capture.scope import ScopeKind, ScopeRules, TrapRules
from crawler.capture.settings import CrawlSettings, DetectSettings, Limits
from crawler.commands.cli import cli
from crawler.demo.sample_site import SampleSite
from crawler.demo.takedown_sim import BLOCKED_BY
from crawler.detection.comparison import Comparison, compare
from crawler.detection.names import Namer
from crawler.detection.states import events_of, open_states, transitions
from crawler.jobs.pipeline import TargetRun, run_target
from crawler.reporting import report

DETECT = DetectSettings(recheck_probes=2, recheck_spacing=0.05)
PERSONS = [f"/persons/{n}.html" for n in range(1, 31)]


def settings_for(site: SampleSite, out: Path, **overrides: Any) -> CrawlSettings:
    """Fast settings for one target, without the calendar trap (timing dependent)."""
    base: dict[str, Any] = {
        "sitemaps": False, "detect": DETECT,
        "scope": ScopeRules(kind=ScopeKind.HOST, exclude=(re.compile("calendar"),),
                            traps=TrapRules(max_query_variants=12))}
    base.update(overrides)
    return fast_settings(base.pop("seed", site.url), out, **base)


def scenario(tmp_path: Path, change: Callable[[SampleSite], None], *,
             setup: Callable[[SampleSite], None] | None = None,
             after: dict[str, Any] | None = None, before: dict[str, Any] | None = None,
             ) -> tuple[SampleSite, TargetRun]:
    """Crawl the sample site, apply ``change``, crawl again; return the second run."""
    with SampleSite() as site:
        if setup is not None:
            setup(site)
        first = asyncio.run(run_target(settings_for(site, tmp_path, **(before or {}))))
        assert first.report is not None  # a baseline: every URL is new, nothing alerts
        assert set(first.report["summary"]["classes"]) <= {"new", "not-checked"}
        assert first.report["events"] == []
        change(site)
        second = asyncio.run(run_target(settings_for(site, tmp_path, **(after or before or {}))))
    assert second.report is not None
    return site, second


def classes(run: TargetRun, site: SampleSite) -> dict[str, str]:
    """Return path -> class for every listed finding (quiet classes are not listed)."""
    assert run.report is not None
    return {f["url"].replace(site.url, "/", 1): f["class"] for f in run.report["findings"]}


def alerts(run: TargetRun) -> list[dict[str, Any]]:
    assert run.report is not None
    return [e for e in run.report["events"] if e["state"] in ("confirmed", "provisional")]


def test_unchanged_site_raises_nothing(tmp_path: Path) -> None:
    _site, run = scenario(tmp_path, lambda s: None)
    assert run.report is not None
    assert set(run.report["summary"]["classes"]) <= {
        "unchanged", "not-modified", "semantically-unchanged", "not-checked"}
    assert run.report["events"] == [] and run.exit_code == 0


def test_noise_only_is_semantically_unchanged(tmp_path: Path) -> None:
    def noisy(site: SampleSite) -> None:
        site.content.takedown.noise = True  # counters, timestamps, tokens, banner

    site, run = scenario(tmp_path, lambda s: None, setup=noisy)
    assert run.report is not None
    found = classes(run, site)
    assert not any(p in found for p in PERSONS)  # all quiet
    assert run.report["summary"]["classes"]["semantically-unchanged"] >= 30
    assert alerts(run) == [] and run.report["events"] == []


def test_edited_paragraph(tmp_path: Path) -> None:
    site, run = scenario(tmp_path, lambda s: setattr(s.content, "edited", {3}))
    assert classes(run, site)["/persons/3.html"] == "edited"
    (finding,) = [f for f in run.report["findings"] if f["url"].endswith("/persons/3.html")]
    assert any("реабилитирован в 1989 году" in line for line in finding["added"])
    assert alerts(run) == []


def test_names_removed_from_the_index_are_a_partial_removal_and_delisted(
        tmp_path: Path) -> None:
    site, run = scenario(tmp_path, lambda s: setattr(s.content, "delisted", {7, 8}))
    found = classes(run, site)
    assert found["/persons/?page=1"] == "partial-removal"
    (index,) = [f for f in run.report["findings"] if f["url"].endswith("?page=1")]
    assert index["removed"] == ["козлов дмитрий алексеевич", "новикова елена борисовна"]
    assert found["/persons/7.html"] == found["/persons/8.html"] == "delisted"


def test_the_report_names_who_was_removed(tmp_path: Path) -> None:
    """Findings, transitions, the terminal summary, report.html and `crawler status` name
    each page from its last good capture: title, and the person's name with their dates."""
    def change(site: SampleSite) -> None:
        site.content.takedown.removed = {"/persons/3.html": 404}
        site.content.delisted = {7}

    site, run = scenario(tmp_path, change)
    assert run.report is not None and run.report_paths is not None
    name3, name7 = site.content.name(3), site.content.name(7)
    dates = "Родился в 1900 году. Арестован в 1937 году."
    (removed,) = [f for f in run.report["findings"] if f["url"].endswith("/persons/3.html")]
    assert removed["class"] == "removed"
    assert removed["title"] == name3 and removed["headline"] == f"{name3} — {dates}"
    (event,) = [e for e in run.report["events"] if e["url"].endswith("/persons/3.html")]
    assert event["headline"] == f"{name3} — {dates}"
    (index,) = [f for f in run.report["findings"] if f["url"].endswith("?page=1")]
    assert index["class"] == "partial-removal"
    assert index["removed"] == [name7.casefold()]  # as compared
    assert index["removed_as_written"] == [name7]  # as the list wrote it
    assert index["listing"] == site.url + "persons/" and index["title"] == "Список имён, страница 1"
    assert index["headline"] == "Список имён"  # no year beside the heading: the heading
    (delisted,) = [f for f in run.report["findings"] if f["url"].endswith("/persons/7.html")]
    assert delisted["class"] == "delisted" and delisted["headline"] == f"{name7} — {dates}"
    assert not any("without their title" in w for w in run.report["warnings"])
    assert any(name3 in line for line in report.summary_lines(run.report))
    page = run.report_paths[1].read_text("utf-8")
    assert f"<b>{name3} — {dates}</b>" in page and f"<del>{name7}</del>" in page
    assert "removed from the listing" in page
    details = [json.loads(line) for line in
               (run.report_paths[0].parent / "findings.jsonl").read_text("utf-8").splitlines()]
    assert any(d.get("headline") == f"{name3} — {dates}" for d in details)
    config = tmp_path / "c.toml"
    config.write_text(f'archives = "{tmp_path}"\n[[targets]]\nname = "test"\n'
                      f'seeds = ["{site.url}"]\nevery = "1d"\n', "utf-8")
    status = CliRunner().invoke(cli, ["status", "--config", str(config), "--json"])
    assert status.exit_code == 0, status.output
    open_events = {e["url"]: e for e in json.loads(status.stdout)["test"]["open_events"]}
    assert open_events[site.url + "persons/3.html"]["headline"] == f"{name3} — {dates}"
    event_id = open_events[site.url + "persons/3.html"]["event"]
    catalog = Catalog.open(tmp_path)
    try:
        (url,) = catalog.db.execute("SELECT url FROM events WHERE id=?", (event_id,)).fetchone()
    finally:
        catalog.close()
    assert url == site.url + "persons/3.html"  # the id `crawler evidence` takes
    text = CliRunner().invoke(cli, ["status", "--config", str(config)])
    assert f"«{name3} — {dates}» since " in text.stdout
    assert f"(event {event_id})" in text.stdout


def test_names_are_read_within_a_budget_and_the_report_says_so(tmp_path: Path) -> None:
    """A report names at most a budget of pages; the rest are null, and a warning counts
    them."""
    _site, run = scenario(tmp_path, lambda s: s.content.takedown.removed.update(
        {p: 404 for p in PERSONS[:6]}))
    assert run.report is not None
    catalog = Catalog.open(tmp_path)
    try:
        after = catalog.latest_crawl("test")
        assert after is not None
        comparison = compare(catalog, after)
        small = Namer(catalog, "test", budget=2)
        data = report.build(catalog, comparison, [], small)
    finally:
        catalog.close()
    named = [f for f in data["findings"] if f["headline"]]
    unnamed = [f for f in data["findings"] if f["class"] == "removed" and not f["headline"]]
    assert len(named) == 2 and len(unnamed) == 4
    assert f"{small.unnamed} page(s) are listed without their title" in " ".join(
        data["warnings"]) and small.unnamed == 4


def test_removed_pages_404_and_410(tmp_path: Path) -> None:
    def remove(site: SampleSite) -> None:
        site.content.takedown.removed = {"/persons/3.html": 404, "/persons/4.html": 410}

    site, run = scenario(tmp_path, remove)
    found = classes(run, site)
    assert found["/persons/3.html"] == found["/persons/4.html"] == "removed"
    states = {e["url"].replace(site.url, "/"): e["state"] for e in alerts(run)}
    assert states == {"/persons/3.html": "confirmed", "/persons/4.html": "confirmed"}
    assert run.exit_code == 6  # takedown detected


def test_legal_block_451_names_who_blocked(tmp_path: Path) -> None:
    _site, run = scenario(tmp_path, lambda s: s.content.takedown.legal.add("/articles/2.html"))
    (finding,) = [f for f in run.report["findings"] if f["url"].endswith("/articles/2.html")]
    assert finding["class"] == "legal-block" and BLOCKED_BY in finding["detail"]
    assert finding["after"]["record_id"]  # the WARC record that proves it


def test_whole_site_block_page(tmp_path: Path) -> None:
    site, run = scenario(tmp_path, lambda s: setattr(s.content.takedown, "block_all", True))
    found = classes(run, site)
    assert all(found[p] == "block-page" for p in PERSONS)
    host = site.url.split("//")[1].rstrip("/")
    assert [(h["host"], h["class"]) for h in run.report["hosts"]] == [(host, "block-page")]


def test_a_whole_site_block_is_one_alert_and_a_bounded_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, a site-wide block of 430 URLs gave 431 alerts and a 602 KB report.json."""
    from crawler.reporting import report as report_module

    monkeypatch.setattr(report_module, "MAX_LISTED", 10)  # the sample site is small
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received.clear()
    hook = f"json://127.0.0.1:{server.server_address[1]}/hook"
    try:
        site, run = scenario(tmp_path, lambda s: setattr(s.content.takedown, "block_all", True),
                             before={"detect": replace(DETECT, notify=(hook,))})
    finally:
        server.shutdown()
        server.server_close()
    assert run.report is not None and run.report_paths is not None
    host = site.url.split("//")[1].rstrip("/")
    (event,) = run.report["events"]  # the host's, standing for every page's
    assert event["key"] == f"host:{host}" and event["class"] == "block-page"
    # the URLs' transitions are all in the events table; the run's list holds the host's
    # event, which counts them (a site gone whole would be millions in memory)
    catalog = Catalog.open(tmp_path)
    try:
        blocked = [tuple(r) for r in catalog.db.execute(
            "SELECT key, state FROM events WHERE class = 'block-page' AND key NOT LIKE "
            "'host:%' AND crawl = ?", (catalog.crawls("test")[-1].pk,))]
        assert events_of(catalog, catalog.crawls("test")[-1].pk) == list(run.events)
    finally:
        catalog.close()
    (host_event,) = [e for e in run.events if e.key.startswith("host:")]
    assert len(blocked) >= 30 and event["urls_rolled_up"] == host_event.urls_rolled_up == len(
        blocked)  # every page's transition, whatever its state
    assert dict(host_event.rolled_up) == event["rolled_up_states"] == Counter(
        state for _, state in blocked)
    assert not [e for e in run.events if e.cls == "block-page" and not e.key.startswith("host:")]
    listed = run.report["listed"]
    assert listed["events_total"] == transitions(run.events) == len(blocked) + 1
    assert listed["rolled_up"] == len(blocked)
    assert listed["findings"] == len(run.report["findings"]) == 10 < listed["findings_total"]
    details = [json.loads(line) for line in
               (run.report_paths[0].parent / "findings.jsonl").read_text("utf-8").splitlines()]
    assert sum(d["type"] == "event" for d in details) == len(blocked) + 1
    assert {d["key"] for d in details if d["type"] == "event"} == {
        b[0] for b in blocked} | {host_event.key}
    assert sum(d["type"] == "finding" for d in details) == listed["findings_total"]
    assert "all of them are in <code>findings.jsonl</code>" in run.report_paths[1].read_text()
    (message,) = _Hook.received  # one notification for the run
    body = message["message"]
    assert "HOST" in body and f"and {len(blocked)} URL transition(s) of this host" in body
    assert "/persons/" not in body  # no line per page


def test_block_page_by_redirect_to_another_host(tmp_path: Path) -> None:
    def redirect(site: SampleSite) -> None:
        site.content.takedown.block_redirect = site.cdn_url + "blocked.html"

    site, run = scenario(tmp_path, redirect)
    found = classes(run, site)
    assert all(found[p] == "block-page" for p in PERSONS)


def test_soft_404_found_by_probing_a_random_url(tmp_path: Path) -> None:
    def soft(site: SampleSite) -> None:
        site.content.takedown.soft404 = {"/persons/5.html"}
        site.content.takedown.soft404_all = True  # unknown URLs: 200 "not found" as well

    site, run = scenario(tmp_path, soft)
    assert classes(run, site)["/persons/5.html"] == "soft-404"


def test_redirect_to_home(tmp_path: Path) -> None:
    site, run = scenario(tmp_path, lambda s: s.content.takedown.home.add("/about.html"))
    assert classes(run, site)["/about.html"] == "redirect-home"


def streamed_as_held(tmp_path: Path) -> Comparison:
    """Assert the comparison of the latest crawl judges every URL as the one that holds
    them all (``streamcheck``); return it."""
    catalog = Catalog.open(tmp_path)
    try:
        return streamcheck.check_same(catalog, DETECT.rules)
    finally:
        catalog.close()


def test_connection_refused_rolls_up_to_the_host(tmp_path: Path) -> None:
    site, run = scenario(tmp_path, lambda s: s.stop())
    found = classes(run, site)
    assert all(found[p] == "unreachable-refused" for p in PERSONS)
    assert {h["class"] for h in run.report["hosts"]} == {"unreachable-refused"}
    # a site gone dark: its URLs are plain findings, past the host's re-checked sample
    assert streamed_as_held(tmp_path).plain >= len(PERSONS)


def test_own_network_down_is_not_evidence(tmp_path: Path) -> None:
    control = f"http://127.0.0.1:{free_port()}/"  # nothing listens: "the internet is down"
    site, run = scenario(tmp_path, lambda s: s.stop(),
                         after={"detect": replace(DETECT, control_url=control)})
    found = classes(run, site)
    assert all(found.get(p, "quiet") == "own-network-down" for p in PERSONS)
    assert alerts(run) == [] and run.exit_code == 4  # the crawl failed; no takedown alarm
    assert streamed_as_held(tmp_path).plain >= len(PERSONS)


def test_hanging_server_times_out(tmp_path: Path) -> None:
    site, run = scenario(
        tmp_path, lambda s: setattr(s.content, "latency", 3.0),
        after={"fetch": FetchSettings(read_timeout=0.5, total_timeout=1.0),
               "limits": Limits(max_pages=6),
               "politeness": replace(fast_settings("http://x/", tmp_path).politeness,
                                     retries=0, concurrency=16, per_host=8,
                                     hang_pause=0.2)})
    found = classes(run, site)
    assert found["/"] == "unreachable-timeout"


def test_unresolvable_host_name(tmp_path: Path) -> None:
    with SampleSite() as site:
        port = site.url.rsplit(":", 1)[1].strip("/")
        seed = f"http://memorial.invalid:{port}/"
        mapped = FetchSettings(resolve=(("memorial.invalid", "127.0.0.1"),))
        first = asyncio.run(run_target(settings_for(site, tmp_path, seed=seed, fetch=mapped)))
        assert first.outcome.stats["pages"] > 40  # reached through --resolve
        run = asyncio.run(run_target(settings_for(site, tmp_path, seed=seed)))
    assert run.report is not None
    found = {f["url"]: f["class"] for f in run.report["findings"]}
    assert found[seed] == "unreachable-dns"
    assert [h["class"] for h in run.report["hosts"]] == ["unreachable-dns"]
    streamed_as_held(tmp_path)


def test_transient_503s_never_confirm_a_takedown(tmp_path: Path) -> None:
    _site, run = scenario(tmp_path, lambda s: setattr(s.content.takedown, "flaky_every", 5))
    assert [e for e in alerts(run) if e["state"] == "confirmed"] == []
    assert run.exit_code == 0


def test_windows_1251_page_partial_removal(tmp_path: Path) -> None:
    line = "<p><a href=\"/поиск/Иванов.html\">Поиск: Иванов</a></p>".encode("cp1251")

    def gut(site: SampleSite) -> None:
        site.content.takedown.rewrite["/cp1251.html"] = (line, b"")

    _site, run = scenario(tmp_path, gut)
    (finding,) = [f for f in run.report["findings"] if f["url"].endswith("/cp1251.html")]
    assert finding["class"] == "partial-removal" and finding["removed"] == ["поиск: иванов"]


def test_confirmation_across_scheduled_runs_and_recovery(tmp_path: Path) -> None:
    scheduled = replace(DETECT, recheck_probes=0, confirm_runs=2)  # the daemon's way
    with SampleSite() as site:
        settings = settings_for(site, tmp_path, detect=scheduled)
        asyncio.run(run_target(settings))
        site.content.takedown.removed = {"/persons/3.html": 404}
        states = []
        for _ in range(2):
            run = asyncio.run(run_target(settings))
            states.append([(e["class"], e["state"]) for e in run.report["events"]])
        site.content.takedown.removed = {}
        recovered = asyncio.run(run_target(settings))
    assert states == [[("removed", "suspected")], [("removed", "confirmed")]]
    assert [(e["class"], e["state"]) for e in recovered.report["events"]] == [
        ("removed", "recovered")]
    catalog = Catalog.open(tmp_path)
    try:
        assert open_states(catalog, "test") == []
        history = catalog.db.execute("SELECT state FROM events ORDER BY id").fetchall()
        assert [r[0] for r in history] == ["suspected", "confirmed", "recovered"]
    finally:
        catalog.close()


def test_reports_and_the_diff_command(tmp_path: Path) -> None:
    _site, run = scenario(tmp_path, lambda s: setattr(s.content, "delisted", {7}))
    assert run.report_paths is not None
    data = json.loads(run.report_paths[0].read_text("utf-8"))
    assert data["schema"] == "crawler-report/1" and data["timeline"]
    page = run.report_paths[1].read_text("utf-8")
    assert "<svg" in page and "<del>Козлов Дмитрий Алексеевич</del>" in page  # as written
    assert "http://127.0.0.1:8080/test/" in page  # replay links to before and after
    result = CliRunner().invoke(cli, ["diff", "test", "--output", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    offline = json.loads(result.stdout)
    assert offline["summary"]["classes"] == data["summary"]["classes"]


def test_the_diff_command_applies_the_targets_ignore_rules(tmp_path: Path) -> None:
    """Before, `crawler diff` compared without the target's ignore rules: the same crawl pair
    gave semantically-unchanged in the report and edited from the command."""
    from crawler.capture.pagetext import TextRules

    rules = TextRules(ignore_patterns=(re.compile(r"реабилитирован в \d+ году\.?"),),
                      ignore_selectors=(".counter",))
    detect = replace(DETECT, rules=rules)
    site, run = scenario(tmp_path, lambda s: setattr(s.content, "edited", {3, 4}),
                         before={"detect": detect})
    assert run.report is not None
    found = classes(run, site)
    assert "/persons/3.html" not in found and "/persons/4.html" not in found  # quiet
    result = CliRunner().invoke(cli, ["diff", "test", "--output", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    offline = json.loads(result.stdout)
    assert offline["summary"]["classes"] == run.report["summary"]["classes"]
    assert not any(f["url"].endswith(("/persons/3.html", "/persons/4.html"))
                   for f in offline["findings"])


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def test_notifications_go_to_a_webhook_and_a_dead_one_does_not_break_the_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received.clear()
    hook = f"json://127.0.0.1:{server.server_address[1]}/hook"
    dead = f"json://127.0.0.1:{free_port()}/nobody"
    try:
        detect = replace(DETECT, notify=(hook, dead))
        _site, run = scenario(
            tmp_path, lambda s: s.content.takedown.removed.update({"/persons/3.html": 410}),
            before={"detect": detect})
    finally:
        server.shutdown()
        server.server_close()
    assert run.exit_code == 6
    (message,) = _Hook.received
    assert "TAKEDOWN" in message["title"] and "/persons/3.html" in message["message"]
    assert f"/persons/3.html «{_site.content.name(3)} — Родился в 1900 году." in message[
        "message"]  # the person, by name
    assert "report.html" in message["message"]


def test_compared_with_the_last_good_capture_not_the_last_one(tmp_path: Path) -> None:
    with SampleSite() as site:
        settings = settings_for(site, tmp_path)
        asyncio.run(run_target(settings))
        site.content.takedown.block_all = True  # crawl 2: every page is a block page
        blocked = asyncio.run(run_target(settings))
        site.content.takedown.block_all = False
        site.content.edited = {3}  # crawl 3: back, with one real edit
        back = asyncio.run(run_target(settings))
    assert classes(blocked, site)["/persons/3.html"] == "block-page"
    found = classes(back, site)
    assert found["/persons/3.html"] == "edited"  # against crawl 1, not the block page
    assert "/persons/4.html" not in found  # quiet again
    # the run's events: the host's recovery, standing for its pages' (rolled up into it)
    (host_event,) = back.events
    assert host_event.state == "recovered" and host_event.key.startswith("host:")
    assert back.report is not None and back.report_paths is not None
    (host,) = [e for e in back.report["events"] if e["key"].startswith("host:")]
    assert host["state"] == "recovered" and host["urls_rolled_up"] >= 30
    assert host["rolled_up_states"] == {"recovered": host["urls_rolled_up"]}
    details = [json.loads(line) for line in
               (back.report_paths[0].parent / "findings.jsonl").read_text("utf-8").splitlines()]
    recovered = [d["url"].replace(site.url, "/") for d in details
                 if d["type"] == "event" and d["state"] == "recovered"]
    assert {"/persons/4.html", "/persons/3.html"} <= set(recovered)  # each page's, listed
    assert len(recovered) == host["urls_rolled_up"] + 1 == len(set(recovered))


def test_a_name_that_did_not_resolve_is_not_asked_again_at_once() -> None:
    from crawler.capture.fetcher import Fetcher

    async def twice() -> list[str]:
        async with Fetcher(FetchSettings()) as fetcher:
            results = [await fetcher.fetch("http://gone.invalid/a"),
                       await fetcher.fetch("http://gone.invalid/b")]
        return [f"{r.failure}: {r.failure_detail}" for r in results]

    first, second = asyncio.run(twice())
    assert first.startswith("dns") and "not asked again" not in first
    assert second.startswith("dns") and "not asked again yet" in second
