"""Detection sized for large targets. The streaming pass of a comparison
(``detection/sweep.py``) settles unchanged URLs without holding them: every URL must get the
class, detail and evidence it gets when the whole comparison is held in memory, on a site
where many kinds of change happen at once. Re-checks of a site gone whole are a sample."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import streamcheck
from test_takedown import DETECT, settings_for

from crawler.archive.catalog import Catalog
from crawler.core.errors import ExitCode
from crawler.demo.sample_site import SampleSite
from crawler.detection.comparison import MAX_RECHECKS, Comparison, compare, recheck_targets
from crawler.detection.detect import Cls, Finding, Snap
from crawler.detection.states import ALERTS, STANDING, events_of, transitions
from crawler.jobs.pipeline import run_target


def check_same(catalog: Catalog) -> Comparison:
    return streamcheck.check_same(catalog, DETECT.rules)


def test_settled_urls_get_the_class_the_whole_comparison_gives(tmp_path: Path) -> None:
    with SampleSite() as site:
        settings = settings_for(site, tmp_path)
        asyncio.run(run_target(settings))
        site.take_down()  # removals, a 451, names cut from the index (delisted pages)
        site.content.edited = {12}
        site.content.takedown.home = {"/about.html"}  # a redirect onto a settled page
        site.content.moved = {"/persons/20.html": "/persons/20-moved.html"}
        asyncio.run(run_target(settings))
        catalog = Catalog.open(tmp_path)
        try:
            second = check_same(catalog)
            # the settled pass did settle most of the site, and left the changes to judge
            assert sum(second.settled.counts.values()) > len(second.findings)
            found = {f.url.replace(site.url, "/"): f.cls for f in second.findings}
            assert found["/persons/7.html"] is Cls.DELISTED  # unchanged bytes, but unlinked
            assert found["/persons/?page=1"] is Cls.PARTIAL
            assert found["/about.html"] is Cls.REDIRECT_HOME
            assert found["/persons/3.html"] is Cls.REMOVED
            # the class of each settled capture is recorded as for any other
            classes = dict(catalog.db.execute(
                "SELECT class, count(*) FROM captures WHERE crawl = ? AND class IN "
                "('unchanged', 'not-modified') GROUP BY class", (second.after.pk,)).fetchall())
            assert sum(classes.values()) >= sum(second.settled.counts.values())
        finally:
            catalog.close()
        site.content.takedown.removed = {}  # the pages come back, with the bytes they had
        site.content.takedown.legal = set()
        third = asyncio.run(run_target(settings))
    assert third.report is not None  # URLs with an open state are held: they recover
    recovered = {e["url"].replace(site.url, "/") for e in third.report["events"]
                 if e["state"] == "recovered"}
    assert {"/persons/3.html", "/persons/4.html", "/articles/2.html"} <= recovered
    catalog = Catalog.open(tmp_path)
    try:
        check_same(catalog)
    finally:
        catalog.close()


def _finding(host: str, n: int, cls: Cls) -> Finding:
    url = f"http://{host}/person/{n}"
    snap = Snap(n, 2, url, url, "page", "2026-12-01T00:00:00Z", 404, None, "text/html", None,
                None, None, "response", None)
    return Finding(url, url, cls, snap, snap, "404")


def test_a_site_gone_whole_is_rechecked_on_a_spread_sample() -> None:
    """Millions of suspects are not all fetched again: a sample of MAX_RECHECKS, every
    host's classes their share, spread over each group's URLs; small groups whole."""
    findings = ([_finding("big.example", n, Cls.REMOVED) for n in range(20_000)]
                + [_finding("small.example", n, Cls.LEGAL) for n in range(10)]
                + [_finding("gone.example", n, Cls.DNS) for n in range(50)]
                + [_finding("big.example", n, Cls.DELISTED) for n in range(20_000, 20_100)])
    chosen = recheck_targets(findings)
    assert len(chosen) == MAX_RECHECKS
    by_host = Counter(f.url.split("/")[2] for f in chosen)
    assert by_host["small.example"] == 10  # a small group whole
    assert by_host["gone.example"] == 3  # a host-wide network failure: a few of its URLs
    assert all(f.cls is not Cls.DELISTED for f in chosen)  # never re-checked
    numbers = sorted(int(f.url.rsplit("/", 1)[1]) for f in chosen
                     if f.url.startswith("http://big.example"))
    assert numbers[0] == 0 and numbers[-1] > 19_000  # spread, not the first in key order
    assert len(recheck_targets(findings[:900])) == 900  # under the cap: every suspect


def test_a_sample_of_rechecks_confirms_a_whole_site_block(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the cap of re-checks, the sample stands for the host's event; the URLs left out
    stay as the crawl left them, and the report says how many were not re-checked."""
    from crawler.detection import comparison as module

    monkeypatch.setattr(module, "MAX_RECHECKS", 4)
    with SampleSite() as site:
        settings = settings_for(site, tmp_path)
        asyncio.run(run_target(settings))
        site.content.takedown.block_all = True
        run = asyncio.run(run_target(settings))
    assert run.report is not None
    host = site.url.split("//")[1].rstrip("/")
    (event,) = [e for e in run.events if e.key == f"host:{host}"]
    assert event.cls == "block-page" and event.state == "confirmed"
    assert "re-checks after the crawl reproduced it" in event.detail
    # every page's transition is rolled up into the host's event: the sample confirmed like
    # the host, the rest provisional (one crawl)
    assert not [e for e in run.events if not e.key.startswith("host:")]
    states = dict(event.rolled_up)
    assert states["confirmed"] == 4 and set(states) == {"confirmed", "provisional"}
    (note,) = [w for w in run.report["warnings"] if "were not re-checked" in w]
    assert note.startswith(f"{states['provisional']} suspected URL(s)")
    catalog = Catalog.open(tmp_path)
    try:
        rechecks = catalog.db.execute("SELECT count(*) FROM captures WHERE kind = 'recheck'"
                                      ).fetchone()[0]
    finally:
        catalog.close()
    assert rechecks == 4 * DETECT.recheck_probes


def test_a_site_answering_404_everywhere_is_judged_a_url_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A site taken down whole, every page a 404 (one a 410): past the re-check sample its
    URLs are plain findings, not held but re-read from the catalog one batch at a time, and
    still every one is judged, recorded, reported and rolled up as when all are held; on
    the next crawl their open states advance the same way."""
    from crawler.detection import comparison as module
    from crawler.detection import sweep as sweep_module

    monkeypatch.setattr(module, "MAX_RECHECKS", 4)
    monkeypatch.setattr(sweep_module.plain_findings, "__defaults__", (7,))  # many batches
    with SampleSite() as site:
        settings = settings_for(site, tmp_path)
        asyncio.run(run_target(settings))
        catalog = Catalog.open(tmp_path)
        try:
            pages = [unquote(urlsplit(url).path) for (url,) in catalog.db.execute(
                "SELECT url FROM captures WHERE kind = 'page' AND status = 200 "
                "AND url NOT LIKE '%?%'")]
        finally:
            catalog.close()
        gone = {path: 404 for path in pages if path != "/"} | {"/persons/5.html": 410}
        site.content.takedown.removed = gone
        second = asyncio.run(run_target(settings))
        third = asyncio.run(run_target(settings))  # still gone: the states advance
    assert len(gone) >= 30
    catalog = Catalog.open(tmp_path)
    try:
        for run in (second, third):
            assert run.report is not None and run.report_paths is not None
            after = catalog.crawl("test", run.outcome.crawl_id)
            assert after is not None
            comparison = check_same(catalog) if run is third else compare(
                catalog, after, rules=DETECT.rules)
            removed = [f for f in comparison.every_finding(catalog) if f.cls is Cls.REMOVED]
            assert set(gone) <= {unquote(urlsplit(f.url).path) for f in removed}
            assert len(removed) == run.report["summary"]["classes"]["removed"]
            assert comparison.plain >= len(gone) - 4  # only the re-checked sample is held
            assert catalog.db.execute(
                "SELECT count(*) FROM captures WHERE crawl = ? AND class = 'removed'",
                (after.pk,)).fetchone()[0] == len(removed)
            # every URL's transition is in the events table and findings.jsonl; the run's
            # list holds the host's event, standing for them all
            stored = catalog.db.execute("SELECT key, state FROM events WHERE crawl = ?",
                                        (after.pk,)).fetchall()
            assert transitions(run.events) == len(stored)
            assert events_of(catalog, after.pk, comparison.hosts) == list(run.events)
            (host,) = run.events  # every URL's transition rolled up into the host's
            assert host.key.startswith("host:") and host.cls == "removed"
            assert host.urls_rolled_up == sum(not k.startswith("host:") for k, _ in stored)
            # crawl 2: the host confirmed by the re-checked sample; crawl 3: it stays so
            # (no transition of its own), and carries its pages' confirmations by the runs
            assert host.state == ("confirmed" if run is second else STANDING)
            assert host.state in ALERTS or transitions(run.events, ALERTS) > 0
            assert run.exit_code == ExitCode.TAKEDOWN
            details = [json.loads(line) for line in (run.report_paths[0].parent /
                                                     "findings.jsonl").read_text().splitlines()]
            assert sorted((d["key"], d["state"]) for d in details if d["type"] == "event") \
                == sorted(tuple(row) for row in stored)
            listed = {d["key"]: d for d in details if d["type"] == "finding"}
            assert len(listed) == run.report["listed"]["findings_total"]
            assert {f.key for f in removed} <= set(listed)
            assert all(listed[f.key]["before"]["capture"] == f.before.capture  # type: ignore
                       and listed[f.key]["after"]["status"] == gone[unquote(urlsplit(
                           f.url).path)] for f in removed if f.url.rstrip("/") != site.url
                       and unquote(urlsplit(f.url).path) in gone)
        # the second crawl opened a state for every page, the third moved each on
        states = dict(catalog.db.execute("SELECT state, count(*) FROM url_states WHERE "
                                         "target = 'test' AND key NOT LIKE 'host:%' "
                                         "GROUP BY state").fetchall())
        assert states == {"confirmed": len(removed)}  # by two consecutive crawls
        third_pk = catalog.crawl("test", third.outcome.crawl_id).pk  # type: ignore[union-attr]
        confirmed = catalog.db.execute(
            "SELECT count(*) FROM events WHERE crawl = ? AND state = 'confirmed' AND key NOT "
            "LIKE 'host:%' AND detail LIKE '%consecutive crawls%'", (third_pk,)).fetchone()[0]
        assert confirmed >= len(removed) - 8  # not those the re-checks confirmed already
    finally:
        catalog.close()
