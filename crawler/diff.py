"""Compare a crawl of a target with its earlier crawls and classify every URL (DESIGN.md §6).

Three steps, so that ``crawler diff`` can redo the comparison offline at any time:

1. ``probe`` (after a crawl, needs the network): fetch a random URL beside changed pages
   (soft-404), the control URL when fetches failed (is our own network down?), and every
   suspected URL again ``recheck_probes`` times (confirmation within the run). Each fetch is
   archived as evidence and entered as a capture of kind probe / control / recheck.
2. ``compare`` (offline): load the latest good capture of every URL before the crawl and the
   crawl's own captures from the catalog, re-read payloads from the WARCs only where text
   hashes differ, and classify with ``detect.classify``.
3. ``apply_states`` (after a crawl): advance each URL's state (suspected, provisional,
   confirmed, recovered) in the catalog and return the transitions, which are what is
   reported and notified.

Before-captures are the last *good* ones: 2xx (or a 304 revisit) whose own class was not a
takedown class, so a page compared after a failed crawl is compared with what it used to be.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime

from crawler import extract, failpoints, listing, pagetext, urls
from crawler.catalog import Catalog, CrawlRow, now_iso
from crawler.detect import (
    NEGATIVE,
    NEUTRAL,
    SLOW_CONFIRM,
    Cls,
    Context,
    Finding,
    HostEvent,
    Snap,
    classify,
    roll_up,
    served,
    through_vantages,
)
from crawler.fetcher import Fetcher, FetchSettings
from crawler.fingerprints import VANTAGE_NOTE, WALL_NOTE
from crawler.models import CrawlUrl, UrlKind
from crawler.recovery import recover_warcs
from crawler.settings import DetectSettings, proxy_name
from crawler.store import Stored, capture_from_record, capture_row
from crawler.warc import WarcSettings, WarcWriter
from crawler.warcread import RecordUnreadable, read_record

log = logging.getLogger("crawler.diff")

_COMPARED_KINDS = ("seed", "page", "requisite")
_SNAP_COLUMNS = ("c.id, c.crawl, c.url, c.key, c.kind, c.fetched_at, c.status, c.failure, "
                 "c.mime, c.location, c.digest, c.text_hash, c.record_type, c.record_id, "
                 "c.detail")
# A capture the crawl saw a challenge page in: never a page's "last good" or "last" state.
_NOT_WALL = f"coalesce(c.detail, '') NOT LIKE '%{WALL_NOTE}%'"
_GOOD = "(c.status BETWEEN 200 AND 299 OR (c.status = 304 AND c.record_type = 'revisit'))"
STRONG_CONFIRM = frozenset({Cls.LEGAL, Cls.BLOCK_PAGE})
_NOT_RECHECKED = frozenset({Cls.DELISTED})  # judged from the link graph of the whole crawl
# Network failures of a whole host: a few of its URLs re-checked stand for all of them.
_HOST_CLASSES = frozenset({Cls.DNS, Cls.REFUSED, Cls.TLS, Cls.TIMEOUT})
HOST_RECHECK_SAMPLE = 3
# Why the crawl may not have fetched a redirect's target, where detection fetches it as
# evidence (robots.txt is obeyed for evidence too).
_NOT_FOLLOWED = frozenset({"out-of-scope", "trap"})
_NOT_ASKED_FAILURES = ("robots", "out-of-scope", "trap", "robots-unreachable")
MAX_LANDING_HOPS = 6
MAX_VANTAGE_CHECKS = 500  # suspected URLs fetched through each vantage point per crawl
MAX_LANDINGS = 200  # redirect targets fetched as evidence after one crawl
_PROBE_PAYLOAD_CAP = 32 * 1024 * 1024  # bytes of a recovered probe read back (as a crawl's)


@dataclass
class Comparison:
    """A crawl compared with the target's earlier crawls."""

    target: str
    after: CrawlRow
    before: CrawlRow | None  # the previous crawl (for links and the report)
    findings: list[Finding]
    hosts: list[HostEvent]
    confirmed: set[str] = field(default_factory=set)  # keys whose rechecks all reproduced
    totals: dict[str, int] | None = None  # a baseline: counts only, no findings
    unlanded: list[str] = field(default_factory=list)  # redirect targets nobody fetched
    notes: list[str] = field(default_factory=list)  # what was capped or left unchecked

    def counts(self) -> dict[str, int]:
        """Return URLs per class."""
        if self.totals is not None:
            return dict(self.totals)
        return dict(Counter(f.cls.value for f in self.findings).most_common())


@dataclass(frozen=True, slots=True)
class Event:
    """A state transition of a URL (or of a whole host: key ``host:<name>``)."""

    key: str
    url: str
    cls: str
    state: str  # suspected | provisional | confirmed | recovered
    since: str
    detail: str = ""


class _Rows:
    """Catalog access for one comparison, with payload re-reads cached."""

    def __init__(self, catalog: Catalog, rules: pagetext.TextRules) -> None:
        self.catalog = catalog
        self.db = catalog.db
        self.rules = rules
        self._dirs = {r["id"]: catalog.resolve(r["directory"]) for r in
                      self.db.execute("SELECT id, directory FROM crawls")}
        self._lines: dict[int, list[str] | None] = {}
        self._split: dict[tuple[int, str], tuple[list[str] | None, list[str]] | None] = {}

    def snaps(self, sql: str, args: Iterable[object]) -> list[Snap]:
        return [Snap(*row) for row in self.db.execute(sql, tuple(args))]

    def record(self, capture: int) -> tuple[bytes, bytes] | None:
        """Return (HTTP head, payload) of a capture, a revisit's payload from its original."""
        row = self.db.execute("SELECT crawl, warc_file, warc_offset, warc_length, refers_to, "
                              "record_type FROM captures WHERE id=?", (capture,)).fetchone()
        if row is None or not row["warc_file"]:
            return None
        try:
            rec = read_record(self._dirs[row["crawl"]] / "warc" / row["warc_file"],
                              row["warc_offset"], row["warc_length"])
            payload = rec.payload
            if row["record_type"] == "revisit" and row["refers_to"]:
                original = self.record(row["refers_to"])
                payload = original[1] if original else b""
        except (RecordUnreadable, OSError, KeyError) as exc:
            log.warning("cannot re-read capture %s: %s", capture, exc)
            return None
        return rec.http_head, payload

    def lines(self, snap: Snap) -> list[str] | None:
        """Return the normalized text of an HTML capture (None for other types)."""
        if snap.mime not in extract.HTML_TYPES:
            return None
        if snap.capture not in self._lines:
            found = self.record(snap.capture)
            self._lines[snap.capture] = _text_lines(*found, self.rules) if found else None
        return self._lines[snap.capture]

    def html(self, snap: Snap) -> str | None:
        """Return the decoded HTML of a capture (None if it is not HTML or unreadable)."""
        found = self.record(snap.capture) if snap.mime in extract.HTML_TYPES else None
        return _decoded(*found) if found else None

    def split(self, snap: Snap, selector: str) -> tuple[list[str] | None, list[str]] | None:
        """Return (lines of the element ``selector`` picks, the page's lines without it) for
        an HTML capture (one parse per capture and selector, kept)."""
        if (snap.capture, selector) not in self._split:
            html = self.html(snap)
            self._split[(snap.capture, selector)] = (
                pagetext.split_lines(html, selector, self.rules) if html else None)
        return self._split[(snap.capture, selector)]

    def lines_without(self, snap: Snap, selector: str) -> list[str] | None:
        """Return the normalized text of an HTML capture without one element."""
        found = self.split(snap, selector)
        return found[1] if found else None

    def header(self, snap: Snap, name: str) -> list[str]:
        """Return the values of a response header of a capture."""
        found = self.record(snap.capture)
        return _headers(found[0], name) if found else []


def _headers(head: bytes, name: str) -> list[str]:
    prefix = name.lower() + ":"
    return [line.split(":", 1)[1].strip() for line in head.decode("latin-1").split("\r\n")
            if line.lower().startswith(prefix)]


def _text_lines(head: bytes, payload: bytes, rules: pagetext.TextRules) -> list[str]:
    return pagetext.html_lines(_decoded(head, payload), rules)


def _decoded(head: bytes, payload: bytes) -> str:
    """Return the text of an HTTP payload, inflated and decoded as its headers say."""
    content_type = next(iter(_headers(head, "content-type")), None)
    encoding = next(iter(_headers(head, "content-encoding")), None)
    body = extract.decode_content(payload, encoding)
    text, _ = extract.decode_text(body, content_type)
    return text


def _blocked_by(rows: _Rows, snap: Snap) -> str | None:
    """Return the blocking entity a 451 names in ``Link: <...>; rel="blocked-by"``."""
    for value in rows.header(snap, "link"):
        for part in value.split(","):
            if re.search(r'rel\s*=\s*"?blocked-by"?', part, re.I):
                match = re.search(r"<([^>]*)>", part)
                if match:
                    return match.group(1)
    return None


def previous_crawl(catalog: Catalog, after: CrawlRow) -> CrawlRow | None:
    """Return the target's latest crawl before ``after`` that got anywhere."""
    earlier = [c for c in catalog.crawls(after.target)
               if c.pk < after.pk and c.status in ("complete", "incomplete", "interrupted")]
    return earlier[-1] if earlier else None


def compare(catalog: Catalog, after: CrawlRow, *, before: CrawlRow | None = None,
            rules: pagetext.TextRules = pagetext.DEFAULT_RULES) -> Comparison:
    """Classify every URL of ``after`` against its last good capture up to ``before``."""
    rows = _Rows(catalog, rules)
    before = before or previous_crawl(catalog, after)
    limit = before.pk if before else after.pk - 1
    negative = ",".join(f"'{c.value}'" for c in NEGATIVE)
    last_good = rows.snaps(
        f"SELECT {_SNAP_COLUMNS} FROM captures c JOIN (SELECT max(c.id) AS id FROM captures c "
        f"JOIN crawls k ON k.id = c.crawl WHERE k.target = ? AND c.crawl <= ? AND c.final = 1 "
        f"AND c.kind IN ('seed', 'page', 'requisite') AND {_GOOD} AND {_NOT_WALL} "
        f"AND (c.class IS NULL OR c.class NOT IN ({negative})) GROUP BY c.key) g ON g.id = c.id",
        (after.target, limit))
    now = rows.snaps(f"SELECT {_SNAP_COLUMNS} FROM captures c WHERE c.crawl = ? AND c.final = 1 "
                     "AND c.kind IN ('seed', 'page', 'requisite')", (after.pk,))
    extra = rows.snaps(f"SELECT {_SNAP_COLUMNS} FROM captures c WHERE c.crawl = ? "
                       "AND c.kind IN ('probe', 'control', 'recheck', 'landing', 'vantage') "
                       "ORDER BY c.id",
                       (after.pk,))
    latest = rows.snaps(  # for URLs that never served content: what they did last time,
        # before any takedown class (an outage page in front of a 404 is not its new normal)
        f"SELECT {_SNAP_COLUMNS} FROM captures c JOIN (SELECT max(c.id) AS id FROM captures c "
        f"JOIN crawls k ON k.id = c.crawl WHERE k.target = ? AND c.crawl <= ? AND c.final = 1 "
        f"AND c.kind IN ('seed', 'page', 'requisite') AND {_NOT_WALL} "
        f"AND (c.class IS NULL OR c.class NOT IN ({negative})) GROUP BY c.key) g "
        f"ON g.id = c.id", (after.target, limit))
    old = {s.key: s for s in latest}
    old.update((s.key, s) for s in last_good)
    new = {s.key: s for s in now}
    ctx = _context(rows, old, new, extra, after, before)
    keys = sorted(set(new) | {k for k in old if old[k].kind != "requisite"})
    raw = [classify(old.get(k), new.get(k), ctx) for k in keys]

    def prior(key: str) -> Snap | None:  # a listing page as the previous crawl saw it
        if before is None:
            return None
        found = rows.snaps(f"SELECT {_SNAP_COLUMNS} FROM captures c WHERE c.crawl = ? "
                           "AND c.key = ? AND c.final = 1", (before.pk, key))
        return found[0] if found else None

    findings = listing.regroup(raw, ctx.lines, prior)
    rotating = _rotating_blocks(findings, rows, extra, ctx)
    if rotating:  # compare those pages again without the block that changes every visit
        plain = ctx.lines
        ctx = replace(ctx, lines=lambda s: rows.lines_without(s, rotating[s.key])
                      if s.key in rotating else plain(s))
        raw = [_left_out(classify(f.before, f.after, ctx)) if f.key in rotating else f
               for f in raw]
        findings = listing.regroup(raw, ctx.lines, prior)
    findings = _with_vantages(findings, extra, ctx)
    confirmed = _reproduced(findings, extra, ctx.lines)
    wanted = _landings_wanted(findings, _answers(new, extra))
    return Comparison(after.target, after, before, findings, roll_up(findings), confirmed,
                      unlanded=wanted[:MAX_LANDINGS], notes=_caps(findings, extra, wanted))


def _caps(findings: list[Finding], extra: list[Snap], unlanded: list[str]) -> list[str]:
    """Return what a reader must know was not checked: redirect targets past the cap of
    evidence fetches, suspected URLs past the cap of vantage-point fetches."""
    notes = []
    landed = {s.url for s in extra if s.kind == "landing"}
    missing = [u for u in unlanded if u not in landed]
    if len(missing) > MAX_LANDINGS:
        notes.append(f"{len(missing) - MAX_LANDINGS} redirect target(s) the crawl did not "
                     f"fetch were not fetched as evidence either (at most {MAX_LANDINGS} per "
                     "crawl): those redirects are judged without knowing where they lead")
    viewed = {s.key for s in extra if s.kind == "vantage"}
    if viewed:
        hosts = {(urls.host_of(f.url), f.cls) for f in findings if f.key in viewed}
        unseen = [f for f in findings if f.cls in NEGATIVE - _NOT_RECHECKED
                  and f.key not in viewed
                  and not (f.cls in _HOST_CLASSES and (urls.host_of(f.url), f.cls) in hosts)]
        if unseen:
            notes.append(f"{len(unseen)} suspected URL(s) were not fetched through the "
                         f"vantage point(s) (at most {MAX_VANTAGE_CHECKS} a crawl, of the URLs "
                         "suspected before the re-checks): their class is as seen from here")
    return notes


def _context(rows: _Rows, old: dict[str, Snap], new: dict[str, Snap], extra: list[Snap],
             after: CrawlRow, before: CrawlRow | None) -> Context:
    """Gather what classification needs to know about the crawl as a whole."""
    def linked(*crawls: int) -> frozenset[str]:
        found: set[str] = set()
        for pk in crawls:
            found.update(r[0] for r in rows.db.execute("SELECT key FROM linked WHERE crawl=?",
                                                       (pk,)))
        return frozenset(found)

    by_url = _answers(new, extra)

    def landing(snap: Snap) -> Snap | None:
        return _chain(snap, by_url)[0]

    probes = [s for s in extra if s.kind == "probe" and s.status and 200 <= s.status < 300]

    def soft_404(snap: Snap) -> bool:
        mine = rows.lines(snap)
        if not mine:
            return False
        host = urls.host_of(snap.url)
        return any(urls.host_of(p.url) == host and rows.lines(p) == mine for p in probes)

    controls = [s for s in extra if s.kind == "control"]
    # Linked "before": by the previous crawl, or by the crawl of a page's last good capture
    # (a page delisted two crawls ago is still delisted, and can be confirmed by the runs).
    then = {snap.crawl for snap in old.values()} | ({before.pk} if before else set())
    linked_before, linked_now = linked(*sorted(then)), linked(after.pk)
    return Context(
        lines=rows.lines, landing=landing, blocked_by=lambda s: _blocked_by(rows, s),
        soft_404=soft_404, collapsed=_collapsed(old, new),
        linked_before=_trusted_links(linked_before, linked_now, old, new),
        linked_now=linked_now,
        network_down=bool(controls) and controls[-1].status is None,
        seeds=frozenset(urls.canonical_key(s) for s in after.settings.get("seeds", [])),
        before_of=old.get)


def _answers(new: dict[str, Snap], extra: list[Snap]) -> dict[str, Snap]:
    """Return key -> what this crawl got for it: its capture, or the landing fetched as
    evidence where the crawl did not fetch the URL."""
    by_url = dict(new)
    for snap in extra:
        if snap.kind == "landing" and _unfetched(by_url.get(snap.key)):
            by_url[snap.key] = snap
    return by_url


def _unfetched(snap: Snap | None) -> bool:
    """Return True if the crawl has no answer for a URL (not captured, or kept out)."""
    return snap is None or (snap.status is None and snap.failure in _NOT_FOLLOWED)


def _chain(snap: Snap, by_url: dict[str, Snap]) -> tuple[Snap | None, str | None]:
    """Return (where a redirect chain ends, or None; the URL where it breaks because
    nothing answered for it, or None)."""
    current = snap
    for _ in range(MAX_LANDING_HOPS):
        if not current.status or not 300 <= current.status < 400:
            return current, None
        target = urls.try_normalize(current.location or "", current.url)
        if target is None:
            return None, None
        found = by_url.get(urls.canonical_key(target))
        if _unfetched(found):
            return None, target
        assert found is not None
        current = found
    return None, None


def _landings_wanted(findings: list[Finding], answers: dict[str, Snap]) -> list[str]:
    """Return the redirect targets a finding's class rests on that nobody fetched (the
    crawl stopped at a limit, a trap rule or the scope): fetched as evidence, so that a
    verdict never depends on where the crawl happened to stop."""
    wanted: list[str] = []
    for f in findings:
        if f.before is None or f.after is None or not f.after.status or \
                not 300 <= f.after.status < 400:
            continue
        _, missing = _chain(f.after, answers)
        if missing and missing not in wanted:
            wanted.append(missing)
    return wanted


def _trusted_links(before: frozenset[str], now: frozenset[str], old: dict[str, Snap],
                   new: dict[str, Snap]) -> frozenset[str]:
    """Return the links of the earlier crawl on hosts whose link graph still stands.

    When a host's pages link to less than half of what they linked to before (the site is
    blocked, down, or replaced), a page no longer linked says nothing about that page: it is
    not called delisted. Nor when a page of the host that served content before failed this
    time for a passing reason (a 5xx, a 429, no answer, a wall): the links it holds were not
    seen, so pages it alone links to would look delisted. (A page removed on purpose, 404 or
    451, takes its links with it: those pages are delisted.)
    """
    def host(key: str) -> str:
        snap = old.get(key)
        return urls.host_of(snap.url) if snap is not None else ""

    counts_before = Counter(host(k) for k in before)
    counts_now = Counter(host(k) for k in now if k in old)
    standing = {h for h, n in counts_before.items() if counts_now[h] >= 0.5 * n}
    standing -= {urls.host_of(snap.url) for key, snap in new.items()
                 if snap.kind in ("seed", "page") and _passing_failure(snap)
                 and (prev := old.get(key)) is not None and served(prev)}
    return frozenset(k for k in before if host(k) in standing)


def _passing_failure(snap: Snap) -> bool:
    """Return True if a capture failed for a reason that passes (its links went unseen)."""
    status = snap.status or 0
    if snap.wall or status >= 500 or status == 429:
        return True
    return snap.status is None and snap.failure not in (*_NOT_ASKED_FAILURES, None)


def _collapsed(old: dict[str, Snap], new: dict[str, Snap], minimum: int = 3) -> frozenset[str]:
    """Return text hashes that several formerly different pages now all have."""
    groups: dict[str, set[str | None]] = {}
    for key, snap in new.items():
        prev = old.get(key)
        if (prev is not None and snap.text_hash and snap.status == 200
                and snap.text_hash != prev.text_hash):
            groups.setdefault(snap.text_hash, set()).add(prev.text_hash)
    return frozenset(h for h, before in groups.items() if len(before) >= minimum)


def _reproduced(findings: list[Finding], extra: list[Snap],
                lines: Callable[[Snap], list[str] | None]) -> set[str]:
    """Return keys whose rechecks all showed the same thing as the crawl (the same text as
    compared: ignore rules and rotating blocks left out)."""
    rechecks: dict[str, list[Snap]] = {}
    for snap in extra:
        if snap.kind == "recheck":
            rechecks.setdefault(snap.key, []).append(snap)
    confirmed = set()
    hosts: dict[tuple[str, Cls], bool] = {}  # (host, network class) -> every sample reproduced
    for f in findings:
        probes = rechecks.get(f.key)
        if f.after is None or not probes:
            continue
        same = all(_same(f.after, p, lines) for p in probes)
        if same:
            confirmed.add(f.key)
        if f.cls in _HOST_CLASSES:
            group = (urls.host_of(f.url), f.cls)
            hosts[group] = hosts.get(group, True) and same
    # A host that does not resolve, refuses or never answers does so for every URL: the
    # re-checked sample of its URLs stands for the rest (see _recheck_targets).
    confirmed.update(f.key for f in findings if f.cls in _HOST_CLASSES
                     and hosts.get((urls.host_of(f.url), f.cls)))
    return confirmed


def _rotating_blocks(findings: list[Finding], rows: _Rows, extra: list[Snap], ctx: Context,
                     ) -> dict[str, str]:
    """Return key -> selector of a rotating block to leave out of the page's comparison.

    A block inside the main content that shows different items on every visit ("a random
    document from the archive") loses lines between any two crawls, and can hide a real
    removal beside it. It is found two ways:

    - across the site: the element that holds all the changes of a page, the same one on
      many pages of a host (a template's block), with every line it ever showed (its
      vocabulary); it is left out of a page only where all it holds is that vocabulary, so
      the site's own content is never left out;
    - on one page: another fetch of the page (a re-check of this crawl, or a crawl between
      the last good capture and this one) that differs from this capture; the lines that
      differ mark the block.
    """
    changed = [f for f in findings if f.cls in (Cls.PARTIAL, Cls.EDITED)
               and f.before is not None and f.after is not None]
    found: dict[str, str] = {}
    learned = _site_blocks(changed, rows, ctx)
    for f in changed:
        assert f.before is not None and f.after is not None
        for selector, vocabulary in learned.get(urls.host_of(f.url), {}).items():
            inside = [_element(rows, s, selector) for s in (f.before, f.after)]
            if all(lines is not None and set(lines) <= vocabulary for lines in inside):
                found[f.key] = selector
                break
    rechecks: dict[str, list[Snap]] = {}
    for snap in extra:
        if snap.kind == "recheck":
            rechecks.setdefault(snap.key, []).append(snap)
    for f in changed:
        if f.key in found or f.cls is not Cls.PARTIAL:
            continue
        assert f.before is not None and f.after is not None
        now = ctx.lines(f.after) or []
        for other in [*rechecks.get(f.key, []), *_between(rows, f.before, f.after)]:
            seen = ctx.lines(other) if served(other) else None
            volatile = set(now) ^ set(seen if seen is not None else now)
            selector = _block_of(rows, volatile, f.after, other) if volatile else None
            if selector is not None:
                found[f.key] = selector
                break
    return found


ROTATION_SAMPLE = 40  # changed pages per host looked at to learn its rotating blocks
ROTATION_PAGES = 3  # pages whose every change lies in one element that make it a block


def _site_blocks(changed: list[Finding], rows: _Rows, ctx: Context,
                 ) -> dict[str, dict[str, set[str]]]:
    """Return host -> {selector: vocabulary} of the blocks in which all the changes of at
    least ``ROTATION_PAGES`` of the host's changed pages lie (a sample of them)."""
    sampled: Counter[str] = Counter()
    counts: dict[str, Counter[str]] = {}
    vocabulary: dict[tuple[str, str], Counter[str]] = {}  # line -> pages it was seen on
    listings = {key for f in changed if (key := listing.listing_key(f.url))}
    for f in changed:
        assert f.before is not None and f.after is not None
        host = urls.host_of(f.url)
        if sampled[host] >= ROTATION_SAMPLE or listing.listing_key(f.url) or f.url in listings:
            continue  # (a listing's changes are entries moving between its pages)
        sampled[host] += 1
        volatile = set(ctx.lines(f.before) or []) ^ set(ctx.lines(f.after) or [])
        selector = _block_of(rows, volatile, f.after, f.before) if volatile else None
        if selector is None:
            continue
        counts.setdefault(host, Counter())[selector] += 1
        seen = vocabulary.setdefault((host, selector), Counter())
        seen.update({line for snap in (f.before, f.after)
                     for line in _element(rows, snap, selector) or []})
    # A rotating block draws from a pool: its items recur across pages. Changes that merely
    # lie in one element of many pages (each page its own text) are no rotation.
    return {host: {sel: set(vocabulary[(host, sel)]) for sel, n in found.items()
                   if n >= ROTATION_PAGES and _recurring(vocabulary[(host, sel)])}
            for host, found in counts.items()}


def _recurring(seen: Counter[str]) -> bool:
    """Return True if the lines of a block were, on average, seen on two pages or more."""
    return bool(seen) and sum(seen.values()) >= 2 * len(seen)


def _element(rows: _Rows, snap: Snap, selector: str) -> list[str] | None:
    """Return the lines of the element ``selector`` picks in a capture."""
    found = rows.split(snap, selector)
    return found[0] if found else None


def _block_of(rows: _Rows, volatile: set[str], *snaps: Snap) -> str | None:
    """Return the selector of the element holding the lines that differ between captures:
    in each capture the element holding its share of them, the outermost of those (one
    capture may show a single item of the rotating list, the other several)."""
    found = []
    for snap in snaps:
        html = rows.html(snap)
        selector = pagetext.volatile_selector(html, volatile, rows.rules) if html else None
        if selector is not None:
            found.append(selector)
    if not found:
        return None
    outer = min(found, key=len)
    return outer if all(s.startswith(outer) for s in found) else None


def _left_out(f: Finding) -> Finding:
    """Return a finding that says a rotating block was left out of its comparison."""
    note = "a block that changes on every visit was left out of the comparison"
    return replace(f, detail=f"{f.detail}; {note}" if f.detail else note)


def _between(rows: _Rows, before: Snap, after: Snap) -> list[Snap]:
    """Return the captures of a URL by crawls between its last good capture and now."""
    return rows.snaps(f"SELECT {_SNAP_COLUMNS} FROM captures c WHERE c.key = ? AND c.final = 1 "
                      "AND c.crawl > ? AND c.crawl < ? AND c.crawl IN (SELECT id FROM crawls "
                      "WHERE target = (SELECT target FROM crawls WHERE id = ?)) "
                      "ORDER BY c.id DESC LIMIT 3",
                      (after.key, before.crawl, after.crawl, after.crawl))


def _with_vantages(findings: list[Finding], extra: list[Snap], ctx: Context,
                   ) -> list[Finding]:
    """Return the findings judged again with what vantage points saw (``through_vantages``);
    a host-wide network failure by the sample of its URLs fetched through them."""
    views: dict[str, list[Snap]] = {}
    for snap in extra:
        if snap.kind == "vantage":
            views.setdefault(snap.key, []).append(snap)
    if not views:
        return findings
    out: list[Finding] = []
    hosts: dict[tuple[str, Cls], Finding] = {}  # a judged sample of a host's failure
    for f in findings:
        judged = through_vantages(f, views.get(f.key, []), ctx) if f.cls in NEGATIVE else f
        if f.cls in _HOST_CLASSES and f.key in views:
            hosts.setdefault((urls.host_of(f.url), f.cls), judged)
        out.append(judged)
    for i, f in enumerate(out):
        sample = hosts.get((urls.host_of(f.url), f.cls))
        if f.cls in _HOST_CLASSES and f.key not in views and sample is not None:
            out[i] = replace(f, cls=sample.cls, detail=f"as {sample.url}: {sample.detail}")
    return out


def _recheck_targets(findings: list[Finding]) -> list[Finding]:
    """Return the suspects to fetch again: every one, except that a host-wide network
    failure is re-checked on a few of its URLs (each re-check of a host that never answers
    waits out a timeout; thousands of them would hold a verdict up for hours)."""
    targets: list[Finding] = []
    sampled: Counter[tuple[str, Cls]] = Counter()
    for f in findings:
        if f.cls not in NEGATIVE or f.cls in _NOT_RECHECKED:
            continue
        if f.cls in _HOST_CLASSES:
            group = (urls.host_of(f.url), f.cls)
            if sampled[group] >= HOST_RECHECK_SAMPLE:
                continue
            sampled[group] += 1
        targets.append(f)
    return targets


# What a failure the crawl recorded is, as a fresh fetch would see it.
_AS_FETCHED = {"host-hung": "timeout"}


def _same(a: Snap, b: Snap, lines: Callable[[Snap], list[str] | None]) -> bool:
    """Return True if a recheck shows what the crawl saw."""
    if a.failure in ("robots", "out-of-scope"):
        return False
    if a.status != b.status or (a.status is None and _AS_FETCHED.get(
            a.failure or "", a.failure) != b.failure):
        return False
    if a.status and 200 <= a.status < 300:
        if not a.text_hash:
            return a.digest == b.digest
        return a.text_hash == b.text_hash or lines(a) == lines(b)
    return True


# -- network phase --------------------------------------------------------------------------

async def probe(catalog: Catalog, after: CrawlRow, settings: DetectSettings,
                fetch: FetchSettings) -> Comparison:
    """Fetch soft-404 probes, the control URL and rechecks; archive and enter each.

    Returns the comparison made after the probes and the control URL, with ``confirmed``
    from the rechecks (rechecks confirm classes, they never change them).
    """
    first = compare(catalog, after, rules=settings.rules)
    warc_dir = after.directory / "warc"
    writer = WarcWriter(WarcSettings(directory=warc_dir, prefix=f"{after.target}-detect",
                                     warcinfo={"isPartOf": f"{after.target}/{after.crawl_id}",
                                               "description": "takedown detection probes"}),
                        first_serial=len(list(warc_dir.glob("*.warc.gz"))))
    sink = ThreadPoolExecutor(1, thread_name_prefix="probe-sink")  # one writer of the WARC

    async def take(fetcher: Fetcher, url: str, kind: UrlKind, key: str | None = None,
                   vantage: str | None = None) -> str | None:
        """Fetch, archive and enter one URL; return where it redirects, if it does."""
        result = await fetcher.fetch(url)
        headers = {"WARC-Crawler-Kind": kind.value}
        if vantage:
            headers["WARC-Crawler-Vantage"] = vantage
        try:
            entry = await asyncio.get_running_loop().run_in_executor(
                sink, writer.write_exchange, result, headers)
            failpoints.hit("probe-written")
            found = None
            if result.ok and result.content_type in extract.HTML_TYPES:
                found = extract.extract_safely(url, result.content_type, result.read_body(),
                                               result.header("content-type"),
                                               result.header("content-encoding"))
            item = CrawlUrl(url=url, key=key or urls.canonical_key(url), kind=kind, depth=0)
            row = capture_row(item, result, Stored(entry), found)
            if vantage:
                row = replace(row, detail="; ".join(filter(None, (
                    f"{VANTAGE_NOTE}{vantage}", row.detail))))
            with catalog.transaction():
                catalog.add_capture(after.pk, row)
            redirect = result.ok and result.status in (301, 302, 303, 307, 308)
            return result.header("location") if redirect else None
        finally:
            result.close()

    async def take_chain(fetcher: Fetcher, url: str) -> None:
        seen: set[str] = set()
        next_url: str | None = url
        while next_url and next_url not in seen and len(seen) < MAX_LANDING_HOPS:
            seen.add(next_url)
            location = await take(fetcher, next_url, UrlKind.LANDING)
            next_url = urls.try_normalize(location, next_url) if location else None

    try:
        landings = first.unlanded
        network = [f for f in first.findings if f.cls in (Cls.DNS, Cls.REFUSED, Cls.TLS,
                                                           Cls.TIMEOUT, Cls.UNREACHABLE)]
        control = settings.control_url if network else None
        probes = _probe_urls(first, settings.max_probe_dirs)
        async with Fetcher(fetch) as fetcher:
            for url in landings:
                await take_chain(fetcher, url)
            for url in probes:
                await take(fetcher, url, UrlKind.PROBE)
            if control:
                await take(fetcher, control, UrlKind.CONTROL)
        # Landings, probes and the control URL can change classes (where a redirect leads,
        # soft-404, our network down).
        current = compare(catalog, after, rules=settings.rules) if (
            landings or probes or control) else first
        suspects = _recheck_targets(current.findings)
        gate = asyncio.Semaphore(4)  # gentle: a struggling server is being asked again
        if suspects and settings.vantage:
            # Another network path: a page fine from there is blocked here, not removed.
            for proxy in settings.vantage:
                name = proxy_name(proxy)
                async with Fetcher(replace(fetch, proxy=proxy)) as fetcher:
                    async def through(f: Finding, fetcher: Fetcher = fetcher,
                                      name: str = name) -> None:
                        async with gate:
                            await take(fetcher, f.url, UrlKind.VANTAGE, f.key, name)

                    await asyncio.gather(*(through(f) for f in suspects[:MAX_VANTAGE_CHECKS]))
            current = compare(catalog, after, rules=settings.rules)
            suspects = _recheck_targets(current.findings)
        for n in range(settings.recheck_probes if suspects else 0):
            await asyncio.sleep(settings.recheck_spacing if n else 0)
            # A new client per round: no connection, and no remembered DNS failure, is reused.
            async with Fetcher(fetch) as fetcher:
                async def recheck(f: Finding, fetcher: Fetcher = fetcher) -> None:
                    async with gate:
                        await take(fetcher, f.url, UrlKind.RECHECK, f.key)

                await asyncio.gather(*(recheck(f) for f in suspects))
    finally:
        sink.shutdown()
        writer.close()
    if suspects and settings.recheck_probes:
        # Judged again with the re-checks: they confirm classes, and they show which blocks
        # of a page change on every visit.
        current = compare(catalog, after, rules=settings.rules)
    return current


def _probe_urls(comparison: Comparison, limit: int) -> list[str]:
    """Return a random URL beside each directory holding pages whose text changed."""
    dirs: list[str] = []
    for f in comparison.findings:
        if (f.after is not None and f.before is not None and f.after.status == 200
                and f.after.text_hash and f.after.text_hash != f.before.text_hash):
            base = f.after.url.split("?", 1)[0].rsplit("/", 1)[0] + "/"
            if base not in dirs:
                dirs.append(base)
    return [d + f"crawler-probe-{secrets.token_hex(6)}.html" for d in dirs[:limit]]


# -- states ---------------------------------------------------------------------------------

def apply_states(catalog: Catalog, comparison: Comparison, settings: DetectSettings,
                 on_commit: Callable[[list[Event]], None] | None = None) -> list[Event]:
    """Record each URL's class, advance its state, and return the transitions.

    ``on_commit(events)`` runs inside the same transaction: what must happen exactly when
    the states change (queueing their notification, moving the run's phase on).
    """
    db, target, pk = catalog.db, comparison.target, comparison.after.pk
    now = now_iso()
    states = {r["key"]: r for r in db.execute("SELECT * FROM url_states WHERE target=?",
                                               (target,))}
    events: list[Event] = []
    with catalog.transaction():
        db.executemany("UPDATE captures SET class=? WHERE id=?",
                       [(f.cls.value, f.after.capture) for f in comparison.findings if f.after])
        db.execute("DELETE FROM crawl_classes WHERE crawl=?", (pk,))
        db.executemany("INSERT INTO crawl_classes VALUES (?, ?, ?)",
                       [(pk, c, n) for c, n in comparison.counts().items()])
        for f in comparison.findings:
            event = _advance(db, target, pk, f, states.get(f.key), now, settings,
                             f.key in comparison.confirmed)
            if event is not None:
                events.append(event)
        for host in comparison.hosts:  # a whole host as one event, with the same states
            key = f"host:{host.host}"
            members = [f for f in comparison.findings
                       if urls.host_of(f.url) == host.host and f.cls is host.cls]
            reproduced = sum(f.key in comparison.confirmed for f in members) * 2 >= len(members)
            summary = Finding(host.host, key, host.cls, None, None,
                              f"{host.urls} of {host.of} URLs since {host.since}",
                              strong=any(f.strong for f in members))
            event = _advance(db, target, pk, summary, states.get(key), host.since or now,
                             settings, reproduced)
            if event is not None:
                events.append(event)
        hosts_now = {f"host:{h.host}" for h in comparison.hosts}
        for key, state in states.items():
            if key.startswith("host:") and key not in hosts_now:
                db.execute("DELETE FROM url_states WHERE target=? AND key=?", (target, key))
                events.append(Event(key, state["url"], state["class"], "recovered",
                                    state["since"]))
        db.executemany(
            "INSERT INTO events (target, crawl, key, url, class, state, at, detail, since) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(target, pk, e.key, e.url, e.cls, e.state, now, e.detail, e.since)
             for e in events])
        if on_commit is not None:
            on_commit(events)
    return events


def events_of(catalog: Catalog, crawl_pk: int) -> list[Event]:
    """Return the transitions a crawl's detection committed, in order."""
    return [Event(row["key"], row["url"], row["class"], row["state"],
                  row["since"] or row["at"], row["detail"] or "")
            for row in catalog.db.execute("SELECT * FROM events WHERE crawl=? ORDER BY id",
                                          (crawl_pk,))]


def _advance(db: sqlite3.Connection, target: str, pk: int, f: Finding,
             state: sqlite3.Row | None, now: str, settings: DetectSettings,
             reproduced: bool) -> Event | None:
    """Move one URL's state on; return the transition, if any.

    A negative class is confirmed by re-checks that reproduced it, or by ``confirm_runs``
    consecutive crawls in it; classes an ordinary outage produces (``SLOW_CONFIRM``: server
    errors, maintenance pages) only by consecutive crawls that also span
    ``outage_confirm_after``. A confirmation says why, in its detail.
    """
    if f.cls in NEGATIVE:
        since = f.after.fetched_at if f.after else now
        slow = f.cls in SLOW_CONFIRM
        if state is not None and state["class"] == f.cls.value:
            streak = state["streak"] + 1
            age = _seconds_between(state["since"], now)
            by_runs = streak >= settings.confirm_runs and (
                not slow or age >= settings.outage_confirm_after)
            if state["state"] != "confirmed" and (by_runs or (reproduced and not slow)):
                _set_state(db, target, f.key, f.url, f.cls.value, "confirmed",
                           state["since_crawl"], state["since"], streak)
                why = (f"{streak} consecutive crawls over {_duration(age)}" if by_runs
                       else "re-checks after the crawl reproduced it")
                return Event(f.key, f.url, f.cls.value, "confirmed", state["since"],
                             _with_why(f.detail, why))
            db.execute("UPDATE url_states SET streak=? WHERE target=? AND key=?",
                       (streak, target, f.key))
            return None
        if reproduced and not slow:
            level, why = "confirmed", "re-checks after the crawl reproduced it"
        elif (f.strong or f.cls in STRONG_CONFIRM) and not slow:
            level, why = "provisional", "a strong signal (451, 410 or a block page)"
        else:
            level, why = "suspected", ""
        _set_state(db, target, f.key, f.url, f.cls.value, level, pk, since, 1)
        return Event(f.key, f.url, f.cls.value, level, since, _with_why(f.detail, why))
    if state is not None and f.cls not in NEUTRAL:
        db.execute("DELETE FROM url_states WHERE target=? AND key=?", (target, f.key))
        return Event(f.key, f.url, state["class"], "recovered", state["since"],
                     f"now {f.cls.value}")
    return None


def _with_why(detail: str, why: str) -> str:
    """Return an event's detail with the reason for its state."""
    if not why:
        return detail
    return f"{detail}; {why}" if detail else why


def _seconds_between(start: str, end: str) -> float:
    """Return the seconds from one ISO 8601 UTC time to another (0 if unreadable)."""
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, (b - a).total_seconds())


def _duration(seconds: float) -> str:
    """Return a duration for people: 3 h 20 min, 12 min, 40 s."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min"
    return f"{int(seconds)} s"


def _set_state(db: sqlite3.Connection, target: str, key: str, url: str, cls: str, state: str,
               since_crawl: int, since: str, streak: int) -> None:
    db.execute("INSERT OR REPLACE INTO url_states VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (target, key, url, cls, state, since_crawl, since, streak))


def open_states(catalog: Catalog, target: str) -> list[sqlite3.Row]:
    """Return the target's open negative states."""
    return catalog.db.execute("SELECT * FROM url_states WHERE target=? ORDER BY key",
                              (target,)).fetchall()


async def detect_after_crawl(catalog: Catalog, after: CrawlRow, settings: DetectSettings,
                             fetch: FetchSettings,
                             on_commit: Callable[[list[Event]], None] | None = None,
                             ) -> tuple[Comparison, list[Event]]:
    """Probe, compare and advance states after a crawl (a first crawl: all URLs new).

    Safe to run again after a kill: the probes a killed run archived are kept (closed and
    entered first, see ``repair_probe_files``) and count as evidence; nothing is committed
    to the states until ``apply_states``.
    """
    started = time.monotonic()
    repair_probe_files(catalog, after)
    if _first_crawl(catalog, after):
        comparison = _baseline(catalog, after)
    elif previous_crawl(catalog, after) is not None:
        comparison = await probe(catalog, after, settings, fetch)
    else:  # earlier captures, but no crawl that finished: nothing to probe against
        comparison = compare(catalog, after, rules=settings.rules)
    events = apply_states(catalog, comparison, settings, on_commit)
    log.info("compared %d URLs in %.1fs: %d transitions", len(comparison.findings),
             time.monotonic() - started, len(events))
    return comparison, events


def _first_crawl(catalog: Catalog, after: CrawlRow) -> bool:
    """Return True if no earlier crawl of the target captured anything."""
    return catalog.db.execute(
        "SELECT 1 FROM captures c JOIN crawls k ON k.id = c.crawl WHERE k.target = ? "
        "AND c.crawl < ? LIMIT 1", (after.target, after.pk)).fetchone() is None


def _baseline(catalog: Catalog, after: CrawlRow) -> Comparison:
    """Return the comparison of a target's first crawl: every URL new, counted in SQL (no
    URL is loaded: a first crawl of a three-million-page site must not need the memory)."""
    counts = dict(catalog.db.execute(
        f"SELECT c.detail LIKE '%{WALL_NOTE}%', count(DISTINCT c.key) FROM captures c "
        "WHERE c.crawl = ? AND c.final = 1 AND c.kind IN ('seed', 'page', 'requisite') "
        "GROUP BY 1", (after.pk,)).fetchall())
    walls = counts.pop(1, 0)  # the crawl saw a challenge page there, not the page
    totals = {Cls.NEW.value: sum(counts.values()), Cls.BOT_WALL.value: walls}
    totals = {cls: n for cls, n in totals.items() if n}
    return Comparison(after.target, after, None, [], [], totals=totals)





def comparison_after_detection(catalog: Catalog, after: CrawlRow,
                               settings: DetectSettings) -> Comparison:
    """Return the comparison that ``detect_after_crawl`` made, again and offline, from what
    it archived and entered (probes, control URL, re-checks): for a run killed after its
    states were committed but before its report was written."""
    if _first_crawl(catalog, after):
        return _baseline(catalog, after)
    return compare(catalog, after, rules=settings.rules)


def repair_probe_files(catalog: Catalog, after: CrawlRow) -> None:
    """Close WARCs a killed detection left open, and enter the probes it archived but had
    not entered, so that a repeated detection keeps them as evidence."""
    warc_dir = after.directory / "warc"
    if not warc_dir.is_dir():
        return
    closed, orphans = recover_warcs(warc_dir,
                                    lambda name: catalog.record_offsets(after.pk, name),
                                    payload_cap=_PROBE_PAYLOAD_CAP)
    for path in closed:
        log.info("closed %s, left open by an interrupted run", path.name)
    for orphan in orphans:
        row, _ = capture_from_record(catalog, after.target, orphan, UrlKind.RECHECK)
        with catalog.transaction():
            catalog.add_capture(after.pk, row)
    if orphans:
        log.info("entered %d records archived before the interruption", len(orphans))
