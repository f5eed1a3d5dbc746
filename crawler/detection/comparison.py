"""Compare a crawl of a target with its earlier crawls: every URL one class, with evidence.

Offline and repeatable (``crawler diff`` redoes it at any time): merge the last good capture of
every URL before the crawl with the crawl's own captures, in one streaming pass over the
catalog that settles the URLs whose bytes did not change (``sweep.py``), re-read payloads
only where text hashes differ, classify with ``detect.classify``, judge paginated listings as
one (``listing.py``), leave rotating blocks out (``rotation.py``), take in what the evidence
fetched after the crawl showed (redirect landings, soft-404 probes, the control URL, vantage
points, re-checks), and return a ``Comparison``. It writes nothing.

Before-captures are the last *good* ones: 2xx (or a 304 revisit) whose own class was not a
takedown class, so a page compared after a failed crawl is compared with what it used to be.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import chain

from crawler.archive.catalog import Catalog, CrawlRow
from crawler.capture import pagetext, urls
from crawler.capture.fingerprints import WALL_NOTE
from crawler.detection import listing
from crawler.detection.detect import (
    NEGATIVE,
    NOT_ASKED,
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
from crawler.detection.rotation import left_out, rotating_blocks
from crawler.detection.snapshots import SNAP_COLUMNS, Captures, blocked_by
from crawler.detection.sweep import KINDS, Settled, Sweep, earlier_sql, plain_findings, sweep

_NOT_RECHECKED = frozenset({Cls.DELISTED})  # judged from the link graph of the whole crawl
# Network failures of a whole host: a few of its URLs re-checked stand for all of them.
_HOST_CLASSES = frozenset({Cls.DNS, Cls.REFUSED, Cls.TLS, Cls.TIMEOUT})
HOST_RECHECK_SAMPLE = 3
# Why the crawl may not have fetched a redirect's target, where detection fetches it as
# evidence (robots.txt is obeyed for evidence too).
_NOT_FOLLOWED = frozenset({"out-of-scope", "trap"})
MAX_LANDING_HOPS = 6
MAX_VANTAGE_CHECKS = 500  # suspected URLs fetched through each vantage point per crawl
MAX_LANDINGS = 200  # redirect targets fetched as evidence after one crawl
MAX_RECHECKS = 1000  # suspected URLs re-checked per round (a site gone whole is millions)


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
    rechecked: frozenset[str] = frozenset()  # keys fetched again after the crawl
    settled: Settled = field(default_factory=Settled)  # URLs classified in the streaming
    # pass (unchanged bytes, 304s, plain findings): counted, not among the findings
    rules: pagetext.TextRules = pagetext.DEFAULT_RULES  # how page text was read
    network_down: bool = False  # the control URL failed too
    # (host, network class) -> its sample as judged through a vantage point: stands for the
    # host's other URLs of that class (``_with_vantages``), the plain ones too
    samples: dict[tuple[str, Cls], Finding] = field(default_factory=dict)
    # (host, network class) whose re-checked sample all reproduced: every URL of it confirmed
    confirmed_groups: frozenset[tuple[str, Cls]] = frozenset()

    def counts(self) -> dict[str, int]:
        """Return URLs per class."""
        if self.totals is not None:
            return dict(self.totals)
        counts = Counter(f.cls.value for f in self.findings) + self.settled.counts
        return dict(counts.most_common())

    @property
    def plain(self) -> int:
        """Return how many findings were not held (``sweep.plain_findings``)."""
        return self.settled.plain

    def is_confirmed(self, f: Finding) -> bool:
        """Return True if re-checks after the crawl reproduced a finding (its own, or the
        sample of its host's network failure)."""
        return f.key in self.confirmed or (
            f.cls in _HOST_CLASSES and (urls.host_of(f.url), f.cls) in self.confirmed_groups)

    def recheck_targets(self, catalog: Catalog) -> list[Finding]:
        """Return the suspects to fetch again, held and plain (``recheck_targets``)."""
        return recheck_targets(self.findings, _plain_suspects(self.findings, self.settled),
                               lambda: self.plain_findings(catalog))

    def every_finding(self, catalog: Catalog) -> Iterator[Finding]:
        """Yield every finding: the held ones, then the plain ones re-read from the catalog
        a batch at a time (a site taken down whole is millions: never all in memory)."""
        yield from self.findings
        yield from self.plain_findings(catalog)

    def plain_findings(self, catalog: Catalog) -> Iterator[Finding]:
        """Yield the plain findings (``sweep.plain_findings``), each judged as its host's
        sample was through a vantage point, if it was (``_with_vantages``)."""
        for f in plain_findings(Captures(catalog, self.rules), self.settled,
                                self.network_down):
            sample = self.samples.get((urls.host_of(f.url), f.cls)) if (
                f.cls in _HOST_CLASSES) else None
            yield f if sample is None else _as_sample(f, sample)


def previous_crawl(catalog: Catalog, after: CrawlRow) -> CrawlRow | None:
    """Return the target's latest crawl before ``after`` that got anywhere."""
    earlier = [c for c in catalog.crawls(after.target)
               if c.pk < after.pk and c.status in ("complete", "incomplete", "interrupted")]
    return earlier[-1] if earlier else None


def first_crawl(catalog: Catalog, after: CrawlRow) -> bool:
    """Return True if no earlier crawl of the target captured anything."""
    return catalog.db.execute(
        "SELECT 1 FROM captures c JOIN crawls k ON k.id = c.crawl WHERE k.target = ? "
        "AND c.crawl < ? LIMIT 1", (after.target, after.pk)).fetchone() is None


def baseline(catalog: Catalog, after: CrawlRow) -> Comparison:
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


def compare(catalog: Catalog, after: CrawlRow, *, before: CrawlRow | None = None,
            rules: pagetext.TextRules = pagetext.DEFAULT_RULES,
            settle: bool = True) -> Comparison:
    """Classify every URL of ``after`` against its last good capture up to ``before``.

    URLs that nothing can make interesting (the same bytes, or a 304) are settled in one
    streaming pass (``sweep.py``); the rest are held and judged with the whole crawl's
    context, so memory grows with what changed, not with the site. ``settle=False`` holds
    every URL (tests check that both give every URL the same class).
    """
    rows = Captures(catalog, rules)
    before = before or previous_crawl(catalog, after)
    limit = before.pk if before else after.pk - 1
    seeds = frozenset(urls.canonical_key(s) for s in after.settings.get("seeds", []))
    extra = rows.snaps(f"SELECT {SNAP_COLUMNS} FROM captures c WHERE c.crawl = ? "
                       "AND c.kind IN ('probe', 'control', 'recheck', 'landing', 'vantage') "
                       "ORDER BY c.id",
                       (after.pk,))
    # URLs fetched again after the crawl are judged with what that showed: never plain
    hold = frozenset(s.key for s in extra if s.kind in ("recheck", "landing", "vantage"))
    controls = [s for s in extra if s.kind == "control"]
    network_down = bool(controls) and controls[-1].status is None
    swept = sweep(rows, after, limit, before, seeds, settle=settle, hold=hold,
                  network_down=network_down)
    old, new = swept.old, swept.new
    answers = _answers(rows, after, new, extra)
    ctx = _context(rows, swept, extra, answers, after, limit, seeds, network_down)
    keys = sorted(set(new) | {k for k in old if old[k].kind != "requisite"})
    raw = [classify(old.get(k), new.get(k), ctx) for k in keys]

    def prior(key: str) -> Snap | None:  # a listing page as the previous crawl saw it
        if before is None:
            return None
        found = rows.snaps(f"SELECT {SNAP_COLUMNS} FROM captures c WHERE c.crawl = ? "
                           "AND c.key = ? AND c.final = 1", (before.pk, key))
        return found[0] if found else None

    findings = listing.regroup(raw, ctx.lines, prior)
    rotating = rotating_blocks(findings, rows, extra, ctx)
    if rotating:  # compare those pages again without the block that changes every visit
        plain = ctx.lines
        ctx = replace(ctx, lines=lambda s: rows.lines_without(s, rotating[s.key])
                      if s.key in rotating else plain(s))
        raw = [left_out(classify(f.before, f.after, ctx)) if f.key in rotating else f
               for f in raw]
        findings = listing.regroup(raw, ctx.lines, prior)
    findings, samples = _with_vantages(findings, extra, ctx)
    for (host, cls), sample in samples.items():  # the plain URLs it stands for too
        if sample.cls is not cls:
            swept.settled.reclass(host, cls, sample.cls)
    confirmed, groups = _reproduced(findings, extra, ctx.lines)
    wanted = _landings_wanted(findings, answers)
    return Comparison(after.target, after, before, findings,
                      roll_up(findings, settled=swept.settled.pages,
                              negative=swept.settled.negative_pages), confirmed,
                      unlanded=wanted[:MAX_LANDINGS],
                      notes=_caps(findings, extra, wanted, swept.settled),
                      rechecked=frozenset(s.key for s in extra if s.kind == "recheck"),
                      settled=swept.settled, rules=rules, network_down=network_down,
                      samples=samples, confirmed_groups=groups)


def _caps(findings: list[Finding], extra: list[Snap], unlanded: list[str],
          settled: Settled) -> list[str]:
    """Return what a reader must know was not checked: redirect targets past the cap of
    evidence fetches, suspected URLs past the cap of vantage-point fetches."""
    notes = []
    landed = {s.url for s in extra if s.kind == "landing"}
    missing = [u for u in unlanded if u not in landed]
    if len(missing) > MAX_LANDINGS:
        notes.append(f"{len(missing) - MAX_LANDINGS} redirect target(s) the crawl did not "
                     f"fetch were not fetched as evidence either (at most {MAX_LANDINGS} per "
                     "crawl): those redirects are judged without knowing where they lead")
    suspects = len(_suspects(findings)) + _plain_suspects(findings, settled).total()
    if suspects > MAX_RECHECKS and any(s.kind == "recheck" for s in extra):
        notes.append(f"{suspects - MAX_RECHECKS} suspected URL(s) were not re-checked (at most "
                     f"{MAX_RECHECKS} a round, a sample spread over hosts and classes): they "
                     "are confirmed by consecutive crawls, their host's event by the sample")
    viewed = {s.key for s in extra if s.kind == "vantage"}
    if viewed:
        hosts = {(urls.host_of(f.url), f.cls) for f in findings if f.key in viewed}
        unseen = len([f for f in findings if f.cls in NEGATIVE - _NOT_RECHECKED
                      and f.key not in viewed and not (
                          f.cls in _HOST_CLASSES and (urls.host_of(f.url), f.cls) in hosts)])
        unseen += sum(n for (host, cls), n in settled.negative.items()  # plain: none was
                      if not (cls in _HOST_CLASSES and (host, cls) in hosts))  # fetched there
        if unseen:
            notes.append(f"{unseen} suspected URL(s) were not fetched through the "
                         f"vantage point(s) (at most {MAX_VANTAGE_CHECKS} a crawl, of the URLs "
                         "suspected before the re-checks): their class is as seen from here")
    return notes


def _context(rows: Captures, swept: Sweep, extra: list[Snap], answers: _Lookup,
             after: CrawlRow, limit: int, seeds: frozenset[str],
             network_down: bool) -> Context:
    """Gather what classification needs to know about the crawl as a whole."""
    old, new = swept.old, swept.new

    def landing(snap: Snap) -> Snap | None:
        return _chain(snap, answers)[0]

    probes = [s for s in extra if s.kind == "probe" and s.status and 200 <= s.status < 300]

    def soft_404(snap: Snap) -> bool:
        mine = rows.lines(snap)
        if not mine:
            return False
        host = urls.host_of(snap.url)
        return any(urls.host_of(p.url) == host and rows.lines(p) == mine for p in probes)

    # Linked "before" (``sweep``): by the previous crawl, or by the crawl of a page's last
    # good capture (a page delisted two crawls ago is still delisted, and can be confirmed
    # by the runs).
    return Context(
        lines=rows.lines, landing=landing, blocked_by=lambda s: blocked_by(rows, s),
        soft_404=soft_404, collapsed=_collapsed(old, new),
        linked_before=_trusted_links(swept),
        linked_now=frozenset(swept.linked_now),
        network_down=network_down,
        seeds=seeds, before_of=_Lookup(
            rows, old, f"SELECT {SNAP_COLUMNS} FROM captures c JOIN "
            f"({earlier_sql(one_key=True)}) g ON g.id = c.id", (after.target, limit)).get)


class _Lookup:
    """key -> a capture: the held ones in memory, any other (a settled URL a redirect chain
    leads to) read from the catalog by ``sql`` (parameters ``args + (key,)``), once."""

    def __init__(self, rows: Captures, held: dict[str, Snap], sql: str,
                 args: tuple[object, ...]) -> None:
        self.rows, self.held, self.sql, self.args = rows, held, sql, args
        self.read: dict[str, Snap | None] = {}

    def get(self, key: str) -> Snap | None:
        if key in self.held:
            return self.held[key]
        if key not in self.read:
            found = self.rows.snaps(self.sql, (*self.args, key))
            self.read[key] = found[0] if found else None
        return self.read[key]


def _answers(rows: Captures, after: CrawlRow, new: dict[str, Snap],
             extra: list[Snap]) -> _Lookup:
    """Return key -> what this crawl got for it: its capture, or the landing fetched as
    evidence where the crawl has no answer."""
    answers = _Lookup(rows, dict(new), f"SELECT {SNAP_COLUMNS} FROM captures c WHERE "
                      f"c.crawl = ? AND c.key = ? AND c.final = 1 AND c.kind IN {KINDS} "
                      "ORDER BY c.id DESC LIMIT 1", (after.pk,))
    for snap in extra:
        if snap.kind == "landing" and _unfetched(answers.get(snap.key)):
            answers.held[snap.key] = snap
    return answers


def _unfetched(snap: Snap | None) -> bool:
    """Return True if the crawl has no answer for a URL (not captured, or kept out)."""
    return snap is None or (snap.status is None and snap.failure in _NOT_FOLLOWED)


def _chain(snap: Snap, by_url: _Lookup) -> tuple[Snap | None, str | None]:
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


def _landings_wanted(findings: list[Finding], answers: _Lookup) -> list[str]:
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


def _trusted_links(swept: Sweep) -> frozenset[str]:
    """Return the held keys linked by the earlier crawl on hosts whose link graph still
    stands.

    When a host's pages link to less than half of what they linked to before (the site is
    blocked, down, or replaced), a page no longer linked says nothing about that page: it is
    not called delisted. Nor when a page of the host that served content before failed this
    time for a passing reason (a 5xx, a 429, no answer, a wall): the links it holds were not
    seen, so pages it alone links to would look delisted. (A page removed on purpose, 404 or
    451, takes its links with it: those pages are delisted.) The counts are over every URL
    (``sweep``); a failure is never settled, so the held URLs show every failed page.
    """
    old, new = swept.old, swept.new

    def host(key: str) -> str:
        snap = old.get(key)
        return urls.host_of(snap.url) if snap is not None else ""

    standing = {h for h, n in swept.hosts_before.items() if swept.hosts_now[h] >= 0.5 * n}
    standing -= {urls.host_of(snap.url) for key, snap in new.items()
                 if snap.kind in ("seed", "page") and _passing_failure(snap)
                 and (prev := old.get(key)) is not None and served(prev)}
    return frozenset(k for k in swept.linked_before if host(k) in standing)


def _passing_failure(snap: Snap) -> bool:
    """Return True if a capture failed for a reason that passes (its links went unseen)."""
    status = snap.status or 0
    if snap.wall or status >= 500 or status == 429:
        return True
    return snap.status is None and snap.failure is not None and snap.failure not in NOT_ASKED


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
                lines: Callable[[Snap], list[str] | None],
                ) -> tuple[set[str], frozenset[tuple[str, Cls]]]:
    """Return keys whose rechecks all showed the same thing as the crawl (the same text as
    compared: ignore rules and rotating blocks left out), and the (host, network class)
    groups whose re-checked sample all did (every URL of them, held or plain, confirmed)."""
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
    # re-checked sample of its URLs stands for the rest (see recheck_targets).
    confirmed.update(f.key for f in findings if f.cls in _HOST_CLASSES
                     and hosts.get((urls.host_of(f.url), f.cls)))
    return confirmed, frozenset(group for group, same in hosts.items() if same)


def _with_vantages(findings: list[Finding], extra: list[Snap], ctx: Context,
                   ) -> tuple[list[Finding], dict[tuple[str, Cls], Finding]]:
    """Return the findings judged again with what vantage points saw (``through_vantages``);
    a host-wide network failure by the sample of its URLs fetched through them (returned
    too, per host and class: the plain findings of the host are judged by it as well)."""
    views: dict[str, list[Snap]] = {}
    for snap in extra:
        if snap.kind == "vantage":
            views.setdefault(snap.key, []).append(snap)
    if not views:
        return findings, {}
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
            out[i] = _as_sample(f, sample)
    return out, hosts


def _as_sample(f: Finding, sample: Finding) -> Finding:
    """Return a URL of a host-wide network failure judged as its host's sample was."""
    return replace(f, cls=sample.cls, detail=f"as {sample.url}: {sample.detail}")


def _plain_suspects(findings: list[Finding], settled: Settled) -> Counter[tuple[str, Cls]]:
    """Return how many plain findings of each (host, class) are suspects (``_suspects``):
    every one, but a host-wide network failure only up to its sample, counting its held
    ones first."""
    held = Counter((urls.host_of(f.url), f.cls) for f in _suspects(findings)
                   if f.cls in _HOST_CLASSES)
    return +Counter({group: min(n, max(0, HOST_RECHECK_SAMPLE - held[group]))
                     if group[1] in _HOST_CLASSES else n
                     for group, n in settled.negative.items()})


def _suspects(findings: list[Finding]) -> list[Finding]:
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


def recheck_targets(findings: list[Finding],
                    plain: Counter[tuple[str, Cls]] | None = None,
                    more: Callable[[], Iterable[Finding]] = tuple) -> list[Finding]:
    """Return the suspects to fetch again (``_suspects`` of ``findings``, and of the plain
    findings ``more()`` yields, as many of each (host, class) as ``plain`` says), at most
    ``MAX_RECHECKS``: past that (a site taken down whole has millions), a sample spread
    evenly over each host's classes, every group its share, each share spread over the
    group's URLs. The URLs left out are confirmed by consecutive crawls instead, and their
    host's event by the sample (``states.apply_states``); the report says how many
    (``_caps``). The plain ones are read in one pass, and only the chosen are kept."""
    targets = _suspects(findings)
    plain = plain or Counter()

    def plain_suspects() -> Iterator[Finding]:
        taken: Counter[tuple[str, Cls]] = Counter()
        for f in more():
            group = (urls.host_of(f.url), f.cls)
            if taken[group] < plain[group]:
                taken[group] += 1
                yield f

    if len(targets) + plain.total() <= MAX_RECHECKS:
        return targets + list(plain_suspects())
    sizes = Counter((urls.host_of(f.url), f.cls) for f in targets) + plain
    shares: dict[tuple[str, Cls], int] = dict.fromkeys(sizes, 0)
    left = MAX_RECHECKS
    while left:  # equal shares; what a small group cannot use goes to the others
        open_groups = [g for g in sizes if shares[g] < sizes[g]]
        each = max(1, left // len(open_groups))
        for group in open_groups:
            take = min(each, sizes[group] - shares[group], left)
            shares[group] += take
            left -= take
            if not left:
                break
    picks = {group: {i * sizes[group] // n for i in range(n)} for group, n in shares.items()}
    seen: Counter[tuple[str, Cls]] = Counter()
    chosen = []
    for f in chain(targets, plain_suspects()):
        group = (urls.host_of(f.url), f.cls)
        if seen[group] in picks.get(group, ()):
            chosen.append(f)
        seen[group] += 1
    return chosen


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

