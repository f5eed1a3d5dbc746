"""The dashboard's replay: the bundled pywb (``archive/replay.py``), started on its own
loopback port and shown in a frame.

Its own port makes it its own origin: an archived page's scripts run there, never in the
dashboard's origin, so a hostile page can neither read the dashboard nor press its buttons.
pywb binds 127.0.0.1 only, whatever address the dashboard listens on (pywb has no access
token); a dashboard reached from another machine says so instead of showing the frame.

pywb is found (or installed once into its own environment) in a background thread, so the
dashboard answers at once; until it is up, the replay page says what it is waiting for. The
collections are rebuilt whenever the set of finished crawls changed since they were built:
pywb reads its CDXJ files at each lookup, so a new crawl replays without a restart (a new
target needs one: pywb reads its configuration at start, and is restarted).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
from pathlib import Path

from crawler.archive.catalog import Catalog, CrawlStatus
from crawler.archive.replay import build_collections, pywb_bin, start_wayback
from crawler.core.errors import OutputError

log = logging.getLogger("crawler.web")


def free_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replayer:
    """A pywb child process serving every target of an archive root."""

    def __init__(self, root: Path, *, install: bool = True) -> None:
        self.root = root
        self.install = install
        self.port: int | None = None
        self.problem: str | None = None  # why replay is not available (None: it is, or soon)
        self._bindir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._built: tuple[tuple[str, str, str], ...] | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()

    def start(self) -> None:
        """Find (or install) pywb and start it, in the background."""
        threading.Thread(target=self._start, name="replay-start", daemon=True).start()

    def _start(self) -> None:
        try:
            self._bindir = pywb_bin(create=self.install, log=log.info)
            self.refresh()
        except OutputError as exc:
            self.problem = str(exc)
            log.warning("replay not available: %s", exc)
        finally:
            self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait(self, timeout: float) -> bool:
        """Wait until pywb is up or known to be unavailable."""
        return self._ready.wait(timeout)

    def refresh(self) -> None:
        """Rebuild the collections if the finished crawls changed; (re)start pywb if its
        targets changed or it is not running."""
        if self._bindir is None:
            return
        with self._lock:
            catalog = Catalog.open(self.root, read_only=True)
            try:
                crawls = tuple(sorted((c.target, c.crawl_id, c.status) for c in catalog.crawls()
                                      if c.status != CrawlStatus.RUNNING))
                if crawls == self._built and self._alive():
                    return
                targets = sorted({c[0] for c in crawls})
                if not targets:
                    self.problem = "nothing to replay yet: no finished crawl"
                    return
                before = {c[0] for c in self._built or ()}
                directory = build_collections(catalog, self.root, targets)
            finally:
                catalog.close()
            if self._alive() and before == set(targets):
                self._built = crawls
                return
            self.stop()
            port = free_port()
            self._proc = start_wayback(directory, port, self._bindir)
            self.port, self._built, self.problem = port, crawls, None
            log.info("replay (pywb) on http://127.0.0.1:%d/", port)

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop pywb."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
