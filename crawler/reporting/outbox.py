"""A persistent outbox of notifications: an alert is never lost because a webhook was down.

Each run's message is queued (one row per destination) in the same catalog transaction that
records the state changes it announces, so a kill can never leave states advanced but
their alert unsent and forgotten. Delivery happens after the report is written and again at
every later run, every daemon tick and ``crawler resume``: due messages are tried, a failure
is retried with exponential back-off (1 minute doubling to 6 hours) until it is delivered or
older than the expiry (default 7 days; ``notify_expiry``), and ``crawler status`` shows what
is still queued and why.

Delivery is at least once: a kill after the receiver accepted a message but before the
catalog recorded it sends it again. Every message carries a stable ``crawler-message`` id
so that a receiver can drop the repeat.

The catalog holds destinations redacted (``redact.py``); the URLs themselves are kept in
``<root>/<target>/.outbox-destinations.json``, readable by the owner only, and matched by
their SHA-256.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crawler.archive.catalog import Catalog, now_iso
from crawler.archive.layout import CrawlInProgress, lock_target
from crawler.capture.settings import NOTIFY_EXPIRY
from crawler.core.redact import read_private, redact_url, write_private

log = logging.getLogger("crawler.outbox")

DESTINATIONS_FILE = ".outbox-destinations.json"
RETRY_FIRST = 60.0  # seconds before the first retry; doubled each time
RETRY_MAX = 6 * 3600.0

Sender = Callable[[str, str, str], str | None]  # (url, title, body) -> error, or None if sent


@dataclass(frozen=True, slots=True)
class Queued:
    """One message to one destination, not yet delivered."""

    pk: int
    target: str
    crawl: int
    destination: str  # redacted
    fingerprint: str
    title: str
    body: str
    created: str
    attempts: int
    next_attempt: str
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one pass over the outbox did."""

    delivered: int = 0
    failed: int = 0  # tried and still queued
    expired: int = 0
    waiting: int = 0  # not due yet, or no known URL for their destination

    def __add__(self, other: Delivery) -> Delivery:
        return Delivery(self.delivered + other.delivered, self.failed + other.failed,
                        self.expired + other.expired, self.waiting + other.waiting)


def fingerprint(url: str) -> str:
    """Return the SHA-256 of a notification URL (how the outbox names it without it)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def enqueue(catalog: Catalog, target: str, crawl_pk: int, urls: Sequence[str], title: str,
            body: str) -> int:
    """Queue a message for every URL (inside the caller's transaction); return the count.

    The URLs are kept first in the target's private destinations file, so that a later
    process can deliver them even if the configuration changed meanwhile.
    """
    if not urls:
        return 0
    remember_destinations(catalog.root, target, urls)
    now = now_iso()
    with catalog.transaction() as db:
        db.executemany(
            "INSERT INTO outbox (target, crawl, destination, fingerprint, title, body, "
            "created, next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(target, crawl_pk, redact_url(u), fingerprint(u), title, body, now, now)
             for u in urls])
    return len(urls)


def pending(catalog: Catalog, target: str | None = None) -> list[Queued]:
    """Return the messages not delivered and not expired (of one target), oldest first."""
    sql = ("SELECT id, target, crawl, destination, fingerprint, title, body, created, "
           "attempts, next_attempt, last_error FROM outbox WHERE delivered IS NULL "
           "AND expired IS NULL" + (" AND target=?" if target else "") + " ORDER BY id")
    return [Queued(*row) for row in catalog.db.execute(sql, (target,) if target else ())]


def crawl_counts(catalog: Catalog, crawl_pk: int) -> dict[str, object]:
    """Return what ``crawler status`` shows of a crawl's notifications."""
    row = catalog.db.execute(
        "SELECT count(*) AS messages, "
        "coalesce(sum(delivered IS NOT NULL), 0) AS delivered, "
        "coalesce(sum(expired IS NOT NULL), 0) AS expired, "
        "coalesce(sum(delivered IS NULL AND expired IS NULL), 0) AS queued, "
        "min(CASE WHEN delivered IS NULL AND expired IS NULL THEN next_attempt END) "
        "AS next_attempt, "
        "max(CASE WHEN delivered IS NULL THEN last_error END) AS last_error "
        "FROM outbox WHERE crawl=?", (crawl_pk,)).fetchone()
    return dict(row)


def deliver_now(catalog: Catalog, root: Path, target: str | None, send: Sender,
                ) -> tuple[Delivery, list[str]]:
    """Try every queued message (of one target) now, back-off or not (``crawler outbox
    --send``); return what happened and the targets skipped because a run of theirs is going
    on: that run delivers its own, so no message is ever sent twice."""
    done, running = Delivery(), []
    for name in sorted({q.target for q in pending(catalog, target)}):
        try:
            lock = lock_target(root, name)
        except CrawlInProgress:
            running.append(name)
            continue
        try:
            done += deliver_due(catalog, send, target=name, force=True)
        finally:
            lock.close()
    return done, running


def deliver_due(catalog: Catalog, send: Sender, *, target: str | None = None,
                urls: Sequence[str] = (), expiry: float = NOTIFY_EXPIRY,
                force: bool = False) -> Delivery:
    """Try every due message (of one target); record each result in its own transaction.

    ``urls`` are notification URLs the caller knows (its configuration) besides those kept
    in the destinations files. ``force`` tries messages whose back-off has not run out (a
    run's own new message is due at once anyway).
    """
    delivered = failed = expired = waiting = 0
    now = datetime.now(UTC)
    known: dict[str, dict[str, str]] = {}
    for item in pending(catalog, target):
        if _age(item.created, now) > expiry:
            _mark(catalog, item.pk, "expired")
            log.error("%s: notification to %s expired undelivered after %d attempt(s) "
                      "(last error: %s): %s", item.target, item.destination, item.attempts,
                      item.last_error or "none", item.title)
            expired += 1
            continue
        if not force and _parse(item.next_attempt) > now:
            waiting += 1
            continue
        if item.target not in known:
            known[item.target] = {**destinations(catalog.root, item.target),
                                  **{fingerprint(u): u for u in urls}}
        url = known[item.target].get(item.fingerprint)
        if url is None:
            _failed(catalog, item, "no URL known for this destination any more (removed from "
                                   "the configuration and the destinations file)")
            waiting += 1
            continue
        error = send(url, item.title, item.body)
        if error is None:
            _mark(catalog, item.pk, "delivered")
            delivered += 1
        else:
            _failed(catalog, item, error)
            failed += 1
    return Delivery(delivered, failed, expired, waiting)


def remember_destinations(root: Path, target: str, urls: Sequence[str]) -> None:
    """Add URLs to the target's private destinations file (never removes any)."""
    path = root / target / DESTINATIONS_FILE
    known = destinations(root, target)
    fresh = {fingerprint(u): u for u in urls if fingerprint(u) not in known}
    if fresh:
        write_private(path, {"destinations": {**known, **fresh}})


def destinations(root: Path, target: str) -> dict[str, str]:
    """Return fingerprint -> URL from the target's private destinations file."""
    data = read_private(root / target / DESTINATIONS_FILE)
    found = data.get("destinations") if isinstance(data, dict) else None
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(k, str) and isinstance(v, str)}


def _failed(catalog: Catalog, item: Queued, error: str) -> None:
    """Record a failed attempt and when to try again."""
    delay = min(RETRY_MAX, RETRY_FIRST * 2 ** item.attempts)
    again = (datetime.now(UTC) + timedelta(seconds=delay)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with catalog.transaction() as db:
        db.execute("UPDATE outbox SET attempts=attempts+1, last_error=?, next_attempt=? "
                   "WHERE id=?", (error[:500], again, item.pk))
    log.warning("%s: notification to %s not delivered (attempt %d; next try in %.0f s): %s",
                item.target, item.destination, item.attempts + 1, delay, error)


def _mark(catalog: Catalog, pk: int, column: str) -> None:
    """Record a message as delivered (one more attempt, the good one) or expired."""
    extra = ", attempts=attempts+1" if column == "delivered" else ""
    with catalog.transaction() as db:
        db.execute(f"UPDATE outbox SET {column}=?{extra} WHERE id=?", (now_iso(), pk))


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _age(stamp: str, now: datetime) -> float:
    return (now - _parse(stamp)).total_seconds()
