"""An archive root is a self-contained, movable folder, and keeps its secrets.

Every command runs from a working directory other than the one the crawl ran in, against a
root given by a relative path, after the whole root has been moved elsewhere. Notification
URLs (which carry tokens) never reach crawl.json, the catalog, warcinfo or logs in clear.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from crawler.commands.cli import cli
from crawler.demo.sample_site import SampleSite

CLI = [sys.executable, "-m", "crawler"]


def _archive(site: SampleSite, output: str, *extra: str) -> dict[str, object]:
    result = CliRunner().invoke(cli, [
        "archive", site.url, "--target", "t", "--output", output, "--scope", "host",
        "--delay", "0", "--per-host", "4", "--parse-workers", "0", "--no-sitemaps",
        "--exclude", "calendar", "--recheck", "1", "--recheck-spacing", "0.1", "--json",
        *extra])
    assert result.exit_code in (0, 6), result.output
    return json.loads(result.stdout)


def test_every_command_works_from_elsewhere_and_after_the_root_moves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first_cwd, second_cwd, third_cwd = (tmp_path / n for n in ("one", "two", "three"))
    for d in (first_cwd, second_cwd, third_cwd):
        d.mkdir()
    with SampleSite(persons=6) as site:
        monkeypatch.chdir(first_cwd)
        _archive(site, "arch")  # a relative root, as a user types it
        moved = tmp_path / "elsewhere" / "arch"
        moved.parent.mkdir()
        shutil.move(str(first_cwd / "arch"), moved)

        monkeypatch.chdir(second_cwd)
        site.content.takedown.removed = {"/persons/2.html": 404}
        summary = _archive(site, "../elsewhere/arch")
    stats = summary["stats"]
    # The recrawl found the first crawl's records: conditional requests and revisits...
    assert stats["not_modified"] > 0 and stats["revisits"] > stats["not_modified"]  # type: ignore[index]
    assert stats["damaged_originals"] == 0  # type: ignore[index]
    # ...and compared with them: the removal is found, nothing is "new".
    takedown = summary["takedown"]
    classes = takedown["summary"]["classes"]  # type: ignore[index]
    assert classes.get("removed") == 1 and "new" not in classes, classes

    monkeypatch.chdir(third_cwd)
    root = str(moved)
    runner = CliRunner()
    status = runner.invoke(cli, ["status", "--output", root, "--json"])
    assert status.exit_code == 0
    crawls = json.loads(status.stdout)["t"]
    assert [c["state"] for c in crawls] == ["complete", "complete"]
    assert all(Path(c["directory"]).is_relative_to(moved) for c in crawls)
    listed = runner.invoke(cli, ["list", "t", "--output", root, "--status", "404"])
    assert listed.exit_code == 0 and "persons/2.html" in listed.stdout
    diff = runner.invoke(cli, ["diff", "t", "--output", root, "--json"])
    assert diff.exit_code == 0
    assert json.loads(diff.stdout)["summary"]["classes"].get("removed") == 1
    verify = runner.invoke(cli, ["verify", "--output", root])
    assert verify.exit_code == 0, verify.output
    wacz = runner.invoke(cli, ["wacz", "t", "--output", root])
    assert wacz.exit_code == 0, wacz.output
    import zipfile
    with zipfile.ZipFile(wacz.stdout.strip()) as zf:
        packaged = {n.split("/", 1)[1] for n in zf.namelist() if n.startswith("archive/")}
    on_disk = {p.name for p in moved.glob("t/*/warc/*.warc.gz")}
    assert packaged == on_disk and len(on_disk) >= 3  # two crawls and the detection WARC

    from crawler.archive.catalog import Catalog
    from crawler.archive.replay import build_collections
    catalog = Catalog.open(Path(root))
    try:
        config = build_collections(catalog, Path(root), ["t"])
    finally:
        catalog.close()
    listed_warcs = (config / "t" / "warcs.txt").read_text("utf-8").splitlines()
    assert len(listed_warcs) == len(on_disk)
    assert all(Path(line.split("\t")[1]).is_file() for line in listed_warcs)
    assert not (second_cwd / "t").exists() and not (third_cwd / "t").exists()


class _Hook(BaseHTTPRequestHandler):
    """A JSON webhook on 127.0.0.1 that keeps what it is sent."""

    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Stay quiet."""


def test_notification_urls_stay_secret_and_survive_a_resume(tmp_path: Path) -> None:
    """A crawl killed in one working directory is resumed from another, after its archive
    root was moved, and still notifies the URL it was given (kept only in .notify.json)."""
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    _Hook.received = []
    secret = "S3CRET-T0KEN"
    notify = f"json://user:{secret}@127.0.0.1:{hook.server_address[1]}/hook?token={secret}"
    first_cwd, later_cwd = tmp_path / "one", tmp_path / "two"
    first_cwd.mkdir()
    later_cwd.mkdir()
    out = tmp_path / "moved" / "arch"
    try:
        with SampleSite(persons=6) as site:
            base = [*CLI, "archive", site.url, "--target", "t", "--output", "arch",
                    "--scope", "host", "--delay", "0", "--per-host", "2", "--no-sitemaps",
                    "--exclude", "calendar", "--recheck", "1", "--recheck-spacing", "0.1",
                    "--notify", notify]
            first = subprocess.run(base, capture_output=True, timeout=120, cwd=first_cwd)
            assert first.returncode == 0
            site.content.takedown.removed = {"/persons/2.html": 404}
            env = {**os.environ, "CRAWLER_FAILPOINT": "before-commit:12"}
            killed = subprocess.run(base, capture_output=True, timeout=120, env=env,
                                    cwd=first_cwd)
            assert killed.returncode == -9  # killed mid-crawl: its run did not notify
            assert not _Hook.received
            out.parent.mkdir()
            shutil.move(str(first_cwd / "arch"), out)
            resumed = subprocess.run([*CLI, "resume", "t", "--output", "../moved/arch"],
                                     capture_output=True, timeout=120, text=True,
                                     cwd=later_cwd)
    finally:
        hook.shutdown()
        hook.server_close()
    assert resumed.returncode == 6, resumed.stdout + resumed.stderr  # a takedown alert
    assert _Hook.received, "the resumed crawl notified the URL given to the killed one"
    assert "persons/2.html" in b"".join(_Hook.received).decode()
    # Nowhere in clear: catalog, crawl.json, WARCs (warcinfo), logs, reports, output.
    assert secret not in resumed.stdout + resumed.stderr
    private = (".notify.json", ".outbox-destinations.json")  # owner-only, by design
    for name in private:
        assert (out / "t" / name).stat().st_mode & 0o777 == 0o600
    for path in out.rglob("*"):
        if path.is_file() and path.name not in private:
            data = path.read_bytes()
            if path.suffix == ".gz":
                import gzip
                data = gzip.decompress(data)
            assert secret.encode() not in data, path
    db = sqlite3.connect(out / "catalog.sqlite3")
    stored = [row[0] for row in db.execute("SELECT settings FROM crawls")]
    db.close()
    assert all("json://[redacted sha256:" in s for s in stored)
    kept = out / "t" / ".notify.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert json.loads(kept.read_text("utf-8")) == {"notify": [notify]}
