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

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, Tag, XMLParsedAsHTMLWarning
from bs4.element import NavigableString

_DROP = ["script", "style", "noscript", "template", "svg", "head"]
_CHROME = ["header", "nav", "footer", "aside"]
_BLOCKS = frozenset({"p", "li", "tr", "div", "section", "article", "main", "h1", "h2", "h3",
                     "h4", "h5", "h6", "dt", "dd", "blockquote", "pre", "ul", "ol", "table",
                     "thead", "tbody", "caption", "figcaption", "figure", "form", "fieldset",
                     "address", "hr", "title", "body", "option", "legend", "details",
                     "summary"})
_CELLS = frozenset({"td", "th"})
_WANTED = frozenset({*_DROP, *_CHROME, "main", "article", "br"})
_BREAK = "\x1e"  # marks a <br>; newlines inside text are only whitespace

# Built-in noise: timestamps, times of day, session/cache tokens, visit counters. Dates alone
# are kept: a changed date of birth or arrest is an edit, not noise.
#
# Every repetition that can be followed by something that may fail to match is bounded, so
# the engine's backtracking stays linear: an unbounded number run before "views" retried
# every start inside a long run of digits (a statistics table: minutes per page).
NOISE_PATTERNS: tuple[re.Pattern[str], ...] = tuple(re.compile(p) for p in (
    r"\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:z|[+-]\d{2}:?\d{2})?",
    r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s?[ap]\.?m\.?)?(?!\d)",
    r"\b[0-9a-f]{16,512}\b",
    r"\b(?=[\w-]{0,512}\d)(?=[\w-]{0,512}[a-z])[\w-]{24,512}\b",
    r"(?:просмотр\w{0,8}|посещени\w{0,8}|визит\w{0,8}|посетител\w{0,8}|views?|visits?|"
    r"visitors?|hits?|online|онлайн|сейчас на сайте)\W{0,3}\d[\d\s,.]{0,24}",
    r"(?<![\d,.])\d[\d\s,.]{0,24}(?:просмотр\w{0,8}|посещени\w{0,8}|посетител\w{0,8}|"
    r"views?|visits?|visitors?)",
))
_NOISE = re.compile("|".join(f"(?:{p.pattern})" for p in NOISE_PATTERNS))  # one pass
_DIGIT = re.compile(r"\d")


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
    root = _main_content(soup, rules)
    lines = [part for line in _block_lines(root) for part in line.split(_BREAK)]
    return normalize_lines(lines, rules.ignore_patterns)


def _main_content(soup: BeautifulSoup, rules: TextRules) -> Tag:
    """Return the element of the main content, with what is never read and what the rules
    ignore removed, and each ``<br>`` marked as a line break (modifies ``soup``)."""
    found: dict[str, list[Tag]] = {}
    role_main: Tag | None = None
    for tag in soup.descendants:  # one pass finds everything the steps below need
        if isinstance(tag, Tag):
            if tag.name in _WANTED:
                found.setdefault(tag.name, []).append(tag)
            elif role_main is None and tag.get("role") == "main":
                role_main = tag
    for name in _DROP:
        for tag in found.get(name, ()):
            tag.decompose()
    for selector in rules.ignore_selectors:
        for tag in soup.select(selector):
            tag.decompose()
    root = _main(soup, found, role_main)
    for br in found.get("br", ()):  # a line break inside a block: lists of names use them
        br.replace_with(NavigableString(_BREAK))
    return root


@dataclass(frozen=True, slots=True)
class PageName:
    """What a page is, as it says itself: for a reader of a finding, not for comparing."""

    title: str | None  # the document's <title>
    headline: str | None  # its main heading, with the dates the page gives beside it
    as_written: dict[str, str]  # normalized line -> the line as the page writes it


_YEAR = re.compile(r"(?<!\d)(1[5-9]\d\d|20\d\d)(?!\d)")
_HEADLINE_MAX = 300


def page_name(html: str, rules: TextRules = DEFAULT_RULES) -> PageName:
    """Return a page's title, headline and its main-content lines as written (case kept).

    The headline is the first ``<h1>`` of the main content; when the line right after it
    gives a year, that line is added: a person page's name and
    dates ("Иванов Иван Петрович — Родился в 1900 году. Арестован в 1937 году.").
    """
    soup = parse(html)
    title_tag = soup.find("title")
    title = _clean(title_tag.get_text(" ")) if isinstance(title_tag, Tag) else None
    root = _main_content(soup, rules)
    written: dict[str, str] = {}
    blocks: list[tuple[str, Tag]] = []
    for text, block in _blocks(root):
        for part in text.split(_BREAK):
            raw = _clean(part)
            normal = normalize_lines([part], rules.ignore_patterns)
            if raw and normal:
                written.setdefault(normal[0], raw)
                blocks.append((raw, block))
    return PageName(title or None, _headline(blocks), written)


def _headline(blocks: list[tuple[str, Tag]]) -> str | None:
    """Return the main content's first heading, with the line right after it if that gives a
    year (a heading only in the site's header is the site's name, not the page's)."""
    inside = [i for i, (_, block) in enumerate(blocks) if block.name == "h1"]
    if not inside:
        return None
    at = inside[0]
    head = blocks[at][0]
    for text, block in blocks[at + 1:at + 2]:
        if block.name != "h1" and _YEAR.search(text):
            head = f"{head} — {text}"
            break
    if len(head) > _HEADLINE_MAX:
        head = head[:_HEADLINE_MAX - 1].rstrip() + "…"
    return head or None


def _clean(text: str) -> str:
    """Return text with its whitespace collapsed (case and punctuation kept)."""
    return " ".join(text.split()).strip(" |")


def _block_lines(root: Tag) -> list[str]:
    """Return the text of ``root`` as one line per innermost block element."""
    return [line for line, _ in _blocks(root)]


def _blocks(root: Tag) -> list[tuple[str, Tag]]:
    """Return (text, block element) for each line of ``root``.

    Consecutive strings with the same innermost block ancestor form a line; a change of
    table cell within it adds " | ". Walking up from each string (with a cache) is several
    times faster than marking every block boundary in the tree.
    """
    lines: list[tuple[str, Tag]] = []
    parts: list[str] = []
    current: Tag | None = None
    cell: Tag | None = None
    blocks: dict[int, tuple[Tag, Tag | None]] = {}
    for text in root.strings:
        parent = text.parent
        if parent is None:
            continue
        found = blocks.get(id(parent))
        if found is None:
            block, cell_of = root, None
            node: Tag | None = parent
            while node is not None and node is not root:
                if cell_of is None and node.name in _CELLS:
                    cell_of = node
                if node.name in _BLOCKS:
                    block = node
                    break
                node = node.parent
            found = blocks[id(parent)] = (block, cell_of)
        block, cell_of = found
        if block is not current:
            if parts and current is not None:
                lines.append(("".join(parts), current))
            parts, current, cell = [], block, cell_of
        elif cell_of is not cell:
            parts.append(" | ")
            cell = cell_of
        parts.append(text)
    if parts and current is not None:
        lines.append(("".join(parts), current))
    return lines


def split_lines(html: str, selector: str, rules: TextRules = DEFAULT_RULES,
                ) -> tuple[list[str] | None, list[str]]:
    """Return (the normalized lines of the one element ``selector`` picks, or None if it
    picks none or several; the page's lines without it), from one parse."""
    soup = parse(html)
    for tag in soup.find_all(_DROP):
        tag.decompose()
    picked = soup.select(selector)
    inside = None
    if len(picked) == 1:
        inside = normalize_lines((text for text, _ in _blocks(picked[0])),
                                 rules.ignore_patterns)
    for tag in picked:
        tag.decompose()
    return inside, page_lines(soup, rules)


def _only_caption(tag: Tag, volatile: set[str], rules: TextRules) -> bool:
    """Return True if all ``tag`` holds besides ``volatile`` lines is a caption: one short
    line at most."""
    rest = [line for line in normalize_lines((text for text, _ in _blocks(tag)),
                                             rules.ignore_patterns) if line not in volatile]
    return len(rest) <= 1 and sum(map(len, rest)) <= 60


def volatile_selector(html: str, volatile: set[str], rules: TextRules = DEFAULT_RULES,
                      ) -> str | None:
    """Return a CSS selector for the one element of the main content that holds every line
    of ``volatile`` (lines that differ between two fetches of the page moments or runs
    apart: a rotating block), or None if they are not in one element short of the whole
    main content. Ignoring that element, the rest of the page can be compared."""
    soup = parse(html)
    for tag in soup.find_all(_DROP):
        tag.decompose()
    for selector in rules.ignore_selectors:
        for tag in soup.select(selector):
            tag.decompose()
    found: dict[str, list[Tag]] = {name: soup.find_all(name) for name in _WANTED}
    role_main = soup.find(True, attrs={"role": "main"})
    root = _main(soup, found, role_main if isinstance(role_main, Tag) else None)
    holders = [tag for text, tag in _blocks(root)
               if set(normalize_lines([text], rules.ignore_patterns)) & volatile]
    if not holders:
        return None
    common = holders[0]
    for tag in holders[1:]:
        ancestors = {id(a) for a in [tag, *tag.parents]}
        while id(common) not in ancestors and common.parent is not None:
            common = common.parent
    # One item of a list that rotates (a <p> among <p>s), or one under a caption ("From the
    # archive"): the block is the list, not the item.
    while isinstance(common.parent, Tag) and common.parent is not root and (
            any(isinstance(sib, Tag) and sib.name == common.name
                for sib in (*common.previous_siblings, *common.next_siblings))
            or _only_caption(common.parent, volatile, rules)):
        common = common.parent
    if common is root or any(a is common for a in root.parents):
        return None
    steps = []
    node: Tag | None = common
    while node is not None and node.name != "[document]":
        index = 1 + sum(1 for sib in node.previous_siblings
                        if isinstance(sib, Tag) and sib.name == node.name)
        steps.append(f"{node.name}:nth-of-type({index})")
        node = node.parent
    return " > ".join(reversed(steps))


def normalize_lines(lines: Iterable[str], patterns: Sequence[re.Pattern[str]] = (),
                    ) -> list[str]:
    """Collapse whitespace, case-fold, remove built-in noise and ``patterns``; drop lines
    left empty. The built-in noise always contains a digit, so lines without one skip it."""
    found = []
    for raw in lines:
        line = " ".join(raw.split()).casefold().strip(" |")
        if _DIGIT.search(line):
            line = _NOISE.sub("", line)
        for pattern in patterns:
            line = pattern.sub("", line)
        line = " ".join(line.split()).strip(" |:,.;-")
        if line:
            found.append(line)
    return found


def _main(soup: BeautifulSoup, found: dict[str, list[Tag]], role_main: Tag | None) -> Tag:
    """Return the element holding the page's main content."""
    mains = [t for t in found.get("main", ()) if t.parent is not None]
    if mains:
        return mains[0]
    if role_main is not None and role_main.parent is not None:
        return role_main
    articles = [t for t in found.get("article", ()) if t.parent is not None]
    if len(articles) == 1:
        return articles[0]
    body = soup.body if soup.body is not None else soup
    for name in _CHROME:
        for tag in found.get(name, ()):
            if tag.parent is not None:
                tag.decompose()
    return body


def text_hash(lines: Sequence[str]) -> str:
    """Return the fingerprint the catalog stores for a page's normalized text."""
    return hashlib.sha1("\n".join(lines).encode("utf-8")).hexdigest()


def html_lines(html: str, rules: TextRules = DEFAULT_RULES) -> list[str]:
    """Return the normalized lines of an HTML document."""
    return page_lines(parse(html), rules)
