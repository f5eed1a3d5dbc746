"""The streaming pass of a comparison: every URL of a crawl beside its earlier capture, merged
in key order from sorted catalog queries, one URL at a time.

Most URLs of a recrawl are settled here: the same payload bytes as their last capture, or a
304, with nothing that could make them interesting (no open takedown state, not a page of a
paginated listing, not a page that lost the links to it). They are counted, and their capture
ids kept (8 bytes each) so their class can be recorded; nothing else of them is held.

So are the *plain* findings: URLs whose class ``detect.classify`` gives from their two
captures alone, whatever else the crawl saw (but whether our own network was down), though
it is not a quiet one (``_plain``): a page that served content and now answers 404 or 410, or
does not answer, or was not asked because its host had stopped answering; a URL this crawl
did not fetch or was kept from by a rule. A site taken down whole, or gone dark, is millions
of these. They are counted per host and class (what ``detect.roll_up`` and the re-check
sample need), and the pair of capture ids of each is kept (16 bytes), so that
``plain_findings`` can give them back one at a time, re-read from the catalog, to advance
their states and write the report (a host's network failure then judged as its sample was:
``Comparison.plain_findings``).

Only the rest (changed, failed, new, redirected, judged with evidence fetched after the
crawl) is returned whole, for ``comparison.compare`` to judge with the context of the whole
crawl. So the memory a comparison needs grows with what changed in ways that need the
context, not with the site (docs/detection.md, *Large targets*).

Read-only, like the rest of the comparison.
"""

from __future__ import annotations

import heapq
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from crawler.archive.catalog import CrawlRow
from crawler.capture import urls
from crawler.detection.detect import (
    NEGATIVE,
    NETWORK,
    NOT_ASKED,
    Cls,
    Context,
    Finding,
    Snap,
    classify,
    served,
)
from crawler.detection.listing import listing_key
from crawler.detection.snapshots import GOOD, NOT_WALL, SNAP_COLUMNS, Captures

KINDS = "('seed', 'page', 'requisite')"
_MAYBE_LISTING = "(c.url LIKE '%?%' OR c.url LIKE '%/page%')"  # listing_key's own pre-test


@dataclass
class Settled:
    """URLs the streaming pass classified alone: per class, how many and their captures;
    of the plain findings among them, their capture pairs and per-host counts."""

    counts: Counter[str] = field(default_factory=Counter)
    captures: dict[str, array[int]] = field(default_factory=dict)
    # host -> (pages, earliest fetch) of settled pages a host-wide event counts among the
    # host's compared pages (quiet ones, and plain findings other than "not checked")
    pages: dict[str, tuple[int, str]] = field(default_factory=dict)
    plain_old: array[int] = field(default_factory=lambda: array("q"))  # 0: no capture
    plain_new: array[int] = field(default_factory=lambda: array("q"))
    negative: Counter[tuple[str, Cls]] = field(default_factory=Counter)  # (host, class):
    # plain takedown findings, every kind (the re-check sample's groups)
    negative_pages: Counter[tuple[str, Cls]] = field(default_factory=Counter)  # the plain
    # pages of a takedown class or own-network-down (what a host-wide event counts)
    strong: set[tuple[str, Cls]] = field(default_factory=set)  # (host, class) with a strong
    # plain finding (a 410)

    def add(self, cls: Cls, snap: Snap) -> None:
        self.counts[cls.value] += 1
        self.captures.setdefault(cls.value, array("q")).append(snap.capture)
        if snap.kind in ("seed", "page"):  # what a host-wide event counts its share of
            self._page(snap)

    def add_plain(self, cls: Cls, old: Snap | None, new: Snap | None) -> None:
        """Count a plain finding, keep its capture pair. (Its class is recorded with its
        state, ``states.apply_states``: a host's sample seen through a vantage point may
        still change it, ``Comparison.reclass``.)"""
        self.counts[cls.value] += 1
        self.plain_old.append(old.capture if old is not None else 0)
        self.plain_new.append(new.capture if new is not None else 0)
        if new is None or cls is Cls.NOT_CHECKED:
            return  # nothing seen: not among a host's compared pages
        group = (urls.host_of(new.url), cls)
        if cls in NEGATIVE:
            self.negative[group] += 1
            if new.status == 410:
                self.strong.add(group)
        if new.kind in ("seed", "page"):
            if cls in NEGATIVE or cls is Cls.NETWORK_DOWN:
                self.negative_pages[group] += 1
            self._page(new)

    def reclass(self, host: str, old: Cls, new: Cls) -> None:
        """Count the plain findings of ``old`` on ``host`` as ``new`` (what a vantage point
        saw of the host's sample stands for them, ``comparison._with_vantages``)."""
        n, pages = self.negative.pop((host, old), 0), self.negative_pages.pop((host, old), 0)
        self.counts[old.value] -= n
        self.counts[new.value] += n
        self.counts = +self.counts  # (no class counted as none)
        if new in NEGATIVE:
            self.negative[(host, new)] += n
        self.negative_pages[(host, new)] += pages
        if (host, old) in self.strong:
            self.strong.add((host, new))

    def _page(self, snap: Snap) -> None:
        host = urls.host_of(snap.url)
        n, first = self.pages.get(host, (0, snap.fetched_at))
        self.pages[host] = (n + 1, min(first, snap.fetched_at))

    @property
    def plain(self) -> int:
        """Return how many plain findings there are."""
        return len(self.plain_old)



@dataclass
class Sweep:
    """What the streaming pass leaves for the comparison proper."""

    old: dict[str, Snap]  # key -> last good capture (else last capture), of held URLs only
    new: dict[str, Snap]  # key -> this crawl's capture, of held URLs only
    linked_before: set[str]  # held keys linked by the crawls of their earlier captures
    linked_now: set[str]  # held keys linked by this crawl
    hosts_before: Counter[str]  # host -> keys linked before, all URLs (for trusted links)
    hosts_now: Counter[str]  # host -> keys linked now that had an earlier capture, all URLs
    settled: Settled


def earlier_sql(*, one_key: bool = False) -> str:
    """Return the query of each key's earlier capture's id: its last good capture, else its
    last capture; never a challenge page or a capture already judged a takedown (an outage
    page in front of a 404 is not a page's new normal). Parameters: target, last crawl (and
    the key, with ``one_key``)."""
    negative = ",".join(f"'{c.value}'" for c in NEGATIVE)
    return (f"SELECT coalesce(max(CASE WHEN {GOOD} THEN c.id END), max(c.id)) AS id "
            f"FROM captures c JOIN crawls k ON k.id = c.crawl WHERE k.target = ? "
            f"AND c.crawl <= ? AND c.final = 1 AND c.kind IN {KINDS} AND {NOT_WALL} "
            f"AND (c.class IS NULL OR c.class NOT IN ({negative})) "
            + ("AND c.key = ?" if one_key else "GROUP BY c.key"))


def sweep(rows: Captures, after: CrawlRow, limit: int, before: CrawlRow | None,
          seeds: frozenset[str], *, settle: bool = True,
          hold: frozenset[str] = frozenset(), network_down: bool = False) -> Sweep:
    """Merge this crawl's captures with each URL's earlier capture (crawls up to ``limit``),
    the link graphs and the open states, settle what can be settled, hold the rest
    (``settle=False``: hold every URL, the reference the settling is tested against).
    ``hold``: keys always held (evidence fetched after the crawl may change their class);
    ``network_down``: the control URL failed too (``Context.network_down``)."""
    db = rows.db
    earlier = earlier_sql()
    args = (after.target, limit)
    then: set[int] = {before.pk} if before else set()
    maybe_listing: set[str] = set()
    for crawl, url in db.execute(
            f"SELECT DISTINCT c.crawl, CASE WHEN {_MAYBE_LISTING} THEN c.url END "
            f"FROM captures c JOIN ({earlier}) g ON g.id = c.id", args):
        then.add(crawl)
        if url is not None:
            maybe_listing.add(url)
    maybe_listing.update(r[0] for r in db.execute(
        f"SELECT c.url FROM captures c WHERE c.crawl = ? AND c.final = 1 "
        f"AND c.kind IN {KINDS} AND {_MAYBE_LISTING}", (after.pk,)))
    # A listing's pages, and its bare address (/persons/ = /persons/?page=1), are judged
    # together with their siblings: never settled alone.
    listings = {k for k in map(listing_key, maybe_listing) if k is not None}
    del maybe_listing

    streams: dict[str, Iterable[tuple[str, Any]]] = {
        "old": _keyed(rows.iter_snaps(f"SELECT {SNAP_COLUMNS} FROM captures c JOIN "
                                      f"({earlier}) g ON g.id = c.id ORDER BY c.key", args)),
        "new": _keyed(rows.iter_snaps(f"SELECT {SNAP_COLUMNS} FROM captures c WHERE "
                                      f"c.crawl = ? AND c.final = 1 AND c.kind IN {KINDS} "
                                      "ORDER BY c.key, c.id", (after.pk,))),
        "now": _keys(db.execute("SELECT key FROM linked WHERE crawl = ? ORDER BY key",
                                (after.pk,))),
        "before": heapq.merge(*(_keys(db.execute(
            "SELECT key FROM linked WHERE crawl = ? ORDER BY key", (pk,))) for pk in
            sorted(then)), key=lambda kv: kv[0]),
        "state": _keys(db.execute("SELECT key FROM url_states WHERE target = ? ORDER BY key",
                                  (after.target,))),
    }
    out = Sweep({}, {}, set(), set(), Counter(), Counter(), Settled())
    for key, found in _merged(streams):
        old, new = found.get("old"), found.get("new")
        was_linked, is_linked = "before" in found, "now" in found
        host = urls.host_of(old.url) if old is not None else ""
        if was_linked:
            out.hosts_before[host] += 1
        if is_linked and old is not None:
            out.hosts_now[host] += 1
        if new is None and (old is None or old.kind == "requisite"):
            continue  # only linked; or a requisite no longer used: nothing to say
        if settle and key not in hold:
            cls = _settles(old, new, was_linked and not is_linked, "state" in found, seeds,
                           listings)
            if cls is not None:
                assert new is not None
                out.settled.add(cls, new)
                continue
            cls = _plain(old, new, listings, network_down)
            if cls is not None:
                out.settled.add_plain(cls, old, new)
                continue
        if old is not None:
            out.old[key] = old
        if new is not None:
            if old is not None and new.url == old.url:  # one copy of the URL and key
                new = replace(new, url=old.url, key=old.key)
            out.new[key] = new
        if was_linked:
            out.linked_before.add(key)
        if is_linked:
            out.linked_now.add(key)
    return out


def _settles(old: Snap | None, new: Snap | None, unlinked: bool, open_state: bool,
             seeds: frozenset[str], listings: set[str]) -> Cls | None:
    """Return the class of a URL when nothing beyond its two captures can change it (what
    ``detect.classify`` would return for them in any context), else None."""
    if old is None or new is None or open_state or new.failure or new.wall or not served(old):
        return None  # new, gone, failed, or a state to advance or close
    if unlinked and new.kind == "page" and new.key not in seeds:
        return None  # may be delisted: judged with the whole link graph
    if listing_key(new.url) is not None or new.url in listings:
        return None
    status = new.status or 0
    if 200 <= status < 300 and new.digest and new.digest == old.digest:
        return Cls.UNCHANGED
    if status == 304 and new.record_type == "revisit":
        return Cls.NOT_MODIFIED
    return None


def _plain(old: Snap | None, new: Snap | None, listings: set[str],
           network_down: bool) -> Cls | None:
    """Return the class of a plain finding (``detect.classify`` of the two captures, the
    same in any context but whether our own network was down), else None: not fetched this
    time, or kept out by a rule (not checked); a page that served content now answering 404
    or 410 (removed), or not answering at all (a network failure, or not asked because its
    host had stopped answering: a site gone dark). A listing's pages are judged with their
    siblings, and so are never plain."""
    snap = new if new is not None else old
    if snap is None or listing_key(snap.url) is not None or snap.url in listings:
        return None
    if new is None:
        return Cls.NOT_CHECKED
    if new.wall:
        return None
    if new.failure in NOT_ASKED:
        return Cls.NOT_CHECKED
    if old is None:
        return None
    if new.failure == "host-hung":
        return Cls.NETWORK_DOWN if network_down else Cls.TIMEOUT
    if not served(old):
        return None
    if new.failure is None and new.status in (404, 410):
        return Cls.REMOVED
    if new.failure in NETWORK and new.status is None:
        return Cls.NETWORK_DOWN if network_down else NETWORK[new.failure]
    return None


def plain_findings(rows: Captures, settled: Settled, network_down: bool,
                   batch: int = 1000) -> Iterator[Finding]:
    """Yield the plain findings of a sweep, in key order, their captures re-read from the
    catalog a batch at a time (``classify`` needs nothing else for them)."""
    context = Context(lines=lambda snap: None, landing=lambda snap: None,
                      network_down=network_down)
    for start in range(0, settled.plain, batch):
        pairs = list(zip(settled.plain_old[start:start + batch],
                         settled.plain_new[start:start + batch], strict=True))
        ids = sorted({c for pair in pairs for c in pair if c})
        snaps = {s.capture: s for s in rows.snaps(
            f"SELECT {SNAP_COLUMNS} FROM captures c WHERE c.id IN "
            f"({','.join('?' * len(ids))})", ids)}
        for old, new in pairs:
            missing = [c for c in (old, new) if c and c not in snaps]
            if missing:
                raise LookupError(f"capture {missing[0]} left the catalog during detection")
            yield classify(snaps.get(old), snaps.get(new), context)


def _keyed(snaps: Iterable[Snap]) -> Iterator[tuple[str, Snap]]:
    return ((snap.key, snap) for snap in snaps)


def _keys(rows: Iterable[tuple[str]]) -> Iterator[tuple[str, bool]]:
    return ((row[0], True) for row in rows)


def _tagged(tag: str, stream: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, str, Any]]:
    for key, value in stream:
        yield key, tag, value


def _merged(streams: dict[str, Iterable[tuple[str, Any]]],
            ) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (key, tag -> value) over streams sorted by key (SQLite's BINARY order of UTF-8
    is Python's order of str); where a stream repeats a key, its last value wins."""
    merged = heapq.merge(*(_tagged(tag, s) for tag, s in streams.items()),
                         key=lambda item: item[0])
    current: str | None = None
    found: dict[str, Any] = {}
    for key, tag, value in merged:
        if key != current:
            if current is not None:
                yield current, found
            current, found = key, {}
        found[tag] = value
    if current is not None:
        yield current, found
