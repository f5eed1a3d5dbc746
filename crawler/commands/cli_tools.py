"""The commands that work on what is archived: `crawler wacz`, `replay`, `diff` and `verify`.

Registered on the main group by ``cli.py``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from crawler.archive.catalog import Catalog
from crawler.capture.settings import ARCHIVES, detect_settings_of
from crawler.core.errors import ConfigError, CrawlerError, ExitCode

if TYPE_CHECKING:
    from crawler.schedule.config import Config


@contextlib.contextmanager
def open_catalog(output: Path, *, read_only: bool = False) -> Iterator[Catalog]:
    """Open the catalog of an archive root, turning errors into a clean exit;
    ``read_only`` for commands that only read (they work on a read-only root)."""
    try:
        catalog = Catalog.open(output, read_only=read_only)
    except CrawlerError as exc:
        click.echo(f"crawler: error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    try:
        yield catalog
    finally:
        catalog.close()


def _port(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if not 0 < value < 65536:
        raise click.BadParameter("must be a TCP port (1-65535)")
    return value


@click.command()
@click.argument("target")
@click.option("--crawl", "crawl_id", help="Package only this crawl (default: every crawl).")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=ARCHIVES, show_default=True, help="Archive root.")
@click.option("--file", "dest", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the WACZ (default: OUTPUT/TARGET/TARGET-….wacz).")
def wacz(target: str, crawl_id: str | None, output: Path, dest: Path | None) -> None:
    """Package TARGET's crawls (or one) as a WACZ 1.1.1 file for ReplayWeb.page and pywb.

    A crawl whose revisits refer to earlier crawls gets copies of those original records,
    so the package replays on its own.
    """
    from crawler.archive.wacz import packable, wacz_path, write_wacz

    with open_catalog(output, read_only=True) as catalog:
        crawls = catalog.crawls(target)
        if crawl_id is not None:
            crawls = [c for c in crawls if c.crawl_id == crawl_id]
        else:
            crawls = [c for c in crawls if packable(c)]
        if not crawls:
            click.echo(f"crawler: no {'crawl ' + crawl_id if crawl_id else 'finished crawl'} "
                       f"of {target} under {output}", err=True)
            sys.exit(int(ExitCode.CONFIG))
        try:
            path = write_wacz(catalog, crawls, dest or wacz_path(
                output, target, crawls, whole=crawl_id is None))
        except CrawlerError as exc:
            click.echo(f"crawler: error: {exc}", err=True)
            sys.exit(int(exc.exit_code))
    click.echo(str(path))


@click.command()
@click.argument("target", required=False)
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=ARCHIVES, show_default=True, help="Archive root.")
@click.option("--port", type=int, default=8080, show_default=True, callback=_port,
              help="Port on 127.0.0.1 that pywb listens on.")
def replay(target: str | None, output: Path, port: int) -> None:
    """Serve TARGET's crawls (or every target's) through pywb on 127.0.0.1 until Ctrl-C.

    pywb runs from its own virtual environment: $PYWB_VENV, ./.venv-pywb or
    ~/.local/share/crawler/pywb-venv, created there on first use.
    """
    from crawler.archive.replay import build_collections, pywb_bin, start_wayback

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops pywb as Ctrl-C does

    signal.signal(signal.SIGTERM, stop)
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open_catalog(output, read_only=True) as catalog:
            targets = [target] if target else sorted({c.target for c in catalog.crawls()})
            root = build_collections(catalog, output, targets)
            reports = {name: _latest_report(catalog, name) for name in targets}
        proc = start_wayback(root, port, pywb_bin(log=lambda m: click.echo(m, err=True)))
        base = f"http://127.0.0.1:{port}"
        for name in targets:
            click.echo(f"Replaying {name}: {base}/{name}/  (a page: {base}/{name}/*/<original "
                       "URL>)")
            report = reports.get(name)
            if report is not None:
                click.echo(f"  latest takedown report, its links on this port: "
                           f"{report.as_uri()}?replay={base}")
        click.echo("Press Ctrl-C to stop.", err=True)
        code = proc.wait()
    except CrawlerError as exc:
        click.echo(f"crawler: error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return
    click.echo(f"crawler: pywb stopped on its own (exit code {code})", err=True)
    sys.exit(int(ExitCode.INTERNAL))


def _latest_report(catalog: Catalog, target: str) -> Path | None:
    """Return the report.html of the target's latest crawl that has one."""
    for crawl in reversed(catalog.crawls(target)):
        path = crawl.directory / "report.html"
        if path.is_file():
            return path
    return None


@click.command()
@click.argument("target")
@click.option("--from", "from_id", help="Compare with this crawl (default: the one before).")
@click.option("--to", "to_id", help="The crawl to check (default: the latest).")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=ARCHIVES, show_default=True, help="Archive root.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def diff(target: str, from_id: str | None, to_id: str | None, output: Path,
         as_json: bool) -> None:
    """Compare two crawls of TARGET from the catalog: what happened to every URL.

    Offline: nothing is fetched and no state changes; the probes and rechecks of the crawl
    (if it ran them) are used. Each URL is compared with its last good capture.
    """
    from crawler.detection.comparison import compare
    from crawler.reporting import report

    with open_catalog(output, read_only=True) as catalog:
        crawls = catalog.crawls(target)
        # By default the latest crawl: a rescue (rebuilt from web archives) is compared
        # with, not compared; --to names one if that is wanted.
        live = [c for c in crawls if c.kind == "crawl"]
        after = next((c for c in crawls if c.crawl_id == to_id), None) if to_id else (
            live[-1] if live else None)
        before = next((c for c in crawls if c.crawl_id == from_id), None) if from_id else None
        if after is None or (from_id and before is None):
            click.echo(f"crawler: no such crawl of {target} under {output}", err=True)
            sys.exit(int(ExitCode.CONFIG))
        # the rules the crawl's own comparison used (ignore selectors and regexes): the same
        # crawl pair must give the same classes here as in its report
        rules = detect_settings_of(after.settings).rules
        comparison = compare(catalog, after, before=before, rules=rules)
        data = report.build(catalog, comparison, [])
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for line in report.summary_lines(data)[:1]:
        click.echo(line)
    for finding in data["findings"]:
        click.echo(f"  {finding['class']:22} {finding['url']}  {finding['detail']}")


@click.command()
@click.argument("target", required=False)
@click.option("--crawl", "crawl_id", help="Check only this crawl of TARGET.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=ARCHIVES, show_default=True, help="Archive root.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(target: str | None, crawl_id: str | None, output: Path, as_json: bool) -> None:
    """Prove an archive whole: fixity and consistency of TARGET's crawls (or of every target).

    Reads every WARC to its end (gzip CRC, records cut short, and block and payload digests
    as `warcio check` checks them),
    checks that every catalog row points at its record, that every revisit's original is
    present and intact, that every crawl's index matches the catalog, and every WACZ's
    hashes. Exits 7 if anything is wrong, 0 if not. Nothing is changed.
    """
    from crawler.archive.layout import target_is_locked
    from crawler.archive.verify import iter_lines, verify_archive

    if crawl_id is not None and target is None:
        raise click.UsageError("--crawl needs a TARGET")
    with open_catalog(output, read_only=True) as catalog:
        known = {c.target for c in catalog.crawls()}
        if target is not None and target not in known:
            click.echo(f"crawler: no crawls of {target!r} under {output}", err=True)
            sys.exit(int(ExitCode.CONFIG))
        if crawl_id is not None and catalog.crawl(target or "", crawl_id) is None:
            click.echo(f"crawler: no crawl {crawl_id} of {target!r} under {output}", err=True)
            sys.exit(int(ExitCode.CONFIG))
        report = verify_archive(
            catalog, target=target, crawl_id=crawl_id,
            is_running=lambda row: row.status == "running" and target_is_locked(
                catalog.root, row.target),
            progress=None if as_json else (lambda m: click.echo(m, err=True)))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        for line in iter_lines(report):
            click.echo(line)
    sys.exit(int(ExitCode.OK if report.ok else ExitCode.DAMAGED))


@click.command(name="outbox")
@click.argument("target", required=False)
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=ARCHIVES, show_default=True, help="Archive root.")
@click.option("--send", is_flag=True,
              help="Try every queued notification now, without waiting for its back-off "
                   "(e.g. once a webhook is back).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def outbox_command(target: str | None, output: Path, send: bool, as_json: bool) -> None:
    """Show notifications not delivered yet (of TARGET), and optionally send them now.

    Undelivered notifications are kept and retried with back-off by every later run of
    their target and by the daemon, until delivered or expired (`notify_expiry`).
    """
    from crawler.reporting import notify, outbox

    with open_catalog(output, read_only=not send) as catalog:
        done = None
        if send:
            done, running = outbox.deliver_now(catalog, output, target, notify.send_one)
            for name in running:
                click.echo(f"crawler: {name} is running; its run delivers its own "
                           "notifications", err=True)
        queued = outbox.pending(catalog, target)
    if as_json:
        data: dict[str, Any] = {"queued": [
            {"target": q.target, "destination": q.destination, "title": q.title,
             "created": q.created, "attempts": q.attempts, "next_attempt": q.next_attempt,
             "last_error": q.last_error} for q in queued]}
        if done is not None:
            data["sent"] = {"delivered": done.delivered, "failed": done.failed,
                            "expired": done.expired}
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        if done is not None:
            click.echo(f"delivered {done.delivered}, failed {done.failed}, expired "
                       f"{done.expired}")
        for q in queued:
            click.echo(f"{q.target}  {q.destination}  queued {q.created[:19]}  attempts "
                       f"{q.attempts}  next {q.next_attempt[:19]}  {q.title}"
                       + (f"\n    last error: {q.last_error}" if q.last_error else ""))
        if not queued:
            click.echo("No notifications waiting.")
    if done is not None and done.failed:
        sys.exit(int(ExitCode.UNDELIVERED))


@click.command()
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=ARCHIVES, show_default=True, help="Archive root.")
@click.option("--force", is_flag=True,
              help="Rebuild even a catalog that is not damaged (what only it held is lost: "
                   "see below).")
def reindex(output: Path, force: bool) -> None:
    """Rebuild the catalog from the WARC files (the source of truth) after it was damaged.

    The old catalog is kept beside the new one (catalog.sqlite3.damaged-TIME). Every crawl
    directory under the root is entered in order with every record of its WARCs, and
    detection is replayed offline to rebuild URL states and events. Not in any WARC, so
    not rebuilt: URLs deliberately not fetched (robots.txt, scope, traps), queued
    notifications, and the queue of a crawl that had not finished (it becomes incomplete,
    stop reason `reindexed`).
    """
    from crawler.archive.catalog import CATALOG_NAME
    from crawler.jobs.reindex import reindex as rebuild

    try:
        result = rebuild(output, force=force,
                         progress=lambda line: click.echo(f"  {line}", err=True))
    except CrawlerError as exc:
        click.echo(f"crawler: {'' if exc.exit_code == ExitCode.USAGE else 'error: '}{exc}",
                   err=True)
        sys.exit(int(exc.exit_code))
    for aside in result.moved_aside:
        click.echo(f"old catalog kept as {aside}")
    click.echo(f"rebuilt {output / CATALOG_NAME}: {len(result.crawls)} crawl(s), "
               f"{result.records} records")
    unfinished = [f"{t}/{c}" for t, c, status, _ in result.crawls if status == "incomplete"]
    if unfinished:
        click.echo("  incomplete (finished with a shortfall, or unfinished and their queue "
                   f"lost): {', '.join(unfinished)}")
    if result.unreadable:
        click.echo(f"  {len(result.unreadable)} WARC file(s) could not be read to the end "
                   "(records before the damage were entered): " + ", ".join(result.unreadable))
        click.echo("  run `crawler verify` for the details")
        sys.exit(int(ExitCode.DAMAGED))


def load_or_exit(path: Path) -> Config:
    """Load a configuration, or print its error (file, key, reason) and exit 3.

    A file that names notification URLs (tokens, passwords) and that other users can read
    is loaded, with a warning saying how to fix it.
    """
    from crawler.schedule.config import load

    try:
        config = load(path)
    except ConfigError as exc:
        click.echo(f"crawler: config error: {exc}", err=True)
        sys.exit(int(ExitCode.CONFIG))
    if any(t.settings.detect.notify for t in config.targets.values()):
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = 0
        if mode & 0o077:
            click.echo(f"crawler: warning: {path} holds notification URLs (tokens, passwords) "
                       f"and other users can read it (mode {mode & 0o777:o}): "
                       f"chmod 600 {path}", err=True)
    return config
