"""Deliver takedown alerts through Apprise (email, JSON webhooks, Telegram, Matrix, ...).

Only state transitions are sent (a new suspected, provisional or confirmed event, and
recoveries), never a repeat of a known state, and one message per run: transitions that a
whole-host event explains are folded into it (a blocked site of 430 pages is one line, not
431). Messages go through the persistent outbox (outbox.py); this module only words them
and makes one delivery attempt.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from crawler.capture import urls as urlkit
from crawler.core.redact import redact_url
from crawler.detection.states import Event

log = logging.getLogger("crawler.notify")

MAX_LINES = 50  # transitions listed in one message; the rest are counted


def message(target: str, crawl_id: str, events: Sequence[Event], report: Path | None,
            name_of: Callable[[str], str] = lambda key: "") -> tuple[str, str]:
    """Return (title, body) for one run's transitions, rolled up per host; ``name_of``
    gives a URL key's page name (its headline or title), shown after the URL."""
    alerts = [e for e in events if e.state in ("confirmed", "provisional")]
    kind = "TAKEDOWN" if alerts else "change"
    hosts = {(e.url, e.cls, e.state) for e in events if e.key.startswith("host:")}
    folded: Counter[tuple[str, str, str]] = Counter()
    shown: list[Event] = []
    for e in events:
        if e.key.startswith("host:"):
            shown.append(e)
            continue
        host = (urlkit.host_of(e.url), e.cls, e.state)
        if host in hosts:
            folded[host] += 1
        else:
            shown.append(e)
    shown.sort(key=lambda e: (not e.key.startswith("host:"), e.state == "recovered"))
    title = (f"[crawler] {target}: TAKEDOWN: {len(alerts)} alert(s), {len(events)} "
             f"transition(s) in crawl {crawl_id}" if alerts else
             f"[crawler] {target}: {len(events)} {kind} event(s) in crawl {crawl_id}")
    lines = []
    for e in shown[:MAX_LINES]:
        name = "" if e.key.startswith("host:") else name_of(e.key)
        line = (f"{e.state.upper()} {e.cls}: {e.url}" + (f" «{name}»" if name else "")
                + (f" ({e.detail})" if e.detail else ""))
        if e.key.startswith("host:"):
            line = f"HOST {line}"
            if folded[(e.url, e.cls, e.state)]:
                line += (f"; and {folded[(e.url, e.cls, e.state)]} URL(s) of it in the same "
                         "state (listed in the report)")
        lines.append(line)
    if len(shown) > MAX_LINES:
        lines.append(f"... and {len(shown) - MAX_LINES} more (see the report)")
    if report is not None:
        lines.append(f"Report: {report}")
    lines.append(f"crawler-message: {target}/{crawl_id}")
    return title, "\n".join(lines)


def send_one(url: str, title: str, body: str) -> str | None:
    """Send one notification to one URL; return None when delivered, else why not."""
    import apprise  # heavy, and only needed when there is something to send

    try:
        with warnings.catch_warnings():
            # apprise's plugins import modules Python deprecates (imghdr): theirs to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            service = apprise.Apprise()
            added = service.add(url)
        if not added:
            return "notification URL not understood by Apprise"
        if service.notify(title=title, body=body):
            return None
        return "the service did not accept the notification (see the log for its answer)"
    except Exception as exc:  # a notifier must never take the run down
        log.exception("notification to %s raised", redact_url(url))
        return f"{type(exc).__name__}: {exc}"
