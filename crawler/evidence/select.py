"""Which records are the evidence of an event, and what the catalog says about them.

For each URL: its last good capture before the crawl that saw the change (and the page
requisites that capture used, so it replays as it looked), every capture of the URL by that
crawl (the fetch, the re-checks after it, fetches through vantage points), where a redirect
led, the crawl's soft-404 probes and control fetches of the same host (what "not found" looks
like there), and the originals that revisits among them point to. Read-only.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from crawler.archive.catalog import Catalog
from crawler.capture import extract, urls
from crawler.core.errors import NotFound
from crawler.detection.detect import Snap
from crawler.detection.names import Namer
from crawler.detection.snapshots import GOOD, NOT_WALL, Captures
from crawler.reporting.report import finding_of

MAX_REQUISITES = 60  # embedded resources kept per page (a portrait, style sheets, scripts)
MAX_HOPS = 6  # redirect hops followed to where a redirect led

_ROLES = {"recheck": "re-check after the crawl", "vantage": "fetched through a vantage point",
          "probe": "soft-404 probe (a random URL beside it)",
          "control": "control fetch (was our own network up?)",
          "landing": "where a redirect led"}


@dataclass
class Subject:
    """One URL of the package: its event(s), finding, names and records."""

    url: str
    key: str
    crawl: int  # the crawl that saw the change
    crawl_id: str
    events: list[dict[str, Any]]
    state: dict[str, Any] | None
    finding: dict[str, Any] | None
    names: dict[str, Any]
    before: dict[str, Any] | None  # the last good capture row
    after: dict[str, Any] | None  # the crawl's final capture of the URL
    history: list[dict[str, Any]]  # every capture of the URL in the target


@dataclass
class Selection:
    """What goes into one package."""

    target: str
    subjects: list[Subject]
    records: dict[int, tuple[dict[str, Any], str]] = field(default_factory=dict)  # id ->
    # (captures row with its crawl's directory and crawl_id, the role it plays)
    left_out: list[str] = field(default_factory=list)  # what was capped, and why

    def add(self, row: sqlite3.Row | dict[str, Any] | None, role: str) -> None:
        """Add a record (one with bytes in a WARC) under a role; the first role stays."""
        if row is None:
            return
        data = dict(row)
        if data.get("warc_file") and data["id"] not in self.records:
            self.records[data["id"]] = (data, role)


_ROW = ("SELECT c.*, k.directory, k.crawl_id FROM captures c JOIN crawls k ON k.id = c.crawl ")


def select(catalog: Catalog, target: str, items: list[str]) -> Selection:
    """Return the selection for event ids and/or URLs of ``target`` (an error names an
    item that is not one of the target's events or captured URLs)."""
    subjects: list[Subject] = []
    namer = Namer(catalog, target)
    for item in items:
        if item.isdigit():
            subjects.append(_of_event(catalog, target, int(item), namer))
        else:
            subjects.append(_of_url(catalog, target, item, namer))
    selection = Selection(target, subjects)
    for subject in subjects:
        _records(catalog, selection, subject, namer.rows)
    return selection


def _of_event(catalog: Catalog, target: str, event_id: int, namer: Namer) -> Subject:
    row = catalog.db.execute("SELECT * FROM events WHERE id=?", (event_id,)).fetchone()
    if row is None or row["target"] != target:
        raise NotFound(f"event {event_id}: no such event of target {target!r} (`crawler "
                          "status --config FILE` and the dashboard list events with their ids)")
    if row["key"].startswith("host:"):
        raise NotFound(f"event {event_id} is about a whole host ({row['url']}): name the "
                          "URLs of that host to package instead (`crawler evidence "
                          f"{target} URL…`)")
    return _subject(catalog, target, row["url"], row["key"], row["crawl"], namer)


def _of_url(catalog: Catalog, target: str, url: str, namer: Namer) -> Subject:
    key = urls.canonical_key(url)
    row = catalog.db.execute(
        "SELECT c.crawl, c.url FROM captures c JOIN crawls k ON k.id = c.crawl WHERE "
        "k.target=? AND c.key=? AND c.final=1 AND c.kind NOT IN ('recheck', 'vantage') "
        "ORDER BY c.crawl DESC LIMIT 1", (target, key)).fetchone()
    if row is None:
        raise NotFound(f"{url}: never captured by target {target!r}")
    return _subject(catalog, target, row["url"], key, row["crawl"], namer)


def _subject(catalog: Catalog, target: str, url: str, key: str, crawl: int,
             namer: Namer) -> Subject:
    db = catalog.db
    crawl_row = db.execute("SELECT crawl_id, directory FROM crawls WHERE id=?",
                           (crawl,)).fetchone()
    events = [dict(r) for r in db.execute(
        "SELECT e.*, k.crawl_id FROM events e JOIN crawls k ON k.id = e.crawl "
        "WHERE e.target=? AND e.key=? ORDER BY e.id", (target, key))]
    state = db.execute("SELECT * FROM url_states WHERE target=? AND key=?",
                       (target, key)).fetchone()
    before = db.execute(
        _ROW + f"WHERE k.target=? AND c.key=? AND c.crawl < ? AND c.final=1 AND {GOOD} "
        f"AND {NOT_WALL} ORDER BY c.id DESC LIMIT 1", (target, key, crawl)).fetchone()
    after = db.execute(
        _ROW + "WHERE c.crawl=? AND c.key=? AND c.final=1 AND c.kind NOT IN "
        "('recheck', 'vantage', 'probe', 'control', 'landing') ORDER BY c.id DESC LIMIT 1",
        (crawl, key)).fetchone()
    history = [dict(r) for r in db.execute(
        "SELECT c.id, k.crawl_id, c.kind, c.fetched_at, c.status, c.failure, c.detail, "
        "c.location, c.mime, c.digest, c.record_type, c.record_id, c.warc_file, "
        "c.warc_offset, c.warc_length, c.final FROM captures c JOIN crawls k ON k.id = "
        "c.crawl WHERE k.target=? AND c.key=? ORDER BY c.id", (target, key))]
    finding = finding_of(catalog.resolve(crawl_row["directory"]), key)
    names = namer.capture(_snap_of(dict(before))) if before else namer.url(key)
    return Subject(url, key, crawl, crawl_row["crawl_id"], events,
                   dict(state) if state else None, finding, names,
                   dict(before) if before else None, dict(after) if after else None, history)


def _records(catalog: Catalog, selection: Selection, subject: Subject,
             rows: Captures) -> None:
    """Add the records behind one subject's verdict to the selection."""
    db = catalog.db
    selection.add(subject.before, "before: the last good capture")
    for row in db.execute(_ROW + "WHERE c.crawl=? AND c.key=? ORDER BY c.id",
                          (subject.crawl, subject.key)):
        role = _ROLES.get(row["kind"], "after: the crawl's capture" if row["final"] else
                          "after: an attempt that was retried")
        selection.add(row, role)
    hop = subject.after
    for _ in range(MAX_HOPS):  # where a redirect led, in the same crawl
        if hop is None or not hop.get("location"):
            break
        target = urls.canonical_key(urljoin(hop["url"], hop["location"]))
        hop_row = db.execute(_ROW + "WHERE c.crawl=? AND c.key=? AND c.final=1 ORDER BY "
                             "c.id DESC LIMIT 1", (subject.crawl, target)).fetchone()
        hop = dict(hop_row) if hop_row else None
        selection.add(hop, "where the redirect led")
    host = urlsplit(subject.url).netloc
    for row in db.execute(_ROW + "WHERE c.crawl=? AND c.kind IN ('probe', 'control') "
                          "ORDER BY c.id", (subject.crawl,)):
        if urlsplit(row["url"]).netloc == host or row["kind"] == "control":
            selection.add(row, _ROLES[row["kind"]])
    for page, crawl in ((subject.before, None), (subject.after, subject.crawl)):
        if page is not None:
            _requisites(catalog, selection, page, crawl, rows)
    _originals(catalog, selection)


def _requisites(catalog: Catalog, selection: Selection, page: dict[str, Any],
                crawl: int | None, rows: Captures) -> None:
    """Add the embedded resources a captured page used, as captured by the same crawl (or,
    failing that, last before it), so the page replays as it looked."""
    if page.get("mime") not in extract.HTML_TYPES:
        return
    html = rows.html(_snap_of(page))
    if not html:
        return
    found, base = extract.extract_from_html(html, page["url"])
    wanted = []
    for ref in found.requisites:
        absolute = urljoin(urljoin(page["url"], base or ""), ref)
        if absolute.startswith(("http://", "https://")) and absolute not in wanted:
            wanted.append(absolute)
    if len(wanted) > MAX_REQUISITES:
        selection.left_out.append(f"{page['url']} ({page['fetched_at'][:19]}): "
                                  f"{len(wanted) - MAX_REQUISITES} of its {len(wanted)} "
                                  "embedded resources were not packaged (at most "
                                  f"{MAX_REQUISITES} per page)")
    for ref in wanted[:MAX_REQUISITES]:
        row = catalog.db.execute(
            _ROW + f"WHERE k.target=? AND c.key=? AND c.crawl <= ? AND c.final=1 AND {GOOD} "
            "ORDER BY c.crawl DESC, c.id DESC LIMIT 1",
            (selection.target, urls.canonical_key(ref), crawl or page["crawl"])).fetchone()
        selection.add(row, "embedded in the page (requisite)")


def _originals(catalog: Catalog, selection: Selection) -> None:
    """Add the responses that revisits among the records point to (replay needs them)."""
    for data, _role in list(selection.records.values()):
        refers = data.get("refers_to")
        if data.get("record_type") == "revisit" and refers:
            row = catalog.db.execute(_ROW + "WHERE c.id=?", (refers,)).fetchone()
            selection.add(row, "original of a revisit (same content, fetched earlier)")


def _snap_of(row: dict[str, Any]) -> Snap:
    return Snap(row["id"], row["crawl"], row["url"], row["key"], row["kind"],
                row["fetched_at"], row["status"], row["failure"], row["mime"],
                row["location"], row["digest"], row["text_hash"], row["record_type"],
                row["record_id"], row["detail"])

