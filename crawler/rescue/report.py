"""A rescue's report: URLs found, rescued, held, missing and why; per section of the site the
dates its captures cover and what is missing there; per source what was asked of it.

Written as ``rescue.json`` (every missing URL with its reason in ``rescue-missing.tsv``) and
summed up in a few lines for the terminal and ``crawler status``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crawler.archive.catalog import Catalog, CrawlRow
from crawler.archive.layout import write_json
from crawler.rescue.ledger import Ledger

MISSING_IN_JSON = 200  # the first missing URLs in rescue.json; all in rescue-missing.tsv


def section_of(url: str) -> str:
    """Return the section of the site a URL belongs to: host and first path segment."""
    parts = urlsplit(url)
    segment = parts.path.strip("/").split("/", 1)[0]
    return f"{parts.netloc}/{segment + '/' if segment and '/' in parts.path.strip('/') else ''}"


def build_report(catalog: Catalog, row: CrawlRow, settings: dict[str, Any], status: str,
                 requests: int, seconds: float) -> dict[str, Any]:
    """Return the report of a rescue from its ledger and catalog rows."""
    ledger = Ledger(catalog.db, row.pk)
    outcomes = ledger.outcomes()
    found = sum(outcomes.values())
    sections: dict[str, dict[str, Any]] = {}
    for url, outcome, fetched in catalog.db.execute(
            "SELECT u.url, u.outcome, (SELECT max(c.fetched_at) FROM captures c WHERE "
            "c.crawl = u.crawl AND c.key = u.key) FROM rescue_urls u WHERE u.crawl = ?",
            (row.pk,)):
        entry = sections.setdefault(section_of(url), {
            "section": section_of(url), "found": 0, "rescued": 0, "held": 0, "missing": 0,
            "failed": 0, "pending": 0, "first": None, "last": None})
        entry["found"] += 1
        entry[outcome or "pending"] += 1
        if fetched:
            day = fetched[:10]
            entry["first"] = min(entry["first"] or day, day)
            entry["last"] = max(entry["last"] or day, day)
    undone = list(itertools.islice(ledger.undone(), MISSING_IN_JSON))  # all: the .tsv
    undone_total = sum(v for k, v in outcomes.items() if k not in ("rescued", "held"))
    mismatched = catalog.db.execute(
        "SELECT count(*) FROM provenance p JOIN captures c ON c.id = p.capture WHERE "
        "c.crawl = ? AND p.digest_match = 0", (row.pk,)).fetchone()[0]
    captures = catalog.db.execute(
        "SELECT count(*), min(fetched_at), max(fetched_at), sum(record_type = 'revisit') "
        "FROM captures WHERE crawl = ? AND record_type IN ('response', 'revisit')",
        (row.pk,)).fetchone()
    return {
        "target": row.target, "rescue_id": row.crawl_id, "status": status,
        "settings": {k: settings[k] for k in ("url", "domain", "start", "end", "every")},
        "sources": [{"name": s["source"], "listing": s["listing"], "listed": s["listed"],
                     "listing_done": bool(s["done"]), "requests": s["requests"],
                     "note": s["error"]} for s in ledger.sources()],
        "urls": {"found": found, "rescued": outcomes.get("rescued", 0),
                 "held": outcomes.get("held", 0), "missing": outcomes.get("missing", 0),
                 "failed": outcomes.get("failed", 0), "pending": outcomes.get("pending", 0)},
        "captures": {"written": captures[0], "revisits": captures[3] or 0,
                     "first": captures[1], "last": captures[2],
                     "digest_differs_from_source": mismatched},
        "rejected": ledger.rejections(),
        "sections": sorted(sections.values(), key=lambda s: s["section"]),
        "gaps": [s["section"] for s in sorted(sections.values(), key=lambda s: s["section"])
                 if s["missing"] or s["failed"] or s["pending"]],
        "missing": [{"url": u["url"], "outcome": u["outcome"] or "pending",
                     "reason": u["reason"]} for u in undone],
        "missing_listed": len(undone), "missing_total": undone_total,
        "requests_this_run": requests, "seconds_this_run": round(seconds, 1),
    }


def write_report(report: dict[str, Any], directory: Path) -> Path:
    """Write ``rescue.json``."""
    path = directory / "rescue.json"
    write_json(path, report)
    return path


def write_missing(catalog: Catalog, row: CrawlRow) -> Path:
    """Write every URL of a rescue not rescued or held, with its outcome and reason."""
    path = row.directory / "rescue-missing.tsv"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write("url\tkind\toutcome\treason\n")
        for url, kind, outcome, reason in Ledger(catalog.db, row.pk).undone():
            out.write(f"{url}\t{kind}\t{outcome or 'pending'}\t{reason or ''}\n")
    os.replace(tmp, path)
    return path


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Return the rescue's outcome in a few exact lines (terminal, ``crawler status``)."""
    u = report["urls"]
    c = report["captures"]
    lines = [f"rescue {report['rescue_id']} of {report['target']}: {report['status']}",
             f"  URLs found {u['found']}: rescued {u['rescued']}, already held {u['held']}, "
             f"missing {u['missing']}, source failed {u['failed']}, not tried {u['pending']}"]
    if c["written"]:
        lines.append(f"  captures written {c['written']} ({c['revisits']} as revisits of "
                     f"payloads held), dated {c['first'][:10]} to {c['last'][:10]}")
    if c["digest_differs_from_source"]:
        lines.append(f"  {c['digest_differs_from_source']} captures' bytes differ from the "
                     "digest their source lists (kept, marked in provenance)")
    for source in report["sources"]:
        note = f" — {source['note']}" if source["note"] else ""
        lines.append(f"  source {source['name']}: {source['listing']}, {source['listed']} "
                     f"captures listed, {source['requests']} requests{note}")
    if report["rejected"]:
        lines.append("  captures not taken: " + ", ".join(
            f"{why} {n}" for why, n in report["rejected"].items()))
    if report["gaps"]:
        lines.append(f"  sections with URLs not rescued: {len(report['gaps'])} (see "
                     "rescue.json, every URL in rescue-missing.tsv)")
    return lines
