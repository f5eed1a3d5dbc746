"""Shared fixtures: the sample site on 127.0.0.1, a finished crawl of it, and a real pywb."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from crawler.archive import replay
from crawler.archive.catalog import Catalog
from crawler.capture.scope import ScopeKind, ScopeRules, TrapRules
from crawler.crawl.engine import CrawlOutcome, CrawlSettings, Politeness, run_crawl
from crawler.demo.sample_site import SampleSite

REPO = Path(__file__).resolve().parent.parent


def fast_settings(seed: str, output: Path, **overrides: object) -> CrawlSettings:
    """Return settings for crawling a local fixture quickly (no politeness delay)."""
    base: dict[str, object] = {
        "seeds": (seed,),
        "output": output,
        "target": "test",
        "scope": ScopeRules(kind=ScopeKind.HOST, traps=TrapRules(max_query_variants=12)),
        "politeness": Politeness(concurrency=8, per_host=4, delay=0.0, retries=2, backoff=0.2),
        "extract_workers": 0,
    }
    base.update(overrides)
    return CrawlSettings(**base)  # type: ignore[arg-type]


def crawl(settings: CrawlSettings) -> CrawlOutcome:
    """Run a crawl to completion."""
    return asyncio.run(run_crawl(settings))


@pytest.fixture
def site() -> Iterator[SampleSite]:
    """A fresh sample site (30 persons)."""
    with SampleSite() as s:
        yield s


@pytest.fixture(scope="session")
def full_crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SampleSite,
                                                                           CrawlOutcome]]:
    """One complete crawl of the sample site, shared by read-only assertions.

    Uses the parse process pool, as real crawls do.
    """
    out = tmp_path_factory.mktemp("full")
    with SampleSite() as s:
        outcome = crawl(fast_settings(s.url, out, extract_workers=1))
        yield s, outcome


# -- pywb ---------------------------------------------------------------------------------------

def pywb_bin() -> Path:
    """Return the bin/ directory of pywb's own virtual environment (created if needed), found
    as `crawler replay` finds it: $PYWB_VENV, ./.venv-pywb, ~/.local/share/crawler."""
    return replay.pywb_bin()


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Pywb:
    """A running pywb serving one collection."""

    base: str  # http://127.0.0.1:PORT/COLL/
    root: Path

    def get(self, timestamp: str, url: str, *, raw: bool, follow: bool = True,
            mode: str | None = None) -> httpx.Response:
        """Fetch a capture raw (/coll/tsid_/url) or rewritten (mp_ page, im_ image, ...)."""
        mode = mode if mode is not None else ("id_" if raw else "mp_")
        return httpx.get(f"{self.base}{timestamp}{mode}/{url}", follow_redirects=follow,
                         timeout=30)


def start_pywb(root: Path, warcs: list[Path], indexes: list[Path]) -> tuple[Pywb,
                                                                          subprocess.Popen[bytes]]:
    """Set up a collection from our WARCs and our own CDXJ indexes, and start wayback."""
    bindir = pywb_bin()
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(bindir / "wb-manager"), "init", "coll"], cwd=root, check=True,
                   capture_output=True)
    coll = root / "collections" / "coll"
    for warc in warcs:
        shutil.copy(warc, coll / "archive" / warc.name)
    with open(coll / "indexes" / "index.cdxj", "w", encoding="utf-8") as out:
        lines: list[str] = []
        for index in indexes:
            lines.extend(index.read_text("utf-8").splitlines())
        out.write("\n".join(sorted(lines)) + "\n")
    port = free_port()
    proc = replay.start_wayback(root, port, bindir)
    return Pywb(f"http://127.0.0.1:{port}/coll/", root), proc


@contextlib.contextmanager
def serve_archive_root(out: Path, target: str) -> Iterator[Pywb]:
    """Serve a target of an archive root through pywb, as `crawler replay` builds it."""
    catalog = Catalog.open(out)
    try:
        root = replay.build_collections(catalog, out, [target])
    finally:
        catalog.close()
    port = free_port()
    proc = replay.start_wayback(root, port, pywb_bin())
    try:
        yield Pywb(f"http://127.0.0.1:{port}/{target}/", root)
    finally:
        proc.terminate()
        proc.wait(10)


# -- reading WARCs back ------------------------------------------------------------------------

@dataclass
class Rec:
    """One WARC record read back with digests verified."""

    type: str
    uri: str
    warc: dict[str, str]
    http: list[tuple[str, str]] | None
    status: int | None
    body: bytes  # raw payload as stored (content-coded)
    line: str = ""  # HTTP status or request line
    fields: list[tuple[str, str]] = field(default_factory=list)  # WARC, in order

    def header(self, name: str) -> str | None:
        """Return an HTTP header of the record."""
        for key, value in self.http or []:
            if key.lower() == name.lower():
                return value
        return None


def read_records(warcs: tuple[Path, ...] | list[Path]) -> list[Rec]:
    """Read every record of the WARCs, raising on any digest mismatch."""
    from warcio.archiveiterator import ArchiveIterator

    found = []
    for path in warcs:
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh, check_digests="raise"):
                http = record.http_headers
                body = record.raw_stream.read()
                found.append(Rec(
                    type=record.rec_type,
                    uri=record.rec_headers.get_header("WARC-Target-URI") or "",
                    warc=dict(record.rec_headers.headers),
                    http=list(http.headers) if http else None,
                    status=int(http.get_statuscode()) if http and record.rec_type in
                    ("response", "revisit") else None,
                    body=body,
                    line=f"{http.protocol} {http.statusline}" if http else "",
                    fields=list(record.rec_headers.headers),
                ))
    return found


def responses(recs: list[Rec], types: tuple[str, ...] = ("response",)) -> dict[str, list[Rec]]:
    """Group response records (or other ``types``, e.g. revisits too) by target URI."""
    grouped: dict[str, list[Rec]] = {}
    for rec in recs:
        if rec.type in types:
            grouped.setdefault(rec.uri, []).append(rec)
    return grouped


# -- redis ---------------------------------------------------------------------------------------

@dataclass
class RedisServer:
    """A redis-server of the test's own, on a free port, persisting to ``directory``."""

    directory: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed: apt-get install redis-server " \
                       "(bash .ci/run does)"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                import redis as sync_redis

                if sync_redis.Redis(port=self.port).ping():
                    return
            except Exception:  # not up yet
                pass
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL: only what the append-only file holds survives."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM: Redis writes what it holds and exits, as a restarted service does."""
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(30)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server on 127.0.0.1 with append-only persistence, stopped after the test."""
    found = RedisServer(tmp_path / "redis", free_port())
    found.directory.mkdir()
    found.start()
    try:
        yield found
    finally:
        if found.proc is not None and found.proc.poll() is None:
            found.kill()


@contextlib.contextmanager
def pywb_with_wacz(wacz: Path, root: Path) -> Iterator[Pywb]:
    """Serve a WACZ in pywb, imported as pywb users import one (wb-manager add)."""
    bindir = pywb_bin()
    root.mkdir()
    for args in (["init", "coll"], ["add", "--unpack-wacz", "coll", str(wacz)]):
        subprocess.run([str(bindir / "wb-manager"), *args], cwd=root, check=True,
                       capture_output=True)
    port = free_port()
    proc = replay.start_wayback(root, port, bindir)
    try:
        yield Pywb(f"http://127.0.0.1:{port}/coll/", root)
    finally:
        proc.terminate()
        proc.wait(10)
