"""`crawler rescue`: rebuild a target from public web archives (see crawler/rescue/)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from crawler.capture import urls
from crawler.capture.settings import ARCHIVES
from crawler.commands.runner import setup_logging
from crawler.core.errors import CrawlerError, ExitCode
from crawler.rescue.report import summary_lines
from crawler.rescue.run import Rescue, RescueOutcome, RescueSettings, run_rescue
from crawler.rescue.sources import parse_source, window_bound


@click.command()
@click.argument("target")
@click.option("--source", "sources", multiple=True, required=True, metavar="URL[;OPTION=…]",
              help="An archive's replay address, e.g. https://web.archive.org/web or a pywb "
                   "collection http://HOST/COLL (repeatable; tried in this order). Options: "
                   "name=N, cdx=URL|none (none: TimeMaps per URL), timemap=URL, rate=R "
                   "(requests per second, default 1; 0: no limit).")
@click.option("--url", "prefix", help="Rescue every URL under this prefix.")
@click.option("--domain", help="Rescue every URL on this domain and its subdomains.")
@click.option("--from", "start", metavar="DATE", help="Only captures from DATE (YYYY[-MM[-DD]]).")
@click.option("--to", "end", metavar="DATE", help="Only captures up to DATE (included).")
@click.option("--latest/--all", "latest", default=True, show_default=True,
              help="Per URL the latest good capture in the window, or every good capture.")
@click.option("--concurrency", type=int, default=4, show_default=True,
              help="Captures fetched at once (each source keeps its own rate).")
@click.option("--attempts", type=int, default=5, show_default=True,
              help="Tries of one request to a source (429, 5xx, network errors).")
@click.option("--max-urls", type=int, default=0, help="Stop after deciding this many URLs.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=ARCHIVES, show_default=True, help="Archive root.")
@click.option("--quiet", "-q", is_flag=True, help="Only print warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print the rescue report as JSON.")
def rescue(target: str, sources: tuple[str, ...], prefix: str | None, domain: str | None,
           start: str | None, end: str | None, latest: bool, concurrency: int, attempts: int,
           max_urls: int, output: Path, quiet: bool, as_json: bool) -> None:
    """Rebuild TARGET from public web archives: every capture under --url or --domain.

    Each capture is fetched raw from its source and written into TARGET's WARCs as the page
    the origin served then (its date, status and headers), with its provenance. Run it again
    to continue a rescue that was stopped or could not reach a source. Later crawls of
    TARGET are compared with what was rescued.
    """
    try:
        if bool(prefix) == bool(domain):
            raise click.UsageError("give --url PREFIX or --domain DOMAIN (one of them)")
        if prefix and urls.try_normalize(prefix) is None:
            raise click.UsageError(f"--url {prefix!r} is not an http(s) URL")
        settings = RescueSettings(
            target=target, output=output, sources=tuple(parse_source(s) for s in sources),
            url=urls.try_normalize(prefix) if prefix else None,
            domain=domain.lower().strip(".") if domain else None,
            start=window_bound(start, end=False), end=window_bound(end, end=True),
            every=not latest, concurrency=max(1, concurrency), attempts=max(1, attempts),
            max_urls=max(0, max_urls))
    except CrawlerError as exc:
        click.echo(f"crawler: error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    console = Console(stderr=True)
    setup_logging(console, quiet)
    try:
        outcome = asyncio.run(_with_signals(settings, console))
    except CrawlerError as exc:
        click.echo(f"crawler: error: {exc}", err=True)
        sys.exit(int(exc.exit_code))
    if as_json:
        click.echo(json.dumps(_as_json(outcome), indent=2, ensure_ascii=False))
    elif not quiet:
        for line in summary_lines(outcome.report):
            click.echo(line)
        click.echo(f"  report: {outcome.directory / 'rescue.json'}")
    sys.exit(int(outcome.exit_code))


async def _with_signals(settings: RescueSettings, console: Console) -> RescueOutcome:
    """Run the rescue; the first SIGINT/SIGTERM finishes the captures in flight and writes
    the report, a second exits at once."""
    loop = asyncio.get_running_loop()
    box: list[Rescue] = []

    def on_signal(signum: int) -> None:
        if box and not box[0].stop.is_set():
            console.print(f"[yellow]{signal.Signals(signum).name}: finishing the captures in "
                          "flight (send again to quit at once)[/]")
            box[0].stop.set()
        else:
            os._exit(int(ExitCode.INTERRUPTED))

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await run_rescue(settings, on_start=box.append)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _as_json(outcome: RescueOutcome) -> dict[str, Any]:
    return {**outcome.report, "directory": str(outcome.directory),
            "warcs": [str(p) for p in outcome.warcs],
            "exit_status": outcome.exit_code.name.lower(), "exit_code": int(outcome.exit_code)}
