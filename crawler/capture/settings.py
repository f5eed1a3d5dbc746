"""Settings of one crawl as frozen dataclasses, and their JSON form (kept in the catalog so
``crawler resume`` can continue a crawl with exactly the settings it started with)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crawler.capture import urls
from crawler.capture.fetcher import FetchSettings
from crawler.capture.pagetext import DEFAULT_RULES, TextRules
from crawler.capture.robots import RobotsPolicy
from crawler.capture.scope import ScopeKind, ScopeRules, TrapRules
from crawler.core.redact import redact_url

ARCHIVES = Path("archives")  # default archive root (relative to where the command runs)
MIN_FREE_SPACE = 1024 ** 3  # default: warn below 1 GiB free under the archive root


@dataclass(frozen=True, slots=True)
class Limits:
    """When to stop a crawl that has not run out of URLs."""

    max_pages: int | None = None  # pages (seeds and links), requisites not counted
    max_bytes: int | None = None  # body bytes downloaded
    max_time: float | None = None  # seconds (per session: a resumed crawl starts again)
    min_free_space: int = MIN_FREE_SPACE  # warn at the start when the archive root has less free


@dataclass(frozen=True, slots=True)
class Politeness:
    """How hard the crawl may push each server. Defaults suit small, fragile NGO servers."""

    concurrency: int = 16  # requests in flight across all hosts
    per_host: int = 2  # requests in flight to one host
    delay: float = 0.5  # seconds between request starts to one host
    retries: int = 2  # extra attempts for timeouts, resets, 429 and 5xx
    backoff: float = 2.0  # first retry waits about this long, doubling each time
    max_retry_after: float = 300.0  # a longer Retry-After is final, not waited for
    hang_limit: int = 5  # consecutive hangs (timeouts) that trip a host's breaker
    hang_pause: float = 30.0  # first pause of a tripped host (doubles with each trip)
    hang_trips: int = 3  # trips after which a host is given up for the crawl
    # Adaptive delay (off by default): each host's delay follows its response times, like
    # Scrapy's AutoThrottle: it starts at ``delay`` and moves toward response time divided by
    # ``per_host``, never below ``min_delay`` nor above ``max_delay``; errors (5xx, 429,
    # timeouts, resets, failed connections) double it. robots.txt Crawl-delay stays a floor.
    adaptive: bool = False
    min_delay: float = 0.1
    max_delay: float = 30.0


@dataclass(frozen=True, slots=True)
class DedupSettings:
    """Storing only what changed since earlier crawls of the target (see store.py)."""

    dedup: bool = True  # write revisits for payloads already archived
    # Payloads smaller than this are stored in full: a revisit record is about as large as a
    # small response, and a full record replays without another crawl's files.
    min_size: int = 256
    conditional: bool = True  # send If-None-Match / If-Modified-Since from the last capture


OUTAGE_CONFIRM_AFTER = 6 * 3600.0  # default: an outage must last 6 hours to be confirmed
NOTIFY_EXPIRY = 7 * 86400.0  # default: an undelivered notification is retried for a week


PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


def proxy_url(value: str) -> str:
    """Return a vantage-point proxy URL, or raise ValueError saying what is wrong with it."""
    parts = urlsplit(value)
    if parts.scheme not in PROXY_SCHEMES or not parts.hostname:
        raise ValueError(f"{redact_url(value)!r} is not a proxy URL (scheme://host:port, "
                         f"scheme one of {', '.join(PROXY_SCHEMES)})")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise ValueError(f"{redact_url(value)!r} has a bad port") from None
    return value


def proxy_name(url: str) -> str:
    """Return how a proxy is named in reports and WARC headers: without its credentials."""
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _secret_proxy(url: str) -> str:
    """Return a proxy URL as kept in crawl.json: redacted when it holds credentials."""
    parts = urlsplit(url)
    return redact_url(url) if parts.username or parts.password else url


@dataclass(frozen=True, slots=True)
class DetectSettings:
    """How a target's crawls are compared and when a change becomes an alert (diff.py)."""

    rules: TextRules = DEFAULT_RULES  # what of a page's text is noise
    recheck_probes: int = 2  # fetch a suspected URL again this many times after the crawl
    recheck_spacing: float = 2.0  # seconds between those fetches
    confirm_runs: int = 2  # or: consecutive crawls in one class that confirm it
    # server errors and maintenance pages: only by confirm_runs crawls spanning this long
    outage_confirm_after: float = OUTAGE_CONFIRM_AFTER
    control_url: str | None = None  # fetched when fetches failed: is our own network down?
    max_probe_dirs: int = 50  # soft-404 probes (random URLs beside changed pages) per crawl
    # Proxies (http://, socks5://) through which a suspected takedown is fetched again
    # before it is believed: a page fine from there is blocked-here, not removed.
    vantage: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()  # Apprise URLs told about state changes
    notify_expiry: float = NOTIFY_EXPIRY  # seconds an undelivered notification is retried


@dataclass(frozen=True, slots=True)
class CrawlSettings:
    """Everything one crawl needs; built by the CLI (or, later, from a target config)."""

    seeds: tuple[str, ...]
    output: Path = ARCHIVES
    target: str | None = None  # defaults to the first seed's host
    scope: ScopeRules = field(default_factory=ScopeRules)
    limits: Limits = field(default_factory=Limits)
    politeness: Politeness = field(default_factory=Politeness)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    robots: RobotsPolicy = RobotsPolicy.OBEY
    warc_size: int = 1024 ** 3  # start a new WARC file past this size (1G)
    warc_prefix: str | None = None  # defaults to the target name
    sitemaps: bool = True  # read robots.txt Sitemap: lines and /sitemap.xml of seed hosts
    extract_workers: int = 1  # processes parsing HTML/CSS; 0 parses in the event loop
    operator: str | None = None  # who ran the crawl, for warcinfo
    dedup: DedupSettings = field(default_factory=DedupSettings)
    wacz: bool = False  # package the crawl as <target>-<crawl-id>.wacz when it completes
    # Enter each page's text into the search index as it is captured (archive/textindex.py);
    # False: the texts wait in the backlog for `crawler search-index` (the crawl saves the
    # indexing's CPU and disk; searches say how many texts they do not see)
    search_index: bool = True
    detect: DetectSettings = field(default_factory=DetectSettings)
    # Public web archives (``--source`` specs, rescue/sources.py) the target is rescued from
    # when it goes dark: every seed's site, from each, in this order (jobs/after_dark.py).
    rescue_sources: tuple[str, ...] = ()

    def target_name(self) -> str:
        """Return the target name, derived from the first seed when not given."""
        if self.target:
            return self.target
        # A directory name under the archive root: never "", "." or ".." (a seed host of
        # ".." would otherwise write beside the root), never hidden.
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", urls.host_of(self.seeds[0])).strip("-.")
        return name or "site"

    def to_json(self) -> dict[str, Any]:
        """Return the settings as JSON-ready data (crawl.json, the catalog).

        Notification URLs and vantage proxies are redacted (they carry tokens and
        passwords): ``crawler resume`` gets them back from the target's private file
        (``layout.save_notify``).
        """
        data: dict[str, Any] = _jsonable(asdict(self))
        data["detect"]["notify"] = [redact_url(u) for u in self.detect.notify]
        data["detect"]["vantage"] = [_secret_proxy(u) for u in self.detect.vantage]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CrawlSettings:
        """Rebuild settings saved by ``to_json``."""
        scope = dict(data["scope"])
        scope["kind"] = ScopeKind(scope["kind"])
        scope["include"] = tuple(re.compile(p) for p in scope["include"])
        scope["exclude"] = tuple(re.compile(p) for p in scope["exclude"])
        scope["traps"] = TrapRules(**scope["traps"])
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values.update(
            seeds=tuple(data["seeds"]), output=Path(data["output"]),
            scope=ScopeRules(**scope), limits=Limits(**data["limits"]),
            politeness=Politeness(**data["politeness"]),
            fetch=FetchSettings(**{**data["fetch"], "resolve": tuple(
                tuple(pair) for pair in data["fetch"].get("resolve", ()))}),
            robots=RobotsPolicy(data["robots"]), dedup=DedupSettings(**data.get("dedup", {})),
            detect=_detect_from_json(data.get("detect")),
            rescue_sources=tuple(data.get("rescue_sources", ())))
        return cls(**values)


def _detect_from_json(data: dict[str, Any] | None) -> DetectSettings:
    """Rebuild detection settings saved by ``to_json`` (absent in crawls of older versions)."""
    if not data:
        return DetectSettings()
    rules = data.get("rules") or {}
    values: dict[str, Any] = {k: tuple(v) if k in ("notify", "vantage") else v
                              for k, v in data.items() if k != "rules"}
    return DetectSettings(
        rules=TextRules(ignore_selectors=tuple(rules.get("ignore_selectors", ())),
                        ignore_patterns=tuple(re.compile(p) for p in
                                              rules.get("ignore_patterns", ()))),
        **values)


def _jsonable(value: Any) -> Any:
    """Turn settings (paths, patterns, enums, tuples) into JSON-ready values."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, StrEnum):
        return value.value
    return value


def detect_settings_of(settings: dict[str, Any]) -> DetectSettings:
    """Return the detection settings a crawl ran with, from its stored snapshot (defaults if
    they cannot be read): what ``crawler diff`` and ``crawler reindex`` compare with."""
    try:
        return CrawlSettings.from_json(settings).detect
    except (KeyError, TypeError, ValueError):
        return DetectSettings()
