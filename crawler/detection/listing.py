"""Paginated listings judged as one: a name that moved to another page was not removed.

A site's index of names (Memorial's list of victims, per letter, 25 to a page) is split over
pages. When the site shows 10 names a page instead of 25, or drops three names from page 1 and
every later name moves up, comparing each page with its own earlier capture finds "removed"
names that are still listed, one page on. ``regroup`` compares the pages of one listing as a
whole: an entry counts as removed only when no page of its listing still shows it, and each
page reports exactly the entries it held that are listed nowhere now.

Pure: it takes the findings of a comparison and the text of captures, and returns findings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from crawler.detection.detect import Cls, Finding, Snap, served

# Query parameters that number the pages of a listing (``p`` is not one: WordPress posts).
PAGE_PARAMS = frozenset({"page", "pg", "paged", "pagenum", "page_num", "pn", "start",
                         "offset", "from", "skip"})
_PAGE_SEGMENT = re.compile(r"/page[/-]?\d+/?$", re.IGNORECASE)
# Classes a listing page can get from shifted entries, and a gone listing page's classes.
_SHIFTABLE = frozenset({Cls.PARTIAL, Cls.EDITED})
_GONE = frozenset({Cls.REMOVED, Cls.SOFT_404, Cls.REDIRECT_HOME})


def listing_key(url: str) -> str | None:
    """Return the listing a paginated URL belongs to (the URL without its page number), or
    None if the URL carries no page number."""
    if "?" not in url and "/page" not in url.lower():
        return None  # (most URLs: no parse needed)
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if not (k.lower() in PAGE_PARAMS and v.isdigit())]
    path = _PAGE_SEGMENT.sub("/", parts.path)
    if len(kept) == len(query) and path == parts.path:
        return None
    return urlunsplit((parts.scheme, parts.netloc, path, urlencode(sorted(kept)), ""))


def _entry(line: str) -> bool:
    """Return True if a text line can be an entry (a name, a title), not a row of page
    numbers: a listing that shows fewer pages must not "remove" its old page links."""
    return any(ch.isalpha() for ch in line)


def regroup(findings: list[Finding], lines: Callable[[Snap], list[str] | None],
            prior: Callable[[str], Snap | None] = lambda key: None) -> list[Finding]:
    """Return ``findings`` with the pages of each paginated listing judged as one.

    ``prior(key)`` is a page's capture by the previous crawl: the pages' last good captures
    can be of different crawls (a page in a suspected state keeps an older one), so an
    entry listed by the previous crawl on any page is not "new" to the listing either.
    """
    groups: dict[str, list[int]] = {}
    keys = [listing_key(f.url) for f in findings]
    for i, key in enumerate(keys):
        if key is not None:
            groups.setdefault(key, []).append(i)
    # A listing's first page is often also its bare address (/persons/ = /persons/?page=1).
    for i, f in enumerate(findings):
        if keys[i] is None and f.url in groups:
            groups[f.url].append(i)
    out = list(findings)
    for members in groups.values():
        if len(members) < 2 or not any(findings[i].cls in _SHIFTABLE | _GONE
                                       for i in members):
            continue
        for i, finding in _judge([findings[i] for i in members], lines, prior):
            out[members[i]] = finding
    return out


def _judge(pages: list[Finding], lines: Callable[[Snap], list[str] | None],
           prior: Callable[[str], Snap | None]) -> list[tuple[int, Finding]]:
    """Return (index, new finding) for the pages of one listing whose class changes."""
    old: list[list[str]] = []
    new: list[list[str] | None] = []
    for f in pages:
        old.append((lines(f.before) or []) if f.before is not None else [])
        now = lines(f.after) if f.after is not None and _listed(f.after) else []
        # A page not fetched this time may still hold its entries: assume it does.
        new.append(old[-1] if f.cls is Cls.NOT_CHECKED else now)
    if any(n is None for n in new):  # a page whose text cannot be read: judge nothing
        return []
    listed_now = {line for n in new for line in (n or [])}
    listed_before = {line for o in old for line in o}
    for f in pages:
        earlier = prior(f.key)
        if earlier is not None and _listed(earlier):
            listed_before.update(lines(earlier) or [])
    changed: list[tuple[int, Finding]] = []
    for i, f in enumerate(pages):
        vanished = [line for line in old[i] if _entry(line) and line not in listed_now]
        if f.cls in _GONE:
            kept = [line for line in old[i] if _entry(line)]
            if kept and not vanished:
                changed.append((i, replace(
                    f, cls=Cls.MOVED, strong=False, detail=f"{f.detail}; all {len(kept)} of "
                    "its entries are still listed on other pages of the listing")))
            continue
        if f.cls not in _SHIFTABLE:
            continue
        appeared = [line for line in (new[i] or []) if _entry(line)
                    and line not in listed_before]
        old_chars = sum(map(len, old[i])) or 1
        gone, came = sum(map(len, vanished)), sum(map(len, appeared))
        if vanished and gone >= 2 * came and gone >= 0.05 * old_chars:
            found = replace(f, cls=Cls.PARTIAL, removed=tuple(vanished[:200]),
                            added=tuple(appeared[:50]),
                            detail=f"{len(vanished)} entries listed on no page of the "
                                   "listing any more")
        else:
            found = replace(f, cls=Cls.EDITED, removed=tuple(vanished[:200]),
                            added=tuple(appeared[:50]),
                            detail=f"{f.detail}; entries moved between pages of the listing"
                            if f.cls is Cls.PARTIAL else f.detail)
        if found != f:
            changed.append((i, found))
    return changed


def _listed(snap: Snap) -> bool:
    """Return True if a capture served content whose entries count as listed (a challenge
    page in front of a listing page shows none of its entries)."""
    return served(snap) and not snap.wall
