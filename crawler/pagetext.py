"""The text of a page as takedown detection compares it: main content, in lines, without noise.

Pages change bytes for reasons nobody cares about: a clock in the footer, a visit counter, a
session token, a rotating banner. Comparing this normalized text instead of bytes keeps those
from raising alarms. Normalization, in order:

1. drop what is never read (script, style, noscript, template, svg) and what a target's
   ``ignore_selectors`` name;
2. keep the main content: ``<main>``, ``[role=main]`` or a single ``<article>``; otherwise the
   body without its ``header``, ``nav``, ``footer`` and ``aside``;
3. one line per block (paragraph, list item, table row, heading...), cells joined by " | ";
4. per line: whitespace collapsed, case-folded, then ``NOISE_PATTERNS`` and the target's
   ``ignore_patterns`` removed; empty lines dropped.

Pure functions; the crawl hashes the result (catalog ``text_hash``), and the diff re-reads
payloads only when two hashes differ.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bs4 import (
    BeautifulSoup,
    MarkupResemblesLocatorWarning,
    NavigableString,
    Tag,
    XMLParsedAsHTMLWarning,
)

_DROP = ["script", "style", "noscript", "template", "svg", "head"]
_CHROME = ["header", "nav", "footer", "aside"]
_BLOCKS = frozenset({"p", "li", "tr", "div", "section", "article", "main", "h1", "h2", "h3",
                     "h4", "h5", "h6", "dt", "dd", "blockquote", "pre", "ul", "ol", "table",
                     "thead", "tbody", "caption", "figcaption", "figure", "form", "fieldset",
                     "address", "hr", "title", "body", "option", "legend", "details",
                     "summary"})
_CELLS = frozenset({"td", "th"})
_BREAK = "\x1e"  # marks block boundaries; newlines inside text are only whitespace

# Built-in noise: timestamps, times of day, session/cache tokens, visit counters. Dates alone
# are kept: a changed date of birth or arrest is an edit, not noise.
NOISE_PATTERNS: tuple[re.Pattern[str], ...] = tuple(re.compile(p) for p in (
    r"\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:z|[+-]\d{2}:?\d{2})?",
    r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s?[ap]\.?m\.?)?(?!\d)",
    r"\b[0-9a-f]{16,}\b",
    r"\b(?=[\w-]*\d)(?=[\w-]*[a-z])[\w-]{24,}\b",
    r"(?:просмотр\w*|посещени\w*|визит\w*|посетител\w*|views?|visits?|visitors?|hits?|"
    r"online|онлайн|сейчас на сайте)\W{0,3}\d[\d\s,.]*",
    r"\d[\d\s,.]*\s*(?:просмотр\w*|посещени\w*|посетител\w*|views?|visits?|visitors?)",
))


@dataclass(frozen=True, slots=True)
class TextRules:
    """Per-target additions to the built-in normalization."""

    ignore_selectors: tuple[str, ...] = ()  # CSS selectors removed before reading the text
    ignore_patterns: tuple[re.Pattern[str], ...] = ()  # regexes removed from each line


DEFAULT_RULES = TextRules()


def parse(html: str) -> BeautifulSoup:
    """Parse HTML with lxml, without bs4's heuristic warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        return BeautifulSoup(html, "lxml")


def page_lines(soup: BeautifulSoup, rules: TextRules = DEFAULT_RULES) -> list[str]:
    """Return the normalized main-content lines of a parsed page (modifies ``soup``)."""
    for tag in soup(_DROP):
        tag.decompose()
    for selector in rules.ignore_selectors:
        for tag in soup.select(selector):
            tag.decompose()
    root = _main(soup)
    for tag in root.find_all(True):
        if tag.name in _BLOCKS:
            tag.insert_before(NavigableString(_BREAK))
            tag.insert_after(NavigableString(_BREAK))
        elif tag.name in _CELLS:
            tag.insert_after(NavigableString(" | "))
        elif tag.name == "br":
            tag.replace_with(NavigableString(_BREAK))
    patterns = (*NOISE_PATTERNS, *rules.ignore_patterns)
    return normalize_lines(root.get_text("").split(_BREAK), patterns)


def normalize_lines(lines: Iterable[str], patterns: Sequence[re.Pattern[str]]) -> list[str]:
    """Collapse whitespace, case-fold, remove noise; drop lines left empty."""
    found = []
    for raw in lines:
        line = " ".join(raw.split()).casefold().strip(" |")
        for pattern in patterns:
            line = pattern.sub("", line)
        line = " ".join(line.split()).strip(" |:,.;-")
        if line:
            found.append(line)
    return found


def _main(soup: BeautifulSoup) -> Tag:
    """Return the element holding the page's main content."""
    for candidate in (soup.find("main"), soup.find(attrs={"role": "main"})):
        if isinstance(candidate, Tag):
            return candidate
    articles = soup.find_all("article")
    if len(articles) == 1 and isinstance(articles[0], Tag):
        return articles[0]
    body = soup.body if soup.body is not None else soup
    for tag in body(_CHROME):
        tag.decompose()
    return body


def text_hash(lines: Sequence[str]) -> str:
    """Return the fingerprint the catalog stores for a page's normalized text."""
    return hashlib.sha1("\n".join(lines).encode("utf-8")).hexdigest()


def html_lines(html: str, rules: TextRules = DEFAULT_RULES) -> list[str]:
    """Return the normalized lines of an HTML document."""
    return page_lines(parse(html), rules)
