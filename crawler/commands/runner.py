"""Run one target from a command (`crawler archive`, `resume`, `demo`, `run`): logging,
the live progress display, signal handling, and the end summary; return the exit code.

``asyncio.run`` and the signal handlers live here, under the commands and above the pipeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.logging import RichHandler

from crawler.archive.catalog import CrawlRow
from crawler.capture.settings import ARCHIVES, CrawlSettings
from crawler.commands.progress import live_progress, summary_lines
from crawler.core.errors import CrawlerError, ExitCode
from crawler.crawl.engine import Crawl, CrawlOutcome

if TYPE_CHECKING:
    from crawler.jobs.distributed import WorkerEnd
    from crawler.jobs.pipeline import TargetRun

Job = Callable[[Callable[[Crawl], None]], Awaitable["TargetRun | WorkerEnd"]]


def run_with_ui(settings: CrawlSettings, *, quiet: bool, as_json: bool,
                replay_help: bool = False, resume: CrawlRow | None = None,
                json_into: list[dict[str, Any]] | None = None, job: Job | None = None) -> int:
    """Run a crawl with logging, progress and signals; print the summary; return the code.

    With ``as_json``, the summary is one JSON document on stdout, or, with ``json_into``, is
    appended there for the caller to print as part of its own single document.
    """
    from crawler.reporting.report import (
        summary_lines as report_lines,  # not in the parser processes
    )
    from crawler.rescue.report import summary_lines as rescue_lines
    console = Console(stderr=True)
    setup_logging(console, quiet)
    if resume is not None and not quiet and not as_json:
        click.echo(f"Resuming crawl {resume.target}/{resume.crawl_id}", err=True)
    try:
        ran = asyncio.run(_crawl_with_ui(settings, console, resume=resume,
                                         show_progress=console.is_terminal and not quiet
                                         and not as_json, job=job))
    except CrawlerError as exc:
        click.echo(f"crawler: error: {exc}", err=True)
        return int(exc.exit_code)
    from crawler.jobs.distributed import WorkerEnd, worker_exit, worker_json, worker_lines
    if isinstance(ran, WorkerEnd):  # a worker of a distributed crawl that goes on
        if as_json:
            click.echo(json.dumps(worker_json(ran), indent=2, ensure_ascii=False))
        elif not quiet:
            click.echo("\n".join(worker_lines(ran)))
        return int(worker_exit(ran))
    run = ran
    outcome = run.outcome
    if as_json:
        data = _outcome_json(outcome)
        data["exit_status"], data["exit_code"] = run.exit_code.name.lower(), int(run.exit_code)
        if run.report is not None and run.report_paths is not None:
            data["takedown"] = {"report": str(run.report_paths[0]),
                                "html": str(run.report_paths[1]),
                                "summary": run.report["summary"], "events": run.report["events"]}
        if run.dark is not None:
            data["dark"] = {"why": run.dark, "rescues": [r.report for r in run.rescues]}
        if json_into is None:
            click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            json_into.append(data)
    elif not quiet:
        for line in summary_lines(outcome):
            click.echo(line)
        if run.report is not None and run.report_paths is not None:
            for line in report_lines(run.report):
                click.echo(line)
            click.echo(f"  report: {run.report_paths[1]}")
        if run.dark is not None:
            click.echo(f"  the site is dark: {run.dark}")
            for rescued in run.rescues:
                for line in rescue_lines(rescued.report):
                    click.echo(line)
        if replay_help:
            click.echo(replay_instructions(outcome))
    return int(run.exit_code)


async def _crawl_with_ui(settings: CrawlSettings, console: Console, *,
                         show_progress: bool, resume: CrawlRow | None = None,
                         job: Job | None = None) -> TargetRun | WorkerEnd:
    """Run the crawl; first SIGINT/SIGTERM stops gracefully, a second exits at once."""
    from crawler.jobs.pipeline import run_target  # the parser processes re-import this module
    loop = asyncio.get_running_loop()
    box: list[Crawl] = []

    def on_signal(signum: int) -> None:
        if box and not box[0].stopping:
            console.print(f"[yellow]{signal.Signals(signum).name}: finishing in-flight requests "
                          "and closing WARCs (send again to quit at once)[/]")
            box[0].request_stop()
        else:
            console.print("[red]second signal: exiting now[/]")
            os._exit(int(ExitCode.INTERRUPTED))

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    def run() -> Awaitable[TargetRun | WorkerEnd]:
        if job is not None:
            return job(box.append)
        return run_target(settings, resume=resume, on_start=box.append)

    try:
        if show_progress:
            async with live_progress(console, box):
                return await run()
        return await run()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _outcome_json(outcome: CrawlOutcome) -> dict[str, Any]:
    """Return the --json summary."""
    return {
        "crawl_id": outcome.crawl_id,
        "target": outcome.target,
        "directory": str(outcome.directory),
        "exit_status": outcome.exit_code.name.lower(),
        "exit_code": int(outcome.exit_code),
        "status": outcome.status,
        "shortfall": outcome.shortfall,
        "stop_reason": outcome.stop_reason.value,
        "warcs": [str(p) for p in outcome.warcs],
        "index": str(outcome.index),
        "pages": str(outcome.pages),
        "wacz": str(outcome.wacz) if outcome.wacz else None,
        "stats": outcome.stats,
    }


def replay_instructions(outcome: CrawlOutcome) -> str:
    """Return how to open a crawl in pywb and ReplayWeb.page."""
    root = outcome.directory.parent.parent
    opt = "" if root == ARCHIVES else f" --output {root}"
    wacz = outcome.wacz or f"(first: crawler wacz {outcome.target} --crawl {outcome.crawl_id}{opt})"
    return f"""
How to replay it:
  pywb, every crawl of the target:   crawler replay {outcome.target}{opt}
      (serves on http://127.0.0.1:8080/{outcome.target}/ and installs pywb in its own
      virtual environment on first use)
  ReplayWeb.page (https://replayweb.page or the desktop app): open the WACZ
      {wacz}
  The dashboard (events, diffs, every capture of a URL, name search, replay):
      crawler serve{" --archives " + str(root) if opt else ""}
"""


def setup_logging(console: Console, quiet: bool) -> None:
    """Log to stderr through rich, so log lines and the live display do not collide."""
    handler = RichHandler(console=console, show_path=False, show_time=False, markup=False)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, handlers=[handler],
                        format="%(message)s", force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
