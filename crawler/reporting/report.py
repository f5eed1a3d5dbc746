"""Takedown reports: ``report.json`` (schema in docs/detection.md), a self-contained
``report.html``, and the terminal summary.

The HTML has no external resources (archivists open it offline and attach it to mails): a
summary, the state transitions, one table per class with inline text diffs (removed lines
highlighted) and links to the before/after captures in ``crawler replay``, and an inline SVG
timeline of page classes across the target's crawls.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from crawler import __version__
from crawler.archive.catalog import Catalog, now_iso
from crawler.archive.warc import timestamp17_of
from crawler.core.outcome import shortfall_lines  # the same words as the terminal summary
from crawler.detection.comparison import Comparison
from crawler.detection.detect import NEGATIVE, Cls, Finding, Snap
from crawler.detection.names import NAME_BUDGET, Namer, label
from crawler.detection.states import (
    ALERTS,
    STANDING,
    Event,
    fold_key,
    rolled_up_words,
    transitions,
)

SCHEMA = "crawler-report/1"
DETAILS = "findings.jsonl"  # every transition and finding, beside the bounded report
MAX_LISTED = 1000  # transitions and findings listed in report.json (the rest: DETAILS)
# Counted, not listed: the report of a 3-million-page baseline crawl must stay small.
QUIET = frozenset({Cls.UNCHANGED, Cls.NOT_MODIFIED, Cls.SEMANTIC, Cls.NEW})
REPLAY_BASE = "http://127.0.0.1:8080"  # `crawler replay`'s default address
# Points the replay links at the address in ?replay= (only http(s)://host:port is taken).
_REPLAY_SCRIPT = """<script>(function () {
  var base = new URLSearchParams(location.search).get("replay");
  if (!base || !/^https?:\\/\\/[A-Za-z0-9.\\[\\]:-]+$/.test(base)) return;
  document.querySelectorAll("a[data-replay]").forEach(function (a) {
    a.href = base + a.getAttribute("data-replay");
  });
  document.getElementById("replay-base").textContent = base;
})();</script>"""
_COLOURS = {"unchanged": "#b7d7b0", "not-modified": "#9cc995", "semantically-unchanged": "#cfe6c9",
            "edited": "#f3e2a9", "new": "#a9c8f3", "moved": "#d6c8f0"}


def _replay_path(target: str, snap: Snap | None) -> str | None:
    """Return where `crawler replay` shows a capture, below its address: the capture's own
    17-digit timestamp, so the link opens this capture and not a neighbour in time."""
    if snap is None or snap.record_type not in ("response", "revisit"):
        return None
    return f"/{target}/{timestamp17_of(snap.fetched_at)}/{snap.url}"


def _snap(target: str, snap: Snap | None) -> dict[str, Any] | None:
    if snap is None:
        return None
    path = _replay_path(target, snap)
    return {"capture": snap.capture, "fetched_at": snap.fetched_at, "status": snap.status,
            "failure": snap.failure, "digest": snap.digest, "record_id": snap.record_id,
            "record_type": snap.record_type, "replay_path": path,
            "replay": REPLAY_BASE + path if path else None}


def build(catalog: Catalog, comparison: Comparison, events: list[Event],
          namer: Namer | None = None) -> dict[str, Any]:
    """Return the report as JSON-ready data, bounded in size whatever the crawl's.

    Every listed transition and finding is named from its URL's last good capture (title,
    headline, removed lines as written: ``names.py``).

    Transitions that a whole-host event of the same run explains are rolled up into it (a
    blocked site is one line, not one per page); at most ``MAX_LISTED`` transitions and
    findings are listed, with their totals. Every one of them, one per line, is in
    ``findings.jsonl`` beside the report (``detail_lines``).
    """
    target = comparison.target
    namer = namer or Namer(catalog, target, comparison.rules)
    open_states = catalog.db.execute("SELECT count(*) FROM url_states WHERE target=?",
                                     (target,)).fetchone()[0]
    # the held findings, then the plain ones (``sweep.plain_findings``), as far as listed
    findings = list(islice((f for f in comparison.every_finding(catalog)
                            if f.cls not in QUIET), MAX_LISTED))
    findings_total = sum(f.cls not in QUIET for f in comparison.findings) + comparison.plain
    new_alerts = transitions(events, ALERTS)
    shown, folded = roll_up(events)
    before = comparison.before
    return {
        "schema": SCHEMA,
        "software": f"crawler/{__version__}",
        "generated": now_iso(),
        "target": target,
        "crawl": {"crawl_id": comparison.after.crawl_id, "started": comparison.after.started,
                  "finished": comparison.after.finished, "status": comparison.after.status,
                  "shortfall": comparison.after.shortfall},
        "compared_with": ({"crawl_id": before.crawl_id, "started": before.started}
                          if before else None),
        "summary": {"urls": sum(comparison.counts().values()), "classes": comparison.counts(),
                    "transitions": transitions(events), "new_alerts": new_alerts,
                    "open_states": open_states},
        "listed": {"events": min(len(shown), MAX_LISTED), "events_total": transitions(events),
                   "rolled_up": sum(n.total() for n in folded.values()),
                   "findings": len(findings),
                   "findings_total": findings_total, "details": DETAILS},
        "hosts": [{"host": h.host, "class": h.cls.value, "urls": h.urls, "of": h.of,
                   "since": h.since} for h in comparison.hosts],
        "events": [_event(e, folded.get(e.key, Counter()), namer)
                   for e in shown[:MAX_LISTED]],
        "findings": [_finding(target, f, state_of(catalog, target, f.key),
                              comparison.is_confirmed(f), namer) for f in findings],
        "timeline": timeline(catalog, target),
        "warnings": warnings(comparison.counts()) + list(comparison.notes) + _unnamed(namer),
    }


def _unnamed(namer: Namer) -> list[str]:
    """Return the warning that some listed pages were not named, if any were not."""
    if not namer.unnamed:
        return []
    return [f"{namer.unnamed} page(s) are listed without their title and headline: a report "
            f"reads back at most {NAME_BUDGET} pages for names."]


def warnings(counts: dict[str, int]) -> list[str]:
    """Return what a reader must know before trusting the findings."""
    found = []
    walls = counts.get(Cls.BOT_WALL.value, 0)
    if walls:
        found.append(f"{walls} URL(s) answered with the challenge page of an anti-DDoS or "
                     "bot-protection service: the crawl saw the wall, not the pages, so they "
                     "say nothing about takedowns either way. Crawl again later, more slowly "
                     "(--delay), or from another network path.")
    return found


def roll_up(events: list[Event]) -> tuple[list[Event], dict[str, Counter[str]]]:
    """Return the transitions to list, and per whole-host event the URL transitions it
    stands for, per state (``states.fold_key``): those ``apply_states`` already left out
    (``Event.rolled_up``), and any still in the list, which are left out of it."""
    hosts = {fold_key(e): e.key for e in events if e.key.startswith("host:")}
    folded: dict[str, Counter[str]] = {e.key: Counter(dict(e.rolled_up))
                                       for e in events if e.rolled_up}
    shown = []
    for e in events:
        host = None if e.key.startswith("host:") else hosts.get(fold_key(e))
        if host is None:
            shown.append(e)
        else:
            folded.setdefault(host, Counter())[e.state] += 1
    return shown, folded


def detail_lines(catalog: Catalog, comparison: Comparison, events: list[Event],
                 namer: Namer | None = None) -> Iterator[str]:
    """Yield ``findings.jsonl``: every transition, then every finding, one JSON object per
    line (``"type": "event"`` or ``"finding"``), however many there are; named as far as
    the namer's budget goes (unnamed ones carry null names)."""
    target = comparison.target
    namer = namer or Namer(catalog, target, comparison.rules)
    for e in events:
        if e.state != STANDING:  # (a host's roll-up, not a transition: its URLs' are)
            yield json.dumps({"type": "event", **_event(e, Counter(dict(e.rolled_up)),
                                                        namer, False)},
                             ensure_ascii=False) + "\n"
        if e.rolled_up:  # the URL transitions it stands for, from the events table
            for member in _rolled_up(catalog, comparison.after.pk, e):
                yield json.dumps({"type": "event", **_event(member, Counter(), namer, False)},
                                 ensure_ascii=False) + "\n"
    for f in comparison.every_finding(catalog):
        if f.cls not in QUIET:
            yield json.dumps({"type": "finding", **_finding(
                target, f, state_of(catalog, target, f.key), comparison.is_confirmed(f),
                namer)},
                             ensure_ascii=False) + "\n"


def _rolled_up(catalog: Catalog, crawl_pk: int, host: Event) -> Iterator[Event]:
    """Yield the URL transitions a whole-host event stands for (``states.apply_states``)."""
    for row in catalog.db.execute(
            "SELECT key, url, class, state, since, at, detail FROM events WHERE crawl=? "
            "AND class=? AND key NOT LIKE 'host:%' ORDER BY id", (crawl_pk, host.cls)):
        event = Event(row["key"], row["url"], row["class"], row["state"],
                      row["since"] or row["at"], row["detail"] or "")
        if fold_key(event) == fold_key(host):
            yield event


def state_of(catalog: Catalog, target: str, key: str) -> str | None:
    """Return the open state of a URL (None if it has none)."""
    row = catalog.db.execute("SELECT state FROM url_states WHERE target=? AND key=?",
                             (target, key)).fetchone()
    return None if row is None else str(row[0])


def finding_of(directory: Path, key: str) -> dict[str, Any] | None:
    """Return a crawl's finding for a URL key, from its ``findings.jsonl`` (every finding of
    the run is there, however many), or None."""
    path = directory / DETAILS
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if key not in line:
                continue
            item = json.loads(line)
            if item.get("type") == "finding" and item.get("key") == key:
                return dict(item)
    return None


def _event(e: Event, rolled_up: Counter[str], namer: Namer, counted: bool = True,
           ) -> dict[str, Any]:
    data: dict[str, Any] = {"key": e.key, "url": e.url, "class": e.cls, "state": e.state,
                            "since": e.since, "detail": e.detail,
                            **namer.url(e.key, counted=counted)}
    if e.key.startswith("host:"):
        data["urls_rolled_up"] = rolled_up.total()
        data["rolled_up_states"] = dict(sorted(rolled_up.items()))
    return data


def _finding(target: str, f: Finding, state: str | None,
             confirmed: bool, namer: Namer) -> dict[str, Any]:
    return {"url": f.url, "key": f.key, "class": f.cls.value, "detail": f.detail,
            "takedown": f.cls in NEGATIVE, "state": state,
            "confirmed_by_recheck": confirmed,
            "before": _snap(target, f.before), "after": _snap(target, f.after),
            "removed": list(f.removed), "added": list(f.added), **namer.finding(f)}


def timeline(catalog: Catalog, target: str) -> list[dict[str, Any]]:
    """Return URLs per class for every compared crawl of the target, oldest first."""
    rows = catalog.db.execute(
        "SELECT k.crawl_id, k.started, c.class, c.urls FROM crawl_classes c "
        "JOIN crawls k ON k.id = c.crawl WHERE k.target=? ORDER BY k.id", (target,))
    found: dict[str, dict[str, Any]] = {}
    for crawl_id, started, cls, n in rows:
        found.setdefault(crawl_id, {"crawl_id": crawl_id, "started": started,
                                    "classes": {}})["classes"][cls] = n
    return list(found.values())


def write(report: dict[str, Any], directory: Path,
          details: Iterable[str] = ()) -> tuple[Path, Path]:
    """Write report.json, report.html and findings.jsonl (streamed from ``details``) into a
    crawl directory, each atomically."""
    tmp = directory / (DETAILS + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.writelines(details)
    os.replace(tmp, directory / DETAILS)
    paths = (directory / "report.json", directory / "report.html")
    texts = (json.dumps(report, indent=2, ensure_ascii=False) + "\n", render_html(report))
    for path, text in zip(paths, texts, strict=True):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, "utf-8")
        os.replace(tmp, path)
    return paths


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Return the terminal summary of a report."""
    s = report["summary"]
    against = report["compared_with"]["crawl_id"] if report["compared_with"] else "nothing"
    classes = ", ".join(f"{k}: {v}" for k, v in s["classes"].items())
    lines = [f"Takedown check of {report['target']} {report['crawl']['crawl_id']} "
             f"against {against}: {s['urls']} URLs ({classes})"]
    lines += [f"  WARNING: {w}" for w in report.get("warnings", [])]
    for host in report["hosts"]:
        lines.append(f"  HOST {host['host']}: {host['class']} ({host['urls']} of "
                     f"{host['of']} URLs) since {host['since'][:19]}")
    for event in report["events"][:30]:
        name = label(event)
        lines.append(f"  {event['state'].upper():11} {event['class']:22} {event['url']}"
                     + (f"  «{name}»" if name else "")
                     + (f"  ({event['detail']})" if event["detail"] else ""))
    if len(report["events"]) > 30:
        lines.append(f"  … and {len(report['events']) - 30} more transitions")
    if not report["events"]:
        lines.append("  no state changes")
    return lines


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def colour(cls: str) -> str:
    if cls in _COLOURS:
        return _COLOURS[cls]
    return "#e8868a" if cls in {c.value for c in NEGATIVE} else "#cccccc"


def render_html(report: dict[str, Any]) -> str:
    """Return the self-contained HTML report."""
    s = report["summary"]
    parts = [f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Takedown report: {_e(report['target'])} {_e(report['crawl']['crawl_id'])}</title>
<style>body{{font:15px/1.4 system-ui,sans-serif;margin:2em;max-width:80em}}
table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:3px 6px;
vertical-align:top;text-align:left}}del{{background:#f6c5c5}}ins{{background:#c9ecc4;
text-decoration:none}}.t{{color:#b00;font-weight:bold}}code{{font-size:90%}}</style></head><body>
<h1>Takedown report: {_e(report['target'])}</h1>{_coverage(report['crawl'])}
{"".join(f"<p class=t>Warning: {_e(w)}</p>" for w in report.get("warnings", []))}
<p>Crawl <b>{_e(report['crawl']['crawl_id'])}</b> compared with
<b>{_e((report['compared_with'] or {}).get('crawl_id', 'nothing'))}</b> (last good capture of
each URL). {s['urls']} URLs; {s['transitions']} state changes, {s['new_alerts']} new alerts,
{s['open_states']} open states. Generated {_e(report['generated'])} by
{_e(report['software'])}.</p>
<p>Before/after links open the captures in <code>crawler replay</code> at
<span id="replay-base">{REPLAY_BASE}</span>; opened with <code>?replay=http://127.0.0.1:PORT</code>
after its address (as <code>crawler replay --port PORT</code> prints it), they follow that
port.</p>""", _svg(report["timeline"]), "<h2>Summary</h2><table>"]
    parts += [f"<tr><td style='background:{colour(c)}'>{_e(c)}</td><td>{n}</td></tr>"
              for c, n in s["classes"].items()]
    parts.append("</table>")
    if report["hosts"]:
        parts.append(_table("Whole hosts", ("host", "class", "URLs", "since"), (
            (_e(h["host"]), f"<b class=t>{_e(h['class'])}</b>",
             f"{h['urls']} of {h['of']}", _e(h["since"])) for h in report["hosts"])))
    parts.append(_table("State changes", ("state", "class", "URL", "page", "since", "detail"), (
        (*(_e(e[k]) for k in ("state", "class", "url")), _name_cell(e), _e(e["since"]),
         _e(e["detail"]) + (
            f" <b>{_e(rolled_up_words(e['urls_rolled_up'], e['rolled_up_states']))}</b> "
            f"(in {DETAILS})" if e.get("urls_rolled_up") else ""))
        for e in report["events"])))
    listed = report.get("listed") or {}
    if listed and (listed["events"] < listed["events_total"] - listed["rolled_up"]
                   or listed["findings"] < listed["findings_total"]):
        parts.append(f"<p class=t>This page lists {listed['events']} of "
                     f"{listed['events_total']} state changes and {listed['findings']} of "
                     f"{listed['findings_total']} findings; all of them are in "
                     f"<code>{DETAILS}</code> beside it.</p>")
    by_class: dict[str, list[dict[str, Any]]] = {}
    for f in report["findings"]:
        by_class.setdefault(f["class"], []).append(f)
    for cls, items in by_class.items():
        parts.append(f"<h2 id='{_e(cls)}'>{_e(cls)} ({len(items)})</h2><table><tr><th>URL</th>"
                     "<th>page (last good capture)</th><th>detail</th><th>state</th>"
                     "<th>before / after</th><th>changes</th></tr>")
        parts += [_finding_row(f) for f in items[:500]]
        parts.append("</table>")
    parts.append(_REPLAY_SCRIPT + "</body></html>\n")  # after the links it rewrites
    return "".join(parts)


def _coverage(crawl: dict[str, Any]) -> str:
    """Return what the crawl did not fetch, so no reader takes its findings as the whole."""
    shortfall = crawl.get("shortfall") or {}
    if not shortfall:
        return ""
    items = "".join(f"<li>{_e(line)}</li>" for line in shortfall_lines(shortfall))
    return (f"<p class=t>This crawl ended {_e(str(crawl.get('status', '')).upper())}: what it "
            f"did not fetch was not checked.</p><ul>{items}</ul>")


def _table(title: str, headers: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> str:
    """Return a titled HTML table; cells come already escaped."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f"<h2>{_e(title)}</h2><table><tr>{head}</tr>{body}</table>"


def _finding_row(f: dict[str, Any]) -> str:
    links = []
    for side in ("before", "after"):
        snap = f[side]
        if snap and snap["replay"]:
            links.append(f"<a href='{_e(snap['replay'])}' "
                         f"data-replay='{_e(snap['replay_path'])}'>{side}</a>")
        elif snap:
            links.append(f"{side}: {_e(snap['status'] or snap['failure'])}")
    removed = f.get("removed_as_written") or f["removed"]
    changes = "".join(f"<del>{_e(line)}</del><br>" for line in removed[:40])
    if len(removed) > 40:
        changes += f"… and {len(removed) - 40} more removed lines (in report.json)<br>"
    changes += "".join(f"<ins>{_e(line)}</ins><br>" for line in f["added"][:20])
    if f.get("listing"):
        changes = f"removed from the listing <code>{_e(f['listing'])}</code>:<br>" + changes
    return (f"<tr><td><code>{_e(f['url'])}</code></td><td>{_name_cell(f)}</td>"
            f"<td>{_e(f['detail'])}</td>"
            f"<td>{_e(f['state'] or '')}</td><td>{' · '.join(links)}</td><td>{changes}</td></tr>")


def _name_cell(item: dict[str, Any]) -> str:
    """Return the page's headline, with its title when that says something more."""
    headline, title = item.get("headline"), item.get("title")
    if not headline and not title:
        return ""
    if headline and title and title not in headline:
        return f"<b>{_e(headline)}</b><br><small>{_e(title)}</small>"
    return f"<b>{_e(headline or title)}</b>"


def crawl_time(crawl_id: str) -> tuple[str, str]:
    """Return (date, time UTC) of a crawl id such as ``20261123T101500Z``."""
    if len(crawl_id) >= 15 and crawl_id[8] == "T":
        return (f"{crawl_id[:4]}-{crawl_id[4:6]}-{crawl_id[6:8]}",
                f"{crawl_id[9:11]}:{crawl_id[11:13]}:{crawl_id[13:15]}")
    return crawl_id[:10], ""


def _svg(points: list[dict[str, Any]]) -> str:
    """Return an inline SVG of URLs per class for each crawl (stacked bars)."""
    if not points:
        return ""
    width, height, bar = 60 * len(points) + 40, 180, 40
    most = max(sum(p["classes"].values()) for p in points) or 1
    shapes = []
    for i, point in enumerate(points):
        y = height - 30
        for cls, n in sorted(point["classes"].items()):
            h = (height - 50) * n / most
            y -= h
            shapes.append(f"<rect x='{20 + 60 * i}' y='{y:.1f}' width='{bar}' height='{h:.1f}' "
                          f"fill='{colour(cls)}'><title>{_e(point['crawl_id'])}: {_e(cls)} "
                          f"{n}</title></rect>")
        day, time = crawl_time(point["crawl_id"])
        shapes.append(f"<text x='{20 + 60 * i}' y='{height - 18}' font-size='9'>{_e(day)}"
                      f"</text><text x='{20 + 60 * i}' y='{height - 6}' font-size='9'>"
                      f"{_e(time)}</text>")
    return (f"<h2>Timeline</h2><svg xmlns='http://www.w3.org/2000/svg' width='{width}' "
            f"height='{height}' role='img' aria-label='URL classes per crawl'>"
            + "".join(shapes) + "</svg>")
