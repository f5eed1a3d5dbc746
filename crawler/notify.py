"""Deliver takedown alerts through Apprise (email, JSON webhooks, Telegram, Matrix, ...).

Only state transitions are sent (a new suspected, provisional or confirmed event, and
recoveries), never a repeat of a known state. Delivery failures are logged and retried with
back-off; they never fail the crawl.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from crawler.diff import Event
from crawler.redact import redact_url

log = logging.getLogger("crawler.notify")


def message(target: str, crawl_id: str, events: Sequence[Event],
            report: Path | None) -> tuple[str, str]:
    """Return (title, body) for a set of transitions."""
    alerts = [e for e in events if e.state in ("confirmed", "provisional")]
    kind = "TAKEDOWN" if alerts else "change"
    title = f"[crawler] {target}: {len(events)} {kind} event(s) in crawl {crawl_id}"
    lines = [f"{e.state.upper()} {e.cls}: {e.url}" + (f" ({e.detail})" if e.detail else "")
             for e in events[:50]]
    if len(events) > 50:
        lines.append(f"... and {len(events) - 50} more")
    if report is not None:
        lines.append(f"Report: {report}")
    return title, "\n".join(lines)


def send(urls: Sequence[str], title: str, body: str, *, attempts: int = 3,
         backoff: float = 2.0) -> bool:
    """Send one notification to every URL; return True if all were delivered."""
    import apprise  # heavy, and only needed when there is something to send

    delivered = True
    for url in urls:
        for attempt in range(1, attempts + 1):
            try:
                with warnings.catch_warnings():
                    # apprise's plugins import modules Python deprecates (imghdr): theirs to fix
                    warnings.simplefilter("ignore", DeprecationWarning)
                    service = apprise.Apprise()
                    added = service.add(url)
                if not added:
                    log.error("notification URL not understood by Apprise: %s", redact_url(url))
                    delivered = False
                    break
                if service.notify(title=title, body=body):
                    break
                log.warning("notification to %s failed (attempt %d of %d)", redact_url(url),
                            attempt, attempts)
            except Exception:  # a notifier must never take the crawl down
                log.exception("notification to %s raised (attempt %d of %d)", redact_url(url),
                              attempt, attempts)
            if attempt == attempts:
                delivered = False
            else:
                time.sleep(backoff * attempt)
    return delivered
