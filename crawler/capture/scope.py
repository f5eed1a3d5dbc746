"""Decide whether a discovered URL is crawled: scope type, include/exclude, depth and traps.

Pure logic plus one piece of bookkeeping (query variants seen per path), so the decision for
every URL is explainable: ``Decision.reason`` is what the crawl log and trap log print.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol
from urllib.parse import unquote_plus, urlsplit

from crawler.capture import urls
from crawler.core.models import UrlKind


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
    # distinct query *shapes* per host+path (facet combinations, session junk); values that
    # are identifiers (a page number, an id, a date: any token with a digit) are one shape,
    # so pagination and record ids never count
    max_query_variants: int = 100
    # pages of one URL pattern (digits as '#'), reached from pages of that same pattern,
    # whose text is the same but for the numbers of their own URL: an endless calendar,
    # "page 9999: nothing found" of a listing paged past its end
    max_same_content: int = 20
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
_CONTENT_MEMORY = 4096  # fingerprints remembered per URL pattern


_ID_VALUE = re.compile(r"[^\s&=]{0,128}\d[^\s&=]{0,128}")  # one token with a digit in it
_DIGITS = re.compile(r"\d+")


def query_shape(query: str) -> str:
    """Return a query string with identifier values made alike: ``page=3&sort=name`` and
    ``page=4&sort=name`` have one shape (``page=#&sort=name``), so do ``id=Ab3`` and
    ``id=xY7``; ``sort=name`` and ``sort=date`` have two."""
    parts = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        plain = unquote_plus(value)
        parts.append(f"{unquote_plus(name)}=" + ("#" if _ID_VALUE.fullmatch(plain) else plain))
    return "&".join(sorted(parts))


def url_pattern(url: str) -> str:
    """Return host, path and parameter names of a URL with digit runs as '#': the pattern
    whose pages the same-content trap rule counts (``/calendar?month=#-#``)."""
    parts = urlsplit(url)
    names = sorted({p.partition("=")[0] for p in parts.query.split("&")} - {""})
    return _DIGITS.sub("#", parts.netloc + parts.path) + ("?" + "&".join(names) if names
                                                          else "")


class VariantCounter(Protocol):
    """Counts distinct query shapes per path (kept in the frontier's database in crawls)."""

    def allow_variant(self, path: str, shape: str, limit: int) -> bool:
        """Return True if ``shape`` is known for ``path`` or one more fits under ``limit``."""
        ...


class MemoryVariants:
    """VariantCounter kept in memory (for tests and pure use)."""

    def __init__(self) -> None:
        self._shapes: dict[str, set[str]] = {}

    def allow_variant(self, path: str, shape: str, limit: int) -> bool:
        """Count one more shape of ``path`` unless ``limit`` is reached."""
        known = self._shapes.setdefault(path, set())
        if shape in known:
            return True
        if len(known) >= limit:
            return False
        known.add(shape)
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
        # URL pattern -> digit-blind text fingerprint -> pages; bounded per pattern
        self._content: dict[str, OrderedDict[str, int]] = {}
        self._repetitive: set[str] = set()  # patterns found to serve the same page endlessly
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

    def known_repetitive(self, trapped: Iterable[str]) -> None:
        """Take over the patterns earlier crawls found repetitive (their trapped URLs), so
        a recrawl does not walk a few steps further into the same calendar each time."""
        self._repetitive.update(url_pattern(url) for url in trapped)

    def note_content(self, url: str, shape_hash: str | None) -> None:
        """Count a fetched page's digit-blind text under its URL pattern; a pattern whose
        pages keep being the same page is a trap from then on (``trap:same-content``)."""
        if shape_hash is None:
            return
        pattern = url_pattern(url)
        if "#" not in pattern and "?" not in pattern:
            return  # a fixed address: nothing endless about it
        seen = self._content.setdefault(pattern, OrderedDict())
        count = seen.get(shape_hash, 0) + 1
        seen[shape_hash] = count
        seen.move_to_end(shape_hash)
        if count >= self.rules.traps.max_same_content:
            self._repetitive.add(pattern)
        if len(seen) > _CONTENT_MEMORY:  # forget the oldest fingerprints seen only once
            for old in [h for h, n in seen.items() if n == 1][: len(seen) // 2]:
                del seen[old]

    def decide(self, url: str, kind: UrlKind, depth: int, *, redirects: int = 0,
               embeds: int = 0, via: str | None = None) -> Decision:
        """Decide whether ``url``, reached as ``kind`` at ``depth`` from ``via``, is fetched.

        The same-content rule applies only to a URL linked from a page of its own pattern
        (a calendar linking to the next month, a listing to its next page): a pattern that
        keeps generating itself while serving the same page. Record pages linked from an
        index are never caught by it, even if many of them are "not found" notices, nor
        are URLs known from earlier crawls (``via`` None): a takedown that puts one notice
        on ten thousand pages must not stop their checking.
        """
        rules = self.rules
        if any(p.search(url) for p in rules.exclude):
            return Decision(False, "excluded")
        trap = self._trap(url, redirects, embeds)
        if (trap is None and self._repetitive and via is not None and kind is UrlKind.PAGE
                and url_pattern(url) in self._repetitive and url_pattern(via) ==
                url_pattern(url)):
            trap = "trap:same-content"
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
        """Count query shapes per host+path; return False past the cap."""
        parts = urlsplit(url)
        if not parts.query:
            return True
        return self._variants.allow_variant(parts.netloc + parts.path, query_shape(parts.query),
                                            self.rules.traps.max_query_variants)
