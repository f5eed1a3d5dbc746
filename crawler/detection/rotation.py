"""Rotating blocks: an element of the main content that shows different items on every visit
("from the archive: three random documents"), found so that it can be left out of a page's
comparison (docs/detection.md, *Rotating blocks*). Reads captures; writes nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from crawler.capture import pagetext, urls
from crawler.detection import listing
from crawler.detection.detect import (
    Cls,
    Context,
    Finding,
    Snap,
    served,
)
from crawler.detection.snapshots import Captures, between


def rotating_blocks(findings: list[Finding], rows: Captures, extra: list[Snap], ctx: Context,
                     ) -> dict[str, str]:
    """Return key -> selector of a rotating block to leave out of the page's comparison.

    A block inside the main content that shows different items on every visit ("a random
    document from the archive") loses lines between any two crawls, and can hide a real
    removal beside it. It is found two ways:

    - across the site: the element that holds all the changes of a page, the same one on
      many pages of a host (a template's block), with every line it ever showed (its
      vocabulary); it is left out of a page only where all it holds is that vocabulary, so
      the site's own content is never left out;
    - on one page: another fetch of the page (a re-check of this crawl, or a crawl between
      the last good capture and this one) that differs from this capture; the lines that
      differ mark the block.
    """
    changed = [f for f in findings if f.cls in (Cls.PARTIAL, Cls.EDITED)
               and f.before is not None and f.after is not None]
    found: dict[str, str] = {}
    learned = _site_blocks(changed, rows, ctx)
    for f in changed:
        assert f.before is not None and f.after is not None
        for selector, vocabulary in learned.get(urls.host_of(f.url), {}).items():
            inside = [_element(rows, s, selector) for s in (f.before, f.after)]
            if all(lines is not None and set(lines) <= vocabulary for lines in inside):
                found[f.key] = selector
                break
    rechecks: dict[str, list[Snap]] = {}
    for snap in extra:
        if snap.kind == "recheck":
            rechecks.setdefault(snap.key, []).append(snap)
    for f in changed:
        if f.key in found or f.cls is not Cls.PARTIAL:
            continue
        assert f.before is not None and f.after is not None
        now = ctx.lines(f.after) or []
        for other in [*rechecks.get(f.key, []), *between(rows, f.before, f.after)]:
            seen = ctx.lines(other) if served(other) else None
            volatile = set(now) ^ set(seen if seen is not None else now)
            block = _block_of(rows, volatile, f.after, other) if volatile else None
            if block is not None:
                found[f.key] = block
                break
    return found


ROTATION_SAMPLE = 40  # changed pages per host looked at to learn its rotating blocks
ROTATION_PAGES = 3  # pages whose every change lies in one element that make it a block


def _site_blocks(changed: list[Finding], rows: Captures, ctx: Context,
                 ) -> dict[str, dict[str, set[str]]]:
    """Return host -> {selector: vocabulary} of the blocks in which all the changes of at
    least ``ROTATION_PAGES`` of the host's changed pages lie (a sample of them)."""
    sampled: Counter[str] = Counter()
    counts: dict[str, Counter[str]] = {}
    vocabulary: dict[tuple[str, str], Counter[str]] = {}  # line -> pages it was seen on
    listings = {key for f in changed if (key := listing.listing_key(f.url))}
    for f in changed:
        assert f.before is not None and f.after is not None
        host = urls.host_of(f.url)
        if sampled[host] >= ROTATION_SAMPLE or listing.listing_key(f.url) or f.url in listings:
            continue  # (a listing's changes are entries moving between its pages)
        sampled[host] += 1
        volatile = set(ctx.lines(f.before) or []) ^ set(ctx.lines(f.after) or [])
        selector = _block_of(rows, volatile, f.after, f.before) if volatile else None
        if selector is None:
            continue
        counts.setdefault(host, Counter())[selector] += 1
        seen = vocabulary.setdefault((host, selector), Counter())
        seen.update({line for snap in (f.before, f.after)
                     for line in _element(rows, snap, selector) or []})
    # A rotating block draws from a pool: its items recur across pages. Changes that merely
    # lie in one element of many pages (each page its own text) are no rotation.
    return {host: {sel: set(vocabulary[(host, sel)]) for sel, n in found.items()
                   if n >= ROTATION_PAGES and _recurring(vocabulary[(host, sel)])}
            for host, found in counts.items()}


def _recurring(seen: Counter[str]) -> bool:
    """Return True if the lines of a block were, on average, seen on two pages or more."""
    return bool(seen) and sum(seen.values()) >= 2 * len(seen)


def _element(rows: Captures, snap: Snap, selector: str) -> list[str] | None:
    """Return the lines of the element ``selector`` picks in a capture."""
    found = rows.split(snap, selector)
    return found[0] if found else None


def _block_of(rows: Captures, volatile: set[str], *snaps: Snap) -> str | None:
    """Return the selector of the element holding the lines that differ between captures:
    in each capture the element holding its share of them, the outermost of those (one
    capture may show a single item of the rotating list, the other several)."""
    found = []
    for snap in snaps:
        html = rows.html(snap)
        selector = pagetext.volatile_selector(html, volatile, rows.rules) if html else None
        if selector is not None:
            found.append(selector)
    if not found:
        return None
    outer = min(found, key=len)
    return outer if all(s.startswith(outer) for s in found) else None


def left_out(f: Finding) -> Finding:
    """Return a finding that says a rotating block was left out of its comparison."""
    note = "a block that changes on every visit was left out of the comparison"
    return replace(f, detail=f"{f.detail}; {note}" if f.detail else note)

