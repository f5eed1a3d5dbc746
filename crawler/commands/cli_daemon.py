"""Commands for configured targets: `crawler daemon`, `run`, `config check`, and the
per-target view of `crawler status --config`.

Registered on the main group by ``cli.py``. Signal handlers for the daemon live here.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from crawler.archive.catalog import Catalog
from crawler.commands.cli_tools import load_or_exit
from crawler.commands.cli_web import (
    address,
    bind,
    serve_in_thread,
    web_options,
    web_settings,
)
from crawler.commands.runner import run_with_ui
from crawler.core.errors import CrawlerError, ExitCode
from crawler.detection.names import label

if TYPE_CHECKING:
    from crawler.schedule.config import Config

_CONFIG = click.Path(exists=False, dir_okay=False, path_type=Path)


class _LogfmtFormatter(logging.Formatter):
    """One line per event: ``time=… level=… logger=… thread=… msg="…"`` (grep- and
    parser-friendly, for a daemon that runs for months)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return (f"time={when} level={record.levelname.lower()} logger={record.name} "
                f"thread={record.threadName} msg={json.dumps(message, ensure_ascii=False)}")


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file only its owner can read: a daemon's log may name what it watches
    and where it reports (notification URLs are redacted, but the log is private anyway)."""

    def _open(self):  # type: ignore[no-untyped-def]
        stream = super()._open()
        os.chmod(self.baseFilename, 0o600)
        return stream


def setup_daemon_logging(config: Config) -> None:
    """Log structured lines to stderr and to a rotating file in the archive root."""
    config.archives.mkdir(parents=True, exist_ok=True)
    formatter = _LogfmtFormatter()
    handlers: list[logging.Handler] = [
        logging.StreamHandler(sys.stderr),
        _PrivateRotatingFileHandler(config.archives / config.log_file,
                                    maxBytes=10 * 1024 * 1024, backupCount=5,
                                    encoding="utf-8"),
    ]
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    for noisy in ("httpx", "httpcore", "apscheduler.executors", "apscheduler.scheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.command()
@click.option("--config", "config_path", type=_CONFIG, required=True,
              help="TOML file of targets (see docs/config.md).")
@click.option("--web", is_flag=True, help="Also serve the dashboard (see `crawler serve`).")
@web_options
def daemon(config_path: Path, web: bool, host: str, port: int, token: str | None,
           read_only: bool, no_replay: bool) -> None:
    """Recrawl the configured targets on their schedules until stopped.

    SIGTERM or SIGINT: stop scheduling; running crawls finish their in-flight requests, close
    their WARCs and resume at the next start. SIGHUP: reload the configuration (an invalid
    one is logged and ignored). Logs go to stderr and ARCHIVES/crawler.log. With --web, the
    dashboard is served too (127.0.0.1:8008 by default), and its Run now and Pause act on
    this daemon.
    """
    from crawler.schedule.daemon import Daemon

    config = load_or_exit(config_path)
    settings = web_settings(config.archives, host, port, token, read_only) if web else None
    setup_daemon_logging(config)
    stop, reload = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    web_server = replayer = None
    try:
        service = Daemon(config_path)
        if settings is not None:  # bound before anything runs: a port in use stops here
            web_server, replayer = bind(settings, service, replay=not no_replay)
        service.start()
    except CrawlerError as exc:
        logging.getLogger("crawler.daemon").error("cannot start: %s", exc)
        sys.exit(int(exc.exit_code))
    if web_server is not None and settings is not None:
        serve_in_thread(web_server, replayer)
        logging.getLogger("crawler.daemon").info("dashboard on %s", address(settings))
    while not stop.is_set():
        stop.wait(0.5)
        if reload.is_set():
            reload.clear()
            service.reload()
    service.stop()
    if web_server is not None:
        web_server.stop()
        if replayer is not None:
            replayer.stop()


@click.command(name="run")
@click.argument("target")
@click.option("--config", "config_path", type=_CONFIG, required=True,
              help="TOML file of targets.")
@click.option("--quiet", "-q", is_flag=True, help="Only print warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
def run_command(target: str, config_path: Path, quiet: bool, as_json: bool) -> None:
    """Run one configured TARGET now (a one-off run: suspected takedowns are re-checked
    within the run). An interrupted or killed crawl of the target is resumed."""
    config = load_or_exit(config_path)
    if target not in config.targets:
        click.echo(f"crawler: config error: {config_path.name}: targets: no target named "
                   f"{target!r} (have: {', '.join(config.targets)})", err=True)
        sys.exit(int(ExitCode.CONFIG))
    catalog = Catalog.open(config.archives)
    try:
        last = catalog.latest_crawl(target)
    finally:
        catalog.close()
    # a run whose crawl ended but whose detection was cut short is finished by run_target
    resume = last if last is not None and last.crawl_resumable else None
    sys.exit(run_with_ui(config.targets[target].settings, quiet=quiet, as_json=as_json,
                  resume=resume))


@click.group(name="config")
def config_group() -> None:
    """Work with configuration files."""


@config_group.command(name="check")
@click.argument("file", type=_CONFIG)
def config_check(file: Path) -> None:
    """Validate FILE: every error names the file, the key and the reason (exit 3)."""
    config = load_or_exit(file)
    click.echo(f"{file}: OK, archives {config.archives}, "
               f"{len(config.targets)} target(s):")
    for name, target in config.targets.items():
        when = target.schedule.describe() if target.schedule else "not scheduled"
        click.echo(f"  {name}: {len(target.settings.seeds)} seed(s), "
                   f"scope {target.settings.scope.kind.value}, {when}")


def config_status(config_path: Path, as_json: bool) -> None:
    """Print each configured target's last crawl, result, open takedown events, next run."""
    from crawler.reporting.status import targets_report
    from crawler.schedule.daemon import next_runs

    config = load_or_exit(config_path)
    runs = next_runs(config.archives)
    catalog = Catalog.open(config.archives)
    try:
        report = targets_report(catalog, list(config.targets), runs)
    finally:
        catalog.close()
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    for name, item in report.items():
        state = item["state"] or "never crawled"
        click.echo(f"{name}: last crawl {item['last_crawl'] or '-'} ({state}); next run "
                   f"{item['next_run'] or 'not scheduled'}; {len(item['open_events'])} open "
                   "takedown event(s)")
        for event in item["open_events"][:20]:
            name = label(event)
            click.echo(f"    {event['state']:11} {event['class']:22} {event['url']}"
                       + (f" «{name}»" if name else "") + f" since {event['since'][:19]}"
                       + (f" (event {event['event']})" if event["event"] else ""))
        if len(item["open_events"]) > 20:
            click.echo(f"    … and {len(item['open_events']) - 20} more (--json lists all)")
