"""Take turns writing to the catalog, across processes and threads.

SQLite lets one connection write at a time, and a waiting writer polls (sleeping up to
100 ms between tries). A crawl keeps its write transaction open for a moment to group many
small writes; between two of its batches the lock is free for microseconds, which a polling
writer almost never hits: a second crawl on the same archive root died with "database is
locked". So writers queue on an advisory lock instead (``flock``, woken by the kernel the
moment it is released), and announce that they wait, so that a batching writer commits early
and hands over (``Catalog.commit_if_due``).

Two lock files beside the catalog: ``.catalog.turn`` (exclusive: whoever holds it may open a
write transaction) and ``.catalog.want`` (shared by everyone waiting for the turn).
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from pathlib import Path

TURN_FILE = ".catalog.turn"
WANT_FILE = ".catalog.want"

_held = threading.local()  # turns this thread holds, by lock file: a second one would deadlock


class WriteTurn:
    """One catalog connection's place in the queue of writers."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._fds: tuple[int, int] | None = None
        self._closer: weakref.finalize[[tuple[int, int]], WriteTurn] | None = None
        self.held = False

    def _files(self) -> tuple[int, int]:
        """Open the lock files on first use (a read-only root never needs them); they are
        closed with the catalog, or when this object is collected."""
        if self._fds is None:
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
            turn = os.open(self._root / TURN_FILE, flags, 0o644)
            want = os.open(self._root / WANT_FILE, flags, 0o644)
            self._fds = (turn, want)
            self._closer = weakref.finalize(self, _close_all, self._fds)
        return self._fds

    def acquire(self) -> None:
        """Wait for the turn (blocking); say that we wait while we do."""
        turn, want = self._files()
        key = str(self._root)
        held: set[str] = getattr(_held, "turns", set())
        if key in held:
            raise RuntimeError(f"this thread already writes to the catalog under {key} "
                               "through another connection: waiting would never end")
        fcntl.flock(want, fcntl.LOCK_SH)
        try:
            fcntl.flock(turn, fcntl.LOCK_EX)
        finally:
            fcntl.flock(want, fcntl.LOCK_UN)
        held.add(key)
        _held.turns = held
        self.held = True

    def release(self) -> None:
        """Give the turn back."""
        if not self.held or self._fds is None:
            return
        fcntl.flock(self._fds[0], fcntl.LOCK_UN)
        self.held = False
        getattr(_held, "turns", set()).discard(str(self._root))

    def others_waiting(self) -> bool:
        """Return True if another writer waits for the turn (cheap: two system calls)."""
        _, want = self._files()
        try:
            fcntl.flock(want, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(want, fcntl.LOCK_UN)
        return False

    def close(self) -> None:
        """Release the turn and close the lock files."""
        self.release()
        if self._closer is not None:
            self._closer()
        self._fds = self._closer = None


def _close_all(fds: tuple[int, ...]) -> None:
    """Close file descriptors (a finalizer: must not refer to the object)."""
    for fd in fds:
        os.close(fd)
