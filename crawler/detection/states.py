"""Takedown states: each URL's class over crawls becomes suspected, provisional, confirmed or
recovered (docs/detection.md, *Confirmation and states*). The transitions are what is
reported and notified; they are written with the classes in one transaction.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from crawler.archive.catalog import Catalog, now_iso
from crawler.capture import urls
from crawler.capture.settings import DetectSettings
from crawler.detection.comparison import Comparison
from crawler.detection.detect import (
    NEGATIVE,
    NEUTRAL,
    SLOW_CONFIRM,
    Cls,
    Finding,
    HostEvent,
)

STRONG_CONFIRM = frozenset({Cls.LEGAL, Cls.BLOCK_PAGE})


@dataclass(frozen=True, slots=True)
class Event:
    """A state transition of a URL (or of a whole host: key ``host:<name>``)."""

    key: str
    url: str
    cls: str
    state: str  # suspected | provisional | confirmed | recovered (| STANDING: see there)
    since: str
    detail: str = ""
    # A whole host's event: the transitions of its URLs in its class that it stands for,
    # as (state, how many) (``fold_key``). Those are in the events table and
    # findings.jsonl, not in the list (``apply_states``): a site taken down whole is
    # millions of them.
    rolled_up: tuple[tuple[str, int], ...] = ()

    @property
    def urls_rolled_up(self) -> int:
        """Return how many URL transitions this event stands for."""
        return sum(n for _, n in self.rolled_up)


ALERTS = ("confirmed", "provisional")
# Not a transition: a whole host's roll-up whose own state did not change in this run (it
# was confirmed before), carrying the transitions of its URLs (``rolled_up``); never in the
# events table. A site gone for days confirms its pages a day after the host.
STANDING = "standing"


def transitions(events: Iterable[Event], states: Iterable[str] | None = None) -> int:
    """Return how many transitions a list of events stands for, rolled-up ones included
    (only those into ``states``, if given)."""
    wanted = None if states is None else frozenset(states)
    return sum((e.state != STANDING and (wanted is None or e.state in wanted))
               + sum(n for state, n in e.rolled_up if wanted is None or state in wanted)
               for e in events)


def fold_key(event: Event) -> tuple[str, str, bool]:
    """Return what a URL transition has in common with the whole-host event that stands for
    it (a host event's ``url`` is the host): host, class, and whether it is a recovery. A
    host's event stands for its URLs' transitions into any takedown state (its own may be
    confirmed by the re-checked sample, theirs suspected until the next crawl), or, when the
    host recovered, for their recoveries."""
    host = event.url if event.key.startswith("host:") else urls.host_of(event.url)
    return host, event.cls, event.state == "recovered"


def rolled_up_words(n: int, states: dict[str, int]) -> str:
    """Return what a host event stands for, in words: "and 998 URL transition(s) of this
    host in this class (4 confirmed, 994 suspected)"."""
    per_state = ", ".join(f"{count} {state}" for state, count in states.items())
    return f"and {n} URL transition(s) of this host in this class ({per_state})"


def with_rolled_up(event: Event, states: Counter[str]) -> Event:
    """Return a host event carrying the per-state counts of the transitions it stands for."""
    return replace(event, rolled_up=tuple(sorted(states.items()))) if states else event


_BATCH = 5000  # events inserted at a time


def apply_states(catalog: Catalog, comparison: Comparison, settings: DetectSettings,
                 on_commit: Callable[[list[Event]], None] | None = None) -> list[Event]:
    """Record each URL's class, advance its state, and return the transitions.

    Every transition is written to the events table. A URL's transition that its host's
    whole-host event of this run stands for (``fold_key``), or its ``STANDING`` roll-up, is
    counted in that entry's ``rolled_up`` and not returned: the list stays the size of what
    a person reads, however many URLs a site taken down whole has. Memory does not grow with
    the site either way: the findings are read one at a time (``Comparison.every_finding``),
    each URL's state looked up alone.

    ``on_commit(events)`` runs inside the same transaction: what must happen exactly when
    the states change (queueing their notification, moving the run's phase on).
    """
    db, target, pk = catalog.db, comparison.target, comparison.after.pk
    now = now_iso()

    def state_of(key: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM url_states WHERE target=? AND key=?", (target, key)).fetchone()
        return row

    rows: list[tuple[object, ...]] = []

    def insert(event: Event) -> None:
        rows.append((target, pk, event.key, event.url, event.cls, event.state, now,
                     event.detail, event.since))
        if len(rows) >= _BATCH:
            flush()

    def flush() -> None:
        db.executemany(
            "INSERT INTO events (target, crawl, key, url, class, state, at, detail, since) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        rows.clear()

    classes: list[tuple[str, int]] = []

    def record(f: Finding) -> None:
        if f.after is not None:
            classes.append((f.cls.value, f.after.capture))
        if len(classes) >= _BATCH:
            db.executemany("UPDATE captures SET class=? WHERE id=?", classes)
            classes.clear()

    with catalog.transaction():
        for cls, captures in comparison.settled.captures.items():  # one at a time: 3 million
            db.executemany("UPDATE captures SET class=? WHERE id=?",  # would not fit as tuples
                           ((cls, capture) for capture in captures))
        db.execute("DELETE FROM crawl_classes WHERE crawl=?", (pk,))
        db.executemany("INSERT INTO crawl_classes VALUES (?, ?, ?)",
                       [(pk, c, n) for c, n in comparison.counts().items()])
        # whole hosts first (their events decide which URL transitions they stand for)
        moved = _host_events(db, target, pk, comparison, state_of, now, settings)
        hosts = moved + _standing(db, target, comparison.hosts, moved)
        folds = {fold_key(h): i for i, h in enumerate(hosts)}
        rolled: list[Counter[str]] = [Counter() for _ in hosts]
        events: list[Event] = []
        for f in comparison.every_finding(catalog):
            record(f)
            if f.cls in NEUTRAL:
                continue  # says nothing about the page: no state moves (``_advance``)
            event = _advance(db, target, pk, f, state_of(f.key), now, settings,
                             comparison.is_confirmed(f))
            if event is None:
                continue
            insert(event)
            host = folds.get(fold_key(event))
            if host is None:
                events.append(event)
            else:
                rolled[host][event.state] += 1
        db.executemany("UPDATE captures SET class=? WHERE id=?", classes)
        hosts = [with_rolled_up(h, n) for h, n in zip(hosts, rolled, strict=True)]
        for event in hosts[:len(moved)]:  # after the URLs', as they were always written
            insert(event)
        events += [h for h in hosts if h.state != STANDING or h.rolled_up]
        flush()
        if on_commit is not None:
            on_commit(events)
    return events


def _host_events(db: sqlite3.Connection, target: str, pk: int, comparison: Comparison,
                 state_of: Callable[[str], sqlite3.Row | None], now: str,
                 settings: DetectSettings) -> list[Event]:
    """Advance the state of each whole host with an event in this comparison, close those
    of hosts without one; return the transitions."""
    old_hosts = db.execute("SELECT * FROM url_states WHERE target=? AND key LIKE 'host:%'",
                           (target,)).fetchall()
    events = []
    for host in comparison.hosts:  # a whole host as one event, with the same states
        key = f"host:{host.host}"
        members = [f for f in comparison.findings
                   if urls.host_of(f.url) == host.host and f.cls is host.cls]
        # re-checked members (all of them, or a sample when there were too many:
        # comparison.recheck_targets) that reproduced: at least half (the plain findings
        # of ``sweep`` were never re-checked: those are held)
        checked = [f for f in members
                   if f.key in comparison.rechecked or f.key in comparison.confirmed]
        reproduced = bool(checked) and sum(
            f.key in comparison.confirmed for f in checked) * 2 >= len(checked)
        strong = any(f.strong for f in members) or (
            host.host, host.cls) in comparison.settled.strong
        summary = Finding(host.host, key, host.cls, None, None,
                          f"{host.urls} of {host.of} URLs since {host.since}", strong=strong)
        event = _advance(db, target, pk, summary, state_of(key), host.since or now,
                         settings, reproduced)
        if event is not None:
            events.append(event)
    hosts_now = {f"host:{h.host}" for h in comparison.hosts}
    for state in old_hosts:
        if state["key"] not in hosts_now:
            db.execute("DELETE FROM url_states WHERE target=? AND key=?",
                       (target, state["key"]))
            events.append(Event(state["key"], state["url"], state["class"], "recovered",
                                state["since"]))
    return events


def _standing(db: sqlite3.Connection, target: str, hosts: Iterable[HostEvent],
              moved: list[Event]) -> list[Event]:
    """Return a ``STANDING`` entry for each host rolled up in this comparison whose own
    state did not move (nothing in ``moved``) but is open: what its URLs' transitions are
    rolled up into."""
    have = {e.key for e in moved}
    out = []
    for host in hosts:
        key = f"host:{host.host}"
        row = None if key in have else db.execute(
            "SELECT state, since FROM url_states WHERE target=? AND key=?",
            (target, key)).fetchone()
        if row is not None:
            out.append(Event(key, host.host, host.cls.value, STANDING, row["since"],
                             f"{row['state']} since {row['since'][:19]}: {host.urls} of "
                             f"{host.of} URLs"))
    return out


def events_of(catalog: Catalog, crawl_pk: int,
              hosts: Iterable[HostEvent] = ()) -> list[Event]:
    """Return the transitions a crawl's detection committed, in order, rolled up into its
    whole-host events (and the ``STANDING`` ones of ``hosts``, the comparison's) as
    ``apply_states`` returned them."""
    def event(row: sqlite3.Row) -> Event:
        return Event(row["key"], row["url"], row["class"], row["state"],
                     row["since"] or row["at"], row["detail"] or "")

    moved = [event(r) for r in catalog.db.execute(
        "SELECT * FROM events WHERE crawl=? AND key LIKE 'host:%' ORDER BY id", (crawl_pk,))]
    target = catalog.db.execute("SELECT target FROM crawls WHERE id=?",
                                (crawl_pk,)).fetchone()[0]
    standing = _standing(catalog.db, target, hosts, moved)
    folds = {fold_key(h): h.key for h in moved + standing}
    rolled: dict[str, Counter[str]] = {h.key: Counter() for h in moved + standing}
    events = []
    for row in catalog.db.execute("SELECT * FROM events WHERE crawl=? ORDER BY id",
                                  (crawl_pk,)):
        found = event(row)
        host = None if found.key.startswith("host:") else folds.get(fold_key(found))
        if host is None:
            events.append(found)
        else:
            rolled[host][found.state] += 1
    return [with_rolled_up(e, rolled[e.key]) if e.key.startswith("host:") else e
            for e in events] + [with_rolled_up(e, rolled[e.key]) for e in standing
                                if rolled[e.key]]


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

