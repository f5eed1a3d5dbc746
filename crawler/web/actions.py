"""What a dashboard user may change: acknowledge an event, pause or resume a target's
schedule. (Running a target now belongs to the daemon: ``Daemon.run_now``.)

Each is one small catalog write, so it takes effect for every process sharing the archive
root: a daemon running elsewhere skips the scheduled runs of a paused target.
"""

from __future__ import annotations

from crawler.archive.catalog import Catalog, now_iso


def acknowledge(catalog: Catalog, event_id: int, who: str | None = None) -> bool:
    """Mark an event seen; return False if there is no such event."""
    with catalog.transaction():
        if catalog.db.execute("SELECT 1 FROM events WHERE id=?", (event_id,)).fetchone() is None:
            return False
        catalog.db.execute("INSERT OR IGNORE INTO event_acks (event, at, who) VALUES (?, ?, ?)",
                           (event_id, now_iso(), who))
    return True


def pause(catalog: Catalog, target: str) -> None:
    """Pause a target's schedule (scheduled runs are skipped until it is resumed)."""
    with catalog.transaction():
        catalog.db.execute("INSERT OR IGNORE INTO target_controls (target, paused) "
                           "VALUES (?, ?)", (target, now_iso()))


def resume(catalog: Catalog, target: str) -> None:
    """Resume a target's schedule."""
    with catalog.transaction():
        catalog.db.execute("DELETE FROM target_controls WHERE target=?", (target,))


def paused(catalog: Catalog) -> dict[str, str]:
    """Return the paused targets, with since when."""
    return {r[0]: r[1] for r in catalog.db.execute("SELECT target, paused FROM "
                                                   "target_controls")}
