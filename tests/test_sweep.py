"""Detection sized for large targets. The streaming pass of a comparison
(``detection/sweep.py``) settles unchanged URLs without holding them: every URL must get the
class, detail and evidence it gets when the whole comparison is held in memory, on a site
where many kinds of change happen at once. Re-checks of a site gone whole are a sample."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from test_takedown import DETECT, settings_for

from crawler.archive.catalog import Catalog
from crawler.demo.sample_site import SampleSite
from crawler.detection.comparison import MAX_RECHECKS, Comparison, compare, recheck_targets
from crawler.detection.detect import Cls, Finding, Snap
from crawler.jobs.pipeline import run_target


def judged(comparison: Comparison) -> dict[str, tuple[str, str, tuple[str, ...],
                                                        tuple[str, ...]]]:
    return {f.key: (f.cls.value, f.detail, f.removed, f.added) for f in comparison.findings}


def check_same(catalog: Catalog) -> Comparison:
    """Compare the target's latest crawl both ways; assert they agree; return the streamed."""
    after = catalog.crawls("test")[-1]
    streamed = compare(catalog, after, rules=DETECT.rules)
    held = compare(catalog, after, rules=DETECT.rules, settle=False)
    assert held.settled.counts == {}
    settled = {cls for cls, n in streamed.settled.counts.items() if n}
    full = judged(held)
    quiet = {k: v for k, v in full.items() if v[0] in settled and k not in judged(streamed)}
    assert judged(streamed) == {k: v for k, v in full.items() if k not in quiet}
    assert streamed.settled.counts == {cls: sum(v[0] == cls for v in quiet.values())
                                       for cls in settled}
    assert all(v[1:] == ("", (), ()) for v in quiet.values())  # nothing to say about them
    assert streamed.counts() == held.counts()
    assert streamed.hosts == held.hosts
    assert streamed.confirmed == held.confirmed and streamed.notes == held.notes
    assert streamed.unlanded == held.unlanded
    return streamed


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
    pages = [e for e in run.events if not e.key.startswith("host:")]
    assert sum(e.state == "confirmed" for e in pages) == 4  # the sample
    assert {e.state for e in pages} == {"confirmed", "provisional"}  # the rest: one crawl
    (note,) = [w for w in run.report["warnings"] if "were not re-checked" in w]
    assert note.startswith(f"{len(pages) - 4} suspected URL(s)")
    catalog = Catalog.open(tmp_path)
    try:
        rechecks = catalog.db.execute("SELECT count(*) FROM captures WHERE kind = 'recheck'"
                                      ).fetchone()[0]
    finally:
        catalog.close()
    assert rechecks == 4 * DETECT.recheck_probes
