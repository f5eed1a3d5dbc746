"""What happened to a URL between its last good capture and now: one class, with evidence.

The classes of docs/detection.md. ``classify`` is pure: everything it needs about the crawl as a
whole (the text of pages, redirect landings, soft-404 probes, URLs collapsing onto one body,
links, whether our own network was down) comes in through ``Context``, which ``comparison.py``
builds from the catalog and the WARCs.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from urllib.parse import urljoin, urlsplit

from crawler.capture import urls
from crawler.capture.fingerprints import (
    BLOCK_MARKERS,
    LOGIN_MARKERS,
    LOGIN_SEGMENTS,
    OUTAGE_MARKERS,
    VANTAGE_NOTE,
    WALL_MARKERS,
    WALL_NOTE,
    generic,
)


class Cls(StrEnum):
    """The classes, from harmless to takedown."""

    UNCHANGED = "unchanged"
    NOT_MODIFIED = "not-modified"
    SEMANTIC = "semantically-unchanged"
    EDITED = "edited"
    NEW = "new"
    MOVED = "moved"
    NOT_CHECKED = "not-checked"  # not fetched this time (robots, scope, a limit)
    FORBIDDEN = "forbidden"
    BOT_WALL = "bot-wall"
    RATE_LIMITED = "rate-limited"
    NETWORK_DOWN = "own-network-down"
    PARTIAL = "partial-removal"
    REPLACED = "replaced"
    DELISTED = "delisted"
    REMOVED = "removed"
    SOFT_404 = "soft-404"
    REDIRECT_HOME = "redirect-home"
    REDIRECT_AWAY = "redirect-away"
    LEGAL = "legal-block"
    BLOCK_PAGE = "block-page"
    SERVER_ERROR = "server-error"
    LOGIN_WALL = "login-wall"  # the page now needs an account (401, a login form)
    BLOCKED_HERE = "blocked-here"  # gone from here, fine through a vantage point: a local block
    OUTAGE = "outage"  # a maintenance or database-error page in place of the page
    DNS = "unreachable-dns"
    REFUSED = "unreachable-refused"
    TLS = "unreachable-tls"
    TIMEOUT = "unreachable-timeout"
    UNREACHABLE = "unreachable-other"


# Classes that may mean a takedown: tracked per URL, confirmed, alerted on.
NEGATIVE = frozenset({Cls.LOGIN_WALL, Cls.BLOCKED_HERE, Cls.PARTIAL, Cls.REPLACED,
                      Cls.DELISTED, Cls.REMOVED, Cls.SOFT_404,
                      Cls.REDIRECT_HOME, Cls.REDIRECT_AWAY, Cls.LEGAL, Cls.BLOCK_PAGE,
                      Cls.SERVER_ERROR, Cls.OUTAGE, Cls.DNS, Cls.REFUSED, Cls.TLS,
                      Cls.TIMEOUT, Cls.UNREACHABLE})
# Negative classes that an ordinary outage produces too: confirmed only when they persist
# over runs *and* time (DetectSettings.outage_confirm_after), never by re-checks seconds apart.
SLOW_CONFIRM = frozenset({Cls.SERVER_ERROR, Cls.OUTAGE})
# Classes that say nothing about the page (not evidence): an open state neither advances nor
# recovers on them.
NEUTRAL = frozenset({Cls.NOT_CHECKED, Cls.NETWORK_DOWN, Cls.FORBIDDEN, Cls.BOT_WALL,
                     Cls.RATE_LIMITED})
NETWORK = {"dns": Cls.DNS, "refused": Cls.REFUSED, "tls": Cls.TLS, "timeout": Cls.TIMEOUT,
            "reset": Cls.UNREACHABLE, "protocol": Cls.UNREACHABLE, "connect": Cls.UNREACHABLE,
            "other": Cls.UNREACHABLE}

_BLOCK_PHRASES = {marker: marker for marker in BLOCK_MARKERS}  # a phrase says itself


@dataclass(frozen=True, slots=True)
class Snap:
    """One capture as the diff sees it (a row of the catalog)."""

    capture: int
    crawl: int
    url: str
    key: str
    kind: str
    fetched_at: str
    status: int | None
    failure: str | None
    mime: str | None
    location: str | None
    digest: str | None
    text_hash: str | None
    record_type: str | None
    record_id: str | None
    detail: str | None = None  # the crawl's notes (a challenge page: fingerprints.WALL_NOTE)

    @property
    def wall(self) -> str | None:
        """Return who showed the challenge page the crawl met here, if it met one."""
        return self._note(WALL_NOTE)

    @property
    def vantage(self) -> str | None:
        """Return the vantage point (proxy) this capture was fetched through, if any."""
        return self._note(VANTAGE_NOTE)

    def _note(self, prefix: str) -> str | None:
        if not self.detail or prefix not in self.detail:
            return None
        return self.detail.split(prefix, 1)[1].split(";", 1)[0].strip()


@dataclass(frozen=True, slots=True)
class Finding:
    """The class of one URL and the evidence for it."""

    url: str
    key: str
    cls: Cls
    before: Snap | None
    after: Snap | None
    detail: str = ""
    removed: tuple[str, ...] = ()  # lines (names, rows, links) gone from the page
    added: tuple[str, ...] = ()
    strong: bool = False  # a single capture is enough to alert (451, 410, block page)


@dataclass
class Context:
    """What classification needs to know beyond two captures (see ``comparison.py``)."""

    lines: Callable[[Snap], list[str] | None]  # normalized text of an HTML capture
    landing: Callable[[Snap], Snap | None]  # where a redirect (chain) ends, in this crawl
    blocked_by: Callable[[Snap], str | None] = lambda snap: None  # 451 Link rel=blocked-by
    soft_404: Callable[[Snap], bool] = lambda snap: False  # body equals a probe's not-found
    collapsed: frozenset[str] = frozenset()  # text hashes many formerly distinct URLs share
    linked_before: frozenset[str] = frozenset()
    linked_now: frozenset[str] = frozenset()
    network_down: bool = False
    seeds: frozenset[str] = field(default_factory=frozenset)
    before_of: Callable[[str], Snap | None] = lambda key: None  # a key's last good capture


def classify(before: Snap | None, after: Snap | None, ctx: Context) -> Finding:
    """Return what happened to a URL from ``before`` (last good capture) to ``after``."""
    if after is None:
        assert before is not None
        return Finding(before.url, before.key, Cls.NOT_CHECKED, before, None, "not fetched")
    if after.wall:  # the crawl met a challenge page here: it did not see the page
        return Finding(after.url, after.key, Cls.BOT_WALL, before, after,
                       f"{after.status}: challenge page of {after.wall}")
    if before is None:
        if after.failure in NOT_ASKED:  # found, but kept out by a rule: nothing seen
            return Finding(after.url, after.key, Cls.NOT_CHECKED, None, after, after.failure)
        return Finding(after.url, after.key, Cls.NEW, None, after)
    found = _classify(before, after, ctx)
    if found.cls in (Cls.UNCHANGED, Cls.NOT_MODIFIED, Cls.SEMANTIC, Cls.EDITED) and \
            before.key in ctx.linked_before and before.key not in ctx.linked_now and \
            before.key not in ctx.seeds and after.kind == "page" and served(after):
        # (a URL that was always 404 and is no longer linked is not "still served")
        return Finding(after.url, after.key, Cls.DELISTED, before, after,
                       f"still served ({found.cls.value}), no longer linked from the site")
    return found


# Failures of URLs deliberately not fetched (a rule kept them out): nothing was seen.
NOT_ASKED = frozenset({"robots", "out-of-scope", "trap", "robots-unreachable"})


def _classify(before: Snap, after: Snap, ctx: Context) -> Finding:
    def result(cls: Cls, detail: str = "", **extra: object) -> Finding:
        return Finding(after.url, after.key, cls, before, after, detail, **extra)  # type: ignore[arg-type]

    if after.failure in NOT_ASKED:
        return result(Cls.NOT_CHECKED, after.failure)
    if after.failure == "host-hung":  # not asked: its host had stopped answering
        if ctx.network_down:
            return result(Cls.NETWORK_DOWN, "the control URL failed too: not evidence")
        return result(Cls.TIMEOUT, "not asked: the host had stopped answering")
    status = after.status or 0
    # Same bytes, or (for 2xx) the same normalized text the crawl hashed: no new wall or
    # outage page can be there, and no payload needs to be read back to know it.
    changed = not (after.digest and after.digest == before.digest) and not (
        200 <= status < 300 and after.text_hash and after.text_hash == before.text_hash)
    if changed and (status in _WALL_STATUSES or status >= 500):
        # A wall or the site's outage page in front of the URL, whatever it served before:
        # the crawl saw that, not the page.
        lines = ctx.lines(after)
        old = ctx.lines(before)
        wall = _new_wall(old, lines) if lines and status in _WALL_STATUSES else None
        if wall:
            return result(Cls.BOT_WALL, f"{status}: challenge page of {wall}")
        outage = _new_phrases(old, lines, OUTAGE_MARKERS) if lines and (
            200 <= status < 300 or status >= 500) else set()
        if outage:
            return result(Cls.OUTAGE, f"{status}: " + ", ".join(sorted(outage)) + " page")
    if not served(before):  # it never served content: did it at least stay the same?
        if (before.status, before.location, before.failure) == (
                after.status, after.location, after.failure):
            if 300 <= status < 400:  # the same redirect: is where it leads still the same?
                landed = _landing_class(after, ctx)
                if landed is not None:
                    return result(landed.cls, f"redirects to {landed.url}, now "
                                  f"{landed.cls.value}: {landed.detail}", strong=landed.strong)
            return result(Cls.UNCHANGED, f"still {status or after.failure}")
        if 200 <= status < 300 and ctx.soft_404(after):
            return result(Cls.UNCHANGED, f"still not found (was {before.status}, now a "
                                         "200 not-found page)")
        if 200 <= status < 300:
            return result(Cls.NEW, f"now served (was {before.status or before.failure})")
    if after.failure in NETWORK and after.status is None:
        if ctx.network_down:
            return result(Cls.NETWORK_DOWN, "the control URL failed too: not evidence")
        return result(NETWORK[after.failure], after.failure)
    if status == 451:
        blocker = ctx.blocked_by(after)
        return result(Cls.LEGAL, f"451, blocked by {blocker}" if blocker else "451",
                      strong=True)
    if status in (404, 410):
        return result(Cls.REMOVED, str(status), strong=status == 410)
    if status == 401:
        return result(Cls.LOGIN_WALL, "401: the page now asks for an account")
    if status == 429:
        return result(Cls.RATE_LIMITED, "429")
    if status == 403:
        return result(Cls.FORBIDDEN, "403")
    if status >= 500:
        return result(Cls.SERVER_ERROR, str(status))
    if status == 304 and after.record_type == "revisit":
        return result(Cls.NOT_MODIFIED)
    if 300 <= status < 400:
        return _redirect(before, after, ctx, result)
    if not 200 <= status < 300:
        return result(Cls.EDITED, f"status {before.status} -> {status}")
    if after.digest and after.digest == before.digest:
        return result(Cls.UNCHANGED)
    return _content(before, after, ctx, result)


def through_vantages(f: Finding, views: list[Snap], ctx: Context) -> Finding:
    """Return a negative finding judged again with what vantage points (proxies) saw.

    If the page is fine from any of them, it was not removed: it is blocked here. If every
    vantage point sees the same, the finding says so: that is part of why it is believed.
    """
    if f.before is None or not views:
        return f
    # No HTTP answer through a proxy while one came here: the proxy (or its path) failed,
    # which says nothing about the page.
    failed = [v for v in views if v.status is None and f.after is not None
              and f.after.status is not None]
    views = [v for v in views if v not in failed]
    unused = "".join(f"; not seen through {v.vantage}: the proxy failed ({v.failure})"
                     for v in failed)
    if not views:
        return replace(f, detail=f"{f.detail}{unused}".lstrip("; "))
    seen = [(v, _classify(f.before, v, ctx)) for v in views]
    fine = [(v, found) for v, found in seen if found.cls not in NEGATIVE | NEUTRAL]
    if fine:
        view, found = fine[0]
        return replace(f, cls=Cls.BLOCKED_HERE, strong=False,
                       detail=f"{f.cls.value} here ({f.detail or f.cls.value}); through "
                              f"{view.vantage} it answers {view.status}, "
                              f"{found.cls.value}")
    same = [v.vantage or "?" for v, found in seen if found.cls is f.cls]
    others = [f"{v.vantage}: {found.cls.value}" for v, found in seen if found.cls is not f.cls]
    detail = f.detail
    if same:
        detail += f"; the same through {', '.join(same)}"
    if others:
        detail += f"; through {', '.join(others)}"
    return replace(f, detail=(detail + unused).lstrip("; "))


def _landing_class(after: Snap, ctx: Context) -> Finding | None:
    """Return the finding of where an unchanged redirect leads, if that is now a takedown
    (a redirect that now lands on a block page is no longer "unchanged")."""
    landing = ctx.landing(after)
    if landing is None or landing.key == after.key:
        return None
    earlier = ctx.before_of(landing.key)
    if earlier is None or not served(earlier):
        return None
    found = _classify(earlier, landing, ctx)
    # What is gone or blocked there; a change inside the landing page (names removed from
    # it) is that page's own finding, not the redirect's.
    return found if found.cls in NEGATIVE - {Cls.PARTIAL, Cls.DELISTED} else None


def served(snap: Snap) -> bool:
    """Return True if a capture served content (2xx, or a 304 revisit of it)."""
    status = snap.status or 0
    return 200 <= status < 300 or (status == 304 and snap.record_type == "revisit")


def _redirect(before: Snap, after: Snap, ctx: Context, result: Callable[..., Finding],
              ) -> Finding:
    """Classify a redirect by where it leads and what is there."""
    target = urljoin(after.url, after.location or "")
    landing = ctx.landing(after)
    landing_lines = ctx.lines(landing) if landing is not None else None
    if _login_url(target) and not _login_url(after.url):
        return result(Cls.LOGIN_WALL, f"redirects to a login page at {target}")
    if landing_lines and _newly_blocked(ctx.lines(before), landing_lines):
        return result(Cls.BLOCK_PAGE, f"redirects to a block page at {target}", strong=True)
    if landing is not None and landing.key != after.key and (
            landing.status is None or landing.status >= 400):
        # It leads to an error: what happened to the page is what happened to its target.
        gone = _classify(before, landing, ctx)
        if gone.cls in NEGATIVE:
            return result(gone.cls, f"redirects to {landing.url}, which is {gone.cls.value}"
                          + (f" ({gone.detail})" if gone.detail else ""), strong=gone.strong)
    if _away(after.url, target):
        return result(Cls.REDIRECT_AWAY, f"redirects to {target}")
    path = urlsplit(target).path or "/"
    section = urlsplit(after.url).path.rsplit("/", 1)[0] + "/"
    if path == "/" or (path == section and section != urlsplit(after.url).path):
        return result(Cls.REDIRECT_HOME, f"redirects to {target}")
    if landing is not None and landing.status and 200 <= landing.status < 300:
        same = (landing.digest and landing.digest == before.digest) or (
            landing.text_hash and landing.text_hash == before.text_hash)
        old = ctx.lines(before)
        if same or (old is not None and landing_lines is not None
                    and _similarity(old, landing_lines) >= 0.8):
            return result(Cls.MOVED, f"moved to {target}")
        return result(Cls.REPLACED, f"redirects to different content at {target}")
    return result(Cls.MOVED, f"redirects to {target} (not captured)")


def _content(before: Snap, after: Snap, ctx: Context, result: Callable[..., Finding],
             ) -> Finding:
    """Classify a 200 whose bytes changed."""
    if after.text_hash and after.text_hash == before.text_hash and \
            after.text_hash not in ctx.collapsed:
        # Same normalized text (the crawl hashed it): more ignore rules cannot make it differ.
        return result(Cls.SEMANTIC)
    new = ctx.lines(after)
    if new is None:  # not HTML: bytes changed, nothing more to say
        return result(Cls.EDITED, "content changed")
    old = ctx.lines(before) or []
    blocked = _newly_blocked(old, new)
    if blocked:
        return result(Cls.BLOCK_PAGE, "block page text: " + ", ".join(sorted(blocked)),
                      strong=True)
    login = _new_phrases(old, new, LOGIN_MARKERS)
    if login:
        return result(Cls.LOGIN_WALL, "a login form in place of the page")
    if ctx.soft_404(after):
        return result(Cls.SOFT_404, "same page as a random URL beside it")
    if after.text_hash and after.text_hash in ctx.collapsed:
        return result(Cls.BLOCK_PAGE, "many pages now serve one identical body")
    if old == new:
        return result(Cls.SEMANTIC)
    removed, added = _line_changes(old, new)
    old_chars = sum(map(len, old)) or 1
    new_chars = sum(map(len, new))
    gone, came = sum(map(len, removed)), sum(map(len, added))
    if new_chars < 0.3 * old_chars and _similarity(old, new) < 0.5:
        return result(Cls.REPLACED, f"text shrank from {old_chars} to {new_chars} characters",
                      removed=tuple(removed[:200]), added=tuple(added[:50]))
    if gone and gone >= 2 * came and gone >= 0.05 * old_chars:
        return result(Cls.PARTIAL, f"{len(removed)} lines removed, {len(added)} added",
                      removed=tuple(removed[:200]), added=tuple(added[:50]))
    return result(Cls.EDITED, f"{len(removed)} lines removed, {len(added)} added",
                  removed=tuple(removed[:200]), added=tuple(added[:50]))


def _line_changes(old: list[str], new: list[str]) -> tuple[list[str], list[str]]:
    """Return the lines only in ``old`` and only in ``new``, in order."""
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    removed: list[str] = []
    added: list[str] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op in ("delete", "replace"):
            removed.extend(old[i1:i2])
        if op in ("insert", "replace"):
            added.extend(new[j1:j2])
    return removed, added


def _similarity(old: list[str], new: list[str]) -> float:
    return difflib.SequenceMatcher(None, old, new, autojunk=False).ratio()


_WALL_STATUSES = frozenset({200, 202, 403, 429, 503})


def _new_phrases(old: list[str] | None, new: list[str], markers: dict[str, str]) -> set[str]:
    """Return what the fingerprint phrases of ``new`` say, if the page is one that replaced
    ``old``: phrases new to the page, and its own content gone (a page *about* maintenance
    or captchas that changes a sentence keeps its content)."""
    text, before = " ".join(new), " ".join(old or [])
    fresh = {m for m in markers if m in text and m not in before}
    if not fresh or (old is not None and _kept(old, new) >= 0.5):
        return set()
    return {markers[m] for m in fresh}


def _new_wall(old: list[str] | None, new: list[str]) -> str | None:
    """Return who shows the challenge page ``new`` is, if it is one that replaced ``old``
    (phrases new to the page, its own content gone: an article about captchas is no wall)."""
    names = sorted(_new_phrases(old, new, WALL_MARKERS))
    if not names:
        return None
    specific = [n for n in names if not generic(n)]
    return ", ".join(specific or names)


def _login_url(url: str) -> bool:
    """Return True if a URL is a login page's (a path segment such as ``login``)."""
    path = urlsplit(url).path.lower()
    return any(segment in LOGIN_SEGMENTS for segment in path.split("/") if segment)


def _newly_blocked(old: list[str] | None, new: list[str]) -> set[str]:
    """Return the block-page phrases that make ``new`` a block page that replaced ``old``.

    A block-page phrase is evidence only when it is new relative to the last good capture
    and the page's own content is gone: a page *about* censorship (Memorial writes about
    Roskomnadzor and the register of banned sites) that changes a sentence, gets a legal
    label inserted or moves keeps its content, and is no block page.
    """
    return _new_phrases(old, new, _BLOCK_PHRASES)


def _kept(old: list[str], new: list[str]) -> float:
    """Return the share of ``old``'s text (in characters) whose lines ``new`` still has."""
    present = set(new)
    total = sum(map(len, old)) or 1
    return sum(len(line) for line in old if line in present) / total


def _away(url: str, target: str) -> bool:
    """Return True if a redirect leaves the site (another registrable domain; for IP hosts
    and single-label names, another host or port)."""
    a, b = urlsplit(url), urlsplit(target)
    if not b.netloc or a.netloc == b.netloc:
        return False
    dom_a, dom_b = urls.registered_domain(a.hostname or ""), urls.registered_domain(
        b.hostname or "")
    if dom_a and dom_b and "." in dom_a and not dom_a.replace(".", "").isdigit():
        return dom_a != dom_b
    return (a.hostname, a.port) != (b.hostname, b.port)


_ORDER = {cls: i for i, cls in enumerate(Cls)}


@dataclass(frozen=True, slots=True)
class HostEvent:
    """Most URLs of one host share one negative class: reported as one event."""

    host: str
    cls: Cls
    urls: int
    of: int
    since: str


def roll_up(findings: list[Finding], *, share: float = 0.6, minimum: int = 3,
            settled: Mapping[str, tuple[int, str]] | None = None,
            negative: Mapping[tuple[str, Cls], int] | None = None) -> list[HostEvent]:
    """Return host-level events: a host where ``share`` of its compared pages (images and
    other requisites do not count) have one negative class. ``settled``: host -> (pages,
    earliest fetch) of pages classified outside ``findings`` (unchanged, not modified, and
    the plain findings of ``sweep``); ``negative``: (host, class) -> how many of those pages
    have that takedown class."""
    by_host: dict[str, list[Finding]] = {}
    for f in findings:
        snap = f.after or f.before
        if f.cls not in (Cls.NEW, Cls.NOT_CHECKED) and snap and snap.kind in ("seed", "page"):
            by_host.setdefault(urls.host_of(f.url), []).append(f)
    plain: dict[str, dict[Cls, int]] = {}
    for (host, cls), n in (negative or {}).items():
        plain.setdefault(host, {})[cls] = n
        by_host.setdefault(host, [])
    events = []
    for host, group in sorted(by_host.items()):
        counts: dict[Cls, int] = dict(plain.get(host, {}))
        for f in group:
            if f.cls in NEGATIVE or f.cls is Cls.NETWORK_DOWN:
                counts[f.cls] = counts.get(f.cls, 0) + 1
        if not counts:
            continue
        # the most frequent class; a tie goes to the first in the enum's order (the same
        # whichever URLs were held)
        cls, n = max(counts.items(), key=lambda kv: (kv[1], -_ORDER[kv[0]]))
        quiet, first = (settled or {}).get(host, (0, ""))
        size = len(group) + quiet
        if n >= minimum and n >= share * size:
            since = min([f.after.fetched_at for f in group if f.after] + ([first] if quiet
                                                                          else []), default="")
            events.append(HostEvent(host, cls, n, size, since))
    return events
