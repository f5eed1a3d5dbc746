"""The preservation daemon: configured targets recrawled on schedule (APScheduler 3.x).

One job per scheduled target in a persistent job store (SQLAlchemy on
``<archives>/scheduler.sqlite3``), so next-run times survive restarts. Jobs never pile up:
``max_instances=1`` (a crawl that outlasts its interval makes the next start wait, not
overlap), ``coalesce`` (missed starts run once) and a misfire grace time; the executor's pool
size caps how many targets crawl at once. Each job runs one pipeline run (crawl, detect,
report, notify) in its own event loop on a worker thread.

``stop`` (SIGTERM/SIGINT) stops scheduling and asks running crawls to stop: they finish
in-flight requests, close their WARCs and are marked interrupted; the next start resumes them
first. ``reload`` (SIGHUP) validates the new configuration and applies it (targets added,
removed, rescheduled) or logs why not and keeps the old one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from crawler.archive.catalog import Catalog
from crawler.archive.layout import CrawlInProgress, lock_target, target_is_locked
from crawler.core.errors import ConfigError, CrawlerError
from crawler.crawl.engine import Crawl
from crawler.jobs.pipeline import run_target
from crawler.reporting import notify, outbox
from crawler.schedule.config import Config, Schedule, load

log = logging.getLogger("crawler.daemon")
JOBSTORE = "scheduler.sqlite3"
MISFIRE_GRACE = 3600  # a start missed by up to an hour (daemon down, all slots busy) still runs

_current: Daemon | None = None  # the running daemon, found by jobs restored from the store


def run_job(name: str) -> None:
    """Job entry point: module level, so the persistent job store can refer to it."""
    if _current is not None:
        _current.run(name)


def run_now_job(name: str) -> None:
    """A run asked for from the dashboard: runs even while the target's schedule is paused."""
    if _current is not None:
        _current.run(name, manual=True)


def outbox_job(force: bool = False) -> None:
    """Retry queued notifications (an internal job, not kept in the job store)."""
    if _current is not None:
        _current.deliver_outbox(force=force)


def trigger(schedule: Schedule) -> BaseTrigger:
    """Return the APScheduler trigger of a schedule (UTC)."""
    jitter = int(schedule.jitter) or None
    if schedule.cron:
        cron = CronTrigger.from_crontab(schedule.cron, timezone=UTC)
        cron.jitter = jitter  # from_crontab takes no jitter; the trigger honours it
        return cron
    assert schedule.every is not None
    return IntervalTrigger(seconds=max(1.0, schedule.every), jitter=jitter, timezone=UTC)


class Daemon:
    """Schedules and runs the targets of one configuration file."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config: Config = load(config_path)
        self.scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(
                url=f"sqlite:///{self.config.archives / JOBSTORE}"),
                "internal": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(self.config.max_concurrent_crawls),
                       "internal": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": MISFIRE_GRACE},
            timezone=UTC)
        self._running: dict[str, tuple[asyncio.AbstractEventLoop, Crawl]] = {}
        self._asked: set[str] = set()  # run-now runs asked for and not yet over
        self._manual: list[threading.Thread] = []  # run-now threads when not scheduling
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Register the jobs, resume unfinished crawls first, and start scheduling."""
        global _current
        _current = self
        self.config.archives.mkdir(parents=True, exist_ok=True)
        self.scheduler.start(paused=True)
        self._sync_jobs(self.config)
        self._resume_unfinished()
        # At the start every queued notification is tried at once (the daemon may have been
        # down for long; its receiver may be back), then each when its back-off runs out.
        self.scheduler.add_job(outbox_job, kwargs={"force": True}, id="outbox-start",
                               name="outbox at start", jobstore="internal",
                               executor="internal", next_run_time=datetime.now(UTC))
        self.scheduler.add_job(outbox_job, IntervalTrigger(seconds=self.config.outbox_interval),
                               id="outbox", name="outbox", jobstore="internal",
                               executor="internal")
        self.scheduler.resume()
        log.info("daemon started: %d target(s), at most %d crawl(s) at once",
                 len(self.config.targets), self.config.max_concurrent_crawls)

    def stop(self) -> None:
        """Stop scheduling; running crawls checkpoint and end; wait for them."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("stopping: no new crawls; running crawls finish in-flight requests")
        scheduling = self.scheduler.running
        if scheduling:
            self.scheduler.pause()
        with self._lock:
            for loop, crawl in self._running.values():
                loop.call_soon_threadsafe(crawl.request_stop)
            manual = list(self._manual)
        if scheduling:
            self.scheduler.shutdown(wait=True)
        for thread in manual:
            thread.join()
        log.info("daemon stopped")

    def running(self) -> set[str]:
        """Return the targets this process is running now."""
        with self._lock:
            return set(self._running) | set(self._asked)

    def run_now(self, name: str) -> str:
        """Start a run of a configured target now (the dashboard's "run now"), in the
        scheduler's pool if it schedules, else in a thread of its own; return what was done,
        as a sentence. Refused when the target is not configured or a run of it is on."""
        if name not in self.config.targets:
            return f"{name} is not in {self.config_path.name}: only configured targets run here"
        if self._stopping.is_set():
            return "not started: the daemon is stopping"
        with self._lock:
            if name in self._running or name in self._asked or target_is_locked(
                    self.config.archives, name):
                return f"not started: a run of {name} is in progress"
            self._asked.add(name)
        if self.scheduler.running:
            self.scheduler.add_job(run_now_job, args=[name], id=f"now-{name}",
                                   name=f"{name} (run now)", jobstore="internal",
                                   next_run_time=datetime.now(UTC), replace_existing=True)
            return f"{name}: run started (in the daemon's pool of "\
                   f"{self.config.max_concurrent_crawls})"
        thread = threading.Thread(target=self.run, args=(name,), kwargs={"manual": True},
                                  name=f"run-{name}", daemon=True)
        with self._lock:
            self._manual = [t for t in self._manual if t.is_alive()] + [thread]
        thread.start()
        return f"{name}: run started"

    def reload(self) -> bool:
        """Apply a changed configuration file; keep the old one if the new one is invalid."""
        try:
            new = load(self.config_path)
        except ConfigError as exc:
            log.error("configuration not reloaded, the old one stays in force: %s", exc)
            return False
        if new.archives != self.config.archives:
            log.error("configuration not reloaded: changing archives (%s -> %s) needs a "
                      "restart", self.config.archives, new.archives)
            return False
        added = set(new.targets) - set(self.config.targets)
        removed = set(self.config.targets) - set(new.targets)
        self.config = new
        self._sync_jobs(new)
        log.info("configuration reloaded: %d target(s); added %s; removed %s",
                 len(new.targets), sorted(added) or "none", sorted(removed) or "none")
        return True

    def _sync_jobs(self, config: Config) -> None:
        """Make the job store match the configuration, keeping unchanged schedules' next
        run times (so a restart does not reset them)."""
        jobs = {job.id: job for job in self.scheduler.get_jobs(jobstore="default")}
        for name, target in config.targets.items():
            job = jobs.pop(name, None)
            if target.schedule is None:
                if job is not None:
                    job.remove()
                continue
            wanted = trigger(target.schedule)
            if job is None:
                self.scheduler.add_job(run_job, wanted, args=[name], id=name, name=name)
                log.info("scheduled %s: %s", name, target.schedule.describe())
            elif str(job.trigger) != str(wanted) or getattr(job.trigger, "jitter", None) != \
                    getattr(wanted, "jitter", None):
                job.reschedule(wanted)
                log.info("rescheduled %s: %s", name, target.schedule.describe())
        for job in jobs.values():
            job.remove()
            log.info("unscheduled %s (no longer configured)", job.id)

    def deliver_outbox(self, *, force: bool = False) -> None:
        """Send due notifications (``force``: all queued ones) of every configured target
        that no run holds (a run delivers its own target's: two senders of one message would
        send it twice)."""
        catalog = Catalog.open(self.config.archives)
        try:
            for name, target in self.config.targets.items():
                if self._stopping.is_set():
                    return
                try:
                    lock = lock_target(self.config.archives, name)
                except CrawlInProgress:
                    continue
                try:
                    done = outbox.deliver_due(catalog, notify.send_one, target=name,
                                              urls=target.scheduled.detect.notify,
                                              expiry=target.scheduled.detect.notify_expiry,
                                              force=force)
                finally:
                    lock.close()
                if done.delivered or done.expired:
                    log.info("%s: outbox: %d queued notification(s) delivered, %d expired",
                             name, done.delivered, done.expired)
        finally:
            catalog.close()

    def _resume_unfinished(self) -> None:
        """Run at once every target whose last run was interrupted or killed (in its crawl
        or in a phase after it: detection, report, notification)."""
        catalog = Catalog.open(self.config.archives)
        try:
            for name in self.config.targets:
                last = catalog.latest_crawl(name)
                job = self.scheduler.get_job(name)
                if (last is not None and last.resumable and job is not None
                        and not target_is_locked(self.config.archives, name)):
                    log.info("%s: crawl %s did not finish; resuming it now", name,
                             last.crawl_id)
                    job.modify(next_run_time=datetime.now(UTC))
        finally:
            catalog.close()

    # -- one run ---------------------------------------------------------------------------

    def run(self, name: str, *, manual: bool = False) -> None:
        """Run one target (crawl or resume, detect, report, notify) in this thread.

        A scheduled run of a target whose schedule is paused (from the dashboard) is
        skipped, and the log says so; a ``manual`` one (run now) runs all the same."""
        try:
            self._run(name, manual=manual)
        finally:
            with self._lock:
                self._asked.discard(name)

    def _run(self, name: str, *, manual: bool) -> None:
        target = self.config.targets.get(name)
        if target is None or self._stopping.is_set():
            return
        if not manual and paused_since(self.config.archives, name) is not None:
            log.info("%s: scheduled run skipped: its schedule is paused (resume it in the "
                     "dashboard)", name)
            return
        if target_is_locked(self.config.archives, name):
            # A manual run of the same target (`crawler archive`, `crawler run`) is on:
            # wait for it to finish rather than skip this run or fail it.
            log.info("%s: another run of this target is in progress; waiting for it", name)
            while target_is_locked(self.config.archives, name):
                if self._stopping.wait(5.0):
                    return
        catalog = Catalog.open(self.config.archives)
        try:
            last = catalog.latest_crawl(name)
        finally:
            catalog.close()
        resume = last if last is not None and last.resumable else None
        loop = asyncio.new_event_loop()

        def started(crawl: Crawl) -> None:
            with self._lock:
                self._running[name] = (loop, crawl)
            if self._stopping.is_set():
                crawl.request_stop()

        log.info("%s: %s crawl", name, "resuming the" if resume else "starting a")
        try:
            while True:
                try:
                    run = loop.run_until_complete(run_target(target.scheduled, resume=resume,
                                                             on_start=started))
                    break
                except CrawlInProgress:  # the outbox pass (or a manual run) holds it a moment
                    if self._stopping.wait(1.0):
                        return
        except CrawlerError as exc:
            log.error("%s: crawl not run: %s", name, exc)
            return
        except Exception:  # one target's bug must not stop the daemon
            log.exception("%s: crawl failed with an internal error", name)
            return
        finally:
            with self._lock:
                self._running.pop(name, None)
            loop.close()
        summary = run.report["summary"] if run.report else {}
        shortfall = run.outcome.shortfall
        log.info("%s: crawl %s ended %s (stopped: %s; exit %s)%s; %s transitions, %s new "
                 "alerts", name, run.outcome.crawl_id, run.outcome.status,
                 run.outcome.stop_reason.value, run.exit_code.name.lower(),
                 "; not fetched: " + ", ".join(f"{k} {v}" for k, v in shortfall.items())
                 if shortfall else "", summary.get("transitions", 0),
                 summary.get("new_alerts", 0))
        for rescued in run.rescues:
            urls = rescued.report["urls"]
            log.warning("%s: dark (%s); rescue %s from web archives ended %s: %d URLs found, "
                        "%d rescued, %d already held, %d missing, %d source failed",
                        name, run.dark, rescued.rescue_id, rescued.status, urls["found"],
                        urls["rescued"], urls["held"], urls["missing"], urls["failed"])


def paused_since(archives: Path, name: str) -> str | None:
    """Return since when a target's schedule is paused (None: it is not)."""
    catalog = Catalog.open(archives, read_only=True)
    try:
        row = catalog.db.execute("SELECT paused FROM target_controls WHERE target=?",
                                 (name,)).fetchone()
    finally:
        catalog.close()
    return str(row[0]) if row else None


def next_runs(archives: Path) -> dict[str, datetime | None]:
    """Return each scheduled target's next run time from the job store (for status)."""
    path = archives / JOBSTORE
    if not path.exists():
        return {}
    reader = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(
        url=f"sqlite:///{path}")}, timezone=UTC)
    reader.start(paused=True)  # paused: reads the store, runs nothing
    try:
        return {job.id: job.next_run_time for job in reader.get_jobs()}
    finally:
        reader.shutdown(wait=False)
