"""ReplayWeb.page, the viewer most archivists use, driven in a real headless Chromium.

Nothing here is a stand-in: the ``replaywebpage`` package from npm (its prebuilt ``ui.js``
and service worker ``sw.js``) is served with the WACZ from a local HTTP server on 127.0.0.1
(with Range support, as ReplayWeb.page reads a WACZ by ranges), and embedded in a page
exactly as its documentation shows (``<replay-web-page source=… url=… ts=…>``). Chromium is
Debian's ``chromium``; ``playwright`` from PyPI only drives it (no browser is downloaded).

Where the parts come from: ``$CHROMIUM`` or ``chromium`` on the PATH; ``$REPLAYWEBPAGE_DIR``
(an unpacked package) or, fetched once with ``npm pack`` into the user's cache,
``replaywebpage@RWP_VERSION``. A missing part fails the test with what to install: a viewer
test never skips silently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

RWP_VERSION = "2.5.3"
NOT_FOUND = "Archived Page Not Found"
_LOAD_ERRORS = ("Unexpected Loading Error", "Sorry, this archive could not be opened",
                "is not valid JSON", "Archive Not Found")

# Collects, through every open shadow root and same-origin iframe, what each document shows:
# ReplayWeb.page nests the archived page two iframes deep inside shadow DOM.
_FRAMES_JS = """() => {
  const found = [];
  const walk = (root, depth) => {
    if (!root || depth > 16) return;
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) walk(el.shadowRoot, depth + 1);
      if (el.tagName === 'IFRAME') {
        let doc = null;
        try { doc = el.contentDocument; } catch (e) { doc = null; }
        if (doc && doc.location) {
          found.push({url: doc.location.href, state: doc.readyState,
                      text: doc.body ? doc.body.innerText : ''});
          walk(doc, depth + 1);
        }
      }
    }
  };
  walk(document, 0);
  return found;
}"""

_EMBED_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><script src="/ui.js"></script></head>
<body><script>
const q = new URLSearchParams(location.search);
const el = document.createElement('replay-web-page');
el.setAttribute('source', q.get('source'));
el.setAttribute('url', q.get('url'));
el.setAttribute('ts', q.get('ts'));
el.setAttribute('replayBase', '/replay/');
el.setAttribute('embed', 'replayonly');
el.style.cssText = 'display:block;width:1000px;height:700px';
document.body.appendChild(el);
</script></body></html>
"""


def chromium_path() -> str:
    """Return Chromium's executable, or fail the test saying how to install it."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not found:
        pytest.fail("ReplayWeb.page tests need Chromium: `apt-get install chromium` "
                    "(or set $CHROMIUM to its executable)")
    return found


def replaywebpage_dir() -> Path:
    """Return the unpacked ``replaywebpage`` npm package, fetching it with npm once."""
    if os.environ.get("REPLAYWEBPAGE_DIR"):
        return Path(os.environ["REPLAYWEBPAGE_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    home = cache / "crawler" / f"replaywebpage-{RWP_VERSION}"
    package = home / "package"
    if (package / "sw.js").exists() and (package / "ui.js").exists():
        return package
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("ReplayWeb.page tests need npm (Node.js) to fetch the replaywebpage "
                    "package, or $REPLAYWEBPAGE_DIR pointing at an unpacked copy")
    home.mkdir(parents=True, exist_ok=True)
    # `npm pack` takes the published package alone (its prebuilt ui.js and sw.js), without
    # resolving the build-time dependencies an `npm install` would.
    done = subprocess.run([npm, "pack", f"replaywebpage@{RWP_VERSION}", "--json"], cwd=home,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"npm pack replaywebpage@{RWP_VERSION} failed: {done.stderr[-800:]}")
    tarball = home / json.loads(done.stdout)[0]["filename"]
    with tarfile.open(tarball) as tar:
        tar.extractall(home, filter="data")
    return package


class _RangeHandler(SimpleHTTPRequestHandler):
    """Static files with single-range requests (ReplayWeb.page reads a WACZ by ranges)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def send_head(self) -> Any:
        path = self.translate_path(self.path.split("?", 1)[0])
        wanted = self.headers.get("Range")
        if not wanted or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted.strip())
        if not match or not (match[1] or match[2]):
            self.send_error(416)
            return None
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]) if match[2] else size - 1, size - 1)
        else:
            start, end = max(0, size - int(match[2])), size - 1
        if start > end:
            self.send_error(416)
            return None
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        import io
        return io.BytesIO(data)


@dataclass(frozen=True, slots=True)
class View:
    """What ReplayWeb.page showed for one URL at one timestamp."""

    frame_url: str  # the replay frame's address (…/<ts>mp_/<url>)
    text: str  # the archived page's visible text, as rendered
    app_text: str  # the text of ReplayWeb.page's own frame (loading errors show there)

    @property
    def not_found(self) -> bool:
        """Return True if ReplayWeb.page found no capture to show."""
        return NOT_FOUND in self.text


class ReplayWebPage:
    """A local server with ReplayWeb.page and WACZ files, and a headless Chromium on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._server: ThreadingHTTPServer | None = None
        self._playwright: Any = None
        self._browser: Any = None
        self.base = ""

    def __enter__(self) -> ReplayWebPage:
        from playwright.sync_api import sync_playwright

        package = replaywebpage_dir()
        (self.root / "replay").mkdir(parents=True, exist_ok=True)
        for name in ("ui.js", "sw.js"):
            shutil.copy(package / name, self.root / name)
            shutil.copy(package / name, self.root / "replay" / name)
        # ReplayWeb.page's own app page, for the first visit: the embed opens replay/?source=…
        # as soon as its service worker is registered, which can be before the worker
        # controls that address; then the server answers, and this page (loading the same
        # app) does what the worker would have.
        shutil.copy(package / "index.html", self.root / "replay" / "index.html")
        (self.root / "embed.html").write_text(_EMBED_PAGE, "utf-8")
        root = str(self.root)

        class Handler(_RangeHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=root, **kwargs)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._playwright = sync_playwright().start()
        # The flags the machine needs: no sandbox as root, and no background connections
        # (this machine has no internet; refused connections slow Chromium down).
        self._browser = self._playwright.chromium.launch(
            executable_path=chromium_path(), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def add(self, wacz: Path, name: str | None = None) -> str:
        """Serve a WACZ; return its address."""
        served = name or wacz.name
        shutil.copy(wacz, self.root / served)
        return f"{self.base}/{urllib.parse.quote(served)}"

    @contextmanager
    def session(self) -> Iterator[_Session]:
        """Open one browser page (its service worker keeps loaded archives between views)."""
        context = self._browser.new_context()
        try:
            yield _Session(context.new_page(), self.base)
        finally:
            context.close()


class _Session:
    """One browser page that shows captures, one after another."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        self.console: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text[:200]}"))

    def view(self, source: str, url: str, ts: str, *, timeout: float = 60.0) -> View:
        """Show ``url`` as archived at ``ts`` and return what the replay frame displays."""
        query = urllib.parse.urlencode({"source": source, "url": url, "ts": ts})
        self.page.goto(f"{self.base}/embed.html?{query}")
        deadline = time.monotonic() + timeout
        frames: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            frames = self.page.evaluate(_FRAMES_JS)
            app = "\n".join(f["text"] or "" for f in frames if "mp_/" not in f["url"])
            for error in _LOAD_ERRORS:
                if error in app:
                    raise AssertionError(f"ReplayWeb.page could not load {source}: "
                                         f"{app.strip()[:600]}")
            done = [f for f in frames if "mp_/" in f["url"] and f["state"] == "complete"
                    and (f["text"] or "").strip()]
            if done:
                return View(done[-1]["url"], done[-1]["text"], app)
            time.sleep(0.2)
        app = " | ".join(" ".join((f["text"] or "").split())[:300] for f in frames)
        raise AssertionError(f"ReplayWeb.page showed nothing for {url} at {ts} within "
                             f"{timeout:.0f} s; frames: {[f['url'] for f in frames]}; "
                             f"their text: {app!r}; page errors: {self.errors[-3:]}; "
                             f"console: {self.console[-8:]}")
