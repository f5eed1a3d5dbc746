"""The streaming pass of a comparison (``detection/sweep.py``) settles unchanged URLs without
holding them: every URL must get the class, detail and evidence it gets when the whole
comparison is held in memory, on a site where many kinds of change happen at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_takedown import DETECT, settings_for

from crawler.archive.catalog import Catalog
from crawler.demo.sample_site import SampleSite
from crawler.detection.comparison import Comparison, compare
from crawler.detection.detect import Cls
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
