"""Where crawls live on disk (``archives/<target>/<crawl-id>/``) and the per-target lock that
keeps two crawls of one target from running at once."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from crawler.core.errors import OutputError
from crawler.core.redact import read_private, write_private

NOTIFY_FILE = ".notify.json"  # a target's notification URLs, owner-only (redact.py)


class CrawlInProgress(OutputError):
    """Another process is crawling the same target."""


def new_crawl_dir(root: Path, target: str) -> tuple[str, Path]:
    """Create and return (crawl id, directory) for a new crawl of ``target``."""
    base = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1000):
        crawl_id = base if n == 0 else f"{base}-{n}"
        path = root / target / crawl_id
        try:
            path.mkdir(parents=True, exist_ok=False)
            return crawl_id, path
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot create {path}: {exc}") from exc
    raise OutputError(f"too many crawls of {target} in one second under {root}")


def lock_target(root: Path, target: str) -> IO[str]:
    """Take the target's lock (released when the process exits, even by kill -9)."""
    path = root / target / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the crawl
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise CrawlInProgress(f"another run of {target!r} is in progress (crawling, comparing "
                              f"or reporting; lock {path} is held): try again when it ends"
                              ) from exc
    return handle


def target_is_locked(root: Path, target: str) -> bool:
    """Return True if some process holds the target's lock (a run is on). Creates nothing:
    it also answers on a read-only root (where nothing can be running)."""
    try:
        handle = open(root / target / ".lock", "rb")  # noqa: SIM115 - closed below
    except OSError:
        return False  # never locked (or unreadable: then no run of ours holds it)
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        handle.close()
    return False


def save_notify(root: Path, target: str, urls: tuple[str, ...],
                vantage: tuple[str, ...] = ()) -> None:
    """Keep a target's notification URLs and vantage-point proxies (both may carry
    passwords) where only the owner can read them, for resume."""
    path = root / target / NOTIFY_FILE
    if urls or vantage:
        kept = {"notify": list(urls)}
        if vantage:
            kept["vantage"] = list(vantage)
        write_private(path, kept)
    elif path.exists():
        path.unlink()


def saved_notify(root: Path, target: str, key: str = "notify") -> list[str]:
    """Return the notification URLs (or, with ``key="vantage"``, the proxies) that
    ``save_notify`` kept for a target."""
    data = read_private(root / target / NOTIFY_FILE)
    if isinstance(data, dict) and isinstance(data.get(key), list):
        return [u for u in data[key] if isinstance(u, str)]
    return []


RESERVE_FILE = ".space-reserve"  # a running crawl's room for its last words (SpaceReserve)
RESERVE_BYTES = 512 * 1024


class SpaceReserve:
    """A file of zeros a crawl keeps under its target while it runs, and deletes when a write
    fails for lack of space (and at its end).

    A disk that fills up can fill while the catalog is being written; recording how the crawl
    ended (interrupted, ``no-space``) is then one more catalog write that would fail too, and
    the crawl would be left saying "running". Deleting the reserve frees room for that write,
    the index and ``crawl.json``, as a ballast file does on servers.
    """

    def __init__(self, root: Path, target: str, size: int = RESERVE_BYTES) -> None:
        self.path = root / target / RESERVE_FILE
        try:
            with open(self.path, "wb") as fh:
                fh.write(bytes(size))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:  # already full: the crawl stops at its first write anyway
            self.path.unlink(missing_ok=True)

    def release(self) -> None:
        """Give the room back (idempotent)."""
        self.path.unlink(missing_ok=True)


def write_json(path: Path, data: object) -> None:
    """Write ``data`` as indented JSON, whole or not at all: into ``.tmp``, then renamed
    (a failed write leaves no ``.tmp`` behind and the earlier file as it was)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
