"""Scope decisions and trap defences."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from crawler.capture.scope import Scope, ScopeKind, ScopeRules, TrapRules
from crawler.core.models import UrlKind

NOW = datetime(2026, 11, 23, tzinfo=UTC)
SEED = "http://www.memo.ru/history/index.html"


def decide(kind: ScopeKind, url: str, **rules: object) -> str:
    scope = Scope(ScopeRules(kind=kind, **rules), [SEED], now=NOW)  # type: ignore[arg-type]
    return scope.decide(url, UrlKind.PAGE, 1).reason


def test_scope_kinds() -> None:
    assert decide(ScopeKind.PAGE, SEED) == "in-scope"
    assert decide(ScopeKind.PAGE, "http://www.memo.ru/history/b.html") == "out-of-scope"
    assert decide(ScopeKind.PREFIX, "http://www.memo.ru/history/b.html") == "in-scope"
    assert decide(ScopeKind.PREFIX, "http://www.memo.ru/other/") == "out-of-scope"
    assert decide(ScopeKind.HOST, "http://www.memo.ru/other/") == "in-scope"
    assert decide(ScopeKind.HOST, "http://lists.memo.ru/") == "out-of-scope"
    assert decide(ScopeKind.DOMAIN, "http://lists.memo.ru/") == "in-scope"
    assert decide(ScopeKind.DOMAIN, "http://memo.ru.evil.org/") == "out-of-scope"


def test_include_exclude_and_depth() -> None:
    inc = (re.compile(r"^http://lists\.memo\.ru/"),)
    exc = (re.compile(r"/history/private/"),)
    assert decide(ScopeKind.PREFIX, "http://lists.memo.ru/a", include=inc) == "in-scope"
    assert decide(ScopeKind.PREFIX, "http://www.memo.ru/history/private/x",
                  exclude=exc) == "excluded"
    scope = Scope(ScopeRules(depth=2), [SEED], now=NOW)
    assert scope.decide("http://www.memo.ru/history/x", UrlKind.PAGE, 3).reason == "too-deep"
    # Requisites go anywhere (CDNs) unless excluded, and are not depth-limited.
    assert scope.decide("http://cdn.org/a.png", UrlKind.REQUISITE, 9).allowed
    off = Scope(ScopeRules(requisites=False), [SEED], now=NOW)
    assert not off.decide("http://cdn.org/a.png", UrlKind.REQUISITE, 1).allowed


def test_traps() -> None:
    base = "http://www.memo.ru/history/"
    assert decide(ScopeKind.HOST, base + "a/b/a/b/a/b/") == "trap:repeated-segments"
    assert decide(ScopeKind.HOST, base + "?" + "x" * 3000) == "trap:url-length"
    assert decide(ScopeKind.HOST, base + "cal?month=2031-01") == "trap:future-date"
    assert decide(ScopeKind.HOST, base + "cal/2027/05/") == "in-scope"
    assert decide(ScopeKind.HOST, base + "person/299901") == "in-scope"  # ids are not dates
    assert decide(ScopeKind.HOST, base + "events/1937-08") == "in-scope"  # history is fine
    scope = Scope(ScopeRules(traps=TrapRules(max_query_variants=4)), [SEED], now=NOW)
    # pages, ids (numeric or not) and dates are one query shape each: 500 of each are 4
    for n in range(500):
        for query in (f"page={n}", f"id=Ab{n}x", f"page={n}&letter=%D0%90",
                      f"day=1937-08-{n % 28 + 1:02d}"):
            assert scope.decide(base + f"list?{query}", UrlKind.PAGE, 1).reason == "in-scope"
    # free-text values (facets) are shapes of their own: past the cap they are a trap
    scope = Scope(ScopeRules(traps=TrapRules(max_query_variants=2)), [SEED], now=NOW)
    verdicts = [scope.decide(base + f"search?sort={word}", UrlKind.PAGE, 1).reason
                for word in ("name", "date", "place", "year", "fate")]
    assert verdicts == ["in-scope"] * 2 + ["trap:query-variants"] * 3
    assert scope.decide(base + "x", UrlKind.PAGE, 1, redirects=11).reason == "trap:redirect-chain"


def test_same_content_trap_catches_only_self_generating_patterns() -> None:
    """A calendar that links to its next month and keeps serving the same page is a trap;
    person pages linked from an index are not, even when they all say "not found"."""
    base = "http://www.memo.ru/"
    scope = Scope(ScopeRules(traps=TrapRules(max_same_content=5)), [base], now=NOW)
    for n in range(1, 8):
        scope.note_content(base + f"calendar?month=1990-{n:02d}", "same")
        scope.note_content(base + f"person?id={n}", "not-found-notice")
    nxt = scope.decide(base + "calendar?month=1990-09", UrlKind.PAGE, 9,
                       via=base + "calendar?month=1990-08")
    assert nxt.reason == "trap:same-content"
    from_index = scope.decide(base + "person?id=99", UrlKind.PAGE, 2, via=base + "list?page=3")
    assert from_index.reason == "in-scope"
    known = scope.decide(base + "calendar?month=1980-01", UrlKind.PAGE, 1)  # a re-check
    assert known.reason == "in-scope"


@given(st.lists(st.text(alphabet="abcxyz/.-?=", max_size=20), max_size=20))
def test_excluded_url_is_never_allowed(paths: list[str]) -> None:
    scope = Scope(ScopeRules(kind=ScopeKind.DOMAIN, exclude=(re.compile("x"),)), [SEED], now=NOW)
    for path in paths:
        url = "http://www.memo.ru/" + path
        for kind in UrlKind:
            if "x" in url:
                assert not scope.decide(url, kind, 0).allowed
