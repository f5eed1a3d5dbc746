"""Soak test of the preservation daemon: takedowns flip, the daemon is killed, the webhook fails.

    python benchmarks/soak.py --minutes 10            # the real run (about 15-20 min in all)
    python benchmarks/soak.py --minutes 3 --seed 7    # a trial run

What it does (everything on 127.0.0.1, nothing on the web):

* starts ``--targets`` sample sites (``crawler.demo.sample_site.SampleSite``, ``--persons`` person
  pages each, a little latency so that a crawl takes a couple of seconds) in this process, a
  JSON webhook (a threading HTTP server on one fixed port) that records every message it
  accepts, and ``crawler daemon`` as a subprocess whose targets recrawl every 16-20 s with
  ``confirm_runs = 2`` and ``notify = ["json://127.0.0.1:PORT/hook"]``;
* for ``--minutes``: a flipper thread switches each site at random times between normal and a
  takedown (one or two person pages answered 404 or 410), restores it or changes what is
  gone, and records the ground truth (what each path answered, and since when); the daemon's
  process group is SIGKILLed every 40-120 s and restarted at once (it must finish cut-short
  runs first): at a random moment, or aimed at a moment when a crawl is running, when a run
  is in its detection/report/package phase, or when the webhook has just accepted a message
  and not answered yet (the daemon cannot record the delivery: the message comes again, a
  duplicate); the webhook goes down for 30-90 s now and then (connection refused, or HTTP
  503), so that notifications wait in the outbox and are retried;
* then stops flipping, keeps the webhook up, lets every target crawl ``--final-cycles`` more
  times, waits (up to ``--drain`` s) for the outbox to empty, stops the daemon with SIGTERM at
  a quiet moment, and checks.

The checks (hard ones make the exit code 1):

* alerts (hard): every row of the catalog's ``events`` table belongs to a run whose one
  message (``crawler-message: TARGET/CRAWL_ID`` in its body) the webhook received, or whose
  outbox row is still queued (not delivered, not expired). A run with events, no message
  received and no queued row is a LOST alert (must be 0); so is an event missing from its
  run's message, and a message whose run has no events. Ids received more than once are
  duplicates: allowed (delivery is at least once: a kill between the webhook's answer and the
  catalog's record sends again) and counted.
* no false alert (hard): every suspected/provisional/confirmed event names a URL that the
  ground truth had removed when the crawl fetched it (the capture's ``fetched_at``, or the
  crawl's ``started``..``finished`` if there is no capture; ``--tolerance`` s either side),
  and every ``recovered`` event a URL that had been removed and was served again. Host-wide
  events are false alerts (no host is ever taken down here).
* state sequences (hard): per URL, events alternate sensibly (an open state is confirmed or
  recovered, never opened twice in one class; nothing recovers that was not open).
* missed takedowns (reported, not a hard check): a removal that lasted more than two of its
  target's intervals and raised no event (and was not already an open state).
* the archive (hard): ``crawler verify TARGET`` exits 0 for every target; no crawl row keeps
  a non-NULL ``phase``; no ``*.open`` file is left under the archive root; the daemon exits 0
  on SIGTERM and never died on its own.

The archive root, the config, the daemon's stderr (``daemon.err``) and ``soak-result.json``
(ground truth, kills, outages, messages received, findings) stay in the work directory,
printed at the start and the end; the daemon's own log is ``archives/crawler.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from crawler.demo.sample_site import SampleSite

CLI = [sys.executable, "-m", "crawler"]
MESSAGE_ID = re.compile(r"^crawler-message: (\S+)/(\S+)\s*$", re.MULTILINE)
OPENING = ("suspected", "provisional", "confirmed")
T0 = time.time()


def say(text: str) -> None:
    """Print a progress line stamped with seconds since the start."""
    print(f"[{time.time() - T0:7.1f}s] {text}", flush=True)


def epoch(stamp: str | None) -> float | None:
    """Return the POSIX time of a catalog timestamp (ISO 8601 UTC with a Z)."""
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def free_port() -> int:
    """Return a port free on 127.0.0.1 now (the webhook keeps it for the whole run)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- ground truth ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Removal:
    """One path of one site continuously removed (404 or 410) from ``start`` to ``end``."""

    target: str
    path: str
    start: float
    end: float
    codes: tuple[int, ...]


class Truth:
    """What every site answered for its person pages, and since when."""

    def __init__(self, targets: list[str], start: float) -> None:
        self._lock = threading.Lock()
        self.timeline: dict[str, list[tuple[float, dict[str, int]]]] = {
            t: [(start, {})] for t in targets}

    def record(self, target: str, removed: dict[str, int], at: float) -> None:
        """Record that from ``at`` on the site answers ``removed`` (path -> status)."""
        with self._lock:
            self.timeline[target].append((at, dict(removed)))

    def status(self, target: str, path: str, at: float) -> int:
        """Return what ``path`` answered at ``at`` (200 unless removed)."""
        current: dict[str, int] = {}
        for when, removed in self.timeline[target]:
            if when > at:
                break
            current = removed
        return current.get(path, 200)

    def statuses(self, target: str, path: str, first: float, last: float) -> set[int]:
        """Return every answer ``path`` had at some moment in [first, last]."""
        seen = {self.status(target, path, first)}
        seen.update(removed.get(path, 200) for when, removed in self.timeline[target]
                    if first < when <= last)
        return seen

    def ever_removed_before(self, target: str, path: str, at: float) -> bool:
        """Return True if ``path`` was removed at some moment before ``at``."""
        return any(path in removed for when, removed in self.timeline[target] if when < at)

    def removals(self, end: float) -> list[Removal]:
        """Return every continuous removal of a path (404 and 410 alike), up to ``end``."""
        found: list[Removal] = []
        for target, timeline in self.timeline.items():
            paths = {p for _, removed in timeline for p in removed}
            for path in sorted(paths):
                start: float | None = None
                codes: list[int] = []
                for when, removed in timeline:
                    if path in removed:
                        if start is None:
                            start, codes = when, []
                        if removed[path] not in codes:
                            codes.append(removed[path])
                    elif start is not None:
                        found.append(Removal(target, path, start, when, tuple(codes)))
                        start = None
                if start is not None:
                    found.append(Removal(target, path, start, end, tuple(codes)))
        return found


class Flipper(threading.Thread):
    """Switches each site between normal and a takedown at random times."""

    def __init__(self, sites: dict[str, SampleSite], truth: Truth, rng: random.Random,
                 persons: int, first: tuple[float, float], dwell: tuple[float, float]) -> None:
        super().__init__(name="flipper", daemon=True)
        self.sites, self.truth, self.rng, self.persons = sites, truth, rng, persons
        self.first, self.dwell = first, dwell
        self.halt = threading.Event()
        self.flips = 0

    def run(self) -> None:
        now = time.time()
        due = {t: now + self.rng.uniform(*self.first) for t in self.sites}
        while not self.halt.wait(0.1):
            for target, when in due.items():
                if time.time() >= when and not self.halt.is_set():
                    self.flip(target)
                    due[target] = time.time() + self.rng.uniform(*self.dwell)

    def flip(self, target: str) -> None:
        """Move one site to its next state and record it."""
        site = self.sites[target]
        current = dict(site.content.takedown.removed)
        people = list(range(1, self.persons + 1))
        if not current:  # normal -> one or two person pages gone
            new = {f"/persons/{n}.html": self.rng.choice((404, 410))
                   for n in self.rng.sample(people, self.rng.choice((1, 2)))}
        else:
            roll = self.rng.random()
            new = dict(current)
            if roll < 0.55:  # restored
                new = {}
            elif roll < 0.8:  # one comes back, another goes
                del new[self.rng.choice(sorted(new))]
                rest = [n for n in people if f"/persons/{n}.html" not in current]
                new[f"/persons/{self.rng.choice(rest)}.html"] = self.rng.choice((404, 410))
            else:  # the same pages, another status
                path = self.rng.choice(sorted(new))
                new[path] = 410 if new[path] == 404 else 404
        site.content.takedown.removed = new  # one assignment: requests see old or new
        at = time.time()
        self.truth.record(target, new, at)
        self.flips += 1
        shown = ", ".join(f"{p} {s}" for p, s in sorted(new.items())) or "all restored"
        say(f"flip {target}: {shown}")


# -- the webhook ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """One message the webhook accepted."""

    at: float
    target: str
    crawl_id: str
    title: str
    body: str


class QuietServer(ThreadingHTTPServer):
    """A server that does not print the resets a killed client causes."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def quiet(site: SampleSite) -> SampleSite:
    """Keep a sample site's servers from printing the resets a killed crawler causes."""
    for server in (site._main, site._cdn):  # the site's own servers, in this process
        server.handle_error = QuietServer.handle_error.__get__(server)  # type: ignore[method-assign]
    return site


class Webhook:
    """An Apprise JSON receiver on a fixed port that can be down (refused, or HTTP 503)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[Received] = []
        self.unparsed: list[str] = []
        self.failing = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._trap: tuple[threading.Event, threading.Event] | None = None
        self.trap: tuple[threading.Event, threading.Event] | None = None  # the soak's own

    def arm(self) -> tuple[threading.Event, threading.Event]:
        """Make the next accepted message set ``hit`` and wait for ``release`` before its
        answer (the caller kills the daemon meanwhile)."""
        trap = (threading.Event(), threading.Event())
        with self._lock:
            self._trap = trap
        return trap

    def disarm(self, trap: tuple[threading.Event, threading.Event]) -> None:
        with self._lock:
            if self._trap is trap:
                self._trap = None
            if self.trap is trap:
                self.trap = None
        trap[1].set()

    @property
    def url(self) -> str:
        """Return the Apprise URL of the webhook."""
        return f"json://127.0.0.1:{self.port}/hook"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if hook.failing:
                    self._answer(503, b"down for maintenance")
                    return
                trap = hook.accept(raw)
                if trap is not None:  # accepted; the sender is killed before our answer
                    trap[0].set()
                    trap[1].wait(15)
                with contextlib.suppress(OSError):
                    self._answer(200, b"ok")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def accept(self, raw: bytes) -> tuple[threading.Event, threading.Event] | None:
        """Record one message (before answering 200: the receiver has accepted it); return
        the armed trap, if any."""
        try:
            payload = json.loads(raw)
            body = str(payload.get("message", ""))
            title = str(payload.get("title", ""))
        except (ValueError, AttributeError):
            body, title = raw.decode("utf-8", "replace"), ""
        found = MESSAGE_ID.search(body)
        with self._lock:
            if found is None:
                self.unparsed.append(body[:500])
            else:
                self.received.append(Received(time.time(), found.group(1), found.group(2),
                                              title, body))
            trap, self._trap = self._trap, None
        return trap

    def up(self) -> None:
        """Accept messages."""
        self.failing = False
        if self._server is None:
            for _ in range(50):
                try:
                    server = QuietServer(("127.0.0.1", self.port), self._handler())
                    break
                except OSError:
                    time.sleep(0.2)
            else:
                raise SystemExit(f"soak: cannot bind the webhook to port {self.port}")
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, name="webhook", daemon=True).start()
            self._server = server

    def down(self, mode: str) -> None:
        """Refuse connections (``refused``) or answer every message with 503 (``503``)."""
        if mode == "503":
            self.failing = True
            return
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def is_up(self) -> bool:
        return self._server is not None and not self.failing

    def messages(self) -> list[Received]:
        with self._lock:
            return list(self.received)


# -- the daemon -----------------------------------------------------------------------------


class Daemon:
    """``crawler daemon`` in its own process group (a SIGKILL takes its parser workers too)."""

    def __init__(self, config: Path, errors: Path) -> None:
        self.config, self.errors = config, errors
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.errors, "ab") as err:
            self.proc = subprocess.Popen([*CLI, "daemon", "--config", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float) -> int | None:
        """SIGTERM; return the exit code, or None if it had to be killed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


class Catalog:
    """Read-only looks at the daemon's catalog (WAL: never blocks the daemon's writers)."""

    def __init__(self, root: Path) -> None:
        self.path = root / "catalog.sqlite3"

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        if not self.path.exists():
            return []
        for attempt in range(20):
            try:
                db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
                db.row_factory = sqlite3.Row
                try:
                    return db.execute(sql, args).fetchall()
                finally:
                    db.close()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc) and attempt > 5:
                    return []
                time.sleep(0.2)
        return []

    def busy(self, where: str = "status='running' OR phase IS NOT NULL") -> list[str]:
        """Return the crawls running or in a phase after their crawl (or as ``where``)."""
        return [f"{r['target']}/{r['crawl_id']} {r['status']}"
                + (f" phase={r['phase']}" if r["phase"] else "")
                for r in self.rows("SELECT target, crawl_id, status, phase FROM crawls "
                                   f"WHERE {where}")]

    def queued(self) -> int:
        rows = self.rows("SELECT count(*) FROM outbox WHERE delivered IS NULL "
                         "AND expired IS NULL")
        return int(rows[0][0]) if rows else 0


def code_version() -> str:
    """Return the crawler's git commit (and whether its tree has changes): the daemon runs the
    code as it is at each restart."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "crawler"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in crawler/" if dirty else "")


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


# -- the run --------------------------------------------------------------------------------


@dataclass
class Record:
    """What happened during the run (kept in soak-result.json)."""

    workdir: str
    seed: int
    minutes: float
    started: float = field(default_factory=time.time)
    kills: list[dict[str, Any]] = field(default_factory=list)
    outages: list[dict[str, Any]] = field(default_factory=list)
    deaths: list[dict[str, Any]] = field(default_factory=list)
    flips: int = 0
    soak_seconds: float = 0.0
    total_seconds: float = 0.0
    sigterm_exit: int | None = None
    final_wait_ok: bool = True
    drained: bool = True


def write_config(path: Path, root: Path, sites: dict[str, SampleSite],
                 intervals: dict[str, float], hook: Webhook) -> None:
    parts = [f'archives = "{root}"', "max_concurrent_crawls = 2", 'outbox_interval = "2s"', "",
             "[defaults]", 'scope = "host"', "delay = 0",
             'exclude = ["calendar"]', f'notify = ["{hook.url}"]', "recheck = 1",
             'recheck_spacing = "0s"', "confirm_runs = 2", ""]
    for name, site in sites.items():
        parts += ["[[targets]]", f'name = "{name}"', f'seeds = ["{site.url}"]',
                  f'every = "{intervals[name]:g}s"', ""]
    path.write_text("\n".join(parts), "utf-8")
    path.chmod(0o600)


def aim(rng: random.Random, catalog: Catalog, hook: Webhook) -> tuple[str, bool]:
    """Wait for the moment a kill is aimed at; return (what, whether it was found)."""
    mode = rng.choices(("random", "crawl", "phase", "send"), weights=(35, 25, 20, 20))[0]
    if mode == "crawl":  # somewhere inside a crawl
        found = wait_until(lambda: bool(catalog.busy("status='running'")), 30, 0.05)
        if found:
            time.sleep(rng.uniform(0, 0.8))
        return mode, found
    if mode == "phase":  # the crawl ended; detection, report, notification or packaging
        return mode, wait_until(lambda: bool(catalog.busy("phase IS NOT NULL")), 40, 0.01)
    if mode == "send" and hook.is_up:  # the webhook has the message, the daemon no answer
        hook.trap = hook.arm()
        return mode, hook.trap[0].wait(60)
    return mode, mode == "random"


def soak(args: argparse.Namespace, rng: random.Random, record: Record, daemon: Daemon,
         hook: Webhook, flipper: Flipper, catalog: Catalog) -> None:
    """The main phase: flips (thread), kills and webhook outages until the time is up."""
    start = time.time()
    end = start + args.minutes * 60
    next_kill = start + rng.uniform(*args.kill_every)
    next_outage = start + rng.uniform(*args.outage_gap)
    outage_until: float | None = None
    daemon.start()
    flipper.start()
    say(f"daemon started (pid {daemon.proc.pid if daemon.proc else '?'})")
    while time.time() < end:
        time.sleep(0.2)
        now = time.time()
        if not daemon.alive():
            code = daemon.proc.returncode if daemon.proc else None
            record.deaths.append({"at": now - T0, "exit": code})
            say(f"!! the daemon died on its own (exit {code}); restarting it")
            daemon.start()
            continue
        if outage_until is None and now >= next_outage and now + 20 < end:
            mode = rng.choice(("refused", "503"))
            length = rng.uniform(*args.outage_length)
            hook.down(mode)
            outage_until = now + length
            record.outages.append({"at": now - T0, "seconds": round(length, 1), "mode": mode})
            say(f"webhook DOWN ({mode}) for {length:.0f}s")
        elif outage_until is not None and now >= outage_until:
            hook.up()
            outage_until = None
            next_outage = now + rng.uniform(*args.outage_gap)
            say("webhook UP")
        if now >= next_kill:
            mode, hit = aim(rng, catalog, hook)
            busy = catalog.busy()
            daemon.kill()
            record.kills.append({"at": time.time() - T0, "mode": mode, "hit": hit,
                                 "busy": busy})
            say(f"SIGKILL daemon #{len(record.kills)} (aimed at: {mode}"
                f"{'' if hit else ', not found: random moment'}); under way: "
                f"{', '.join(busy) or 'nothing'}")
            if hook.trap is not None:
                hook.disarm(hook.trap)
            daemon.start()
            next_kill = time.time() + rng.uniform(*args.kill_every)
    flipper.halt.set()
    flipper.join(5)
    record.flips = flipper.flips
    if outage_until is not None or not hook.is_up:
        hook.up()
        say("webhook UP")
    record.soak_seconds = time.time() - start


def finish(args: argparse.Namespace, record: Record, daemon: Daemon, catalog: Catalog,
           targets: list[str]) -> None:
    """Final cycles with the webhook up, drain the outbox, SIGTERM at a quiet moment."""
    begin = time.time()
    stamp = datetime.fromtimestamp(begin, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    say(f"flipping stopped; the webhook stays up; waiting for {args.final_cycles} more "
        "complete run(s) of every target")

    def cycles_done() -> bool:
        if not daemon.alive():
            record.deaths.append({"at": time.time() - T0, "exit": daemon.proc.returncode
                                  if daemon.proc else None})
            say("!! the daemon died on its own; restarting it")
            daemon.start()
        for target in targets:
            rows = catalog.rows("SELECT count(*) FROM crawls WHERE target=? AND started>=? "
                                "AND status='complete' AND phase IS NULL", (target, stamp))
            if not rows or rows[0][0] < args.final_cycles:
                return False
        return True

    longest = max(args.every + 2 * (len(targets) - 1), args.every)
    record.final_wait_ok = wait_until(cycles_done, args.final_cycles * longest * 2 + 120)
    if not record.final_wait_ok:
        say("!! not every target completed its final runs in time")
    say(f"final runs done; {catalog.queued()} message(s) queued; draining up to "
        f"{args.drain:.0f}s")
    record.drained = wait_until(lambda: catalog.queued() == 0, args.drain, 1.0)
    quiet = wait_until(lambda: not catalog.busy(), 90, 0.05)
    say(f"stopping the daemon with SIGTERM ({'quiet moment' if quiet else 'busy: '}"
        f"{'' if quiet else ', '.join(catalog.busy())})")
    record.sigterm_exit = daemon.terminate(300)
    say(f"daemon exited {record.sigterm_exit}")
    record.total_seconds = time.time() - record.started


# -- the checks -----------------------------------------------------------------------------


@dataclass
class Findings:
    """What the checks found."""

    lines: list[str] = field(default_factory=list)  # details of every failure
    notes: list[str] = field(default_factory=list)  # details of soft findings
    events: int = 0
    event_states: dict[str, int] = field(default_factory=dict)
    event_runs: int = 0
    covered: int = 0
    queued_runs: int = 0
    lost: int = 0
    not_in_message: int = 0
    orphan_messages: int = 0
    messages: int = 0
    unique_messages: int = 0
    duplicates: int = 0
    duplicate_bodies_differ: int = 0
    outbox_rows: int = 0
    outbox_delivered: int = 0
    outbox_queued: int = 0
    outbox_expired: int = 0
    received_but_queued: int = 0
    false_alerts: int = 0
    false_recoveries: int = 0
    sequence_errors: int = 0
    missed: int = 0
    long_removals: int = 0
    truth_mismatches: int = 0
    verify: dict[str, int] = field(default_factory=dict)
    phase_left: int = 0
    open_files: int = 0
    log_errors: int = 0
    crawls: dict[str, dict[str, int]] = field(default_factory=dict)


def event_line(row: sqlite3.Row) -> str:
    """Return how notify.message words an event (its detail is optional)."""
    return f"{row['state'].upper()} {row['class']}: {row['url']}"


def check_alerts(catalog: Catalog, hook: Webhook, f: Findings) -> None:
    """Every run with events has its one message received, or its outbox row queued."""
    crawls = {r["id"]: r for r in catalog.rows("SELECT * FROM crawls")}
    events = catalog.rows("SELECT * FROM events ORDER BY id")
    outbox = catalog.rows("SELECT * FROM outbox ORDER BY id")
    received = hook.messages()
    f.events = len(events)
    f.event_states = dict(Counter(e["state"] for e in events))
    f.messages = len(received)
    per_id: dict[tuple[str, str], list[Received]] = defaultdict(list)
    for m in received:
        per_id[(m.target, m.crawl_id)].append(m)
    f.unique_messages = len(per_id)
    f.duplicates = sum(len(v) > 1 for v in per_id.values())
    for (target, crawl_id), copies in per_id.items():
        if len(copies) > 1:
            f.notes.append(f"duplicate: {target}/{crawl_id} received {len(copies)} times at "
                           + ", ".join(f"{m.at - T0:.1f}s" for m in copies))
            if len({m.body for m in copies}) > 1:
                f.duplicate_bodies_differ += 1
                f.lines.append(f"duplicate with different bodies: {target}/{crawl_id}")
    f.outbox_rows = len(outbox)
    f.outbox_delivered = sum(r["delivered"] is not None for r in outbox)
    f.outbox_expired = sum(r["expired"] is not None for r in outbox)
    f.outbox_queued = sum(r["delivered"] is None and r["expired"] is None for r in outbox)
    box: dict[int, list[sqlite3.Row]] = defaultdict(list)
    for r in outbox:
        box[r["crawl"]].append(r)
    by_run: dict[int, list[sqlite3.Row]] = defaultdict(list)
    for e in events:
        by_run[e["crawl"]].append(e)
    f.event_runs = len(by_run)
    for pk, rows in sorted(by_run.items()):
        crawl = crawls.get(pk)
        if crawl is None:
            f.lost += 1
            f.lines.append(f"LOST: events of crawl pk {pk} whose crawl row is missing")
            continue
        ident = (crawl["target"], crawl["crawl_id"])
        name = f"{ident[0]}/{ident[1]}"
        queued = [r for r in box.get(pk, []) if r["delivered"] is None and r["expired"] is None]
        if len(box.get(pk, [])) > 1:
            f.lines.append(f"{name}: {len(box[pk])} outbox rows for one destination")
        if ident in per_id:
            f.covered += 1
            if queued:
                f.received_but_queued += 1
                f.notes.append(f"{name}: received, and its outbox row is still queued (will "
                               "repeat)")
            body = per_id[ident][-1].body
            folded = {(e["class"], e["state"]) for e in rows if e["key"].startswith("host:")}
            for e in rows:
                if event_line(e) not in body and (e["class"], e["state"]) not in folded:
                    f.not_in_message += 1
                    f.lines.append(f"event not in its message: {name}: {event_line(e)}")
        elif queued:
            f.queued_runs += 1
            q = queued[0]
            f.notes.append(f"queued: {name}: attempts {q['attempts']}, next {q['next_attempt']}"
                           f", last error {q['last_error']}")
        else:
            f.lost += 1
            state = ("no outbox row" if not box.get(pk) else
                     "; ".join(f"outbox row {r['id']} delivered={r['delivered']} "
                               f"expired={r['expired']} attempts={r['attempts']} "
                               f"last_error={r['last_error']}" for r in box[pk]))
            f.lines.append(f"LOST alert: {name} (crawl pk {pk}, status {crawl['status']}, "
                           f"phase {crawl['phase']}): {len(rows)} event(s) "
                           f"[{'; '.join(event_line(e) for e in rows)}], no message "
                           f"received; {state}")
    known = {(c["target"], c["crawl_id"]): pk for pk, c in crawls.items()}
    for ident in per_id:
        if known.get(ident) not in by_run:
            f.orphan_messages += 1
            f.lines.append(f"message without events in the catalog: {ident[0]}/{ident[1]}")
    for body in hook.unparsed:
        f.orphan_messages += 1
        f.lines.append(f"message without a crawler-message id: {body[:200]!r}")


def capture_of(catalog: Catalog, crawl: int, url: str) -> tuple[float, int | None] | None:
    """Return (fetched_at, status) of a crawl's final capture of ``url``, if any."""
    rows = catalog.rows("SELECT fetched_at, status FROM captures WHERE crawl=? AND url=? "
                        "AND final=1 AND kind IN ('seed', 'page', 'requisite') "
                        "ORDER BY id DESC LIMIT 1", (crawl, url))
    if not rows:
        return None
    when = epoch(rows[0]["fetched_at"])
    return (when, rows[0]["status"]) if when is not None else None


def check_truth(catalog: Catalog, truth: Truth, args: argparse.Namespace, end: float,
                intervals: dict[str, float], f: Findings) -> None:
    """No false alert, no false recovery, sane state sequences; count missed takedowns."""
    tol = args.tolerance
    crawls = {r["id"]: r for r in catalog.rows("SELECT * FROM crawls")}
    events = catalog.rows("SELECT * FROM events ORDER BY id")
    seen_at: dict[int, float] = {}  # event id -> when its crawl fetched the URL
    for e in events:
        target, crawl = e["target"], crawls.get(e["crawl"])
        name = f"{target}/{crawl['crawl_id'] if crawl else e['crawl']}"
        path = unquote(urlsplit(e["url"]).path)
        capture = None if e["key"].startswith("host:") else capture_of(catalog, e["crawl"],
                                                                      e["url"])
        if capture is not None:
            first, last = capture[0] - tol, capture[0] + tol
            seen_at[e["id"]] = capture[0]
        else:
            started = epoch(crawl["started"]) if crawl else None
            finished = epoch(crawl["finished"]) if crawl else None
            first = (started or epoch(e["at"]) or end) - tol
            last = (finished or epoch(e["at"]) or end) + tol
            seen_at[e["id"]] = started or epoch(e["at"]) or end
        where = (f"fetched {capture[0] - T0:.1f}s status {capture[1]}" if capture else
                 f"no capture; crawl window {first - T0:.1f}..{last - T0:.1f}s")
        text = (f"{name}: {e['state']} {e['class']} {e['url']} (detail {e['detail']}; "
                f"{where}; truth then {sorted(truth.statuses(target, path, first, last))})")
        if e["state"] in OPENING:
            if (e["key"].startswith("host:") or e["class"] != "removed"
                    or truth.statuses(target, path, first, last) == {200}):
                f.false_alerts += 1
                f.lines.append(f"FALSE alert: {text}")
        elif e["state"] == "recovered" and (
                not truth.ever_removed_before(target, path, last)
                or 200 not in truth.statuses(target, path, first, last)):
            f.false_recoveries += 1
            f.lines.append(f"FALSE recovery: {text}")
    # state sequences per URL
    open_: dict[tuple[str, str], tuple[str, str]] = {}
    for e in events:
        key, cls, state = (e["target"], e["key"]), e["class"], e["state"]
        now = open_.get(key)
        crawl = crawls.get(e["crawl"])
        name = f"{e['target']}/{crawl['crawl_id'] if crawl else e['crawl']}"
        bad = None
        if state == "recovered":
            if now is None:
                bad = "recovered with no open state"
            open_.pop(key, None)
        elif state == "confirmed":
            if now is None:
                bad = "confirmed with no open state (re-checks are off in the daemon)"
            elif now == (cls, "confirmed"):
                bad = "confirmed twice"
            open_[key] = (cls, state)
        else:
            if now is not None and now[0] == cls:
                bad = f"{state} again while {now[1]} in the same class"
            open_[key] = (cls, state)
        if bad:
            f.sequence_errors += 1
            f.lines.append(f"state sequence: {name}: {e['url']}: {bad}")
    # missed takedowns
    by_url: dict[tuple[str, str], list[sqlite3.Row]] = defaultdict(list)
    for e in events:
        by_url[(e["target"], unquote(urlsplit(e["url"]).path))].append(e)
    for r in truth.removals(end):
        if r.end - r.start <= 2 * intervals[r.target]:
            continue
        f.long_removals += 1
        mine = by_url.get((r.target, r.path), [])
        raised = [e for e in mine if e["state"] in OPENING
                  and r.start - tol <= seen_at[e["id"]] <= r.end + tol]
        before = [e for e in mine if seen_at[e["id"]] < r.start - tol]
        still_open = bool(before) and before[-1]["state"] in OPENING
        if raised or still_open:
            continue
        f.missed += 1
        runs = catalog.rows(
            "SELECT k.crawl_id, k.status, c.status AS got, c.fetched_at FROM captures c "
            "JOIN crawls k ON k.id=c.crawl WHERE k.target=? AND c.url LIKE ? AND c.final=1 "
            "ORDER BY c.id", (r.target, "%" + r.path))
        seen = [f"{x['crawl_id']}:{x['got']}@{(epoch(x['fetched_at']) or 0) - T0:.0f}s"
                for x in runs if r.start - tol <= (epoch(x["fetched_at"]) or 0) <= r.end + tol]
        f.notes.append(f"MISSED takedown: {r.target} {r.path} {r.codes} removed "
                       f"{r.start - T0:.1f}s..{r.end - T0:.1f}s; captures then: "
                       f"{', '.join(seen) or 'none'}")
    # did the crawls see what the sites answered? (checks this script's clock model)
    for target in intervals:
        rows = catalog.rows(
            "SELECT c.url, c.status, c.fetched_at, k.crawl_id FROM captures c "
            "JOIN crawls k ON k.id=c.crawl WHERE k.target=? AND c.final=1 AND c.kind='page' "
            "AND c.url LIKE '%/persons/%.html' AND c.status IS NOT NULL", (target,))
        for x in rows:
            when = epoch(x["fetched_at"]) or 0
            path = unquote(urlsplit(x["url"]).path)
            if x["status"] not in truth.statuses(target, path, when - tol, when + tol):
                f.truth_mismatches += 1
                f.notes.append(f"capture disagrees with the ground truth: {target}/"
                               f"{x['crawl_id']} {path} got {x['status']} at "
                               f"{when - T0:.1f}s, truth {truth.status(target, path, when)}")


def check_archive(root: Path, catalog: Catalog, targets: list[str], f: Findings) -> None:
    for target in targets:
        done = subprocess.run([*CLI, "verify", target, "--output", str(root)],
                              capture_output=True, text=True)
        f.verify[target] = done.returncode
        if done.returncode != 0:
            f.lines.append(f"verify {target}: exit {done.returncode}: "
                           + (done.stdout + done.stderr).strip()[-1500:])
    for r in catalog.rows("SELECT target, crawl_id, status, phase FROM crawls "
                          "WHERE phase IS NOT NULL"):
        f.phase_left += 1
        f.lines.append(f"phase left: {r['target']}/{r['crawl_id']} status {r['status']} "
                       f"phase {r['phase']}")
    for path in root.rglob("*.open"):
        f.open_files += 1
        f.lines.append(f".open file left: {path}")
    for target in targets:
        f.crawls[target] = dict(Counter(r["status"] for r in catalog.rows(
            "SELECT status FROM crawls WHERE target=?", (target,))))
    for log in sorted(root.glob("crawler.log*")):
        for line in log.read_text("utf-8", "replace").splitlines():
            if "level=error" in line or "level=critical" in line:
                f.log_errors += 1
                if f.log_errors <= 15:
                    f.notes.append(f"daemon log: {line[:400]}")


# -- main -----------------------------------------------------------------------------------


def summary(record: Record, f: Findings, root: Path) -> bool:
    """Print the findings and the summary table; return True if every hard check passed."""
    hard = {
        "lost alerts": f.lost == 0,
        "events missing from their message": f.not_in_message == 0,
        "messages without events": f.orphan_messages == 0,
        "duplicates with different bodies": f.duplicate_bodies_differ == 0,
        "false alerts": f.false_alerts == 0,
        "false recoveries": f.false_recoveries == 0,
        "state sequences": f.sequence_errors == 0,
        "verify": bool(f.verify) and all(code == 0 for code in f.verify.values()),
        "phase left": f.phase_left == 0,
        ".open files": f.open_files == 0,
        "daemon exit on SIGTERM": record.sigterm_exit == 0,
        "daemon never died on its own": not record.deaths,
    }
    print()
    if f.lines:
        print("FAILURES")
        for line in f.lines:
            print("  " + line)
    if f.notes:
        print("NOTES")
        for line in f.notes:
            print("  " + line)
    crawls = "; ".join(f"{t}: " + ", ".join(f"{n} {s}" for s, n in sorted(c.items()))
                       for t, c in f.crawls.items())
    table = [
        ("minutes run (soak / in all)", f"{record.soak_seconds / 60:.1f} / "
                                        f"{record.total_seconds / 60:.1f}"),
        ("daemon kills", f"{len(record.kills)} (" + ", ".join(
            f"{n} {m}" for m, n in sorted(Counter(
                k["mode"] if k["hit"] else "random" for k in record.kills).items())) + ")"),
        ("daemon deaths on its own", str(len(record.deaths))),
        ("webhook outages", f"{len(record.outages)} ("
                            + ", ".join(f"{o['mode']} {o['seconds']:.0f}s"
                                        for o in record.outages) + ")"),
        ("site flips", str(record.flips)),
        ("crawls per target", crawls),
        ("events", f"{f.events} " + str(dict(sorted(f.event_states.items()))) +
                   f" in {f.event_runs} run(s)"),
        ("messages delivered (received / unique ids)", f"{f.messages} / {f.unique_messages}"),
        ("outbox rows (delivered / queued / expired)",
         f"{f.outbox_rows} ({f.outbox_delivered} / {f.outbox_queued} / {f.outbox_expired})"),
        ("runs covered by a message", str(f.covered)),
        ("duplicates (ids received more than once)", str(f.duplicates)),
        ("runs with events still queued", str(f.queued_runs)),
        ("LOST alerts (must be 0)", str(f.lost)),
        ("events missing from their message", str(f.not_in_message)),
        ("messages without events", str(f.orphan_messages)),
        ("FALSE alerts (must be 0)", str(f.false_alerts)),
        ("false recoveries (must be 0)", str(f.false_recoveries)),
        ("state sequence errors (must be 0)", str(f.sequence_errors)),
        ("missed takedowns (of long removals)", f"{f.missed} (of {f.long_removals})"),
        ("captures disagreeing with the truth", str(f.truth_mismatches)),
        ("verify", ", ".join(f"{t} {'ok' if c == 0 else f'exit {c}'}"
                             for t, c in f.verify.items())),
        ("crawls left in a phase / .open files", f"{f.phase_left} / {f.open_files}"),
        ("daemon exit on SIGTERM", str(record.sigterm_exit)),
        ("final runs completed / outbox drained", f"{record.final_wait_ok} / {record.drained}"),
        ("error lines in crawler.log", str(f.log_errors)),
    ]
    width = max(len(k) for k, _ in table)
    print()
    print("SUMMARY")
    for key, value in table:
        print(f"  {key:<{width}}  {value}")
    failed = [name for name, ok in hard.items() if not ok]
    print()
    print(f"archive root: {root}")
    print("RESULT: " + ("PASS" if not failed else "FAIL (" + ", ".join(failed) + ")"))
    return not failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak")
    parser.add_argument("--targets", type=int, default=3)
    parser.add_argument("--persons", type=int, default=10, help="person pages per site")
    parser.add_argument("--latency", type=float, default=0.05,
                        help="seconds each response of the sites is delayed")
    parser.add_argument("--every", type=float, default=16.0,
                        help="interval of the first target; each next one is 2 s longer")
    parser.add_argument("--kill-every", type=float, nargs=2, default=(40.0, 120.0))
    parser.add_argument("--outage-gap", type=float, nargs=2, default=(60.0, 150.0),
                        help="seconds the webhook is up between outages")
    parser.add_argument("--outage-length", type=float, nargs=2, default=(30.0, 90.0))
    parser.add_argument("--dwell", type=float, nargs=2, default=(10.0, 110.0),
                        help="seconds a site stays in one state")
    parser.add_argument("--final-cycles", type=int, default=2)
    parser.add_argument("--drain", type=float, default=300.0,
                        help="at most this long to wait for the outbox to empty at the end")
    parser.add_argument("--tolerance", type=float, default=2.0,
                        help="seconds of slack between a fetch and the ground truth")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the archive and logs go (default: a new temp directory)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10 ** 6)
    rng = random.Random(seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="crawler-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "archives"
    names = [f"soak{i + 1}" for i in range(args.targets)]
    intervals = {name: args.every + 2 * i for i, name in enumerate(names)}
    sites = {name: quiet(SampleSite(persons=args.persons, latency=args.latency)).start()
             for name in names}
    hook = Webhook(free_port())
    hook.up()
    config = work / "soak.toml"
    write_config(config, root, sites, intervals, hook)
    check = subprocess.run([*CLI, "config", "check", str(config)], capture_output=True,
                           text=True)
    if check.returncode != 0:
        print(check.stdout + check.stderr)
        return 2
    record = Record(str(work), seed, args.minutes)
    version = code_version()
    say(f"soak: {args.minutes:g} min, seed {seed}, work directory {work}, crawler {version}")
    say("targets: " + ", ".join(f"{n} {sites[n].url} every {intervals[n]:g}s" for n in names)
        + f"; webhook {hook.url}")
    truth = Truth(names, time.time())
    flipper = Flipper(sites, truth, rng, args.persons,
                      first=(1.5 * args.every, 3 * args.every),
                      dwell=(args.dwell[0], args.dwell[1]))
    daemon = Daemon(config, work / "daemon.err")
    catalog = Catalog(root)
    try:
        soak(args, rng, record, daemon, hook, flipper, catalog)
        finish(args, record, daemon, catalog, names)
    finally:
        flipper.halt.set()
        if daemon.alive():
            daemon.kill()
    end = time.time()
    findings = Findings()
    check_alerts(catalog, hook, findings)
    check_truth(catalog, truth, args, end, intervals, findings)
    check_archive(root, catalog, names, findings)
    for site in sites.values():
        site.stop()
    if code_version() != version:
        findings.notes.append(f"the crawler's code changed during the run ({version} -> "
                              f"{code_version()}): restarts after the change ran the new code")
    ok = summary(record, findings, root)
    result = {"record": asdict(record), "args": {k: str(v) for k, v in vars(args).items()},
              "t0": T0, "truth": truth.timeline,
              "received": [asdict(m) for m in hook.messages()],
              "failures": findings.lines, "notes": findings.notes}
    (work / "soak-result.json").write_text(json.dumps(result, indent=1, ensure_ascii=False),
                                           "utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
