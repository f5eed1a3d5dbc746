"""What `crawler status` and `crawler resume` need to know about an archive root's crawls:
each crawl's state, totals, shortfall, unfinished phase and notifications, as data and as
lines; and which crawl a resume continues, with the secrets its settings need restored."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from crawler.archive.catalog import Catalog, CrawlRow, CrawlStatus, Phase
from crawler.archive.layout import saved_notify, target_is_locked
from crawler.capture.settings import CrawlSettings
from crawler.core.errors import CrawlerError, ExitCode
from crawler.core.outcome import shortfall_lines
from crawler.core.redact import restore
from crawler.detection.names import Namer
from crawler.detection.states import open_states
from crawler.reporting import outbox

PHASE_WORDS = {Phase.DETECT: "takedown detection", Phase.REPORT: "report and notification",
               Phase.PACKAGE: "packaging (index, WACZ)"}


class NothingToResume(CrawlerError):
    """No crawl under the root can be resumed (or the one that could is running)."""

    exit_code = ExitCode.CONFIG


class WhichToResume(CrawlerError):
    """Several targets have a crawl to resume: the user must name one."""

    exit_code = ExitCode.USAGE


def crawl_report(catalog: Catalog, output: Path, target: str | None) -> dict[str, list[dict[
        str, Any]]]:
    """Return target -> crawls with their totals and state (for `crawler status`)."""
    report: dict[str, list[dict[str, Any]]] = {}
    for row in catalog.crawls(target):
        state = row.status
        if row.status == CrawlStatus.RUNNING:
            state = "running" if target_is_locked(output, row.target) else "killed"
        report.setdefault(row.target, []).append({
            "crawl_id": row.crawl_id, "state": state, "started": row.started,
            "finished": row.finished, "stop_reason": row.stop_reason,
            "exit_code": row.exit_code, "shortfall": row.shortfall,
            "directory": str(row.directory),
            "resumable": row.resumable and state != "running", "phase": row.phase,
            "notifications": outbox.crawl_counts(catalog, row.pk),
            "kind": row.kind, **({"rescue": _rescue_counts(row)} if row.kind == "rescue"
                                 else {}),
            **catalog.crawl_totals(row.pk)})
    return report


def _rescue_counts(row: CrawlRow) -> dict[str, int] | None:
    """Return a rescue's URL counts from its report (None while it has none)."""
    try:
        found = json.loads((row.directory / "rescue.json").read_text("utf-8"))["urls"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {k: int(v) for k, v in found.items()}


def report_lines(report: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Return `crawler status` for people: a line per crawl, and what is left of it."""
    lines = []
    for name, crawls in report.items():
        lines.append(name)
        for c in crawls:
            lines.append(f"  {c['crawl_id']}  {c['state']:<11} started {c['started'][:19]}  "
                         f"ended {(c['finished'] or '-')[:19]:<19}  pages {c['pages']:>6}  "
                         f"URLs {c['urls']:>6}  revisits {c['revisits']:>6}  "
                         f"bytes {c['bytes']:>10}  failures {c['failures']:>4}  "
                         f"exit {'-' if c['exit_code'] is None else c['exit_code']}  "
                         f"{c['stop_reason'] or ''}")
            if c.get("kind") == "rescue":
                lines.extend(_rescue_lines(name, c))
            else:
                lines.extend(f"      not archived: {line}"
                             for line in shortfall_lines(c["shortfall"]))
            if c["phase"] and c["state"] != "running":
                lines.append(f"      unfinished: its {PHASE_WORDS.get(c['phase'], c['phase'])} "
                             f"was cut short; `crawler resume {name}` finishes it")
            sent = c["notifications"]
            if sent["queued"] or sent["expired"]:
                lines.append(f"      notifications: {sent['delivered']} delivered, "
                             f"{sent['queued']} queued (next try {sent['next_attempt'] or '-'}),"
                             f" {sent['expired']} expired undelivered; last error: "
                             f"{sent['last_error'] or 'none'}")
    return lines


def crawl_to_resume(catalog: Catalog, output: Path, target: str | None) -> CrawlRow:
    """Return the crawl `crawler resume` continues: the resumable latest crawl of TARGET, or
    of the only target that has one; raise if there is none or several."""
    latest = {c.target: c for c in catalog.crawls(target)}  # oldest first: last one wins
    candidates = [c for c in latest.values()
                  if c.resumable and not target_is_locked(output, c.target)]
    if not candidates:
        raise NothingToResume(f"nothing to resume{' for ' + target if target else ''} under "
                              f"{output}")
    if len(candidates) > 1:
        names = ", ".join(sorted(c.target for c in candidates))
        raise WhichToResume(f"several crawls can be resumed ({names}); name a TARGET")
    return candidates[0]


def settings_to_resume(row: CrawlRow, output: Path) -> tuple[CrawlSettings, list[str]]:
    """Return the settings a crawl started with, its notification URLs and vantage proxies
    restored from the target's owner-only file, and warnings for those that could not be."""
    settings = replace(CrawlSettings.from_json(row.settings), output=output)
    warnings = []
    notify, lost = restore(settings.detect.notify, saved_notify(output, row.target))
    if lost:
        warnings.append(f"{len(lost)} notification URL(s) of this crawl could not be restored "
                        f"({', '.join(lost)}): this run will not notify them")
    vantage, gone = restore(settings.detect.vantage, saved_notify(output, row.target, "vantage"))
    if gone:
        warnings.append(f"{len(gone)} vantage proxy URL(s) of this crawl could not be restored "
                        f"({', '.join(gone)}): this run will not use them")
    detect = replace(settings.detect, notify=tuple(notify), vantage=tuple(vantage))
    return replace(settings, detect=detect), warnings


STATUS_NAMES = 500  # open events named per target by `crawler status` (the rest: null)


def targets_report(catalog: Catalog, names: list[str], next_runs: dict[str, datetime | None],
                   ) -> dict[str, dict[str, Any]]:
    """Return each configured target's last crawl, its result, open takedown events and next
    scheduled run (``crawler status --config``)."""
    report: dict[str, dict[str, Any]] = {}
    for name in names:
        last = catalog.latest_crawl(name)
        nxt = next_runs.get(name)
        namer = Namer(catalog, name, budget=STATUS_NAMES)
        latest = dict(catalog.db.execute(  # each URL's latest event: what to package
            "SELECT key, max(id) FROM events WHERE target=? GROUP BY key", (name,)).fetchall())
        report[name] = {
            "last_crawl": last.crawl_id if last else None,
            "state": last.status if last else None,
            "exit_code": last.exit_code if last else None,
            "finished": last.finished if last else None,
            "open_events": [{"event": latest.get(s["key"]), "url": s["url"],
                             "class": s["class"], "state": s["state"], "since": s["since"],
                             **namer.url(s["key"])}
                            for s in open_states(catalog, name)],
            "next_run": nxt.isoformat() if nxt else None}
    return report


def _rescue_lines(name: str, crawl: dict[str, Any]) -> list[str]:
    """Return the lines of a rescue: its URLs by outcome, and how to continue it."""
    found = crawl.get("rescue")
    if found is None:
        return ["      rescue from web archives: no report yet (killed before its end?); "
                f"`crawler rescue {name} …` again continues it"]
    lines = [f"      rescue from web archives: URLs found {found['found']}: rescued "
             f"{found['rescued']}, already held {found['held']}, missing {found['missing']}, "
             f"source failed {found['failed']}, not tried {found['pending']}"]
    if crawl["state"] != "complete":
        lines.append(f"      `crawler rescue {name}` with the same URL, window and sources "
                     "continues it")
    return lines
