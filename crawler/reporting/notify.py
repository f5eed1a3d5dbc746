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

from crawler.core.redact import redact_url
from crawler.detection.states import ALERTS, Event, fold_key, rolled_up_words, transitions

log = logging.getLogger("crawler.notify")

MAX_LINES = 50  # transitions listed in one message; the rest are counted


def message(target: str, crawl_id: str, events: Sequence[Event], report: Path | None,
            name_of: Callable[[str], str] = lambda key: "") -> tuple[str, str]:
    """Return (title, body) for one run's transitions, rolled up per host; ``name_of``
    gives a URL key's page name (its headline or title), shown after the URL."""
    alerts = transitions(events, ALERTS)
    total = transitions(events)
    kind = "TAKEDOWN" if alerts else "change"
    hosts = {fold_key(e): e.key for e in events if e.key.startswith("host:")}
    folded: dict[str, Counter[str]] = {e.key: Counter(dict(e.rolled_up))
                                       for e in events if e.rolled_up}
    shown: list[Event] = []
    for e in events:
        host = None if e.key.startswith("host:") else hosts.get(fold_key(e))
        if host is None:
            shown.append(e)
        else:
            folded.setdefault(host, Counter())[e.state] += 1
    shown.sort(key=lambda e: (not e.key.startswith("host:"), e.state == "recovered"))
    title = (f"[crawler] {target}: TAKEDOWN: {alerts} alert(s), {total} "
             f"transition(s) in crawl {crawl_id}" if alerts else
             f"[crawler] {target}: {total} {kind} event(s) in crawl {crawl_id}")
    lines = []
    for e in shown[:MAX_LINES]:
        name = "" if e.key.startswith("host:") else name_of(e.key)
        line = (f"{e.state.upper()} {e.cls}: {e.url}" + (f" «{name}»" if name else "")
                + (f" ({e.detail})" if e.detail else ""))
        if e.key.startswith("host:"):
            line = f"HOST {line}"
            states = folded.get(e.key)
            if states:
                line += (f"; {rolled_up_words(states.total(), dict(sorted(states.items())))}"
                         " (listed in the report)")
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
