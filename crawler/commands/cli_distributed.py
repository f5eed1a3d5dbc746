"""`crawler worker`, `merge`, `stop` and the `--redis` side of `archive` and `status`: a
crawl shared by workers on several machines (see crawler/jobs/distributed.py)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click
from rich.console import Console

from crawler.capture.settings import ARCHIVES, CrawlSettings
from crawler.commands.runner import run_with_ui, setup_logging
from crawler.core.errors import CrawlerError, ExitCode


def run_start(settings: CrawlSettings, url: str, name: str | None, *, lease: float,
              quiet: bool, as_json: bool) -> int:
    """Start a distributed crawl and work on it here (`crawler archive … --redis URL`)."""
    from crawler.jobs import distributed  # here: it loads redis (~16 MB)
    return run_with_ui(settings, quiet=quiet, as_json=as_json,
                       job=lambda on_start: distributed.start(settings, url, name, on_start,
                                                              lease=lease))


@click.command()
@click.argument("target")
@click.option("--redis", "redis_url", required=True, metavar="redis://HOST:PORT/N",
              help="The Redis holding the crawl (the one given to `crawler archive`).")
@click.option("--name", help="This worker's name (default: HOST-PID); its folder is "
              "OUTPUT/.workers/TARGET-CRAWL/NAME.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=ARCHIVES, show_default=True, help="Archive root this worker writes under.")
@click.option("--quiet", "-q", is_flag=True, help="Only print warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def worker(target: str, redis_url: str, name: str | None, output: Path, quiet: bool,
           as_json: bool) -> None:
    """Join TARGET's distributed crawl in progress: lease URLs from its queue, fetch them
    with the crawl's settings, and write WARCs of this worker's own.

    Politeness per host holds across all workers. Stop it with Ctrl-C (it finishes what it
    holds) or kill it: URLs it held go back to the queue when their lease runs out.
    """
    from crawler.jobs import distributed  # here: it loads redis (~16 MB)
    placeholder = CrawlSettings(seeds=("http://worker.invalid/",), output=output, target=target)
    sys.exit(run_with_ui(placeholder, quiet=quiet, as_json=as_json,
                         job=lambda on_start: distributed.join(redis_url, target, output, name,
                                                               on_start)))


@click.command()
@click.argument("target")
@click.option("--redis", "redis_url", metavar="URL",
              help="The Redis holding the crawl: its id, settings, counts and workers.")
@click.option("--crawl", "crawl_id", help="The crawl id (needed without --redis).")
@click.option("--from", "sources", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A worker folder copied from another machine (repeatable); the workers "
                   "under OUTPUT/.workers/TARGET-CRAWL/ are always read.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=ARCHIVES, show_default=True, help="Archive root.")
@click.option("--quiet", "-q", is_flag=True, help="Only print warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def merge(target: str, redis_url: str | None, crawl_id: str | None, sources: tuple[Path, ...],
          output: Path, quiet: bool, as_json: bool) -> None:
    """Enter a distributed crawl's records into TARGET's catalog as one crawl, then compare
    it with the previous crawl, report and package it, as after any crawl.

    The worker that started the crawl does this by itself when the crawl ends; run it by
    hand when that worker was lost, or with folders of workers from other machines.
    """
    from crawler.jobs import merging  # here: it loads redis (~16 MB)
    placeholder = CrawlSettings(seeds=("http://merge.invalid/",), output=output, target=target)
    sys.exit(run_with_ui(placeholder, quiet=quiet, as_json=as_json, job=lambda _on_start:
                         merging.merge(target, output, url=redis_url, crawl_id=crawl_id,
                                           extra=list(sources))))


@click.command()
@click.argument("target")
@click.option("--redis", "redis_url", required=True, metavar="URL", help="The Redis holding "
              "the crawl.")
@click.option("--reason", default="crawler stop", show_default=True,
              help="Why (shown by every worker and by status).")
def stop(target: str, redis_url: str, reason: str) -> None:
    """Stop every worker of TARGET's distributed crawl gracefully: each finishes the URLs it
    holds; the starting worker then merges what was done (incomplete, with the URLs left)."""
    from crawler.jobs import distributed  # here: it loads redis (~16 MB)
    try:
        crawl_id = asyncio.run(distributed.stop(redis_url, target, reason))
    except CrawlerError as exc:
        click.echo(f"crawler: error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    click.echo(f"asked every worker of {target}/{crawl_id} to stop (they see it within "
               f"{distributed.HEARTBEAT_SECONDS:.0f} s)")


def show_status(url: str, target: str | None, as_json: bool) -> None:
    """Print a distributed crawl's state (`crawler status TARGET --redis URL`)."""
    from crawler.jobs import distributed  # here: it loads redis (~16 MB)
    if not target:
        raise click.UsageError("--redis needs the TARGET")
    setup_logging(Console(stderr=True), True)
    try:
        found = asyncio.run(distributed.status(url, target))
    except CrawlerError as exc:
        click.echo(f"crawler: error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
    else:
        click.echo("\n".join(distributed.status_lines(found)))
    sys.exit(int(ExitCode.OK))
