"""The package's summary for a reader who is not technical: ``summary.html`` and
``README.txt`` say the same thing, in plain words: who or what the page was, what it showed
before, what it showed after and when, why the crawler concluded what it did, which records
prove it, how to open them, and what the package's signature does and does not prove."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from crawler.evidence.select import Subject


@dataclass(frozen=True)
class Context:
    """What the summary says (the same for both forms)."""

    target: str
    created: str
    subjects: list[Subject]
    records: list[dict[str, Any]]
    left_out: list[str]
    fingerprint: str | None
    tsa: str | None
    software: str


def _state(subject: Subject) -> tuple[str, str, str]:
    """Return (class, state, the detection's own words) of the subject's latest event."""
    if subject.events:
        event = subject.events[-1]
        return event["class"], event["state"], event["detail"] or ""
    finding = subject.finding or {}
    return finding.get("class", "no finding"), "no event", finding.get("detail", "")


def _seen(row: dict[str, Any] | None) -> str:
    if row is None:
        return "no capture"
    answer = f"HTTP {row['status']}" if row["status"] is not None else \
        f"no answer ({row['failure']})"
    return f"{row['fetched_at'][:19].replace('T', ' ')} UTC: {answer}"


def _facts(subject: Subject) -> list[tuple[str, str]]:
    cls, state, why = _state(subject)
    finding = subject.finding or {}
    removed = finding.get("removed_as_written") or finding.get("removed") or []
    facts = [("Page", subject.names.get("headline") or subject.names.get("title")
              or "(no title: the page was not HTML, or had none)"),
             ("Address", subject.url),
             ("What happened", f"{cls} ({state})"),
             ("Why the crawler says so", why or "(no detail recorded)"),
             ("Re-checked", "yes: fetched again after the crawl, with the same result"
              if finding.get("confirmed_by_recheck") else
              "no re-check reproduced it in that run" if finding else "no finding recorded"),
             ("Before (last good capture)", _seen(subject.before)),
             ("After (the crawl that saw the change)", _seen(subject.after))]
    if subject.events:
        facts.append(("First seen in this state", str(subject.events[-1]["since"] or
                                                      subject.events[-1]["at"])[:19]))
    if removed:
        listing = finding.get("listing")
        facts.append(("Gone from the page" + (f" (listing {listing})" if listing else ""),
                      "; ".join(removed[:50]) + (f"; and {len(removed) - 50} more"
                                                 if len(removed) > 50 else "")))
    return facts


_PROVES = [
    "Every file in this package is exactly as it was when the package was made: "
    "manifest-sha256.txt lists the SHA-256 of each, and `crawler evidence verify` checks them.",
    "The web archive records in evidence.wacz are byte-for-byte copies of what the crawler "
    "recorded when it fetched the pages (WARC records with their original record IDs and "
    "digests).",
]
_SIGNED = ("Whoever holds the private key with the fingerprint below signed the package "
           "(evidence.wacz and the manifest). Compare the fingerprint with one the "
           "archive published elsewhere: the signature alone does not say who that is.")
_STAMPED = ("A time-stamping authority ({tsa}) certified that the manifest, and so every "
            "file it lists, existed at the time in the token (signature/*.tsr). That is as "
            "trustworthy as that authority.")
_NOT = [
    "That the website itself sent these bytes: HTTP has no signature of the server. The "
    "records are the crawler operator's account of what it received.",
    "Why a page changed (a court order, a block, an edit): it shows what changed and when "
    "it was seen.",
]


def _verify_lines(ctx: Context) -> tuple[list[str], list[str]]:
    """Return (what the package proves, what it does not), for how it was made."""
    proves, not_proven = list(_PROVES), list(_NOT)
    if ctx.fingerprint:
        proves.append(f"{_SIGNED} Fingerprint: {ctx.fingerprint}")
    else:
        not_proven.insert(0, "Who made it: this package is NOT signed, so anyone could have "
                             "rebuilt it with matching hashes.")
    if ctx.tsa:
        proves.append(_STAMPED.format(tsa=ctx.tsa))
    else:
        not_proven.insert(0, "When it was made: it has NO trusted time-stamp; its dates are "
                             "the crawler's own clock.")
    return proves, not_proven


def html_page(ctx: Context) -> str:
    """Return summary.html (self-contained: no script, no external resource)."""
    def e(value: object) -> str:
        return html.escape(str(value))
    parts = [f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Evidence: {e(ctx.target)}</title><style>body{{font:15px/1.45 system-ui,sans-serif;
margin:2em;max-width:60em}}th,td{{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}
.warn{{color:#a00}}</style></head><body>
<h1>Evidence package: {e(ctx.target)}</h1>
<p>Made {e(ctx.created[:19].replace("T", " "))} UTC by {e(ctx.software)}.
{len(ctx.subjects)} page(s), {len(ctx.records)} archived record(s).</p>"""]
    for subject in ctx.subjects:
        parts.append(f"<h2>{e(subject.names.get('headline') or subject.url)}</h2><table>")
        parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _facts(subject)]
        parts.append("</table>")
    parts.append("<h2>The records (in evidence.wacz)</h2><table><tr><th>role</th><th>URL</th>"
                 "<th>fetched (UTC)</th><th>answer</th><th>record</th></tr>")
    parts += [f"<tr><td>{e(r['role'])}</td><td>{e(r['url'])}</td>"
              f"<td>{e(r['fetched_at'][:23])}</td><td>{e(r['status'] or r['failure'])}</td>"
              f"<td><code>{e(r['record_id'] or '')}</code> ({e(r['record_type'])})</td></tr>"
              for r in ctx.records]
    parts.append("</table>")
    if ctx.left_out:
        parts.append("<p class=warn>Not packaged:</p><ul>"
                     + "".join(f"<li>{e(n)}</li>" for n in ctx.left_out) + "</ul>")
    parts.append(f"<h2>How to look at the pages</h2><p>{e(_HOW)}</p>")
    proves, not_proven = _verify_lines(ctx)
    parts.append("<h2>What this package proves</h2><ul>"
                 + "".join(f"<li>{e(line)}</li>" for line in proves) + "</ul>")
    parts.append("<h2>What it does not prove</h2><ul>"
                 + "".join(f"<li>{e(line)}</li>" for line in not_proven) + "</ul>")
    parts.append(f"<p>Check it: <code>{e(_CHECK)}</code></p></body></html>\n")
    return "".join(parts)


_HOW = ("Open evidence.wacz in ReplayWeb.page (https://replayweb.page, or its desktop app: "
        "choose the file; nothing is uploaded) and pick a page marked BEFORE or AFTER; or add "
        "it to a pywb collection (wb-manager add COLLECTION evidence.wacz).")
_CHECK = "crawler evidence verify PACKAGE [--tsa-ca TSA-CA.pem]"


def text(ctx: Context) -> str:
    """Return README.txt: the same as summary.html, as plain text."""
    lines = [f"EVIDENCE PACKAGE: {ctx.target}",
             f"Made {ctx.created[:19].replace('T', ' ')} UTC by {ctx.software}. "
             f"{len(ctx.subjects)} page(s), {len(ctx.records)} archived record(s).", ""]
    for subject in ctx.subjects:
        lines.append("== " + (subject.names.get("headline") or subject.url))
        lines += [f"{k}: {v}" for k, v in _facts(subject)]
        lines.append("")
    lines.append("== The records (in evidence.wacz)")
    lines += [f"- {r['role']}: {r['url']} at {r['fetched_at'][:23]} UTC, "
              f"{r['status'] or r['failure']}, {r['record_type']} {r['record_id'] or ''}"
              for r in ctx.records]
    if ctx.left_out:
        lines += ["", "Not packaged:"] + [f"- {n}" for n in ctx.left_out]
    proves, not_proven = _verify_lines(ctx)
    lines += ["", "== How to look at the pages", _HOW, "", "== What this package proves"]
    lines += [f"- {line}" for line in proves]
    lines += ["", "== What it does not prove"] + [f"- {line}" for line in not_proven]
    lines += ["", f"Check it: {_CHECK}", ""]
    return "\n".join(lines)

