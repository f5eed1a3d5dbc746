"""The capture catalog: one SQLite file (``archives/catalog.sqlite3``) recording every crawl and
every capture, so diffs and takedown detection never need to reopen WARCs.

The same file holds each running crawl's frontier (see ``frontier.py``), so that writing a
capture and marking its URL done is one transaction. WAL mode lets ``crawler status`` read
while a crawl writes. The schema is versioned with ``PRAGMA user_version`` and upgraded by the
ordered ``MIGRATIONS``; a file from a newer version is refused rather than damaged.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from crawler.archive import textindex
from crawler.archive.writeturn import WriteTurn
from crawler.capture.fingerprints import WALL_NOTE
from crawler.core.errors import ExitCode, NoSpace, OutputError
from crawler.core.redact import is_redacted, redact_url

if TYPE_CHECKING:
    from crawler.archive.watermark import Watermark

CATALOG_NAME = "catalog.sqlite3"

# Each entry upgrades the schema from version N to N+1. Never edit a released entry: add one.
MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: crawls and captures
    """
    CREATE TABLE crawls (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        crawl_id TEXT NOT NULL,
        directory TEXT NOT NULL,
        started TEXT NOT NULL,
        finished TEXT,
        status TEXT NOT NULL,            -- running | complete | interrupted | failed
        stop_reason TEXT,
        exit_code INTEGER,
        settings TEXT NOT NULL,          -- JSON snapshot, used by `crawler resume`
        UNIQUE (target, crawl_id)
    );
    CREATE TABLE captures (
        id INTEGER PRIMARY KEY,
        crawl INTEGER NOT NULL REFERENCES crawls(id),
        url TEXT NOT NULL,
        key TEXT NOT NULL,               -- SURT
        kind TEXT NOT NULL,              -- seed | page | requisite | sitemap | robots
        depth INTEGER NOT NULL,
        fetched_at TEXT NOT NULL,        -- ISO 8601 UTC
        status INTEGER,                  -- HTTP status; NULL when no response
        mime TEXT,
        location TEXT,                   -- redirect target as sent
        failure TEXT,                    -- dns|refused|tls|timeout|reset|protocol|connect|other|
                                         -- too-large|robots|out-of-scope
        detail TEXT,
        peer_ip TEXT,
        digest TEXT,                     -- WARC-Payload-Digest
        length INTEGER,                  -- payload bytes stored
        warc_file TEXT,
        warc_offset INTEGER,             -- of the response/metadata record
        warc_length INTEGER,
        record_type TEXT,                -- response | metadata | NULL (nothing written)
        title TEXT,
        text_hash TEXT,                  -- SHA-1 of normalized visible text
        simhash INTEGER,                 -- 64-bit simhash of visible text (signed storage)
        outlinks INTEGER,
        final INTEGER NOT NULL DEFAULT 1 -- 0: an attempt that was retried
    );
    CREATE INDEX captures_crawl_key ON captures (crawl, key);
    CREATE INDEX captures_key ON captures (key);
    """,
    # 1 -> 2: persistent frontier, per-host state, robots cache and trap counters
    """
    CREATE TABLE frontier (
        crawl INTEGER NOT NULL,
        key TEXT NOT NULL,
        url TEXT NOT NULL,
        host TEXT NOT NULL,
        kind TEXT NOT NULL,
        depth INTEGER NOT NULL,
        via TEXT,
        redirects INTEGER NOT NULL DEFAULT 0,
        embeds INTEGER NOT NULL DEFAULT 0,
        attempt INTEGER NOT NULL DEFAULT 0,
        state INTEGER NOT NULL,          -- 0 queued, 1 in flight, 2 done, 3 failed
        priority INTEGER NOT NULL,       -- 0 requisites and retries, 1 pages
        seq INTEGER NOT NULL,
        PRIMARY KEY (crawl, key)
    ) WITHOUT ROWID;
    -- Only queued rows are indexed: a row leaves the index when it is claimed, so marking
    -- fetched URLs done costs no index update.
    CREATE INDEX frontier_queued ON frontier (crawl, host, priority, seq) WHERE state = 0;
    CREATE TABLE hosts (
        crawl INTEGER NOT NULL,
        host TEXT NOT NULL,
        delay REAL NOT NULL DEFAULT 0,
        robots_status INTEGER,           -- NULL: not fetched yet; 0: unreachable
        robots_body BLOB,
        PRIMARY KEY (crawl, host)
    ) WITHOUT ROWID;
    CREATE TABLE query_variants (
        crawl INTEGER NOT NULL,
        path TEXT NOT NULL,
        variants INTEGER NOT NULL,
        PRIMARY KEY (crawl, path)
    ) WITHOUT ROWID;
    """,
    # 2 -> 3: revisits (deduplication) and conditional-request validators
    """
    ALTER TABLE captures ADD COLUMN record_id TEXT;      -- WARC-Record-ID of the record
    ALTER TABLE captures ADD COLUMN refers_to INTEGER;   -- revisit: capture holding the payload
    ALTER TABLE captures ADD COLUMN etag TEXT;           -- validators for the next crawl's
    ALTER TABLE captures ADD COLUMN last_modified TEXT;  -- conditional request
    CREATE INDEX captures_digest ON captures (digest) WHERE record_type = 'response';
    """,
    # 3 -> 4: takedown detection (see detect.py and states.py)
    """
    ALTER TABLE captures ADD COLUMN class TEXT;          -- what happened to the URL (diff)
    CREATE TABLE linked (                                -- keys linked from this crawl's pages
        crawl INTEGER NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (crawl, key)
    ) WITHOUT ROWID;
    CREATE TABLE url_states (                            -- open negative states per URL
        target TEXT NOT NULL,
        key TEXT NOT NULL,
        url TEXT NOT NULL,
        class TEXT NOT NULL,
        state TEXT NOT NULL,                             -- suspected | provisional | confirmed
        since_crawl INTEGER NOT NULL,
        since TEXT NOT NULL,
        streak INTEGER NOT NULL,                         -- consecutive crawls in this class
        PRIMARY KEY (target, key)
    ) WITHOUT ROWID;
    CREATE TABLE events (                                -- state transitions, for reports
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        crawl INTEGER NOT NULL,
        key TEXT NOT NULL,                               -- a URL key, or "host:<host>"
        url TEXT NOT NULL,
        class TEXT NOT NULL,
        state TEXT NOT NULL,                             -- suspected|provisional|confirmed|
                                                         -- recovered
        at TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX events_target ON events (target, crawl);
    CREATE TABLE crawl_classes (                         -- per crawl: URLs per class
        crawl INTEGER NOT NULL,
        class TEXT NOT NULL,
        urls INTEGER NOT NULL,
        PRIMARY KEY (crawl, class)
    ) WITHOUT ROWID;
    """,
    # 4 -> 5: crawl directories relative to the archive root, so that a root can be moved
    # and used from any working directory (they were as given on the command line). A crawl
    # always lives at <root>/<target>/<crawl-id> (layout.new_crawl_dir).
    """
    UPDATE crawls SET directory = target || '/' || crawl_id;
    """,
    # 5 -> 6: what a finished crawl did not fetch, per reason (status 'incomplete'); keys
    # that keep the case of path and query (``/doc?id=Ab3`` and ``?id=aB3`` are two URLs),
    # with pywb's SURT kept beside them for the replay index (``Catalog._rekey``)
    """
    ALTER TABLE crawls ADD COLUMN shortfall TEXT;        -- JSON {reason: URLs}
    ALTER TABLE captures ADD COLUMN surt TEXT;           -- pywb's SURT: CDXJ sort key
    CREATE INDEX captures_crawl_surt ON captures (crawl, surt, fetched_at);
    """,
    # 6 -> 7: the phases of a run after its crawl (so that a kill during detection, report
    # or notification is finished by the next start), when each event's state began, and a
    # persistent outbox of notifications (outbox.py)
    """
    ALTER TABLE crawls ADD COLUMN phase TEXT;            -- detect | report | package; NULL:
                                                         -- nothing left to do after the crawl
    ALTER TABLE events ADD COLUMN since TEXT;
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        target TEXT NOT NULL,
        crawl INTEGER NOT NULL,
        destination TEXT NOT NULL,                       -- the Apprise URL, redacted
        fingerprint TEXT NOT NULL,                       -- SHA-256 of the URL in full
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        created TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt TEXT NOT NULL,
        last_error TEXT,
        delivered TEXT,
        expired TEXT
    );
    CREATE INDEX outbox_pending ON outbox (target, next_attempt)
        WHERE delivered IS NULL AND expired IS NULL;
    """,
    # 7 -> 8: the per-page simhash is no longer computed: nothing ever read it (near-duplicate
    # pages are found by their text fingerprint, ``text_hash``)
    """
    ALTER TABLE captures DROP COLUMN simhash;
    """,
    # 8 -> 9: per WARC file of a running crawl, the offset below which every record is in
    # the catalog, so a resume reads only what lies past it (watermark.py)
    """
    CREATE TABLE warc_marks (
        crawl INTEGER NOT NULL,
        warc_file TEXT NOT NULL,
        complete_to INTEGER NOT NULL,
        PRIMARY KEY (crawl, warc_file)
    ) WITHOUT ROWID;
    """,
    # 9 -> 10: rescues, runs that rebuild a target from public web archives (rescue/): the
    # kind of each run, where each rescued capture came from, and a rescue's progress
    """
    ALTER TABLE crawls ADD COLUMN kind TEXT NOT NULL DEFAULT 'crawl';  -- crawl | rescue
    CREATE TABLE provenance (                            -- a rescued capture's origin
        capture INTEGER PRIMARY KEY,                     -- captures.id
        source TEXT NOT NULL,                            -- the archive's name
        memento TEXT NOT NULL,                           -- the address fetched (id_)
        retrieved TEXT NOT NULL,                         -- when we fetched it
        source_digest TEXT,                              -- the archive's payload digest
        digest_match INTEGER                             -- ours equals it: 1, 0; NULL: none
    );
    CREATE TABLE rescue_sources (                        -- per rescue and source: listing
        crawl INTEGER NOT NULL,
        source TEXT NOT NULL,
        listing TEXT NOT NULL,                           -- cdx | timemap
        resume TEXT,                                     -- the CDX resume key reached
        done INTEGER NOT NULL DEFAULT 0,                 -- listing finished
        listed INTEGER NOT NULL DEFAULT 0,               -- captures listed so far
        requests INTEGER NOT NULL DEFAULT 0,
        error TEXT,                                      -- why listing stopped short
        PRIMARY KEY (crawl, source)
    ) WITHOUT ROWID;
    CREATE TABLE rescue_urls (                           -- per rescue: every URL found
        crawl INTEGER NOT NULL,
        key TEXT NOT NULL,
        url TEXT NOT NULL,
        kind TEXT NOT NULL,                              -- seed | page | requisite
        looked_up INTEGER NOT NULL DEFAULT 0,            -- sources asked for this URL
        outcome TEXT,                                    -- NULL: to do; rescued | held |
                                                         -- missing | failed
        reason TEXT,
        PRIMARY KEY (crawl, key)
    ) WITHOUT ROWID;
    CREATE TABLE rescue_mementos (                       -- per rescue: captures listed
        crawl INTEGER NOT NULL,
        key TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        source TEXT NOT NULL,
        url TEXT NOT NULL,
        status INTEGER,
        mime TEXT,
        digest TEXT,
        outcome TEXT,                                    -- NULL: not tried; else what
                                                         -- fetching it gave
        PRIMARY KEY (crawl, key, timestamp, source)
    ) WITHOUT ROWID;
    """,
    # 10 -> 11: the dashboard (web/): full-text search over pages' main text, one document
    # per distinct text (captures share it by ``text_hash``: an unchanged page recrawled
    # costs nothing); acknowledged events; paused schedules (textindex.py, web/actions.py)
    """
    CREATE TABLE page_texts (                            -- one per distinct page text
        id INTEGER PRIMARY KEY,                          -- = page_search.rowid
        hash TEXT NOT NULL UNIQUE                        -- captures.text_hash
    );
    CREATE VIRTUAL TABLE page_search USING fts5(              -- alt: the text with ё as е
        title, body, alt, tokenize = 'unicode61 remove_diacritics 2');
    CREATE INDEX captures_text ON captures (text_hash) WHERE text_hash IS NOT NULL;
    CREATE TABLE search_backlog (                        -- texts captured before the index
        hash TEXT PRIMARY KEY                            -- existed: `crawler search-index`
    ) WITHOUT ROWID;
    INSERT INTO search_backlog SELECT DISTINCT text_hash FROM captures
        WHERE text_hash IS NOT NULL;
    CREATE INDEX events_key ON events (target, key, id);  -- a URL's latest event
    CREATE TABLE event_acks (                            -- events a person has seen
        event INTEGER PRIMARY KEY,                       -- events.id
        at TEXT NOT NULL,
        who TEXT
    );
    CREATE TABLE target_controls (                       -- a target's schedule, paused
        target TEXT PRIMARY KEY,
        paused TEXT NOT NULL                             -- since when
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class CrawlStatus:
    """Values of crawls.status."""

    RUNNING = "running"  # being crawled now, or killed (then resumable)
    COMPLETE = "complete"  # every URL in scope fetched, or excluded by a rule the user set
    INCOMPLETE = "incomplete"  # finished, but URLs in scope were not fetched (see shortfall)
    INTERRUPTED = "interrupted"  # stopped by a signal; resumable
    FAILED = "failed"  # no seed could be captured, or no page archived

    # Finished with closed, indexed files: earlier records that revisits, conditional
    # requests and comparisons may rely on.
    FINISHED = ("complete", "incomplete")


class Phase:
    """Values of crawls.phase: what a run still has to do after its crawl ended.

    Set to DETECT in the transaction that records the crawl's end, moved on in the
    transaction that commits each phase's result, cleared (NULL) when the run is done. A
    run killed in between is finished by ``crawler resume`` or the daemon's start.
    """

    DETECT = "detect"  # compare with earlier crawls, probe, re-check, advance states
    REPORT = "report"  # write report.json/report.html (states and outbox are committed)
    PACKAGE = "package"  # refresh the index, write the WACZ asked for, record the exit code


@dataclass(frozen=True, slots=True)
class CrawlRow:
    """One row of the crawls table."""

    pk: int
    target: str
    crawl_id: str
    directory: Path
    started: str
    finished: str | None
    status: str
    stop_reason: str | None
    exit_code: int | None
    settings: dict[str, Any]
    shortfall: dict[str, int] = field(default_factory=dict)  # reason -> URLs not fetched
    phase: str | None = None  # what the run still has to do after the crawl (Phase)
    kind: str = "crawl"  # crawl, or rescue: rebuilt from public web archives (rescue/)

    @property
    def resumable(self) -> bool:
        """Return True if the run did not finish: its crawl was interrupted or killed, or
        a phase after it (detection, report, notification, packaging) was not done."""
        return self.crawl_resumable or self.phase is not None

    @property
    def crawl_resumable(self) -> bool:
        """Return True if the crawl itself did not finish (interrupted, or killed). A
        rescue is continued by running it again (``crawler rescue``), never as a crawl."""
        return self.kind == "crawl" and self.status in (CrawlStatus.RUNNING,
                                                        CrawlStatus.INTERRUPTED)


@dataclass(frozen=True, slots=True)
class CaptureRow:
    """Everything the catalog records about one capture (or a URL that was not fetched)."""

    url: str
    key: str
    kind: str
    depth: int
    fetched_at: str
    status: int | None = None
    mime: str | None = None
    location: str | None = None
    failure: str | None = None
    detail: str | None = None
    peer_ip: str | None = None
    digest: str | None = None
    length: int | None = None
    warc_file: str | None = None
    warc_offset: int | None = None
    warc_length: int | None = None
    record_type: str | None = None
    title: str | None = None
    text_hash: str | None = None
    outlinks: int | None = None
    final: bool = True
    record_id: str | None = None
    refers_to: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    surt: str | None = None  # pywb's SURT of the URL: the replay index's sort key
    # The page's main text as detection sees it (not a column): entered into the search
    # index with the row, under ``text_hash`` (textindex.py)
    text: str | None = None


_CAPTURE_FIELDS = tuple(f for f in CaptureRow.__dataclass_fields__ if f != "text")


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """Where an archived response (or revisit) record is, and what it says about itself."""

    capture: int  # captures.id
    url: str
    date: str  # its WARC-Date
    record_id: str | None
    digest: str
    status: int
    mime: str | None
    path: Path  # the WARC file (final name; ``.open`` while its crawl writes it)
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Prior:
    """The last good capture of a URL: what a conditional request needs to turn a 304 into a
    replayable revisit."""

    etag: str | None
    last_modified: str | None
    head: StoredRecord  # the record whose HTTP status line and headers the revisit carries
    payload: StoredRecord  # the response record that holds the payload


# A response may serve as a dedup original only if it is a complete, final 2xx (not partial).
_ORIGINAL_SQL = (
    "SELECT c.*, k.directory FROM captures c JOIN crawls k ON k.id = c.crawl "
    "WHERE c.digest = ? AND c.record_type = 'response' AND k.target = ? "
    "AND (c.crawl = ? OR k.status IN ('complete', 'incomplete')) AND c.final = 1 "
    "AND c.status BETWEEN 200 AND 299 AND c.status != 206 AND c.detail IS NULL "
    "ORDER BY c.id LIMIT ?")


def now_iso() -> str:
    """Return the current UTC time in ISO 8601 with a Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Catalog:
    """An open catalog; one connection, used from one thread."""

    path: Path
    db: sqlite3.Connection = field(repr=False)
    turn: WriteTurn = field(repr=False)
    _batching: bool = field(default=False, repr=False)
    _batch_started: float = field(default=0.0, repr=False)
    # The crawl whose WARC marks each commit writes, and its captures entered since the last
    # commit (file, offset): see ``track_marks``.
    _marks: tuple[int, Watermark] | None = field(default=None, repr=False)
    _entering: list[tuple[str, int]] = field(default_factory=list, repr=False)
    # Transactions committed so far: a distributed crawl reports a URL done to the shared
    # queue only once the commit holding its row is past (redisfrontier.py).
    commits: int = field(default=0, repr=False)
    # Page texts of a batch's captures, entered into the search index when the batch
    # commits: FTS5 writes its pending terms out at every savepoint, which cost as much
    # again as the index itself when each URL's savepoint did it (benchmarks/search_index.py)
    _texts: dict[str, tuple[str | None, str]] = field(default_factory=dict, repr=False)
    # False (a crawl's ``search_index = false``): page texts go to the search backlog, for
    # `crawler search-index`, instead of into the index
    index_texts: bool = field(default=True, repr=False)

    @property
    def root(self) -> Path:
        """Return the archive root (absolute): every stored path is relative to it."""
        return self.path.parent

    def resolve(self, stored: str) -> Path:
        """Return the absolute path of a directory as stored in the catalog."""
        path = Path(stored)
        return path if path.is_absolute() else self.root / path

    @classmethod
    def open(cls, root: Path, *, read_only: bool = False) -> Catalog:
        """Open (creating and migrating as needed) ``root/catalog.sqlite3``.

        ``read_only`` (the commands that only read): on a root that cannot be written (a
        mounted evidence copy, a read-only bind) the catalog is opened without writing
        anything, not even its journal; elsewhere it opens as usual.
        """
        if read_only and not _writable(root):
            return cls._open_read_only(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            path = root.resolve() / CATALOG_NAME
            db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                 check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise OutputError(f"cannot open catalog under {root}: {exc}") from exc
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            catalog = cls(path, db, WriteTurn(path.parent))
            catalog.migrate()
        except sqlite3.DatabaseError as exc:
            db.close()
            if not isinstance(exc, sqlite3.OperationalError):  # not a database, malformed
                raise CatalogDamaged(path, exc) from exc
            if not _writable(root):
                raise OutputError(f"the archive root {root} is read-only: only the commands "
                                  "that read (status, list, diff, wacz --file, verify, "
                                  "replay, outbox) work on it") from exc
            raise OutputError(f"cannot open catalog {path}: {exc}") from exc
        return catalog

    @classmethod
    def _open_read_only(cls, root: Path) -> Catalog:
        """Open a catalog on a root that cannot be written; refuse one that needs an upgrade
        (upgrading writes)."""
        path = root.resolve() / CATALOG_NAME
        if not path.is_file():
            raise OutputError(f"no catalog under {root} (looked for {path})")
        location = "file:" + quote(str(path))
        try:
            db = sqlite3.connect(location + "?mode=ro", uri=True, isolation_level=None,
                                 check_same_thread=False)
            try:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                # A WAL catalog without its shared-memory file in a directory we cannot
                # write: read it as the immutable copy it is.
                db.close()
                db = sqlite3.connect(location + "?immutable=1", uri=True,
                                     isolation_level=None, check_same_thread=False)
            found = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise CatalogDamaged(path, exc) from exc
        db.row_factory = sqlite3.Row
        if found != SCHEMA_VERSION:
            db.close()
            older = found < SCHEMA_VERSION
            raise OutputError(
                f"{path} is read-only and was written by {'an older' if older else 'a newer'} "
                f"crawler (schema {found}, this version knows {SCHEMA_VERSION}): "
                + ("copy the archive root somewhere writable; any crawler command there "
                   "upgrades it" if older else "upgrade crawler"))
        return cls(path, db, WriteTurn(path.parent))

    def check_integrity(self) -> None:
        """Raise CatalogDamaged unless SQLite's quick check passes (a writer runs it before
        adding to a catalog: rows added to a damaged file may be lost with it)."""
        try:
            problems = [row[0] for row in self.db.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            raise CatalogDamaged(self.path, exc) from exc
        if problems != ["ok"]:
            raise CatalogDamaged(self.path, "; ".join(problems))

    def close(self) -> None:
        """Close the connection (an open batch is committed first)."""
        try:
            self.end_batch()
        finally:
            self.db.close()
            self.turn.close()

    def migrate(self) -> int:
        """Bring the schema up to SCHEMA_VERSION; return the version found before."""
        found = self._version()
        if found == SCHEMA_VERSION:
            return found
        # Under the write turn, and read again inside the transaction: processes opening a
        # new root together (three crawls started at once) must not each run the upgrade.
        with self.transaction():
            found = self._version()
            for version in range(found, SCHEMA_VERSION):
                for statement in _statements(MIGRATIONS[version]):
                    self.db.execute(statement)
                if version + 1 == 5:
                    self._redact_stored_settings()
                if version + 1 == 6:
                    self._rekey()
                self.db.execute(f"PRAGMA user_version={version + 1}")
        return found

    def _version(self) -> int:
        """Return the schema version of the file; refuse one from a newer crawler."""
        found = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise OutputError(f"{self.path} was written by a newer crawler (schema {found}, "
                              f"this version knows {SCHEMA_VERSION}); upgrade crawler")
        return found

    def _rekey(self) -> None:
        """Give every row the case-keeping key of its URL, and captures their SURT (the key
        earlier versions stored, lower-cased). Rows without a URL (``linked``) are mapped
        through the captures that share their old key."""
        from crawler.capture import urls  # the catalog is otherwise free of URL rules

        db = self.db
        db.execute("CREATE TEMP TABLE rekey (old TEXT, new TEXT, PRIMARY KEY (old, new)) "
                   "WITHOUT ROWID")
        # table -> the columns that identify a row besides its key
        for table, ident in (("captures", "id"), ("events", "id"), ("url_states", "target"),
                             ("frontier", "crawl")):
            rows = db.execute(f"SELECT {ident}, key, url FROM {table}").fetchall()
            changed = []
            for row_id, old, url in rows:
                if old.startswith("host:"):
                    continue  # a whole host's state, not a URL
                new = urls.canonical_key(url)
                if table == "captures":
                    db.execute("INSERT OR IGNORE INTO rekey VALUES (?, ?)", (old, new))
                if new != old:
                    changed.append((new, row_id, old))
            db.executemany(f"UPDATE OR IGNORE {table} SET key=? WHERE {ident}=? AND key=?",
                           changed)
        db.execute("UPDATE captures SET surt = (SELECT old FROM rekey WHERE rekey.new = "
                   "captures.key LIMIT 1)")
        db.execute("UPDATE OR IGNORE linked SET key = (SELECT new FROM rekey WHERE old = "
                   "linked.key LIMIT 1) WHERE key IN (SELECT old FROM rekey)")
        db.execute("DROP TABLE rekey")

    def _redact_stored_settings(self) -> None:
        """Redact notification URLs that earlier versions stored in clear, in the catalog
        and in each crawl's ``crawl.json`` (part of the upgrade to schema 5)."""
        for pk, directory, text in self.db.execute(
                "SELECT id, directory, settings FROM crawls").fetchall():
            settings = json.loads(text)
            notify = (settings.get("detect") or {}).get("notify") or []
            if not any(not is_redacted(u) for u in notify):
                continue
            settings["detect"]["notify"] = [redact_url(u) for u in notify]
            self.db.execute("UPDATE crawls SET settings=? WHERE id=?",
                            (json.dumps(settings, ensure_ascii=False), pk))
            snapshot = self.resolve(directory) / "crawl.json"
            try:
                data = json.loads(snapshot.read_text("utf-8"))
                data["settings"] = settings
                snapshot.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                                    "utf-8")
            except (OSError, ValueError, KeyError):
                continue  # no crawl.json (killed crawl): nothing in clear there

    def transaction(self) -> _Transaction:
        """Return a context manager for one atomic group of writes.

        Outside a batch it is its own transaction (BEGIN IMMEDIATE ... COMMIT); inside a batch
        (see ``begin_batch``) it is a savepoint, committed with the batch. Either way the
        writer first waits for its turn (``writeturn.py``).
        """
        return _Transaction(self)

    def begin_batch(self) -> None:
        """Group the following transactions into batches that ``commit_if_due`` commits.

        A crawl commits in batches because one commit per URL cost more than the fetch; this
        is safe because records written but not committed are recovered from the WARC. A
        batch opens lazily, at its first write, so the catalog stays free for other writers
        while this one has nothing to write.
        """
        self._batching = True

    def commit_if_due(self, interval: float = 0.5) -> None:
        """Commit the open batch if it is ``interval`` seconds old or another writer waits.

        A crawl calls this after every URL and from a timer, so no batch outlives
        ``interval`` and a waiting writer (another crawl, ``crawler status`` marking a phase)
        gets its turn within a tick.
        """
        if (self._batching and self.db.in_transaction
                and (time.monotonic() - self._batch_started >= interval
                     or self.turn.others_waiting())):
            self._commit()

    def end_batch(self) -> None:
        """Commit the batch and return to one transaction per group."""
        self._batching = False
        if self.db.in_transaction:
            self._commit()

    def _begin(self) -> None:
        """Wait for the turn and open a write transaction."""
        self.turn.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.turn.release()
            raise
        self._batch_started = time.monotonic()

    def track_marks(self, crawl_pk: int | None, watermark: Watermark | None = None) -> None:
        """Write ``crawl_pk``'s WARC marks with every commit from now on (None: stop).

        Each commit writes, in its own transaction, how far each WARC file of the crawl is
        entered, counting the captures it commits; the watermark hears they were entered
        only once the commit succeeded (watermark.py).
        """
        self._marks = None if crawl_pk is None or watermark is None else (crawl_pk, watermark)
        self._entering.clear()

    def warc_marks(self, crawl_pk: int) -> dict[str, int]:
        """Return WARC file -> the offset below which all its records are in the catalog."""
        return {row[0]: int(row[1]) for row in self.db.execute(
            "SELECT warc_file, complete_to FROM warc_marks WHERE crawl=?", (crawl_pk,))}

    def set_warc_marks(self, crawl_pk: int, marks: dict[str, int]) -> None:
        """Record marks (inside the caller's transaction)."""
        self.db.executemany(
            "INSERT INTO warc_marks (crawl, warc_file, complete_to) VALUES (?, ?, ?) "
            "ON CONFLICT (crawl, warc_file) DO UPDATE SET complete_to=excluded.complete_to",
            [(crawl_pk, name, offset) for name, offset in marks.items()])

    def _commit(self) -> None:
        """Commit (or, if the commit fails, roll back) and give the turn back."""
        entering, self._entering = self._entering, []
        texts, self._texts = self._texts, {}
        try:
            for text_hash, (title, text) in texts.items():
                textindex.add(self.db, text_hash, title, text)
            if self._marks is not None:
                crawl_pk, watermark = self._marks
                self.set_warc_marks(crawl_pk, watermark.marks(entering))
            self.db.execute("COMMIT")
            self.commits += 1
            if self._marks is not None:
                self._marks[1].entered(entering)
        except BaseException as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise self.write_failure(exc) from exc
            raise
        finally:
            self.turn.release()

    def write_failure(self, exc: sqlite3.Error) -> OutputError:
        """Return the error a failed catalog write becomes: NoSpace when the disk (or the
        quota) is full, so a crawl stops cleanly; the WARCs still hold every record."""
        text = str(exc).lower()
        if "full" in text or "no space" in text:
            return NoSpace(f"no space left writing the catalog {self.path}: stopped; free "
                           "some space, then `crawler resume` continues where it stopped")
        return OutputError(f"cannot write the catalog {self.path}: {exc}")

    def _rollback(self) -> None:
        """Roll back the open transaction and give the turn back."""
        self._entering.clear()
        self._texts.clear()
        try:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
        finally:
            self.turn.release()

    # -- crawls ---------------------------------------------------------------------------

    def add_crawl(self, target: str, crawl_id: str, directory: Path,
                  settings: dict[str, Any], kind: str = "crawl") -> int:
        """Record a new running crawl (or rescue); return its row id."""
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO crawls (target, crawl_id, directory, started, status, settings, "
                "kind) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (target, crawl_id, self._relative(directory), now_iso(), CrawlStatus.RUNNING,
                 json.dumps(settings, ensure_ascii=False), kind))
        return int(cur.lastrowid or 0)

    def _relative(self, directory: Path) -> str:
        """Return how a crawl directory is stored: relative to the root when under it."""
        absolute = directory.resolve()
        try:
            return absolute.relative_to(self.root).as_posix()
        except ValueError:
            return str(absolute)

    def set_running(self, pk: int) -> None:
        """Mark a crawl running again (resume)."""
        with self.transaction():
            self.db.execute("UPDATE crawls SET status=?, finished=NULL WHERE id=?",
                            (CrawlStatus.RUNNING, pk))

    def finish_crawl(self, pk: int, status: str, stop_reason: str, exit_code: int,
                     shortfall: dict[str, int] | None = None) -> None:
        """Record how a crawl ended, and what it did not fetch; a crawl that ended on its
        own is then due for detection (``Phase``), in the same transaction."""
        phase = None if status == CrawlStatus.INTERRUPTED else Phase.DETECT
        with self.transaction():
            self.db.execute(
                "UPDATE crawls SET status=?, stop_reason=?, exit_code=?, finished=?, "
                "shortfall=?, phase=? WHERE id=?",
                (status, stop_reason, exit_code, now_iso(),
                 json.dumps(shortfall) if shortfall else None, phase, pk))

    def set_phase(self, pk: int, phase: str | None) -> None:
        """Record the phase a run has reached (inside the caller's transaction, if any)."""
        with self.transaction():
            self.db.execute("UPDATE crawls SET phase=? WHERE id=?", (phase, pk))

    def set_exit_code(self, pk: int, exit_code: int) -> None:
        """Record the exit code the whole run had (a takedown alert outranks the crawl's)."""
        with self.transaction():
            self.db.execute("UPDATE crawls SET exit_code=? WHERE id=?", (exit_code, pk))

    def crawls(self, target: str | None = None) -> list[CrawlRow]:
        """Return crawls (of one target), oldest first."""
        sql = "SELECT * FROM crawls" + (" WHERE target=?" if target else "") + " ORDER BY id"
        rows = self.db.execute(sql, (target,) if target else ()).fetchall()
        return [self._crawl_row(r) for r in rows]

    def crawl(self, target: str, crawl_id: str) -> CrawlRow | None:
        """Return one crawl by target and id."""
        row = self.db.execute("SELECT * FROM crawls WHERE target=? AND crawl_id=?",
                              (target, crawl_id)).fetchone()
        return self._crawl_row(row) if row else None

    def latest_crawl(self, target: str, kind: str = "crawl") -> CrawlRow | None:
        """Return the most recent crawl (or rescue) of a target."""
        row = self.db.execute("SELECT * FROM crawls WHERE target=? AND kind=? "
                              "ORDER BY id DESC LIMIT 1", (target, kind)).fetchone()
        return self._crawl_row(row) if row else None

    def crawl_totals(self, pk: int) -> dict[str, int]:
        """Return counts for a crawl from its final captures."""
        row = self.db.execute(
            "SELECT count(*) AS urls, "
            "coalesce(sum(CASE WHEN kind IN ('seed','page') AND (status BETWEEN 200 AND 299 "
            "OR (status = 304 AND record_type = 'revisit')) AND coalesce(detail, '') "
            f"NOT LIKE '%{WALL_NOTE}%' THEN 1 ELSE 0 END), 0) AS pages, "
            f"coalesce(sum(CASE WHEN detail LIKE '%{WALL_NOTE}%' THEN 1 ELSE 0 END), 0) "
            "AS walls, "
            "coalesce(sum(CASE WHEN record_type = 'revisit' THEN 1 ELSE 0 END), 0) AS revisits, "
            "coalesce(sum(length), 0) AS bytes, "
            "coalesce(sum(CASE WHEN failure IS NOT NULL AND failure NOT IN "
            "('robots','out-of-scope','trap','robots-unreachable','host-hung') "
            "THEN 1 ELSE 0 END), 0) AS failures, "
            "coalesce(sum(CASE WHEN failure='robots' THEN 1 ELSE 0 END), 0) AS robots, "
            "coalesce(sum(CASE WHEN failure='trap' THEN 1 ELSE 0 END), 0) AS traps "
            "FROM captures WHERE crawl=? AND final=1 AND kind IN "
            "('seed', 'page', 'requisite', 'sitemap', 'robots')", (pk,)).fetchone()
        return {k: int(v) for k, v in dict(row).items()}

    # -- captures -------------------------------------------------------------------------

    def add_capture(self, crawl_pk: int, capture: CaptureRow) -> int:
        """Insert a capture row (inside the caller's transaction); return its id (not
        ``last_insert_rowid()``: indexing the page's text inserts rows too)."""
        values = [getattr(capture, f) for f in _CAPTURE_FIELDS]
        values[_CAPTURE_FIELDS.index("final")] = int(capture.final)
        if (self._marks is not None and crawl_pk == self._marks[0]
                and capture.warc_file and capture.warc_offset is not None):
            self._entering.append((capture.warc_file, capture.warc_offset))
        cursor = self.db.execute(
            f"INSERT INTO captures (crawl, {', '.join(_CAPTURE_FIELDS)}) "
            f"VALUES (?{', ?' * len(_CAPTURE_FIELDS)})", (crawl_pk, *values))
        if capture.text_hash and (capture.text is None or not self.index_texts):
            if capture.text is not None:  # a page's text, left for `crawler search-index`
                textindex.defer(self.db, capture.text_hash)
        elif capture.text is not None and capture.text_hash:
            if self._batching:
                self._texts.setdefault(capture.text_hash, (capture.title, capture.text))
            else:
                textindex.add(self.db, capture.text_hash, capture.title, capture.text)
        return int(cursor.lastrowid or 0)

    def captures(self, crawl_pk: int, *, final_only: bool = True, status: int | None = None,
                 failure: str | None = None, url_like: str | None = None,
                 order: str = "id") -> Iterator[CaptureRow]:
        """Yield captures of a crawl, filtered."""
        sql = "SELECT * FROM captures WHERE crawl=?"
        args: list[Any] = [crawl_pk]
        if final_only:
            sql += " AND final=1"
        if status is not None:
            sql += " AND status=?"
            args.append(status)
        if failure is not None:
            sql += " AND failure=?"
            args.append(failure)
        if url_like is not None:
            sql += " AND url LIKE ?"
            args.append(url_like)
        sql += " ORDER BY " + {"id": "id", "surt": "surt, fetched_at"}[order]
        for row in self.db.execute(sql, args):
            yield _capture_row(row)

    def record_offsets(self, crawl_pk: int, warc_file: str) -> set[int]:
        """Return the offsets of the records of a WARC file that captures point at."""
        return {row[0] for row in self.db.execute(
            "SELECT warc_offset FROM captures WHERE crawl=? AND warc_file=?",
            (crawl_pk, warc_file))}

    def known_urls(self, target: str, before_pk: int) -> Iterator[sqlite3.Row]:
        """Yield (url, key, kind, depth) of every URL captured in earlier crawls of a target."""
        yield from self.db.execute(
            "SELECT url, key, min(kind) AS kind, min(depth) AS depth FROM captures "
            "WHERE crawl IN (SELECT id FROM crawls WHERE target=? AND id<?) "
            "AND kind IN ('seed', 'page', 'requisite', 'sitemap') "
            "AND failure IS NOT 'out-of-scope' AND failure IS NOT 'trap' GROUP BY key",
            (target, before_pk))


    def trapped_urls(self, target: str, before_pk: int, rule: str) -> Iterator[str]:
        """Yield URLs that a trap ``rule`` kept out of earlier crawls of a target."""
        for (url,) in self.db.execute(
                "SELECT url FROM captures WHERE failure='trap' AND detail=? AND crawl IN "
                "(SELECT id FROM crawls WHERE target=? AND id<?)", (rule, target, before_pk)):
            yield url

    def add_linked(self, crawl_pk: int, keys: Iterable[str]) -> None:
        """Record that pages of this crawl link to ``keys`` (inside the caller's transaction)."""
        self.db.executemany("INSERT OR IGNORE INTO linked (crawl, key) VALUES (?, ?)",
                            ((crawl_pk, k) for k in keys))

    def dedup_originals(self, target: str, crawl_pk: int, digest: str,
                        limit: int = 8) -> list[StoredRecord]:
        """Return archived responses of ``target`` with this payload digest, oldest first.

        Only this crawl's records and those of complete crawls count: a revisit must never
        depend on a crawl that did not finish (its files may be cut short or never indexed).
        The caller takes the first one whose record is intact.
        """
        rows = self.db.execute(_ORIGINAL_SQL, (digest, target, crawl_pk, limit)).fetchall()
        return [self._stored(row) for row in rows]

    def history_originals(self, target: str) -> Iterator[StoredRecord]:
        """Yield, per payload digest, the oldest response of ``target``'s finished crawls a
        revisit may refer to (the rules of ``dedup_originals``): the index a distributed
        crawl's workers deduplicate against."""
        for row in self.db.execute(
                "SELECT c.*, k.directory FROM captures c JOIN crawls k ON k.id = c.crawl "
                "WHERE c.id IN (SELECT min(c2.id) FROM captures c2 JOIN crawls k2 ON "
                "k2.id = c2.crawl WHERE k2.target = ? AND k2.status IN ('complete', "
                "'incomplete') AND c2.record_type = 'response' AND c2.final = 1 AND "
                "c2.digest IS NOT NULL AND c2.status BETWEEN 200 AND 299 AND c2.status != 206 "
                "AND c2.detail IS NULL GROUP BY c2.digest)", (target,)):
            yield self._stored(row)

    def response_digests(self, target: str) -> Iterator[str]:
        """Yield the payload digest of every response record of ``target`` (for the
        deduplication filter: a superset of what ``dedup_originals`` can return)."""
        for (digest,) in self.db.execute(
                "SELECT c.digest FROM captures c JOIN crawls k ON k.id = c.crawl "
                "WHERE k.target = ? AND c.record_type = 'response' AND c.digest IS NOT NULL",
                (target,)):
            yield digest

    def original_record(self, target: str, digest: str, url: str,
                        date: str) -> StoredRecord | None:
        """Return the response a recovered revisit refers to (its Refers-To URI and date)."""
        row = self.db.execute(
            "SELECT c.*, k.directory FROM captures c JOIN crawls k ON k.id = c.crawl "
            "WHERE c.digest = ? AND c.record_type = 'response' AND c.url = ? "
            "AND c.fetched_at = ? AND k.target = ? LIMIT 1",
            (digest, url, date, target)).fetchone()
        return self._stored(row) if row else None

    def prior(self, target: str, key: str) -> Prior | None:
        """Return the validators and records of a URL's latest capture in a complete crawl, if
        that capture was a good 200 (or a 304 revisit of one) with an ETag or Last-Modified."""
        row = self.db.execute(
            "SELECT c.*, k.directory FROM captures c JOIN crawls k ON k.id = c.crawl "
            "WHERE c.key = ? AND k.target = ? AND k.status IN ('complete', 'incomplete') "
            "AND c.final = 1 "
            "AND c.kind != 'robots' ORDER BY c.id DESC LIMIT 1", (key, target)).fetchone()
        if (row is None or not (row["etag"] or row["last_modified"])
                or row["status"] not in (200, 304) or row["detail"] is not None
                or row["record_type"] not in ("response", "revisit") or not row["warc_file"]):
            return None
        head = self._stored(row)
        if row["record_type"] == "response":
            return Prior(row["etag"], row["last_modified"], head, head)
        original = self.db.execute(
            "SELECT c.*, k.directory FROM captures c JOIN crawls k ON k.id = c.crawl "
            "WHERE c.id = ? AND c.record_type = 'response'", (row["refers_to"],)).fetchone()
        if original is None:
            return None
        return Prior(row["etag"], row["last_modified"], head, self._stored(original))


    def _crawl_row(self, row: sqlite3.Row) -> CrawlRow:
        return CrawlRow(pk=row["id"], target=row["target"], crawl_id=row["crawl_id"],
                        directory=self.resolve(row["directory"]), started=row["started"],
                        finished=row["finished"], status=row["status"],
                        stop_reason=row["stop_reason"], exit_code=row["exit_code"],
                        settings=json.loads(row["settings"]),
                        shortfall=json.loads(row["shortfall"] or "{}"), phase=row["phase"],
                        kind=row["kind"])

    def _stored(self, row: sqlite3.Row) -> StoredRecord:
        return StoredRecord(capture=row["id"], url=row["url"], date=row["fetched_at"],
                            record_id=row["record_id"], digest=row["digest"] or "",
                            status=row["status"] or 0, mime=row["mime"],
                            path=self.resolve(row["directory"]) / "warc" / row["warc_file"],
                            offset=row["warc_offset"] or 0, length=row["warc_length"] or 0)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or a savepoint inside an open transaction or batch; rolled
    back on error."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._own = False
        self._entering_before = 0

    def __enter__(self) -> sqlite3.Connection:
        catalog = self._catalog
        self._own = False
        if not catalog.db.in_transaction:
            catalog._begin()
            self._own = not catalog._batching  # in a batch, it stays open for the next
        if not self._own:
            catalog.db.execute("SAVEPOINT grp")
        self._entering_before = len(catalog._entering)
        return catalog.db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        catalog = self._catalog
        if self._own:
            if exc_type:
                catalog._rollback()
                if isinstance(exc, sqlite3.OperationalError):
                    raise catalog.write_failure(exc) from exc
            else:
                catalog._commit()
            return
        if exc_type and not catalog.db.in_transaction:
            catalog._entering.clear()
            catalog._texts.clear()  # (the texts of the captures rolled back)
            catalog.turn.release()  # SQLite rolled it all back itself (e.g. disk full)
        elif exc_type:
            del catalog._entering[self._entering_before:]
            catalog.db.execute("ROLLBACK TO grp")
            catalog.db.execute("RELEASE grp")
        else:
            catalog.db.execute("RELEASE grp")
        if isinstance(exc, sqlite3.OperationalError):
            raise catalog.write_failure(exc) from exc


class CatalogDamaged(OutputError):
    """The catalog file is damaged: nothing more may be written to it."""

    exit_code = ExitCode.DAMAGED

    def __init__(self, path: Path, problem: object) -> None:
        super().__init__(
            f"the catalog {path} is damaged ({problem}); nothing was written to it. The WARC "
            f"files are the source of truth: `crawler reindex --output {path.parent}` "
            "rebuilds the catalog from them (the damaged file is kept beside it).")


def _writable(root: Path) -> bool:
    """Return True if the archive root and its catalog can be written (or created)."""
    path = root / CATALOG_NAME
    if not root.exists():
        return True  # created on open, as before
    if not os.access(root, os.W_OK):
        return False
    return not path.exists() or os.access(path, os.W_OK)


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (no semicolons inside our DDL)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _capture_row(row: sqlite3.Row) -> CaptureRow:
    values = {f: row[f] for f in _CAPTURE_FIELDS}
    values["final"] = bool(values["final"])
    return CaptureRow(**values)
