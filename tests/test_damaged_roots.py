"""Read-only archive roots and damaged catalogs (issue 12): read commands work on a mounted
evidence copy; a damaged catalog is detected, never written to, and rebuilt from the WARCs
by `crawler reindex`."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler.demo.sample_site import SampleSite

CLI = [sys.executable, "-m", "crawler"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def _archive(site: SampleSite, out: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return _cli("archive", site.url, "--target", "t", "--output", str(out), "--scope", "host",
                "--delay", "0", "--exclude", "calendar", "--quiet", "--recheck", "0", cwd=cwd)


@pytest.fixture(scope="module")
def archived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, SampleSite]]:
    """Two crawls of the sample site (the second one finds a page removed)."""
    out = tmp_path_factory.mktemp("root") / "arch"
    with SampleSite(persons=8) as site:
        assert _archive(site, out, out.parent).returncode == 0
        site.content.takedown.removed = {"/persons/3.html": 404}
        assert _archive(site, out, out.parent).returncode in (0, 6)  # suspected (no recheck)
        site.content.takedown.removed = {}
        yield out, site


@pytest.fixture
def read_only_view(archived: tuple[Path, SampleSite], tmp_path: Path) -> Iterator[Path]:
    """The archive root bind-mounted read-only (a mounted evidence copy)."""
    view = tmp_path / "view"
    view.mkdir()
    src = archived[0]
    bound = subprocess.run(["mount", "--bind", str(src), str(view)], capture_output=True,
                           text=True)
    assert bound.returncode == 0, f"this test bind-mounts (needs root): {bound.stderr}"
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


def test_read_commands_work_on_a_read_only_root(read_only_view: Path, tmp_path: Path) -> None:
    """Before, status, list, diff and `wacz --file elsewhere` failed with a traceback."""
    out = str(read_only_view)
    elsewhere = tmp_path / "copy.wacz"
    runs = {
        "status": _cli("status", "--output", out, cwd=tmp_path),
        "status --json": _cli("status", "--output", out, "--json", cwd=tmp_path),
        "list": _cli("list", "t", "--output", out, cwd=tmp_path),
        "diff": _cli("diff", "t", "--output", out, cwd=tmp_path),
        "wacz": _cli("wacz", "t", "--output", out, "--file", str(elsewhere), cwd=tmp_path),
        "verify": _cli("verify", "t", "--output", out, cwd=tmp_path),
        "outbox": _cli("outbox", "--output", out, cwd=tmp_path),
    }
    for name, run in runs.items():
        assert run.returncode == 0, (name, run.stdout, run.stderr)
        assert "Traceback" not in run.stderr, (name, run.stderr)
    assert len(json.loads(runs["status --json"].stdout)["t"]) == 2
    assert "/persons/3.html" in runs["diff"].stdout
    assert elsewhere.stat().st_size > 0
    # a writing command says why it cannot, without a traceback
    with SampleSite(persons=2) as site:
        refused = _cli("archive", site.url, "--target", "t", "--output", out, "--quiet",
                       cwd=tmp_path)
    assert refused.returncode == 3, refused.stderr
    assert "Traceback" not in refused.stderr and "crawler: error" in refused.stderr


def _corrupt_pages(path: Path) -> None:
    """Overwrite a stretch in the middle of an SQLite file (as a failing disk would)."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(b"\xde\xad\xbe\xef" * 2048)


def test_a_damaged_catalog_is_detected_and_rebuilt_from_the_warcs(
        archived: tuple[Path, SampleSite], tmp_path: Path) -> None:
    src, site = archived
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    before = json.loads(_cli("status", "--output", str(out), "--json", cwd=tmp_path).stdout)
    catalog = out / "catalog.sqlite3"
    _corrupt_pages(catalog)
    damaged = catalog.read_bytes()

    # a new crawl refuses to add rows to it
    crawl = _archive(site, out, tmp_path)
    assert crawl.returncode == 7, crawl.stdout + crawl.stderr
    assert "damaged" in crawl.stderr and "crawler reindex" in crawl.stderr
    assert "Traceback" not in crawl.stderr
    assert catalog.read_bytes() == damaged
    # a broken header: even opening it says so, no traceback
    header = tmp_path / "header"
    shutil.copytree(src, header)
    with open(header / "catalog.sqlite3", "r+b") as fh:
        fh.write(b"not a database at all")
    status = _cli("status", "--output", str(header), cwd=tmp_path)
    assert status.returncode == 7 and "crawler reindex" in status.stderr, status.stderr
    assert "Traceback" not in status.stderr

    rebuilt = _cli("reindex", "--output", str(out), cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "old catalog kept as" in rebuilt.stdout
    assert list(out.glob("catalog.sqlite3.damaged-*"))
    after = json.loads(_cli("status", "--output", str(out), "--json", cwd=tmp_path).stdout)
    for old, new in zip(before["t"], after["t"], strict=True):
        for key in ("crawl_id", "state", "pages", "revisits", "failures"):
            assert old[key] == new[key], (key, old, new)
    assert _cli("verify", "t", "--output", str(out), cwd=tmp_path).returncode == 0
    db = sqlite3.connect(catalog)
    try:
        states = db.execute("SELECT url, class FROM url_states").fetchall()
    finally:
        db.close()
    assert [(u.rsplit("/", 1)[1], c) for u, c in states] == [("3.html", "removed")]
    # the rebuilt history works: the page is back, and the next crawl says it recovered
    again = _cli("archive", site.url, "--target", "t", "--output", str(out), "--scope",
                 "host", "--delay", "0", "--exclude", "calendar", "--recheck", "0", "--json",
                 cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    events = json.loads(again.stdout)["takedown"]["events"]
    assert [(e["url"].rsplit("/", 1)[1], e["state"]) for e in events] == [("3.html",
                                                                          "recovered")]
    healthy = _cli("reindex", "--output", str(out), cwd=tmp_path)
    assert healthy.returncode == 2 and "--force" in healthy.stderr
