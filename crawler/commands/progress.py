"""Live progress display of a running crawl on a terminal (rich), and the end-of-run summary."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from rich.console import Console
from rich.live import Live
from rich.table import Table

from crawler.core.outcome import shortfall_lines
from crawler.crawl.engine import Crawl, CrawlOutcome


def _fmt_bytes(n: float) -> str:
    """Return a byte count in human units."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def status_line(crawl: Crawl) -> Table:
    """Return one table row of live counters."""
    s = crawl.stats
    elapsed = max(s.elapsed, 1e-6)
    table = Table.grid(padding=(0, 2))
    table.add_row(
        f"[bold]{crawl.target}[/]", f"done [green]{s.fetched}[/]",
        f"pages {s.pages}", f"queued {crawl.frontier.queued}",
        f"in flight {crawl.frontier.in_flight}", f"failed [red]{s.failed}[/]",
        _fmt_bytes(s.bytes), f"{s.fetched / elapsed:.1f} URL/s", f"{elapsed:.0f}s",
        "[yellow]stopping…[/]" if crawl.stopping else "",
    )
    return table


@contextlib.asynccontextmanager
async def live_progress(console: Console, crawl_box: list[Crawl]) -> AsyncIterator[None]:
    """Refresh a status line while the crawl runs (only call on a TTY)."""
    with Live(console=console, refresh_per_second=4, transient=True) as live:

        async def refresh() -> None:
            while True:
                if crawl_box:
                    live.update(status_line(crawl_box[0]))
                await asyncio.sleep(0.25)

        task = asyncio.create_task(refresh())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _state(outcome: CrawlOutcome) -> str:
    """Return how the crawl ended, in words that do not overstate it."""
    stop = outcome.stop_reason.value
    if outcome.status == "incomplete":
        return "INCOMPLETE" + (f", stopped by {stop}" if stop != "complete" else "")
    if outcome.status == "failed":
        if outcome.shortfall.get("bot-wall"):
            return "FAILED: not one page could be archived, only an anti-DDoS challenge page"
        return "FAILED: not one page could be archived"
    if stop == "no-space":
        return ("STOPPED: no space left on the archive's disk (what was written is valid; "
                "free space, then `crawler resume`)")
    if stop == "write-failed":
        return "STOPPED: a write failed (see the error above); `crawler resume` once fixed"
    return stop if outcome.status != "complete" else "complete"


def summary_lines(outcome: CrawlOutcome) -> list[str]:
    """Return a short human summary of a finished crawl."""
    st = outcome.stats
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(st.get("statuses", {}).items()))
    lines = [
        f"Crawl {outcome.target}/{outcome.crawl_id}: {_state(outcome)} "
        f"(exit {outcome.exit_code.name.lower()})",
        *(f"  not archived: {line}" for line in shortfall_lines(outcome.shortfall)),
    ]
    merged = st.get("merge")
    if merged:
        lines.append(f"  merged from {len(merged['workers'])} worker(s) of a distributed "
                     f"crawl: {merged['kept']} records kept of {merged['records']} found")
        if merged["superseded"] or merged["duplicate_robots"]:
            lines.append(f"  left out: {merged['superseded']} fetched again under a later "
                         f"lease (a worker lost or cut off), {merged['duplicate_robots']} "
                         "robots.txt fetched by more than one worker")
        if merged["kept_for_revisits"]:
            lines.append(f"  {merged['kept_for_revisits']} superseded record(s) kept: later "
                         "revisits refer to them")
        if merged["torn_bytes"]:
            lines.append(f"  {merged['torn_bytes']} bytes of unfinished records at the end of "
                         "killed workers' files were not read")
    elif st.get("phases_only"):
        lines.append("  the crawl had ended in an earlier session; this run finished what a "
                     "kill cut short after it (detection, report, notifications)")
    else:
        lines += [f"  {st['fetched']} URLs captured ({st['pages']} pages), {st['failed']} "
                  f"failed, {_fmt_bytes(st['bytes'])} in {st['elapsed_seconds']:.1f}s",
                  f"  statuses: {statuses or 'none'}"]
    totals = st.get("totals")
    if totals and (merged or totals["urls"] != (st["fetched"] + st["failed"]
                                                + st["robots_blocked"]
                                                + sum(st["traps"].values()))):
        lines.append(f"  whole crawl, all sessions: {totals['urls']} URLs, {totals['pages']} "
                     f"pages, {totals['failures']} failures, {_fmt_bytes(totals['bytes'])}")
    if st.get("revisits"):
        lines.append(f"  {st['revisits']} unchanged, stored as revisits of earlier records "
                     f"({st['not_modified']} answered 304 Not Modified)")
    if st.get("damaged_originals"):
        lines.append(f"  {st['damaged_originals']} earlier record(s) found damaged or missing: "
                     "their duplicates were stored in full (run `crawler verify`)")
    if st.get("recovered"):
        lines.append(f"  {st['recovered']} records written before an interruption were "
                     "entered from the WARCs")
    if st["robots_blocked"] or st["traps"]:
        traps = ", ".join(f"{k}: {v}" for k, v in st["traps"].items()) or "none"
        lines.append(f"  robots.txt blocked: {st['robots_blocked']}; traps avoided: {traps}")
    lines.append(f"  WARCs:  {outcome.directory / 'warc'} ({len(outcome.warcs)} file(s))")
    lines.append(f"  index:  {outcome.index}")
    lines.append(f"  pages:  {outcome.pages}")
    if outcome.wacz:
        lines.append(f"  WACZ:   {outcome.wacz}")
    return lines
