"""Serve archived crawls through pywb on 127.0.0.1 (``crawler replay``).

pywb pins old versions of redis, werkzeug and brotlipy, so it never shares the crawler's
environment: it lives in its own virtual environment, found (or created) by ``pywb_bin``.
The collection is built from what the crawler already wrote, without copying or re-indexing
a WARC: one CDXJ per target merged from the crawls' own ``indexes/index.cdxj`` (each is
sorted), and a sorted path index mapping each WARC file name to where it lies. Revisits
resolve across crawls because every crawl of a target is in the one collection.
"""

from __future__ import annotations

import hashlib
import heapq
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from crawler.archive.catalog import Catalog, CrawlStatus
from crawler.core.errors import OutputError

PYWB_REQUIREMENT = "pywb>=2.10,<2.11"
REPLAY_DIR = ".replay"


def pywb_venv_candidates(cwd: Path | None = None) -> list[Path]:
    """Return where a pywb environment is looked for, in order."""
    found = []
    if os.environ.get("PYWB_VENV"):
        found.append(Path(os.environ["PYWB_VENV"]))
    found.append((cwd or Path.cwd()) / ".venv-pywb")
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    found.append(data / "crawler" / "pywb-venv")
    return found


def pywb_bin(*, create: bool = True, log: Callable[[str], object] | None = None) -> Path:
    """Return the bin/ directory of a pywb virtual environment, creating one if allowed.

    Creating it runs ``python -m venv`` and ``pip install pywb`` (from PyPI or the configured
    index) into the first candidate location that is not ``./.venv-pywb``.
    """
    candidates = pywb_venv_candidates()
    for venv in candidates:
        if (venv / "bin" / "wayback").exists():
            return venv / "bin"
    if not create:
        raise OutputError("pywb not found (looked in " + ", ".join(map(str, candidates)) + ")")
    venv = candidates[0] if os.environ.get("PYWB_VENV") else candidates[-1]
    if log is not None:
        log(f"installing pywb into {venv} (once)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                       capture_output=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", PYWB_REQUIREMENT],
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise OutputError(f"could not install pywb into {venv}: {exc} "
                          f"{detail.decode(errors='replace')[-500:]}") from exc
    return venv / "bin"


def build_collections(catalog: Catalog, output: Path, targets: list[str]) -> Path:
    """Write pywb's config and one collection per target under ``output/.replay``.

    Returns the directory to run ``wayback`` in. Crawls still running are left out (their
    index is written when they end).
    """
    root = output / REPLAY_DIR
    if not os.access(output, os.W_OK):  # a read-only root (a mounted evidence copy)
        digest = hashlib.sha256(str(output.resolve()).encode()).hexdigest()[:12]
        root = Path(tempfile.gettempdir()) / f"crawler-replay-{digest}"
    root.mkdir(parents=True, exist_ok=True)
    config = ["# written by `crawler replay`; rewritten on every run", "collections:"]
    for target in targets:
        crawls = [c for c in catalog.crawls(target) if c.status != CrawlStatus.RUNNING]
        indexes = [c.directory / "indexes" / "index.cdxj" for c in crawls]
        indexes = [p for p in indexes if p.exists()]
        if not indexes:
            continue
        coll = root / target
        coll.mkdir(exist_ok=True)
        _merge_sorted(indexes, coll / "index.cdxj")
        paths = sorted((w.name, w.resolve()) for c in crawls
                       for w in (c.directory / "warc").glob("*.warc.gz"))
        (coll / "warcs.txt").write_text("".join(f"{name}\t{path}\n" for name, path in paths),
                                        "utf-8")
        config += [f"  {target}:",
                   f"    index_paths: {_yaml_str(coll / 'index.cdxj')}",
                   f"    archive_paths: {_yaml_str(coll / 'warcs.txt')}"]
    if len(config) == 2:
        raise OutputError(f"nothing to replay under {output}: no finished crawl"
                          + (f" of {targets[0]}" if len(targets) == 1 else ""))
    (root / "config.yaml").write_text("\n".join(config) + "\n", "utf-8")
    return root


def _merge_sorted(indexes: list[Path], dest: Path) -> None:
    """Merge sorted CDXJ files into one sorted file."""
    tmp = dest.with_name(dest.name + ".tmp")
    with ExitStack() as stack:
        files = [stack.enter_context(open(p, encoding="utf-8")) for p in indexes]
        with open(tmp, "w", encoding="utf-8") as out:
            out.writelines(heapq.merge(*files))
    os.replace(tmp, dest)


def _yaml_str(path: Path) -> str:
    """Quote a path for YAML."""
    return '"' + str(path.resolve()).replace("\\", "\\\\").replace('"', '\\"') + '"'


def port_is_free(port: int) -> bool:
    """Return True if nothing listens on 127.0.0.1:port (so pywb can take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_wayback(root: Path, port: int, bindir: Path, *, quiet: bool = True,
                  ) -> subprocess.Popen[bytes]:
    """Start pywb's ``wayback`` on 127.0.0.1:port in ``root``; return once it answers.

    A port already taken is refused before pywb starts: otherwise the other program would
    answer, and the user would be shown its pages as if they were the archive.
    """
    if not port_is_free(port):
        raise OutputError(f"port {port} on 127.0.0.1 is already in use by another program; "
                          "choose another with --port")
    out = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen([str(bindir / "wayback"), "-b", "127.0.0.1", "-p", str(port)],
                            cwd=root, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OutputError(f"pywb exited at start-up (code {proc.returncode}); "
                              f"is port {port} free?")
        if not _answers(port):
            time.sleep(0.2)
            continue
        if proc.poll() is None:  # the answer came from our pywb, not a program that won
            return proc          # the port between our check and pywb's start
    proc.kill()
    raise OutputError("pywb did not start within 60 s")


def _answers(port: int) -> bool:
    """Return True if an HTTP server answers on 127.0.0.1:``port`` (any status).

    A keep-alive request that we close ourselves: the side that closes first keeps the
    connection in TIME_WAIT, and it must be ours, or pywb's port could not be bound again
    for a minute after it stops (urllib asks the server to close).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
