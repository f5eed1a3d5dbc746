"""robots.txt policy per host (RFC 9309) on top of protego."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from protego import Protego

from crawler.capture.extract import decode_content

MAX_ROBOTS_BYTES = 500 * 1024  # RFC 9309 §2.5: parse at least the first 500 KiB
MAX_CRAWL_DELAY = 30.0  # honour Crawl-delay, but never let one line stall a rescue for hours


class RobotsPolicy(StrEnum):
    """What the crawl does with robots.txt."""

    OBEY = "obey"  # fetch and follow robots.txt (default)
    IGNORE = "ignore"  # rescue crawls: fetch it (as evidence) but do not follow it


@dataclass(frozen=True, slots=True)
class RobotsRules:
    """The parsed robots.txt of one host, or a blanket rule when it could not be read."""

    parser: Protego | None
    allow_all: bool = False
    disallow_all: bool = False
    why: str = "disallowed by robots.txt"  # recorded for each URL it keeps us from

    def allowed(self, url: str, user_agent: str) -> bool:
        """Return True if ``url`` may be fetched."""
        if self.allow_all:
            return True
        if self.disallow_all or self.parser is None:
            return False
        return bool(self.parser.can_fetch(url, user_agent))

    def crawl_delay(self, user_agent: str) -> float:
        """Return the Crawl-delay for us, capped, or 0."""
        if self.parser is None:
            return 0.0
        delay = self.parser.crawl_delay(user_agent)
        return min(float(delay), MAX_CRAWL_DELAY) if delay else 0.0

    def sitemaps(self) -> list[str]:
        """Return Sitemap: URLs listed in the file."""
        return list(self.parser.sitemaps) if self.parser is not None else []


def rules_from_response(status: int, body: bytes | None) -> RobotsRules:
    """Build the rules for a host from its robots.txt response (RFC 9309 §2.3.1).

    2xx: parse it. 4xx ("unavailable"): everything allowed. 5xx or no answer
    ("unreachable"): assume complete disallow.
    """
    if 200 <= status < 300:
        text = (body or b"")[:MAX_ROBOTS_BYTES].decode("utf-8", errors="replace")
        try:
            return RobotsRules(Protego.parse(text))
        except Exception:  # protego on garbage input: treat as an empty file
            return RobotsRules(None, allow_all=True)
    if 400 <= status < 500:
        return RobotsRules(None, allow_all=True)
    return RobotsRules(None, disallow_all=True,
                       why=f"robots.txt answered {status} (after retries): RFC 9309 says "
                           "disallow everything; `--robots ignore` fetches them anyway")


ALLOW_ALL = RobotsRules(None, allow_all=True)


def robots_body(raw: bytes, content_encoding: str | None) -> bytes:
    """Return a robots.txt body without its Content-Encoding (servers do gzip it)."""
    return decode_content(raw, content_encoding, limit=2 * 1024 * 1024)
