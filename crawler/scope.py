"""Decide whether a discovered URL is crawled: scope type, include/exclude, depth and traps.

Pure logic plus one piece of bookkeeping (query variants seen per path), so the decision for
every URL is explainable: ``Decision.reason`` is what the crawl log and trap log print.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol
from urllib.parse import urlsplit

from crawler import urls
from crawler.models import UrlKind


class ScopeKind(StrEnum):
    """How far from the seed a crawl may wander."""

    PAGE = "page"  # the seed page itself (and its requisites)
    PREFIX = "prefix"  # URLs under the seed's directory
    HOST = "host"  # the seed's host and port
    DOMAIN = "domain"  # the seed's registrable domain and all its subdomains


@dataclass(frozen=True, slots=True)
class TrapRules:
    """Crawler-trap defences; each limit can be raised per target for big databases."""

    max_url_length: int = urls.MAX_URL_LENGTH
    max_repeated_segments: int = 3  # /a/b/a/b/a/... : a segment seen this often is a loop
    max_query_variants: int = 100  # distinct query strings per host+path (calendars, facets)
    max_future_years: int = 2  # dates more than this many years ahead are calendar traps
    max_redirects: int = 10  # redirect hops in one chain
    max_embeds: int = 5  # requisite-of-requisite chain (CSS -> @import -> image ...)


@dataclass(frozen=True, slots=True)
class ScopeRules:
    """User-chosen scope."""

    kind: ScopeKind = ScopeKind.PREFIX
    depth: int | None = None  # link hops from a seed; None = unlimited
    include: tuple[re.Pattern[str], ...] = ()  # extra URLs in scope (exclude still wins)
    exclude: tuple[re.Pattern[str], ...] = ()  # never fetched, not even as requisites
    requisites: bool = True  # fetch images/CSS/JS/fonts of pages, even on other hosts
    traps: TrapRules = field(default_factory=TrapRules)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to crawl a URL, and why."""

    allowed: bool
    reason: str  # "in-scope", "out-of-scope", "excluded", "too-deep", "trap:<rule>", ...

    @property
    def is_trap(self) -> bool:
        """Return True if a trap defence rejected the URL."""
        return self.reason.startswith("trap:")


# A year and month with a separator (2031-05, 2031/05): calendar pages. Bare digit runs are
# left alone because record ids (person/299901) look like dates too.
_DATE_IN_URL = re.compile(r"(?<!\d)(\d{4})[-/_.](0[1-9]|1[0-2])(?!\d)")
IN_SCOPE = Decision(True, "in-scope")


class VariantCounter(Protocol):
    """Counts distinct query strings per path (kept in the frontier's database in crawls)."""

    def allow_variant(self, path: str, limit: int) -> bool:
        """Count one more query variant of ``path``; return False once ``limit`` is reached."""
        ...


class MemoryVariants:
    """VariantCounter kept in memory (for tests and pure use)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def allow_variant(self, path: str, limit: int) -> bool:
        """Count one more variant of ``path`` unless ``limit`` is reached."""
        if self._counts[path] >= limit:
            return False
        self._counts[path] += 1
        return True


class Scope:
    """Scope of one crawl: the rules plus the seeds they are anchored to.

    ``decide`` is meant for URLs not yet in the crawl: each call with a query string counts
    as one variant of its path.
    """

    def __init__(self, rules: ScopeRules, seeds: list[str], *, now: datetime | None = None,
                 variants: VariantCounter | None = None) -> None:
        self.rules = rules
        self._prefixes: set[str] = set()
        self._hosts: set[str] = set()
        self._domains: set[str] = set()
        self._pages: set[str] = set()
        self._variants = variants if variants is not None else MemoryVariants()
        self._year_limit = (now or datetime.now(UTC)).year + rules.traps.max_future_years
        self.trap_hits: Counter[str] = Counter()
        for seed in seeds:
            self.add_seed(seed)

    def add_seed(self, url: str) -> None:
        """Anchor the scope to another seed (also used when a seed redirects elsewhere)."""
        self._pages.add(urls.canonical_key(url))
        self._prefixes.add(urls.directory_prefix(url))
        self._hosts.add(urls.host_of(url))
        self._domains.add(urls.registered_domain(urls.hostname_of(url)))

    def in_seed_scope(self, url: str) -> bool:
        """Return True if ``url`` falls inside the scope type around any seed."""
        kind = self.rules.kind
        if kind is ScopeKind.PAGE:
            return urls.canonical_key(url) in self._pages
        if kind is ScopeKind.PREFIX:
            return any(url.startswith(prefix) for prefix in self._prefixes)
        if kind is ScopeKind.HOST:
            return urls.host_of(url) in self._hosts
        hostname = urls.hostname_of(url)
        return any(hostname == d or hostname.endswith("." + d) for d in self._domains)

    def decide(self, url: str, kind: UrlKind, depth: int, *, redirects: int = 0,
               embeds: int = 0) -> Decision:
        """Decide whether ``url``, reached as ``kind`` at ``depth``, is fetched."""
        rules = self.rules
        if any(p.search(url) for p in rules.exclude):
            return Decision(False, "excluded")
        trap = self._trap(url, redirects, embeds)
        if trap is not None:
            self.trap_hits[trap] += 1
            return Decision(False, trap)
        if kind is UrlKind.REQUISITE:
            return IN_SCOPE if rules.requisites else Decision(False, "requisites-off")
        if kind in (UrlKind.SEED, UrlKind.ROBOTS):
            return IN_SCOPE
        included = any(p.search(url) for p in rules.include)
        if not included and not self.in_seed_scope(url):
            return Decision(False, "out-of-scope")
        if kind is UrlKind.PAGE and rules.depth is not None and depth > rules.depth:
            return Decision(False, "too-deep")
        if kind is UrlKind.PAGE and not self._note_query_variant(url):
            self.trap_hits["trap:query-variants"] += 1
            return Decision(False, "trap:query-variants")
        return IN_SCOPE

    def _trap(self, url: str, redirects: int, embeds: int) -> str | None:
        """Return the trap rule ``url`` trips, or None."""
        traps = self.rules.traps
        if len(url) > traps.max_url_length:
            return "trap:url-length"
        if redirects > traps.max_redirects:
            return "trap:redirect-chain"
        if embeds > traps.max_embeds:
            return "trap:embed-chain"
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        if segments and max(Counter(segments).values()) >= traps.max_repeated_segments:
            return "trap:repeated-segments"
        for match in _DATE_IN_URL.finditer(parts.path + "?" + parts.query):
            if int(match.group(1)) > self._year_limit:
                return "trap:future-date"
        return None

    def _note_query_variant(self, url: str) -> bool:
        """Count query strings per host+path; return False past the cap."""
        parts = urlsplit(url)
        if not parts.query:
            return True
        return self._variants.allow_variant(parts.netloc + parts.path,
                                            self.rules.traps.max_query_variants)
