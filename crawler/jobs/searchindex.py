"""Fill the search index from the WARCs (``crawler search-index``): for archives made before
the index existed, and to rebuild it whole.

Every page text of the backlog (the texts the catalog knew of when it was upgraded to the
index, or all of them for a rebuild: ``textindex.clear``) is read back from one capture's
record (a revisit's payload from its original), turned into text exactly as the crawl does
(``pagetext``), and indexed under the catalog's fingerprint. What cannot be indexed is
counted, never dropped silently, and stays in the backlog: a record that cannot be read (its
WARC missing or damaged, or a revisit's original lost). A text that no longer gives the
fingerprint recorded at capture time is indexed all the same, as the best text there is,
and counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from crawler.archive import textindex
from crawler.archive.catalog import Catalog
from crawler.capture import pagetext
from crawler.detection.snapshots import Captures, text_lines

BATCH = 500  # texts per transaction: a kill loses at most this much work


@dataclass(slots=True)
class Filled:
    """What a fill did."""

    texts: int = 0  # distinct texts the index lacked
    indexed: int = 0
    unreadable: int = 0  # no capture with this text could be read back
    changed: int = 0  # read back, but its text no longer gives the recorded fingerprint
    seconds: float = 0.0


def fill(catalog: Catalog, *, rebuild: bool = False,
         progress: Callable[[Filled], object] | None = None) -> Filled:
    """Index every page text the index lacks (all of them if ``rebuild``)."""
    started = time.monotonic()
    if rebuild:
        with catalog.transaction():
            textindex.clear(catalog.db)
    done = Filled()
    rows = Captures(catalog, pagetext.DEFAULT_RULES)
    done.texts = textindex.unindexed(catalog.db)
    after = ""
    while True:  # in fingerprint order, a batch at a time: memory bounded at any size
        batch = textindex.backlog(catalog.db, after, BATCH)  # what cannot be read stays
        if not batch:
            break
        with catalog.transaction():
            for text_hash in batch:
                captures = [r[0] for r in catalog.db.execute(
                    "SELECT id FROM captures WHERE text_hash = ? AND record_type IN "
                    "('response', 'revisit') ORDER BY id LIMIT 5", (text_hash,))]
                _index_one(catalog, rows, text_hash, captures, done)
        after = batch[-1]
        if progress is not None:
            progress(done)
    done.seconds = time.monotonic() - started
    return done


def _index_one(catalog: Catalog, rows: Captures, text_hash: str, captures: list[int],
               done: Filled) -> None:
    """Index one text from the first of its captures that can be read back."""
    for capture in captures:
        refers_to = catalog.db.execute("SELECT refers_to FROM captures WHERE id=? AND "
                                       "record_type='revisit'", (capture,)).fetchone()
        if refers_to and refers_to[0] and rows.record(refers_to[0]) is None:
            continue  # a revisit whose original is lost has no payload to read
        found = rows.record(capture)
        if found is None:
            continue
        lines = text_lines(*found, pagetext.DEFAULT_RULES)
        if pagetext.text_hash(lines) != text_hash:
            done.changed += 1
        title = catalog.db.execute("SELECT title FROM captures WHERE id=?",
                                   (capture,)).fetchone()[0]
        textindex.add(catalog.db, text_hash, title, "\n".join(lines))
        catalog.db.execute("DELETE FROM search_backlog WHERE hash=?", (text_hash,))
        done.indexed += 1
        return
    done.unreadable += 1
