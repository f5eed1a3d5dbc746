"""How much of each WARC file a resume may skip: per file, the offset below which every record
the catalog should point at is in the catalog.

A crawl writes a record before the catalog transaction that enters it, and enters records in
the order their pages finish, not the order they were written, so after a kill the records the
catalog lacks can sit anywhere in a file. Without a watermark a resume reads every WARC file of
the crawl to find them: a cost that grows with the crawl (a 3-million-page crawl holds
terabytes). With it, a resume reads only what lies past each file's mark, which is at most
what was written in the last moments before the kill.

The WARC writer (sink thread) says where each group of records starts before writing it and
where the file ends after; the catalog, committing a batch, asks for the marks assuming the
batch's captures entered, writes them in the same transaction, and only after the commit
succeeds tells the watermark they were entered. So a mark in the catalog never passes a record
that is not in the catalog: at worst it lags, and a resume reads a little more.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable


class Watermark:
    """Written-but-not-entered record groups per WARC file, shared by the writer and catalog."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[int]] = {}  # file -> starts of groups not yet entered
        self._ends: dict[str, int] = {}  # file -> its end after the last complete group

    def begin(self, warc_file: str, offset: int) -> None:
        """A group of records is about to be written at ``offset`` (sink thread)."""
        with self._lock:
            self._waiting.setdefault(warc_file, set()).add(offset)

    def written(self, warc_file: str, end: int) -> None:
        """Every group begun so far in ``warc_file`` is complete up to ``end``; a group that
        was not written (a failed write, cut back) is forgotten with ``abandon``."""
        with self._lock:
            self._ends[warc_file] = end

    def abandon(self, warc_file: str, offset: int) -> None:
        """The group begun at ``offset`` was cut back: no record is there."""
        with self._lock:
            self._waiting.get(warc_file, set()).discard(offset)

    def marks(self, entering: Iterable[tuple[str, int]] = ()) -> dict[str, int]:
        """Return file -> the offset a resume may start reading at, counting ``entering``
        (captures of the transaction about to commit) as entered."""
        pending = set(entering)
        with self._lock:
            found = {}
            for warc_file, end in self._ends.items():
                waiting = [o for o in self._waiting.get(warc_file, ())
                           if (warc_file, o) not in pending]
                found[warc_file] = min(waiting, default=end)
            return found

    def entered(self, captures: Iterable[tuple[str, int]]) -> None:
        """These captures' records are in the catalog now (their transaction committed)."""
        with self._lock:
            for warc_file, offset in captures:
                self._waiting.get(warc_file, set()).discard(offset)
