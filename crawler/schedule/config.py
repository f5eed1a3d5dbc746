"""Load and validate a TOML target configuration into crawl settings and schedules.

Every error names the file, the key and the reason (``memorial.toml: targets[2].per_host:
must be an integer ≥ 1, got "two"``); unknown keys are errors, so a typo never silently falls
back to a default. ``KEYS`` (top level), ``TARGET_KEYS`` (each ``[[targets]]`` entry, and
``[defaults]`` for all targets) describe every key; docs/config.md documents each of them and
a test keeps the two in step.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from crawler.capture import urls
from crawler.capture.fetcher import FetchSettings
from crawler.capture.pagetext import TextRules
from crawler.capture.robots import RobotsPolicy
from crawler.capture.scope import ScopeKind, ScopeRules
from crawler.capture.settings import (
    ARCHIVES,
    CrawlSettings,
    DedupSettings,
    DetectSettings,
    Limits,
    Politeness,
    proxy_url,
)
from crawler.core.errors import ConfigError, InvalidURL
from crawler.core.units import parse_duration, parse_size
from crawler.rescue.sources import parse_source

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class _Bad(Exception):
    """A value failed validation; the caller adds file and key."""


def _int(low: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _Bad(f"must be an integer ≥ {low}, got {value!r}")
        return value
    return check


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _Bad(f"must be a number ≥ 0, got {value!r}")
    return float(value)


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"must be a non-empty string, got {value!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false, got {value!r}")
    return value


def _size(value: Any) -> int:
    found = parse_size(value)
    if not found:  # None, or 0: every size in a config is a limit or a file size
        raise _Bad(f"must be a size above 0 such as 500M, 1G or 1048576, got {value!r}")
    return found


def duration(value: Any) -> float:
    """Parse seconds, or a string such as 90s, 30m, 6h, 1d."""
    found = parse_duration(value)
    if found is None:
        raise _Bad(f"must be a duration such as 90s, 30m, 6h or 1d, got {value!r}")
    return found


def _choice(options: list[str]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise _Bad(f"must be one of {', '.join(options)}, got {value!r}")
        return str(value)
    return check


def _list(item: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, ...]]:
    def check(value: Any) -> tuple[Any, ...]:
        if isinstance(value, str) or not isinstance(value, list):
            raise _Bad(f"must be a list, got {value!r}")
        found = []
        for n, entry in enumerate(value):
            try:
                found.append(item(entry))
            except _Bad as exc:
                raise _Bad(f"item {n + 1}: {exc}") from None
        return tuple(found)
    return check


def _regex(value: Any) -> re.Pattern[str]:
    try:
        return re.compile(_str(value))
    except re.error as exc:
        raise _Bad(f"not a valid regular expression ({exc}): {value!r}") from None


def _url(value: Any) -> str:
    try:
        return urls.normalize(_str(value))
    except InvalidURL as exc:
        raise _Bad(str(exc)) from None


def _source(value: Any) -> str:
    try:
        parse_source(_str(value))
    except ConfigError as exc:
        raise _Bad(exc.reason) from None
    return str(value)


def _proxy(value: Any) -> str:
    try:
        return proxy_url(_str(value))
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def _cron(value: Any) -> str:
    from apscheduler.triggers.cron import CronTrigger  # only when a file is read: CLI start-up

    try:
        CronTrigger.from_crontab(_str(value), timezone="UTC")
    except ValueError as exc:
        raise _Bad(f"not a cron expression (minute hour day month weekday): {exc}") from None
    return str(value)


def _resolve(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise _Bad(f'must be a table such as {{ "memo.ru" = "192.0.2.10" }}, got {value!r}')
    return tuple((str(h).lower(), _str(ip)) for h, ip in value.items())


def _file_name(value: Any) -> str:
    """A plain file name: it is joined to the archive root and must stay inside it."""
    if (not isinstance(value, str) or not value.strip() or "/" in value or "\\" in value
            or value in (".", "..") or "\x00" in value):
        raise _Bad(f"must be a file name inside the archive root (no '/' or '..'), "
                   f"got {value!r}")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise _Bad("use letters, digits, '.', '_' or '-' (max 100), starting with a letter "
                   f"or digit; got {value!r}")
    return value


OUTBOX_INTERVAL = 60.0  # seconds between the daemon's passes over the outbox

# key -> (validator, documentation). Top level of the file:
KEYS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "archives": (_str, "archive root: WARCs, catalog, job store and logs (relative to the "
                       "config file)"),
    "max_concurrent_crawls": (_int(1), "targets crawled at the same time by the daemon"),
    "log_file": (_file_name, "daemon log file name inside the archive root (rotated at "
                             "10 MB)"),
    "outbox_interval": (duration, "how often the daemon retries notifications that could "
                                  "not be delivered (default 60s)"),
    "defaults": (dict, "a table of target keys applied to every target"),
    "targets": (list, "the sites to watch: one [[targets]] table each"),
}
# Keys of a [[targets]] entry (and of [defaults]):
TARGET_KEYS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "name": (_name, "the target's name: its directory and its key in the catalog"),
    "seeds": (_list(_url), "start URLs"),
    "scope": (_choice([k.value for k in ScopeKind]), "page, prefix, host or domain"),
    "include": (_list(_regex), "regexes of extra URLs in scope"),
    "exclude": (_list(_regex), "regexes of URLs never fetched (wins over include)"),
    "depth": (_int(0), "link hops from a seed"),
    "max_pages": (_int(1), "stop queueing pages after this many"),
    "max_bytes": (_size, "stop after downloading this much (e.g. 5G)"),
    "min_free_space": (_size, "warn at the start of a crawl when the archive root has less "
                              "free space (default 1G); a full disk stops the crawl cleanly"),
    "max_time": (duration, "stop a crawl after this long (e.g. 6h)"),
    "concurrency": (_int(1), "requests in flight across all hosts"),
    "per_host": (_int(1), "requests in flight to one host"),
    "delay": (_number, "seconds between request starts to one host"),
    "retries": (_int(0), "extra attempts after timeouts, resets, 429 and 5xx"),
    "adaptive_delay": (_bool, "let each host's delay follow its response times"),
    "min_delay": (_number, "lowest delay adaptive_delay may reach"),
    "max_delay": (_number, "highest delay adaptive_delay may reach"),
    "timeout": (duration, "longest silence while reading a response"),
    "max_body": (_size, "truncate larger responses"),
    "robots": (_choice([p.value for p in RobotsPolicy]), "obey or ignore robots.txt"),
    "user_agent": (_str, "User-Agent header"),
    "operator": (_str, "who runs the crawls (written into warcinfo)"),
    "requisites": (_bool, "fetch images, CSS, scripts and fonts of pages"),
    "sitemaps": (_bool, "read robots.txt Sitemap: lines and /sitemap.xml"),
    "warc_size": (_size, "start a new WARC file past this size"),
    "resolve": (_resolve, "host -> IP address to use instead of DNS"),
    "dedup": (_bool, "store payloads already archived as revisit records"),
    "conditional": (_bool, "send If-None-Match / If-Modified-Since from earlier crawls"),
    "wacz": (_bool, "package each finished crawl as a WACZ"),
    "search_index": (_bool, "enter pages' text into the search index as they are captured"),
    "schedule": (_cron, "cron expression in UTC, e.g. \"0 3 * * *\" (or use every)"),
    "every": (duration, "interval between crawls, e.g. 12h (or use schedule)"),
    "jitter": (duration, "random delay added to each scheduled start"),
    "ignore_text": (_list(_regex), "regexes removed from page text before comparing crawls"),
    "ignore_selectors": (_list(_str), "CSS selectors removed before comparing crawls"),
    "recheck": (_int(0), "one-off runs (crawler run): fetches of a suspected takedown to "
                         "confirm it"),
    "recheck_spacing": (duration, "time between those fetches"),
    "confirm_runs": (_int(1), "scheduled runs: consecutive crawls in one class to confirm it"),
    "outage_confirm_after": (duration, "server errors and maintenance pages are confirmed only "
                                       "by confirm_runs crawls spanning this long (default "
                                       "6h), never by re-checks"),
    "notify": (_list(_str), "Apprise URLs told about takedown state changes"),
    "notify_expiry": (duration, "how long an undelivered notification is retried before "
                                "it is given up (default 7d)"),
    "control_url": (_url, "a URL outside the target: if it fails too, our network is down"),
    "sources": (_list(_source), "public web archives (as `crawler rescue --source`) the "
                                "target is rescued from when it goes dark"),
    "vantage": (_list(_proxy), "proxies (http://, socks5://) through which a suspected "
                               "takedown is fetched again: a page fine from there is "
                               "blocked-here, not removed"),
}
_REQUIRED = ("name", "seeds")


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a target is crawled: a cron expression or an interval, plus jitter."""

    cron: str | None = None
    every: float | None = None
    jitter: float = 0.0

    def describe(self) -> str:
        """Return the schedule in words (logs, status)."""
        base = f"cron {self.cron!r}" if self.cron else f"every {self.every:g}s"
        return base + (f" ±{self.jitter:g}s" if self.jitter else "")


@dataclass(frozen=True, slots=True)
class Target:
    """One configured target."""

    name: str
    settings: CrawlSettings  # for one-off runs (re-checks within the run)
    scheduled: CrawlSettings  # for daemon runs (confirmation across runs)
    schedule: Schedule | None


@dataclass(frozen=True, slots=True)
class Config:
    """A validated configuration file."""

    path: Path
    archives: Path
    max_concurrent_crawls: int
    log_file: str
    targets: dict[str, Target]
    outbox_interval: float = OUTBOX_INTERVAL


def load(path: Path) -> Config:
    """Read and validate a configuration file; raise ConfigError naming file and key."""
    where = path.name
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), "(file)", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "(file)", f"cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, "(syntax)", f"not valid TOML: {exc}") from None
    top = _validate(data, KEYS, where, "")
    defaults = _validate(data.get("defaults", {}), TARGET_KEYS, where, "defaults.")
    for key in _REQUIRED:
        if key in defaults:
            raise ConfigError(where, f"defaults.{key}", "is per target, not a default")
    entries = data.get("targets", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(where, "targets", "at least one [[targets]] table is needed")
    root = (path.parent / top.get("archives", str(ARCHIVES))).resolve()
    targets: dict[str, Target] = {}
    for n, entry in enumerate(entries, 1):
        prefix = f"targets[{n}]."
        if not isinstance(entry, dict):
            raise ConfigError(where, f"targets[{n}]", "must be a table")
        values = {**defaults, **_validate(entry, TARGET_KEYS, where, prefix)}
        for key in _REQUIRED:
            if key not in values:
                raise ConfigError(where, f"{prefix}{key}", "required")
        if not values["seeds"]:
            raise ConfigError(where, f"{prefix}seeds", "needs at least one URL")
        if values["name"] in targets:
            raise ConfigError(where, f"{prefix}name", f"{values['name']!r} is used twice")
        if "schedule" in values and "every" in values:
            raise ConfigError(where, f"{prefix}every", "give schedule or every, not both")
        target = _target(values, root)
        politeness = target.settings.politeness
        if politeness.min_delay > politeness.max_delay:
            raise ConfigError(where, f"{prefix}min_delay", f"{politeness.min_delay:g} is above "
                              f"max_delay ({politeness.max_delay:g})")
        targets[values["name"]] = target
    return Config(path=path.resolve(), archives=root,
                  max_concurrent_crawls=top.get("max_concurrent_crawls", 2),
                  log_file=top.get("log_file", "crawler.log"), targets=targets,
                  outbox_interval=top.get("outbox_interval", OUTBOX_INTERVAL))


def _validate(table: Any, schema: dict[str, tuple[Callable[[Any], Any], str]], where: str,
              prefix: str) -> dict[str, Any]:
    """Check every key of a table against a schema; return the converted values."""
    if not isinstance(table, dict):
        raise ConfigError(where, f"{prefix.rstrip('.') or 'top level'}", "must be a table")
    found = {}
    for key, value in table.items():
        if key not in schema:
            raise ConfigError(where, f"{prefix}{key}",
                              f"unknown key (known: {', '.join(sorted(schema))})")
        check = schema[key][0]
        if check in (dict, list):
            if not isinstance(value, check):
                raise ConfigError(where, f"{prefix}{key}", "must be a " + (
                    "table" if check is dict else "list of tables"))
            continue
        try:
            found[key] = check(value)
        except _Bad as exc:
            raise ConfigError(where, f"{prefix}{key}", f"{exc}") from None
    return found


def _given(v: dict[str, Any], **fields: str) -> dict[str, Any]:
    """Return field -> value for the config keys (``field="key"``) present in ``v``: what a
    file leaves out keeps the settings' own default (settings.py), as on the command line."""
    return {name: v[key] for name, key in fields.items() if key in v}


def _target(v: dict[str, Any], root: Path) -> Target:
    """Build the crawl settings and schedule of one target from validated values."""
    politeness = Politeness(**_given(v, concurrency="concurrency", per_host="per_host",
                                     delay="delay", retries="retries", adaptive="adaptive_delay",
                                     min_delay="min_delay", max_delay="max_delay"))
    fetch = FetchSettings(**_given(v, user_agent="user_agent", read_timeout="timeout",
                                   max_body_bytes="max_body", resolve="resolve"),
                          max_connections=max(politeness.concurrency, 1))  # as the CLI does
    detect = DetectSettings(
        rules=TextRules(**_given(v, ignore_selectors="ignore_selectors",
                                 ignore_patterns="ignore_text")),
        **_given(v, recheck_probes="recheck", recheck_spacing="recheck_spacing",
                 confirm_runs="confirm_runs", control_url="control_url", notify="notify",
                 vantage="vantage", notify_expiry="notify_expiry",
                 outage_confirm_after="outage_confirm_after"))
    scope = {**_given(v, depth="depth", include="include", exclude="exclude",
                      requisites="requisites")}
    if "scope" in v:
        scope["kind"] = ScopeKind(v["scope"])
    rest: dict[str, Any] = _given(v, warc_size="warc_size", sitemaps="sitemaps",
                                  operator="operator", wacz="wacz", rescue_sources="sources",
                                  search_index="search_index")
    if "robots" in v:
        rest["robots"] = RobotsPolicy(v["robots"])
    settings = CrawlSettings(
        seeds=v["seeds"], output=root, target=v["name"], scope=ScopeRules(**scope),
        limits=Limits(**_given(v, max_pages="max_pages", max_bytes="max_bytes",
                               max_time="max_time", min_free_space="min_free_space")),
        politeness=politeness, fetch=fetch, detect=detect,
        dedup=DedupSettings(**_given(v, dedup="dedup", conditional="conditional")),
        **rest)
    schedule = None
    if "schedule" in v or "every" in v:
        schedule = Schedule(cron=v.get("schedule"), every=v.get("every"),
                            jitter=v.get("jitter", 0.0))
    scheduled = replace(settings, detect=replace(detect, recheck_probes=0))
    return Target(v["name"], settings, scheduled, schedule)
