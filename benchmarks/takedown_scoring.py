"""Score takedown detection: every scenario, a confusion table, precision and recall per class,
and the time to diff two 100,000-page crawls from the catalog.

    python benchmarks/takedown_scoring.py                 # all scenarios + the 100k diff
    python benchmarks/takedown_scoring.py --skip-scale

Each scenario serves the bundled sample site on 127.0.0.1, crawls it (baseline), changes it
with one takedown_sim switch, crawls it again with the default detection settings (two
rechecks, here 0.2 s apart), and compares every URL's class with the truth the scenario
defines. "quiet" stands for unchanged, not-modified and semantically-unchanged; URLs the
recrawl did not fetch (not-checked) are counted in their own column. Alerts are events in
state confirmed or provisional.

The scale test builds a catalog with two crawls of 100,000 pages: 98 % identical, 1.9 % new
bytes with the same text (a counter), 0.1 % edited with their records written to a WARC, so
that the diff re-reads those payloads as it would for real.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import logging
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from crawler.archive.catalog import CaptureRow, Catalog
from crawler.archive.warc import WarcSettings, WarcWriter
from crawler.capture.fetcher import FetchSettings
from crawler.capture.scope import ScopeKind, ScopeRules, TrapRules
from crawler.capture.settings import CrawlSettings, DetectSettings, Limits, Politeness
from crawler.core.models import FetchResult
from crawler.demo.proxy_sim import VantageProxy
from crawler.demo.sample_site import SampleSite
from crawler.demo.takedown_sim import OUTAGES, WALLS
from crawler.detection.comparison import compare
from crawler.detection.detect import NEGATIVE, SLOW_CONFIRM, Cls
from crawler.jobs.pipeline import run_target

QUIET = {Cls.UNCHANGED.value, Cls.NOT_MODIFIED.value, Cls.SEMANTIC.value}
ALERT_STATES = ("confirmed", "provisional")


@dataclass
class Scenario:
    """One thing that can happen to a site, and what every URL should then be classed."""

    name: str
    change: Callable[[SampleSite], None]
    truth: Callable[[str, SampleSite], str]  # path -> expected class ("quiet" by default)
    setup: Callable[[SampleSite], None] | None = None
    settings: dict[str, object] | None = None  # for the second crawl
    baseline: dict[str, object] | None = None  # for the first crawl
    host: str | None = None  # crawl the site under this name (reached with --resolve)
    vantage: bool = False  # detection also fetches through a proxy from another address


def _paths(mapping: dict[str, str], default: str = "quiet") -> Callable[[str, SampleSite], str]:
    return lambda path, site: mapping.get(path, default)


def _html_pages(cls: str) -> Callable[[str, SampleSite], str]:
    return lambda path, site: cls if path in site.content.page_paths() else "quiet"


def _set(attr: str, value: object) -> Callable[[SampleSite], None]:
    return lambda site: setattr(site.content.takedown, attr, value)


ARTICLE = "/articles/3.html"
LOCAL_BLOCK = {"/persons/3.html", "/persons/4.html", "/articles/2.html"}


def _moved_outside(site: SampleSite) -> None:
    site.content.moved.update({"/persons/5.html": "/elsewhere/5.html",
                               "/persons/6.html": "/elsewhere/6.html"})
    site.content.takedown.removed["/elsewhere/6.html"] = 404

REDIRECTS = {"/old-address.html", "/chain/1", "/chain/2", "/chain/3"}  # the site's redirects
LABEL = ("<h1>Статья 3</h1><p>Материал внесён в реестр запрещённых сайтов; доступ к ресурсу "
         "ограничен по решению суда.</p>").encode()
CP1251_LINE = '<p><a href="/поиск/Иванов.html">Поиск: Иванов</a></p>'.encode("cp1251")
SCENARIOS = [
    Scenario("unchanged", lambda s: None, _paths({})),
    Scenario("noise only", lambda s: None, _paths({}), setup=_set("noise", True)),
    Scenario("edited paragraph", lambda s: setattr(s.content, "edited", {3}),
             _paths({"/persons/3.html": "edited"})),
    Scenario("names gone from the index", lambda s: setattr(s.content, "delisted", {7, 8}),
             _paths({"/persons/?page=1": "partial-removal", "/persons/7.html": "delisted",
                     "/persons/8.html": "delisted", "/persons/?page=2": "edited",
                     "/persons/?page=3": "edited"})),  # later names move up a page
    Scenario("404 and 410", _set("removed", {"/persons/3.html": 404, "/persons/4.html": 410}),
             _paths({"/persons/3.html": "removed", "/persons/4.html": "removed"})),
    Scenario("451 blocked-by", _set("legal", {"/articles/2.html"}),
             _paths({"/articles/2.html": "legal-block"})),
    Scenario("whole-site block page", _set("block_all", True),  # and the redirects that
             lambda path, site: "block-page" if path in site.content.page_paths()  # lead to
             or path in REDIRECTS else "quiet"),  # its pages: they land on the block page
    Scenario("block page by redirect", lambda s: _set("block_redirect",
                                                      s.cdn_url + "blocked.html")(s),
             lambda path, site: "block-page"),
    Scenario("soft-404", lambda s: (_set("soft404", {"/persons/5.html"})(s),
                                    _set("soft404_all", True)(s)),
             _paths({"/persons/5.html": "soft-404"})),
    Scenario("redirect to home", _set("home", {"/about.html"}),
             _paths({"/about.html": "redirect-home"})),
    Scenario("connection refused", lambda s: s.stop(),
             lambda path, site: "unreachable-refused"),
    Scenario("host stops answering", lambda s: setattr(s.content, "latency", 120.0),
             lambda path, site: "unreachable-timeout",
             settings={"fetch": FetchSettings(read_timeout=0.5, connect_timeout=0.5,
                                              total_timeout=1.0),
                       "politeness": Politeness(concurrency=8, per_host=4, delay=0.0,
                                                retries=1, backoff=0.1, hang_limit=4,
                                                hang_pause=0.5, hang_trips=2)}),
    Scenario("unresolvable host name", lambda s: None,
             lambda path, site: "unreachable-dns", host="memorial.invalid",
             baseline={"fetch": FetchSettings(resolve=(("memorial.invalid", "127.0.0.1"),))}),
    Scenario("own network down", lambda s: s.stop(), lambda path, site: "own-network-down",
             settings={"control_url": "http://127.0.0.1:9/"}),
    # (a page that answered 503 to every retry is a server error, never confirmed by them)
    Scenario("transient 503 on 20 %", _set("flaky_every", 5), _paths({}, "quiet|server-error")),
    Scenario("windows-1251 page gutted", lambda s: s.content.takedown.rewrite.update(
        {"/cp1251.html": (CP1251_LINE, b"")}),
        _paths({"/cp1251.html": "partial-removal",
                quote("/поиск/Иванов.html"): "delisted"})),  # its only link was there
    # Innocent pages that quote block-page phrases (article 3 is about censorship), and the
    # walls and outages that must never read as removals (issue 13).
    Scenario("article about blocking edited", lambda s: s.content.takedown.rewrite.update(
        {ARTICLE: ("Мы продолжаем публиковать документы о репрессиях.".encode(),
                   "Мы продолжаем публиковать документы и письма о репрессиях.".encode())}),
        _paths({ARTICLE: "edited"})),
    Scenario("legal label on it", lambda s: s.content.takedown.rewrite.update(
        {ARTICLE: ("<h1>Статья 3</h1>".encode(), LABEL)}), _paths({ARTICLE: "edited"})),
    Scenario("article about blocking moved", lambda s: s.content.moved.update(
        {ARTICLE: "/articles/3-blocking.html"}),
        _paths({ARTICLE: "moved", "/articles/3-blocking.html": "new"})),
    Scenario("person pages behind a login", lambda s: (
        _set("login", {f"/persons/{n}.html" for n in range(1, 9)})(s),
        _set("unauthorized", {"/persons/9.html"})(s)),
        lambda path, site: "login-wall" if path in {
            f"/persons/{n}.html" for n in range(1, 10)}
        else "new" if path.startswith("/login") else "quiet"),  # the login page itself
    *(Scenario(f"bot wall: {name}", _set("wall", WALLS[name]), lambda path, site: "bot-wall")
      for name in WALLS),
    Scenario("new URLs behind a wall", _set("wall", WALLS["ddos-guard-200"]),
             lambda path, site: "bot-wall", baseline={"limits": Limits(max_pages=8)}),
    Scenario("article about captchas", lambda s: s.content.takedown.rewrite.update(
        {ARTICLE: ("<h1>Статья 3</h1>".encode(), "<h1>Статья 3</h1><p>При атаке сайт "
                   "показывает проверку: Checking your browser before accessing. Verify you "
                   "are human. DDoS protection by DDoS-Guard.</p>".encode())}),
        _paths({ARTICLE: "edited"})),
    Scenario("short notice about DDoS-Guard", lambda s: s.content.takedown.rewrite.update(
        {"/about.html": ("<h1>О проекте</h1>".encode(), "<h1>О проекте</h1><p>Сайт защищён "
                         "DDoS-Guard: если вы видите «Проверка браузера», подождите.</p>"
                         .encode())}), _paths({"/about.html": "edited"})),
    # Paginated listings: names that move between pages are not removed (issue 13).
    Scenario("listing 25 to 10 names a page", lambda s: setattr(s.content, "per_page", 10),
             lambda path, site: ("new" if path == "/persons/?page=3" else "edited")
             if path.startswith("/persons/?page=") else "quiet",
             setup=lambda s: setattr(s.content, "per_page", 25)),
    Scenario("listing 10 to 25 names a page", lambda s: setattr(s.content, "per_page", 25),
             lambda path, site: ("moved" if path == "/persons/?page=3" else "edited")
             if path.startswith("/persons/?page=") else "quiet"),
    Scenario("3 names dropped, listing reflows", lambda s: setattr(s.content, "delisted",
                                                                   {2, 3, 4}),
             _paths({"/persons/?page=1": "partial-removal", "/persons/?page=2": "edited",
                     "/persons/?page=3": "edited", "/persons/2.html": "delisted",
                     "/persons/3.html": "delisted", "/persons/4.html": "delisted"})),
    Scenario("rotating block in every page", lambda s: None, _paths({}, "quiet|edited"),
             setup=_set("rotating", True)),
    Scenario("names dropped beside a rotating block", lambda s: setattr(s.content, "delisted",
                                                                        {2, 3, 4}),
             _paths({"/persons/?page=1": "partial-removal", "/persons/2.html": "delisted",
                     "/persons/3.html": "delisted", "/persons/4.html": "delisted"},
                    default="quiet|edited"), setup=_set("rotating", True)),
    # Redirect targets the crawl does not fetch (here: excluded) are fetched as evidence.
    Scenario("redirected outside the crawl", _moved_outside,
             _paths({"/persons/5.html": "moved", "/persons/6.html": "removed",
                     "/elsewhere/5.html": "new"}),
             settings={"scope": ScopeRules(kind=ScopeKind.HOST, exclude=(
                 re.compile("calendar"), re.compile("/elsewhere/")),
                 traps=TrapRules(max_query_variants=12))}),
    # A block on our own network path: a second vantage point sees the pages.
    Scenario("local block, vantage point", _set("local", LOCAL_BLOCK),
             _paths(dict.fromkeys(LOCAL_BLOCK, "blocked-here")), vantage=True),
    Scenario("local block, no vantage point", _set("local", LOCAL_BLOCK),
             _paths(dict.fromkeys(LOCAL_BLOCK, "block-page"))),
    *(Scenario(f"outage: {name}", _set("outage", OUTAGES[name]),  # every HTML answer,
               lambda path, site: "outage" if path in site.content.page_paths()  # its 404
               or path == "/missing.html" or path in REDIRECTS  # page too, and redirects
               else "quiet") for name in OUTAGES),  # that land on the outage page
]


ONE_OFF = DetectSettings(recheck_spacing=0.2)
SCHEDULED = DetectSettings(recheck_probes=0, confirm_runs=2)  # the daemon's scheduled runs


def settings_for(url: str, out: Path, **extra: object) -> CrawlSettings:
    """Fast, deterministic settings (no politeness delay; no calendar trap)."""
    values: dict[str, object] = {
        "seeds": (url,), "output": out, "target": "score", "sitemaps": False,
        "extract_workers": 0,
        "scope": ScopeRules(kind=ScopeKind.HOST, exclude=(re.compile("calendar"),),
                            traps=TrapRules(max_query_variants=12)),
        "politeness": Politeness(concurrency=8, per_host=4, delay=0.0, retries=2, backoff=0.2),
        "detect": DetectSettings(recheck_spacing=0.2)}
    values.update(extra)
    return CrawlSettings(**values)  # type: ignore[arg-type]


@dataclass
class Outcome:
    """What one scenario gave: (truth, predicted) per URL and its alerts judged."""

    pairs: list[tuple[str, str]]
    true_alerts: int
    false_alerts: list[str]  # "url class" of alerts the truth does not support
    missed: list[str]  # takedowns that were never alerted on
    seconds: float


def run_scenario(scenario: Scenario, work: Path, scheduled: bool) -> Outcome:
    """Crawl, change, crawl again (scheduled: three times, as the daemon does: no re-checks,
    confirmed by consecutive crawls); return the classes of the first crawl after the change
    and the alerts raised over all of them."""
    started = time.monotonic()
    with SampleSite() as site, VantageProxy() as proxy:
        base = site.url
        if scenario.host:
            base = f"http://{scenario.host}:{site.url.rsplit(':', 1)[1]}"
        if scenario.setup:
            scenario.setup(site)
        detect = SCHEDULED if scheduled else ONE_OFF
        asyncio.run(run_target(settings_for(base, work, **{"detect": detect,
                                                             **(scenario.baseline or {})})))
        scenario.change(site)
        extra = {"detect": detect, **(scenario.settings or {})}
        if "control_url" in extra:
            extra["detect"] = replace(detect, control_url=extra.pop("control_url"))
        if scenario.vantage:
            extra["detect"] = replace(extra["detect"], vantage=(proxy.url,))
        events = []
        for n in range(3 if scheduled else 1):
            run = asyncio.run(run_target(settings_for(base, work, **extra)))
            events.extend(e for e in run.events if e.state in ALERT_STATES)
            if n == 0:  # classes are judged where the change shows: the first crawl after it
                catalog = Catalog.open(work)
                try:
                    comparison = compare(catalog, catalog.crawls("score")[-1],
                                         rules=detect.rules)
                finally:
                    catalog.close()
        pairs = []
        for finding in comparison.findings:
            if not finding.url.startswith(base):
                continue  # the CDN and redirect landings are not the site under test
            path = finding.url[len(base) - 1:]
            predicted = "quiet" if finding.cls.value in QUIET else finding.cls.value
            expected = scenario.truth(path, site)
            if predicted in expected.split("|"):
                expected = predicted
            elif predicted != "not-checked":
                print(f"  {scenario.name}: {path} expected {expected}, got {predicted} "
                      f"({finding.detail})")
            pairs.append((expected.split("|")[0], predicted))
        true_alerts, false_alerts, alerted = 0, [], set()
        truths = {finding.url[len(base) - 1:]: scenario.truth(finding.url[len(base) - 1:], site)
                  for finding in comparison.findings if finding.url.startswith(base)}
        for event in events:
            if event.key.startswith("host:"):
                covered = {p for p, t in truths.items() if event.cls in t.split("|")}
            else:  # (a URL of another host, the CDN: its path stands for it)
                path = event.url[len(base) - 1:] if event.url.startswith(base) else \
                    "/" + event.url.split("/", 3)[-1]
                truth = truths.get(path) or scenario.truth(path, site)
                covered = {path} if event.cls in truth.split("|") else set()
            if covered:
                true_alerts += 1
                alerted |= covered
            else:
                false_alerts.append(f"{event.url} {event.cls}")
                print(f"  {scenario.name}: FALSE ALERT {event.state} {event.cls} {event.url}")
        due = _alertable(scheduled)
        missed = sorted(p for p, t in truths.items() if t in due and p not in alerted)
        for path in missed:
            print(f"  {scenario.name}: MISSED {truths[path]} {path}")
    return Outcome(pairs, true_alerts, false_alerts, missed, time.monotonic() - started)


def _alertable(scheduled: bool) -> set[str]:
    """Return the classes a run of this mode must alert on by its end: every takedown class
    but those an ordinary outage produces (confirmed only after hours: never within a
    benchmark) and, in one-off runs, delisted (confirmed by a second crawl, not re-checks)."""
    due = {c.value for c in NEGATIVE - SLOW_CONFIRM}
    return due if scheduled else due - {Cls.DELISTED.value}


def report(results: dict[str, Outcome]) -> None:
    """Print per-scenario accuracy and alerts, the confusion table, precision and recall."""
    if not results:
        return
    print(f"{'scenario':38} {'URLs':>5} {'correct':>8} {'alerts':>7} {'false':>6} "
          f"{'missed':>7} {'seconds':>8}")
    everything: list[tuple[str, str]] = []
    for name, out in results.items():
        checked = [(e, p) for e, p in out.pairs if p != "not-checked"]
        correct = sum(e == p for e, p in checked)
        print(f"{name:38} {len(checked):5d} {correct:8d} {out.true_alerts:7d} "
              f"{len(out.false_alerts):6d} {len(out.missed):7d} {out.seconds:8.1f}")
        everything.extend(checked)
    print(f"{'total':38} {len(everything):5d} {sum(e == p for e, p in everything):8d} "
          f"{sum(o.true_alerts for o in results.values()):7d} "
          f"{sum(len(o.false_alerts) for o in results.values()):6d} "
          f"{sum(len(o.missed) for o in results.values()):7d}")
    labels = sorted({e for e, _ in everything} | {p for _, p in everything})
    counts = Counter(everything)
    print("\nconfusion (rows: truth, columns: predicted)")
    width = max(len(x) for x in labels)
    short = {label: label[:8] for label in labels}
    print(" " * (width + 1) + " ".join(f"{short[c]:>8}" for c in labels))
    for truth in labels:
        print(f"{truth:{width}} " + " ".join(f"{counts[(truth, p)] or '.':>8}" for p in labels))
    print(f"\n{'class':24} {'precision':>9} {'recall':>7} {'support':>8}")
    for label in labels:
        tp = counts[(label, label)]
        predicted = sum(n for (_, p), n in counts.items() if p == label)
        actual = sum(n for (t, _), n in counts.items() if t == label)
        precision = f"{tp / predicted:9.1%}" if predicted else f"{'-':>9}"
        recall = f"{tp / actual:7.1%}" if actual else f"{'-':>7}"
        print(f"{label:24} {precision} {recall} {actual:8d}")


def scale(pages: int) -> None:
    """Time the catalog diff of two crawls of ``pages`` pages."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        catalog = Catalog.open(root)
        first = catalog.add_crawl("big", "c1", root / "big" / "c1", {"seeds": []})
        second = catalog.add_crawl("big", "c2", root / "big" / "c2", {"seeds": []})
        writers = {pk: WarcWriter(WarcSettings(directory=root / "big" / cid / "warc"))
                   for pk, cid in ((first, "c1"), (second, "c2"))}
        build = time.monotonic()
        with catalog.transaction():
            for n in range(pages):
                url = f"http://big.example/p/{n}.html"
                for pk, version in ((first, 0), (second, 1)):
                    catalog.add_capture(pk, _row(url, n, version, writers[pk]))
        for writer in writers.values():
            writer.close()
        for pk in (first, second):
            catalog.finish_crawl(pk, "complete", "complete", 0)
        print(f"\nscale: built 2 x {pages:,} captures in {time.monotonic() - build:.1f}s")
        after = catalog.crawls("big")[-1]
        start = time.monotonic()
        comparison = compare(catalog, after)
        seconds = time.monotonic() - start
        catalog.close()
    print(f"scale: diff of two {pages:,}-page crawls: {seconds:.2f}s "
          f"({comparison.counts()})")


def _row(url: str, n: int, version: int, writer: WarcWriter) -> CaptureRow:
    """Return a capture of page ``n``: mostly unchanged, some noisy, 0.1 % edited."""
    edited, noisy = n % 1000 == 0, n % 50 == 1
    text = f"person {n}" + (" rehabilitated" if edited and version else "")
    body = f"<html><body><main><p>{text}</p></main></body></html>".encode()
    if noisy and version:
        body += b"<!-- counter 2 -->"
    digest = "sha1:" + hashlib.sha1(body).hexdigest()
    place: dict[str, object] = {}
    if edited:  # written for real: the diff re-reads these payloads
        when = datetime.now(UTC)
        result = FetchResult(url=url, started=when, status=200, reason="OK",
                             headers=[(b"Content-Type", b"text/html; charset=utf-8")],
                             body=io.BytesIO(body), body_length=len(body))
        entry = writer.write_exchange(result)
        place = {"warc_file": entry.filename, "warc_offset": entry.offset,
                 "warc_length": entry.length, "record_type": "response"}
    return CaptureRow(url=url, key=f"example,big)/p/{n}.html", kind="page", depth=1,
                      fetched_at="2026-11-23T10:00:00.000000Z", status=200, mime="text/html",
                      digest=digest, text_hash=hashlib.sha1(text.encode()).hexdigest(),
                      **{"record_type": "response", **place})  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--pages", type=int, default=100_000, help="scale test size")
    parser.add_argument("--only", help="run only scenarios whose name contains this")
    parser.add_argument("--scheduled", action="store_true",
                        help="three scheduled runs after each change (no re-checks; "
                             "confirmed by consecutive crawls), as the daemon does")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = {}
    print("mode:", "scheduled (3 runs after the change)" if args.scheduled else
          "one-off (re-checks)")
    for scenario in SCENARIOS:
        if args.only and args.only not in scenario.name:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            results[scenario.name] = run_scenario(scenario, Path(tmp), args.scheduled)
    report(results)
    if not args.skip_scale:
        scale(args.pages)


if __name__ == "__main__":
    main()
