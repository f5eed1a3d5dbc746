"""What each dashboard page shows, read from the catalog and the crawls' files.

Read-only, and plain data (dicts and lists) for the templates: no HTML here, so every string
from an archived page reaches the browser only through the templates' autoescaping.
Everything shown is what the catalog says now; nothing is estimated. A running crawl's
counts are those of the rows it has committed (its catalog batches commit about every half
second).
"""

from __future__ import annotations

import difflib
from datetime import datetime
from pathlib import Path
from typing import Any

from crawler.archive.catalog import Catalog, CrawlRow, CrawlStatus
from crawler.archive.layout import target_is_locked
from crawler.archive.warc import timestamp17_of
from crawler.capture import pagetext, urls
from crawler.core.outcome import shortfall_lines
from crawler.detection.detect import NEGATIVE, Snap
from crawler.detection.names import Namer
from crawler.detection.snapshots import SNAP_COLUMNS, Captures
from crawler.reporting.report import finding_of

NEGATIVE_CLASSES = frozenset(c.value for c in NEGATIVE)
MAX_DIFF_LINES = 400  # lines of a before/after diff shown (the rest counted)


def crawl_state(root: Path, row: CrawlRow) -> str:
    """Return a crawl's state as ``crawler status`` says it: a crawl marked running whose
    target nobody holds was killed."""
    if row.status == CrawlStatus.RUNNING:
        return "running" if target_is_locked(root, row.target) else "killed"
    return row.status


def targets(catalog: Catalog, schedules: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one summary per target: those with crawls, and configured ones without."""
    names = sorted({c.target for c in catalog.crawls()} | set(schedules))
    found = []
    for name in names:
        crawls = catalog.crawls(name)
        last = crawls[-1] if crawls else None
        item: dict[str, Any] = {"name": name, "crawls": len(crawls),
                                "schedule": schedules.get(name), "last": None,
                                "progress": None}
        if last is not None:
            item["last"] = crawl_summary(catalog, last)
            if item["last"]["state"] == "running":
                item["progress"] = progress(catalog, last)
        item.update(open_counts(catalog, name))
        found.append(item)
    return found


def crawl_summary(catalog: Catalog, row: CrawlRow) -> dict[str, Any]:
    """Return what the dashboard shows of one crawl."""
    totals = catalog.crawl_totals(row.pk)
    return {"crawl_id": row.crawl_id, "kind": row.kind, "state": crawl_state(catalog.root, row),
            "started": row.started, "finished": row.finished, "stop_reason": row.stop_reason,
            "exit_code": row.exit_code, "phase": row.phase,
            "coverage": shortfall_lines(row.shortfall or {}), **totals,
            "report": (row.directory / "report.html").is_file()}


def progress(catalog: Catalog, row: CrawlRow) -> dict[str, int]:
    """Return a running crawl's live counts: captures committed, URLs still queued."""
    db = catalog.db
    done = db.execute("SELECT count(*) FROM captures WHERE crawl=?", (row.pk,)).fetchone()[0]
    queued = db.execute("SELECT count(*) FROM frontier WHERE crawl=? AND state=0",
                        (row.pk,)).fetchone()[0]
    return {"captures": int(done), "queued": int(queued)}


def open_counts(catalog: Catalog, target: str) -> dict[str, Any]:
    """Return a target's open states, how many of them nobody has acknowledged, and its
    notifications still queued."""
    db = catalog.db
    by_state = dict(db.execute("SELECT state, count(*) FROM url_states WHERE target=? "
                               "GROUP BY state", (target,)).fetchall())
    states = sum(by_state.values())
    unseen = db.execute(
        "SELECT count(*) FROM url_states s WHERE s.target=? AND NOT EXISTS (SELECT 1 FROM "
        "events e JOIN event_acks a ON a.event = e.id WHERE e.target = s.target AND "
        "e.key = s.key AND e.id = (SELECT max(id) FROM events WHERE target = s.target AND "
        "key = s.key))", (target,)).fetchone()[0]
    queued = db.execute("SELECT count(*) FROM outbox WHERE target=? AND delivered IS NULL AND "
                        "expired IS NULL", (target,)).fetchone()[0]
    return {"open_states": int(states), "unacknowledged": int(unseen),
            "by_state": {k: int(by_state[k]) for k in ("confirmed", "provisional", "suspected")
                         if by_state.get(k)},
            "queued_notifications": int(queued)}


# -- one target ---------------------------------------------------------------------------------

def target_page(catalog: Catalog, name: str) -> dict[str, Any] | None:
    """Return a target's crawls, timeline, open states and latest events."""
    crawls = catalog.crawls(name)
    if not crawls:
        return None
    db = catalog.db
    states = [dict(r) for r in db.execute(
        "SELECT s.*, (SELECT max(id) FROM events e WHERE e.target = s.target AND e.key = s.key) "
        "AS event FROM url_states s WHERE s.target=? ORDER BY s.since DESC, s.key LIMIT 500",
        (name,))]
    return {"name": name,
            "crawls": [crawl_summary(catalog, c) for c in reversed(crawls)],
            "timeline": timeline(catalog, name),
            "states": states,
            "events": events(catalog, name, limit=200),
            **open_counts(catalog, name)}


def timeline(catalog: Catalog, name: str) -> list[dict[str, Any]]:
    """Return URLs per class for each compared crawl of a target, oldest first: what the
    report's SVG timeline draws."""
    rows = catalog.db.execute(
        "SELECT k.crawl_id, k.started, c.class, c.urls FROM crawl_classes c "
        "JOIN crawls k ON k.id = c.crawl WHERE k.target=? ORDER BY k.id", (name,))
    return _points(rows)


def _points(rows: Any) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for crawl_id, started, cls, n in rows:
        found.setdefault(crawl_id, {"crawl_id": crawl_id, "started": started,
                                    "classes": {}})["classes"][cls] = n
    return list(found.values())


def hosts(catalog: Catalog, name: str) -> list[dict[str, Any]]:
    """Return each host of a target with its timeline (URLs per class per compared crawl)
    and its counts in the latest compared crawl; one pass over the target's captures."""
    rows = catalog.db.execute(
        "SELECT substr(c.surt, 1, instr(c.surt, ')') - 1) AS host, k.crawl_id, k.started, "
        "c.class, count(*) FROM captures c JOIN crawls k ON k.id = c.crawl WHERE k.target=? "
        "AND c.final=1 AND c.class IS NOT NULL GROUP BY host, k.id, c.class "
        "ORDER BY host, k.id", (name,)).fetchall()
    by_host: dict[str, list[tuple[str, str, str, int]]] = {}
    for host, crawl_id, started, cls, n in rows:
        by_host.setdefault(host or "", []).append((crawl_id, started, cls, n))
    found = []
    for surt_host, points in by_host.items():
        series = _points(points)
        latest = series[-1]["classes"] if series else {}
        found.append({"host": _host_name(surt_host), "timeline": series, "classes": latest,
                      "urls": sum(latest.values()),
                      "negative": sum(n for k, n in latest.items() if k in NEGATIVE_CLASSES)})
    return sorted(found, key=lambda h: (-h["negative"], h["host"]))


def _host_name(surt_host: str) -> str:
    """Return a host as written from its SURT form (``org,example,www`` -> www.example.org;
    a port stays at the end)."""
    name, _, port = surt_host.partition(":")
    return ".".join(reversed(name.split(","))) + (f":{port}" if port else "")


def events(catalog: Catalog, name: str, *, limit: int) -> list[dict[str, Any]]:
    """Return a target's latest state transitions, newest first."""
    return [dict(r) for r in catalog.db.execute(
        "SELECT e.*, k.crawl_id, a.at AS acknowledged FROM events e "
        "JOIN crawls k ON k.id = e.crawl LEFT JOIN event_acks a ON a.event = e.id "
        "WHERE e.target=? ORDER BY e.id DESC LIMIT ?", (name, limit))]


def crawl_page(catalog: Catalog, name: str, crawl_id: str, cls: str | None,
               offset: int, limit: int = 200) -> dict[str, Any] | None:
    """Return a crawl's summary and its URLs (of one class, if asked), a page at a time."""
    row = catalog.crawl(name, crawl_id)
    if row is None:
        return None
    sql = ("SELECT id, url, key, status, failure, class, record_type, fetched_at, title "
           "FROM captures WHERE crawl=? AND final=1")
    args: list[Any] = [row.pk]
    if cls:
        sql += " AND class=?"
        args.append(cls)
    sql += " ORDER BY id LIMIT ? OFFSET ?"
    rows = [dict(r) for r in catalog.db.execute(sql, (*args, limit + 1, offset))]
    classes = {r[0]: r[1] for r in catalog.db.execute(
        "SELECT class, urls FROM crawl_classes WHERE crawl=? ORDER BY urls DESC", (row.pk,))}
    return {"target": name, "crawl": crawl_summary(catalog, row), "cls": cls,
            "classes": classes, "rows": rows[:limit], "more": len(rows) > limit,
            "offset": offset, "limit": limit}


# -- one event ----------------------------------------------------------------------------------

def event_page(catalog: Catalog, event_id: int) -> dict[str, Any] | None:
    """Return an event: what happened, since when, why, and the before/after evidence."""
    row = catalog.db.execute(
        "SELECT e.*, k.crawl_id, k.directory, a.at AS acknowledged, a.who FROM events e "
        "JOIN crawls k ON k.id = e.crawl LEFT JOIN event_acks a ON a.event = e.id "
        "WHERE e.id=?", (event_id,)).fetchone()
    if row is None:
        return None
    event = dict(row)
    state = catalog.db.execute("SELECT * FROM url_states WHERE target=? AND key=?",
                               (event["target"], event["key"])).fetchone()
    finding = finding_of(catalog.resolve(event["directory"]), event["key"])
    history = [dict(r) for r in catalog.db.execute(
        "SELECT e.id, e.state, e.class, e.at, e.since, k.crawl_id FROM events e JOIN crawls k "
        "ON k.id = e.crawl WHERE e.target=? AND e.key=? ORDER BY e.id",
        (event["target"], event["key"]))]
    page: dict[str, Any] = {"event": event, "state": dict(state) if state else None,
                            "finding": finding, "history": history, "diff": None,
                            "host_event": event["key"].startswith("host:"),
                            "name": Namer(catalog, event["target"]).url(event["key"])}
    if finding is not None:
        before, after = finding.get("before"), finding.get("after")
        page["before"] = capture(catalog, before["capture"]) if before else None
        page["after"] = capture(catalog, after["capture"]) if after else None
        page["diff"] = text_diff(catalog, before, after, set(finding.get("removed") or ()))
    return page


def text_diff(catalog: Catalog, before: dict[str, Any] | None, after: dict[str, Any] | None,
              removed: set[str]) -> dict[str, Any] | None:
    """Return the line diff of two captures' main text, re-read from the WARCs: each line
    ``(op, text, named)`` where op is ``-`` (gone), ``+`` (new) or `` `` (kept), and
    ``named`` marks a line the detection named as removed (a name, an entry)."""
    if before is None:
        return None
    rows = Captures(catalog, pagetext.DEFAULT_RULES)
    old = _lines(catalog, rows, before["capture"])
    new = _lines(catalog, rows, after["capture"]) if after else []
    if old is None:
        return {"error": "the earlier capture's record cannot be read back"}
    if new is None:
        new = []
    lines: list[tuple[str, str, bool]] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():  # what went, then what came
        if tag == "equal":
            lines += [(" ", text, False) for text in old[i1:i2]]
            continue
        lines += [("-", text, text in removed) for text in old[i1:i2]]
        lines += [("+", text, False) for text in new[j1:j2]]
    shown = lines[:MAX_DIFF_LINES]
    return {"error": None, "lines": shown, "hidden": len(lines) - len(shown),
            "removed": sum(1 for op, _, _ in lines if op == "-"),
            "added": sum(1 for op, _, _ in lines if op == "+")}


def _lines(catalog: Catalog, rows: Captures, capture_id: int) -> list[str] | None:
    """Return a capture's main text lines (empty for a capture that is not an HTML page)."""
    found = catalog.db.execute(f"SELECT {SNAP_COLUMNS} FROM captures c WHERE c.id=?",
                               (capture_id,)).fetchone()
    if found is None:
        return None
    snap = Snap(*found)
    if snap.record_type not in ("response", "revisit"):
        return []
    text = rows.lines(snap)
    return text if text is not None else []


# -- one URL ------------------------------------------------------------------------------------

def capture(catalog: Catalog, capture_id: int) -> dict[str, Any] | None:
    """Return one capture with its crawl, and where its record is."""
    row = catalog.db.execute(
        "SELECT c.*, k.target, k.crawl_id FROM captures c JOIN crawls k ON k.id = c.crawl "
        "WHERE c.id=?", (capture_id,)).fetchone()
    if row is None:
        return None
    item = dict(row)
    item["replayable"] = item["record_type"] in ("response", "revisit")
    item["timestamp"] = timestamp17_of(item["fetched_at"])
    return item


def url_page(catalog: Catalog, name: str, url: str) -> dict[str, Any]:
    """Return every capture of a URL in a target's crawls, oldest first, and its open
    state."""
    key = urls.canonical_key(url)
    rows = [dict(r) for r in catalog.db.execute(
        "SELECT c.id, c.url, c.fetched_at, c.status, c.failure, c.detail, c.class, "
        "c.record_type, c.digest, c.title, c.final, c.warc_file, c.warc_offset, k.crawl_id, "
        "k.kind FROM captures c JOIN crawls k ON k.id = c.crawl WHERE k.target=? AND "
        "c.key=? ORDER BY c.fetched_at, c.id", (name, key))]
    for row in rows:
        row["replayable"] = row["record_type"] in ("response", "revisit")
    state = catalog.db.execute("SELECT * FROM url_states WHERE target=? AND key=?",
                               (name, key)).fetchone()
    transitions = [dict(r) for r in catalog.db.execute(
        "SELECT e.id, e.state, e.class, e.at, k.crawl_id FROM events e JOIN crawls k ON "
        "k.id = e.crawl WHERE e.target=? AND e.key=? ORDER BY e.id", (name, key))]
    return {"target": name, "url": url, "key": key, "captures": rows,
            "state": dict(state) if state else None, "events": transitions}


def age(stamp: str | None, now: datetime) -> str:
    """Return how long ago an ISO time was, in words ("3 h ago")."""
    if not stamp:
        return ""
    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = (now - then).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now" if seconds >= 0 else ""
