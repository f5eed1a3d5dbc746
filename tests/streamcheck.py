"""The oracle for detection's streaming pass (``detection/sweep.py``): a comparison that
settles and streams URLs must judge every URL exactly as the comparison that holds them all."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from crawler.archive.catalog import Catalog
from crawler.capture import pagetext
from crawler.detection.comparison import Comparison, compare
from crawler.detection.detect import Finding

Judged = dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...], bool, int | None,
                         int | None]]
PLAIN = {"removed", "not-checked", "own-network-down", "unreachable-dns",
         "unreachable-refused", "unreachable-tls", "unreachable-timeout", "unreachable-other",
         "blocked-here"}  # (a vantage point's verdict on a host's sample stands for its URLs)


def judged(findings: Iterable[Finding]) -> Judged:
    """Return key -> class, detail, lines, strength and the captures behind them."""
    return {f.key: (f.cls.value, f.detail, f.removed, f.added, f.strong,
                    f.before.capture if f.before else None,
                    f.after.capture if f.after else None) for f in findings}


def check_same(catalog: Catalog, rules: pagetext.TextRules, target: str = "test",
               ) -> Comparison:
    """Compare the target's latest crawl both ways; assert they agree; return the streamed.

    The streamed comparison gives every URL that is not quiet back (held, or plain: re-read
    from the catalog) exactly as the held one judges it, with the same evidence, the same
    confirmation by re-checks, the same host events, notes and counts."""
    after = catalog.crawls(target)[-1]
    streamed = compare(catalog, after, rules=rules)
    held = compare(catalog, after, rules=rules, settle=False)
    assert held.settled.counts == {} and held.plain == 0
    full = judged(held.findings)
    every = list(streamed.every_finding(catalog))
    given = judged(every)
    assert len(given) == len(every) == len(streamed.findings) + streamed.plain  # none twice
    plain = judged(every[len(streamed.findings):])
    assert {v[0] for v in plain.values()} <= PLAIN
    quiet = {k: v for k, v in full.items() if k not in given}
    assert given == {k: v for k, v in full.items() if k not in quiet}
    assert streamed.settled.counts == Counter(v[0] for v in quiet.values()) + Counter(
        v[0] for v in plain.values())
    assert {v[0] for v in quiet.values()} <= {"unchanged", "not-modified"}
    assert all(v[1:5] == ("", (), (), False) for v in quiet.values())  # nothing to say
    assert {f.key for f in every if streamed.is_confirmed(f)} == {
        f.key for f in held.findings if held.is_confirmed(f)}
    assert streamed.counts() == held.counts()
    assert streamed.hosts == held.hosts
    assert streamed.notes == held.notes
    assert streamed.unlanded == held.unlanded
    return streamed
