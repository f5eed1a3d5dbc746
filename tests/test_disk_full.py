"""A full disk stops the crawl at the first failed write, leaves every file valid, says so,
and the crawl resumes once space is freed (issue 12). The disk is a real small tmpfs."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import fast_settings

from crawler.archive import textindex
from crawler.archive.catalog import Catalog
from crawler.crawl.engine import StopReason, run_crawl

CLI = [sys.executable, "-m", "crawler"]
PAGES = 120
PAGE_BYTES = 64 * 1024  # incompressible: 120 pages are ~7.7 MB of WARC


class _Tree(BaseHTTPRequestHandler):
    """/p/N: an HTML page linking to /p/2N+1 and /p/2N+2 (below ``pages``), its text from
    ``text``; robots.txt empty, anything else 404."""

    pages = PAGES

    def text(self, n: int) -> str:
        raise NotImplementedError

    def do_GET(self) -> None:
        if self.path == "/robots.txt":
            body = b""
        elif self.path.startswith("/p/"):
            n = int(self.path[3:])
            links = "".join(f'<a href="/p/{m}">{m}</a>' for m in (2 * n + 1, 2 * n + 2)
                            if m < self.pages)
            body = f"<html><body><h1>{n}</h1>{links}<p>{self.text(n)}</p></body></html>".encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class _Pages(_Tree):
    """Pages of random bytes (hex): incompressible, so the small disk fills."""

    def text(self, n: int) -> str:
        return os.urandom(PAGE_BYTES).hex()[:PAGE_BYTES]


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/p/0"
    server.shutdown()
    server.server_close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (mounting needs root, as in CI; the test fails, never skips, without)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"this test mounts a small tmpfs (needs root): " \
                                    f"{mounted.stderr}"
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=180, cwd=cwd)


def test_a_full_disk_stops_cleanly_and_the_crawl_resumes_once_space_is_freed(
        site: str, small_disk: Path, tmp_path: Path) -> None:
    out = small_disk / "arch"
    first = _run("archive", site, "--target", "t", "--output", str(out), "--scope", "host",
                 "--delay", "0", "--no-sitemaps", cwd=tmp_path)
    assert first.returncode == 10, first.stdout + first.stderr
    assert "free under" in first.stderr  # warned before starting: 3 MiB < 1 GiB
    assert "no space left" in first.stderr + first.stdout
    assert "Traceback" not in first.stderr, first.stderr
    db = sqlite3.connect(out / "catalog.sqlite3")
    try:
        status, reason = db.execute("SELECT status, stop_reason FROM crawls").fetchone()
        fetched_before = db.execute("SELECT count(*) FROM captures WHERE status = 200 "
                                    "AND final = 1").fetchone()[0]
    finally:
        db.close()
    assert (status, reason) == ("interrupted", "no-space")
    assert not (out / "t" / ".space-reserve").exists()  # given back to record that end
    assert 0 < fetched_before < PAGES  # it stopped early, and what it had is kept
    crawl_dir = next((out / "t").glob("2*"))
    assert not list(crawl_dir.rglob("*.open"))
    for warc in (crawl_dir / "warc").glob("*.warc.gz"):
        check = subprocess.run([sys.executable, "-m", "warcio.cli", "check", str(warc)],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    listed = _run("status", "--output", str(out), cwd=tmp_path)
    assert listed.returncode == 0 and "no-space" in listed.stdout

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    resumed = _run("resume", "t", "--output", str(out), "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    db = sqlite3.connect(out / "catalog.sqlite3")
    try:
        pages = db.execute("SELECT url, count(*) FROM captures WHERE status = 200 AND final = 1 "
                           "AND url LIKE '%/p/%' GROUP BY url").fetchall()
        (state,) = db.execute("SELECT status FROM crawls").fetchone()
    finally:
        db.close()
    assert state == "complete"
    assert len(pages) == PAGES and all(n == 1 for _, n in pages)
    verify = _run("verify", "t", "--output", str(out), cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr


class _Gated(_Tree):
    """Seven pages; /p/0 is answered at once, the others only once the server's ``release``
    is set (the server counts every request, and sets ``waiting`` once /p/1 and /p/2 are
    both asked for)."""

    server: _GatedServer
    pages = 7

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.hits[self.path] += 1
            if self.server.hits["/p/1"] and self.server.hits["/p/2"]:
                self.server.waiting.set()
        super().do_GET()

    def text(self, n: int) -> str:
        if n:
            self.server.release.wait(30)
        return f"The text of page {n}, long enough to be a page's main text."


class _GatedServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Gated)
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.waiting = threading.Event()
        self.release = threading.Event()


def test_links_of_a_batch_lost_to_a_full_disk_are_not_fetched_again_by_the_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while the catalog commits a batch: SQLite rolls the whole batch back,
    the frontier rows of the links its pages found with it. Those links were already handed
    out; fetched, they are entered in the next batch. The resume enters the lost pages again
    from the WARC and finds their links again: the links entered since must not be fetched
    a second time (seen at random under load in the test above, as /p/15, /p/16, ...)."""
    server = _GatedServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seed = f"http://127.0.0.1:{server.server_address[1]}/p/0"
    settings = fast_settings(seed, tmp_path / "arch", sitemaps=False)
    try:
        with monkeypatch.context() as patch:
            commit_if_due = Catalog.commit_if_due
            index_text = textindex.add

            def due_once_links_are_fetched(catalog: Catalog, interval: float = 0.5) -> None:
                # the batch holding /p/0 stays open until its links are being fetched
                if server.waiting.is_set():
                    commit_if_due(catalog, 0.0)

            def disk_full_once(db: sqlite3.Connection, text_hash: str, title: str | None,
                               text: str) -> bool:
                # the batch's first page text, entered at its commit, does not fit: SQLite
                # has rolled the whole transaction back when it says so
                if not server.release.is_set():
                    server.release.set()  # /p/1 and /p/2 are answered now
                    db.execute("ROLLBACK")
                    raise sqlite3.OperationalError("database or disk is full")
                return index_text(db, text_hash, title, text)

            patch.setattr(Catalog, "commit_if_due", due_once_links_are_fetched)
            patch.setattr(textindex, "add", disk_full_once)
            first = asyncio.run(run_crawl(settings))
        assert first.stop_reason is StopReason.NO_SPACE
        assert server.hits["/p/1"] == server.hits["/p/2"] == 1
        catalog = Catalog.open(settings.output)
        try:
            row = catalog.latest_crawl("test")
            assert row is not None
            entered = {r.url.rsplit("/", 1)[1] for r in catalog.captures(row.pk)
                       if "/p/" in r.url}
            assert entered == {"1", "2"}  # the batch with /p/0 was lost, the next entered
        finally:
            catalog.close()
        resumed = asyncio.run(run_crawl(settings, resume=row))
        assert resumed.stop_reason is StopReason.COMPLETE
    finally:
        server.shutdown()
        server.server_close()
    assert {p: n for p, n in server.hits.items() if n > 1} == {}  # nothing fetched twice
    db = sqlite3.connect(settings.output / "catalog.sqlite3")
    try:
        pages = db.execute("SELECT url, count(*) FROM captures WHERE status = 200 AND final = 1 "
                           "AND url LIKE '%/p/%' GROUP BY url").fetchall()
    finally:
        db.close()
    assert len(pages) == 7 and all(n == 1 for _, n in pages)  # nothing lost, none twice
