"""Takedown states: each URL's class over crawls becomes suspected, provisional, confirmed or
recovered (docs/detection.md, *Confirmation and states*). The transitions are what is
reported and notified; they are written with the classes in one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
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
)

STRONG_CONFIRM = frozenset({Cls.LEGAL, Cls.BLOCK_PAGE})


@dataclass(frozen=True, slots=True)
class Event:
    """A state transition of a URL (or of a whole host: key ``host:<name>``)."""

    key: str
    url: str
    cls: str
    state: str  # suspected | provisional | confirmed | recovered
    since: str
    detail: str = ""


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
                       ((f.cls.value, f.after.capture) for f in comparison.findings if f.after))
        for cls, captures in comparison.settled.captures.items():  # one at a time: 3 million
            db.executemany("UPDATE captures SET class=? WHERE id=?",  # would not fit as tuples
                           ((cls, capture) for capture in captures))
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
            # re-checked members (all of them, or a sample when there were too many:
            # comparison.recheck_targets) that reproduced: at least half
            checked = [f for f in members
                       if f.key in comparison.rechecked or f.key in comparison.confirmed]
            reproduced = bool(checked) and sum(
                f.key in comparison.confirmed for f in checked) * 2 >= len(checked)
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
            ((target, pk, e.key, e.url, e.cls, e.state, now, e.detail, e.since)
             for e in events))
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

