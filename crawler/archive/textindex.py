"""Full-text search over the main text of archived pages, across all crawls (SQLite FTS5).

A researcher looking for a person types a name and must find every capture of the person's
page, including captures of a page since removed. What is indexed is the text takedown
detection compares (``pagetext.py``: the page's main content, one line per block,
case-folded, without the site's header, menus and footer), so a name in every page's menu
does not match every page.

One document per distinct text, not per capture: captures point at it by ``text_hash``
(the catalog's SHA-1 of that same text). A recrawl of an unchanged page adds nothing to the
index, and a page's history is the list of captures that share or succeed its texts. The
index is filled in the catalog transaction that enters each capture (``Catalog.add_capture``);
archives made before it existed are filled by ``crawler search-index`` (jobs/searchindex.py).

Case and Latin diacritics are folded by SQLite; "ё" and "е" are found either way (an
``alt`` column holds the text with "ё" written "е", for the texts that have one).

Queries are the user's words, never FTS5 syntax: each word (or "quoted phrase") must occur,
a trailing ``*`` makes a word a prefix; everything else is taken literally, so a name with a
hyphen or an apostrophe cannot raise a syntax error or change the query's meaning.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field

MAX_TEXT = 1 << 20  # characters of a page's text indexed; the rest is not searchable
HIT_START, HIT_END = "\x02", "\x03"  # around matched words in snippets (escaped when shown)
_TOKENS = re.compile(r'"([^"]*)"|(\S+)')
_WORDS = re.compile(r"\w+", re.UNICODE)


class BadQuery(ValueError):
    """The query has no word to look for."""


def add(db: sqlite3.Connection, text_hash: str, title: str | None, text: str) -> bool:
    """Index a page text unless a text with this fingerprint already is; return True if it
    was added (inside the caller's transaction)."""
    cursor = db.execute("INSERT OR IGNORE INTO page_texts (hash) VALUES (?)", (text_hash,))
    if not cursor.rowcount:
        return False
    db.execute("DELETE FROM search_backlog WHERE hash=?", (text_hash,))
    body = text[:MAX_TEXT]
    db.execute("INSERT INTO page_search (rowid, title, body, alt) VALUES (?, ?, ?, ?)",
               (cursor.lastrowid, title or "", body, _alternative(f"{title or ''}\n{body}")))
    return True


def defer(db: sqlite3.Connection, text_hash: str) -> None:
    """Leave a page text for ``crawler search-index`` (a crawl run with the index off):
    listed in the backlog unless the index has it already."""
    db.execute("INSERT OR IGNORE INTO search_backlog (hash) SELECT ?1 WHERE NOT EXISTS "
               "(SELECT 1 FROM page_texts WHERE hash = ?1)", (text_hash,))


def _alternative(text: str) -> str:
    """Return the text as it is also written, for a search to find either spelling: Russian
    prints "ё" as "е" more often than not ("Пётр", "Петр"), and SQLite folds diacritics of
    Latin letters only. Empty when the text has no "ё" (nothing to add)."""
    if "ё" not in text and "Ё" not in text:
        return ""
    return text.replace("ё", "е").replace("Ё", "Е")


def match_expression(query: str) -> str:
    """Return the FTS5 expression for what a user typed: every word or quoted phrase must
    occur (a word ending in ``*`` as a prefix); one typed with "ё" is also looked for with
    "е", as most texts print it. Raise BadQuery if nothing is left to find."""
    terms = []
    for phrase, word in _TOKENS.findall(query):
        prefix = "*" if word.endswith("*") else ""
        words = _WORDS.findall(phrase or word)
        if not words:
            continue
        quoted = '"' + " ".join(words) + '"' + prefix
        plain = _alternative(quoted)
        terms.append(f"({quoted} OR {plain})" if plain else quoted)
    if not terms:
        raise BadQuery(f"nothing to search for in {query!r}: type a word or a name")
    return " AND ".join(terms)


@dataclass(frozen=True, slots=True)
class Capture:
    """One capture whose text matched."""

    capture: int
    target: str
    crawl_id: str
    url: str
    fetched_at: str
    status: int | None
    record_type: str | None
    cls: str | None
    title: str | None


@dataclass(slots=True)
class Hit:
    """A URL (of a target) with matching text, and its captures that have it."""

    target: str
    url: str
    title: str
    snippet: str  # HIT_START/HIT_END around matched words; not escaped
    captures: list[Capture] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Results:
    """One page of results."""

    query: str
    hits: list[Hit]
    texts: int  # distinct matching texts in this page (each may be several captures)
    more: bool  # another page follows


def search(db: sqlite3.Connection, query: str, *, target: str | None = None,
           limit: int = 50, offset: int = 0) -> Results:
    """Return the URLs whose captured text matches, best first (bm25), with every capture
    that has a matching text; ``limit`` and ``offset`` count matching texts."""
    expression = match_expression(query)
    try:
        # ORDER BY rank lets FTS5 sort the matches itself, so the snippets are made for
        # the rows returned only (sorted by SQLite, every match got its three snippets
        # first: 6x the ranking's cost on a common name)
        ranked = db.execute(
            "SELECT rowid, title, snippet(page_search, 1, ?1, ?2, ' … ', 16), "
            "snippet(page_search, 2, ?1, ?2, ' … ', 16), snippet(page_search, 0, ?1, ?2, "
            "' … ', 16) FROM page_search WHERE page_search MATCH ?3 AND rank MATCH "
            "'bm25(4.0, 1.0, 1.0)' ORDER BY rank LIMIT ?4 OFFSET ?5",
            (HIT_START, HIT_END, expression, limit + 1, offset)).fetchall()
        more = len(ranked) > limit
        ranked = ranked[:limit]
        marks = ", ".join("?" * len(ranked))
        hashes = dict(db.execute(f"SELECT id, hash FROM page_texts WHERE id IN ({marks})",
                                 [r[0] for r in ranked]).fetchall())
    except sqlite3.OperationalError as exc:  # never expected: the expression is ours
        raise BadQuery(f"the search index cannot answer {query!r}: {exc}") from exc
    rows = [(hashes[r[0]], *r[1:]) for r in ranked if r[0] in hashes]
    hits: dict[tuple[str, str], Hit] = {}
    for text_hash, title, *snippets in rows:
        # the text where the words are, as written if they are there (else with "ё" as "е"),
        # or the text's start when only the title matched
        snip = next((x for x in snippets[:2] if HIT_START in x), snippets[0] or snippets[2])
        sql = ("SELECT c.id, k.target, k.crawl_id, c.url, c.fetched_at, c.status, "
               "c.record_type, c.class, c.title FROM captures c JOIN crawls k ON k.id = c.crawl "
               "WHERE c.text_hash = ?" + (" AND k.target = ?" if target else "")
               + " ORDER BY c.fetched_at")
        for row in db.execute(sql, (text_hash, target) if target else (text_hash,)):
            capture = Capture(*row)
            hit = hits.get((capture.target, capture.url))
            if hit is None:
                hit = hits[(capture.target, capture.url)] = Hit(
                    capture.target, capture.url, capture.title or title, snip)
            hit.captures.append(capture)
    for hit in hits.values():
        hit.captures.sort(key=lambda c: c.fetched_at)
    return Results(query, list(hits.values()), len(rows), more)


def unindexed(db: sqlite3.Connection) -> int:
    """Return how many distinct page texts the catalog knows of but the index lacks: searches
    do not see them. They are the texts of pages captured before the index existed (listed
    in ``search_backlog`` when the catalog was upgraded), less those indexed since; every
    capture entered since is indexed in its own transaction."""
    return int(db.execute("SELECT count(*) FROM search_backlog").fetchone()[0])


def backlog(db: sqlite3.Connection, after: str, size: int) -> list[str]:
    """Return up to ``size`` texts of the backlog past ``after``, in fingerprint order."""
    return [r[0] for r in db.execute("SELECT hash FROM search_backlog WHERE hash > ? ORDER BY "
                                     "hash LIMIT ?", (after, size))]


def clear(db: sqlite3.Connection) -> None:
    """Empty the index (inside the caller's transaction), every text back in the backlog,
    for a rebuild."""
    db.execute("DELETE FROM page_texts")
    db.execute("DELETE FROM page_search")
    db.execute("INSERT OR IGNORE INTO search_backlog SELECT DISTINCT text_hash FROM captures "
               "WHERE text_hash IS NOT NULL")
