"""The dashboard's web application (Starlette, Jinja2 templates, no JavaScript).

Archived pages are hostile input: titles, URLs and text come from sites we do not control,
and any of them may hold markup or script. So:

* every value reaches HTML through Jinja2's autoescaping, never by string building;
* the Content-Security-Policy allows no script at all (the dashboard has none) and frames
  only from the replay server, so a slip in escaping still could not run a script;
* archived pages themselves are shown only by pywb on its own port (another origin), and
  raw records are sent as downloads, never rendered here.

Access: on a loopback address anyone on this machine may look; on any other address every
request needs the access token (``?token=`` once, then a cookie; or ``Authorization: Bearer``).
The ``Host`` header must name an address we listen on (a web page elsewhere cannot reach
the dashboard by DNS rebinding), and every action is a POST carrying a per-process form key
(another site cannot make the browser press a button). In read-only mode there are no
actions and nothing is written.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import secrets
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from crawler import __version__
from crawler.archive import textindex
from crawler.archive.catalog import Catalog
from crawler.archive.warcread import RecordUnreadable
from crawler.core.errors import CrawlerError
from crawler.evidence import signing
from crawler.evidence.package import build
from crawler.reporting.report import colour as _colour
from crawler.schedule.daemon import Daemon, next_runs
from crawler.web import actions, views
from crawler.web.replayer import Replayer

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
COOKIE = "crawler_token"
_STATIC = Path(__file__).parent / "static"


def is_loopback(host: str) -> bool:
    """Return True if ``host`` (an address or name to bind) is this machine only."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class WebSettings:
    """How the dashboard runs."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 8008
    token: str | None = None
    read_only: bool = False
    form_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))


@dataclass
class Dashboard:
    """What the handlers share: settings, the daemon (if any) and the replay server."""

    settings: WebSettings
    daemon: Daemon | None
    replayer: Replayer | None
    messages: dict[str, str] = field(default_factory=dict)

    def schedules(self) -> dict[str, dict[str, Any]]:
        """Return each configured target's schedule, in words, and its next start."""
        if self.daemon is None:  # a daemon elsewhere may schedule: its job store says when
            return {name: {"describe": "scheduled by a daemon (its configuration is not "
                                       "given here: --config)",
                           "next": nxt.strftime("%Y-%m-%d %H:%M:%S") if nxt else None}
                    for name, nxt in next_runs(self.settings.root).items()}
        found: dict[str, dict[str, Any]] = {}
        scheduling = self.daemon.scheduler.running
        stored = {} if scheduling else next_runs(self.daemon.config.archives)  # a daemon
        for name, target in self.daemon.config.targets.items():              # elsewhere
            if target.schedule is None:
                continue
            job = self.daemon.scheduler.get_job(name) if scheduling else None
            nxt = job.next_run_time if job is not None else stored.get(name)
            found[name] = {"describe": target.schedule.describe(),
                           "next": nxt.strftime("%Y-%m-%d %H:%M:%S") if nxt else None}
        return found

    def say(self, message: str) -> str:
        """Keep a message for the page a redirect leads to; return its key (messages are
        never taken from the address, where anyone could write one)."""
        key = secrets.token_urlsafe(8)
        self.messages[key] = message
        while len(self.messages) > 100:
            self.messages.pop(next(iter(self.messages)))
        return key


# -- rendering ----------------------------------------------------------------------------------

_env = Environment(loader=PackageLoader("crawler.web"), undefined=StrictUndefined,
                   autoescape=select_autoescape(default=True, default_for_string=True))


def _marked(snippet: str) -> Markup:
    """Return a search snippet with its matched words in <mark>, everything else escaped."""
    parts = []
    for piece in snippet.split(textindex.HIT_START):
        hit, _, rest = piece.partition(textindex.HIT_END) if textindex.HIT_END in piece \
            else ("", "", piece)
        if hit:
            parts.append(Markup("<mark>") + escape(hit) + Markup("</mark>"))
        parts.append(escape(rest))
    return Markup("").join(parts)


def _url_for_url(target: str, url: str) -> str:
    return f"/t/{quote(target, safe='')}/url?" + urlencode({"u": url})


_env.filters["marked"] = _marked
_env.filters["colour"] = _colour
_env.filters["q"] = lambda value: quote(str(value), safe="")
_env.globals["url_page"] = _url_for_url
_env.globals["version"] = __version__


def _bars(points: list[dict[str, Any]], link: Callable[[str, str], str]) -> dict[str, Any]:
    """Return the geometry of a stacked-bar timeline (URLs per class per crawl)."""
    height, bar, step = 200, 34, 48
    most = max((sum(p["classes"].values()) for p in points), default=0) or 1
    shapes, labels = [], []
    for i, point in enumerate(points):
        y = height - 30.0
        for cls, n in sorted(point["classes"].items()):
            h = (height - 50) * n / most
            y -= h
            shapes.append({"x": 10 + step * i, "y": round(y, 1), "w": bar, "h": round(h, 1),
                           "fill": _colour(cls), "cls": cls, "n": n,
                           "crawl": point["crawl_id"], "href": link(point["crawl_id"], cls)})
        ident = point["crawl_id"]  # 20261202T082049Z: shown as 12-02 and 08:20
        labels.append({"x": 10 + step * i, "y": height - 14, "text": f"{ident[4:6]}-{ident[6:8]}",
                       "time": f"{ident[9:11]}:{ident[11:13]}", "href": link(ident, "")})
    return {"width": 20 + step * max(1, len(points)), "height": height, "shapes": shapes,
            "labels": labels}


def _page(request: Request, template: str, status: int = 200, **data: Any) -> HTMLResponse:
    board: Dashboard = request.app.state.board
    said = board.messages.pop(request.query_params.get("said", ""), None)
    text = _env.get_template(template).render(
        request=request, s=board.settings, said=said, now=datetime.now(UTC), age=views.age,
        can_act=not board.settings.read_only, form_key=board.settings.form_key,
        running=board.daemon.running() if board.daemon else set(),
        configured=set(board.daemon.config.targets) if board.daemon else set(), **data)
    return HTMLResponse(text, status_code=status)


def _missing(request: Request, what: str) -> HTMLResponse:
    return _page(request, "error.html", 404, title="Not found", message=what)


# -- pages --------------------------------------------------------------------------------------

async def home(request: Request) -> Response:
    board: Dashboard = request.app.state.board
    with _open(board) as catalog:
        found = views.targets(catalog, board.schedules())
        paused = actions.paused(catalog)
    refresh = any(t["last"] and t["last"]["state"] == "running" for t in found)
    return _page(request, "targets.html", targets=found, paused=paused, refresh=refresh)


async def target(request: Request) -> Response:
    board: Dashboard = request.app.state.board
    name = request.path_params["target"]
    with _open(board) as catalog:
        page = views.target_page(catalog, name)
        paused = actions.paused(catalog).get(name)
    if page is None:
        return _missing(request, f"No crawls of {name!r} under this archive root.")
    base = f"/t/{quote(name, safe='')}/c/"
    chart = _bars(page["timeline"], lambda c, cls: base + c + (f"?class={quote(cls)}" if cls
                                                              else ""))
    return _page(request, "target.html", t=page, bars=chart, paused=paused,
                 schedule=board.schedules().get(name))


async def host_list(request: Request) -> Response:
    board: Dashboard = request.app.state.board
    name = request.path_params["target"]
    with _open(board) as catalog:
        found = views.hosts(catalog, name)
    base = f"/t/{quote(name, safe='')}/c/"
    charts = {h["host"]: _bars(h["timeline"], lambda c, cls: base + c + (
        f"?class={quote(cls)}" if cls else "")) for h in found[:50]}
    return _page(request, "hosts.html", name=name, hosts=found, charts=charts)


async def crawl(request: Request) -> Response:
    board: Dashboard = request.app.state.board
    name, crawl_id = request.path_params["target"], request.path_params["crawl"]
    with _open(board) as catalog:
        page = views.crawl_page(catalog, name, crawl_id, request.query_params.get("class"),
                                _int(request.query_params.get("offset")))
    if page is None:
        return _missing(request, f"No crawl {crawl_id!r} of {name!r}.")
    return _page(request, "crawl.html", c=page)


async def report_file(request: Request) -> Response:
    board: Dashboard = request.app.state.board
    name, crawl_id = request.path_params["target"], request.path_params["crawl"]
    with _open(board) as catalog:
        row = catalog.crawl(name, crawl_id)
    path = row.directory / "report.html" if row else None
    if path is None or not path.is_file():
        return _missing(request, "This crawl has no report (it was a first crawl, or its "
                                 "run has not reached the report yet).")
    return FileResponse(path, media_type="text/html; charset=utf-8")


async def event(request: Request) -> Response:
    board: Dashboard = request.app.state.board
    with _open(board) as catalog:
        page = views.event_page(catalog, _int(request.path_params["event"]))
    if page is None:
        return _missing(request, "No such event.")
    return _page(request, "event.html", e=page)


async def url_history(request: Request) -> Response:
    board: Dashboard = request.app.state.board
    name, url = request.path_params["target"], request.query_params.get("u", "")
    with _open(board) as catalog:
        page = views.url_page(catalog, name, url)
    if not page["captures"]:
        return _missing(request, f"No capture of {url!r} in the crawls of {name!r}.")
    return _page(request, "url.html", u=page)


async def replay(request: Request) -> Response:
    board: Dashboard = request.app.state.board
    with _open(board) as catalog:
        found = views.capture(catalog, _int(request.path_params["capture"]))
    if found is None:
        return _missing(request, "No such capture.")
    problem, frame = None, None
    replayer = board.replayer
    if not found["replayable"]:
        problem = ("Nothing to replay: this capture has no response record (it failed, or "
                   "was not fetched); its catalog row is below.")
    elif replayer is None:
        problem = "Replay is off (the dashboard was started with --no-replay)."
    elif not is_loopback(request.url.hostname or ""):
        problem = ("Replay is served on 127.0.0.1 only (pywb has no access token). Open the "
                   "dashboard on this machine, or through an SSH tunnel, to see the page.")
    else:
        if not replayer.ready:
            problem = ("The replay server (pywb) is starting (on first use it is installed "
                       "once); reload this page in a moment.")
        else:
            await _refresh(replayer)
            problem = replayer.problem
            if problem is None and replayer.port is not None:
                frame = (f"http://127.0.0.1:{replayer.port}/{quote(found['target'], safe='')}/"
                         f"{found['timestamp']}/{found['url']}")
    return _page(request, "replay.html", c=found, frame=frame, problem=problem)


async def _refresh(replayer: Replayer) -> None:
    await run_in_threadpool(replayer.refresh)


async def record(request: Request) -> Response:
    """Send a capture's WARC record as it lies in its file (one gzip member): evidence to
    keep or to check with warcio, never shown here."""
    board: Dashboard = request.app.state.board
    with _open(board) as catalog:
        found = views.capture(catalog, _int(request.path_params["capture"]))
        row = catalog.crawl(found["target"], found["crawl_id"]) if found else None
    if found is None or row is None or not found["warc_file"]:
        return _missing(request, "This capture has no WARC record.")
    path = row.directory / "warc" / found["warc_file"]
    try:
        with open(path, "rb") as fh:
            fh.seek(found["warc_offset"])
            data = fh.read(found["warc_length"])
    except OSError as exc:
        return _page(request, "error.html", 410, title="Record unreadable",
                     message=f"{found['warc_file']}: {exc}")
    if len(data) != found["warc_length"]:
        return _page(request, "error.html", 410, title="Record unreadable",
                     message=str(RecordUnreadable(f"{found['warc_file']} ends before the "
                                                  "record does")))
    name = f"{found['warc_file'].removesuffix('.warc.gz')}-{found['warc_offset']}.warc.gz"
    return Response(data, media_type="application/warc", headers={
        "Content-Disposition": f'attachment; filename="{name}"'})


async def evidence_package(request: Request) -> Response:
    """Build an event's evidence package (as `crawler evidence TARGET EVENT` does) in a
    temporary folder and send it as a download, signed with the default key when there is
    one. Nothing is written to the archive root, so a read-only dashboard offers it too."""
    board: Dashboard = request.app.state.board
    event_id = _int(request.path_params["event"])
    with _open(board) as catalog:
        row = catalog.db.execute("SELECT target, key FROM events WHERE id=?",
                                 (event_id,)).fetchone()
    if row is None:
        return _missing(request, "No such event.")
    scratch = Path(tempfile.mkdtemp(prefix="crawler-evidence-"))
    path = scratch / f"evidence-{row['target']}-event{event_id}.zip"

    def make() -> None:
        key = signing.default_key()
        with _open(board) as catalog:
            build(catalog, row["target"], [str(event_id)], path, key=key)

    try:
        await run_in_threadpool(make)
    except (CrawlerError, OSError) as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        return _page(request, "error.html", 409, title="No evidence package",
                     message=str(exc))
    return FileResponse(path, media_type="application/zip", filename=path.name,
                        background=BackgroundTask(shutil.rmtree, scratch, True))


async def search(request: Request) -> Response:
    board: Dashboard = request.app.state.board
    query = request.query_params.get("q", "").strip()
    scope = request.query_params.get("target") or None
    offset = _int(request.query_params.get("offset"))
    results, problem = None, None
    with _open(board) as catalog:
        missing = textindex.unindexed(catalog.db)
        names = sorted({c.target for c in catalog.crawls()})
        if query:
            try:
                results = textindex.search(catalog.db, query, target=scope, offset=offset)
            except textindex.BadQuery as exc:
                problem = str(exc)
    return _page(request, "search.html", query=query, scope=scope, results=results,
                 problem=problem, missing=missing, names=names, offset=offset)


# -- actions ------------------------------------------------------------------------------------

async def act(request: Request) -> Response:
    """Run now, pause, resume (a target) or acknowledge (an event)."""
    board: Dashboard = request.app.state.board
    if board.settings.read_only:
        return _page(request, "error.html", 403, title="Read-only",
                     message="This dashboard is read-only: nothing can be changed here.")
    form = await request.form()
    key = str(form.get("key", ""))
    if not hmac.compare_digest(key, board.settings.form_key):
        return _page(request, "error.html", 403, title="Refused",
                     message="This form is not from this dashboard (or the dashboard was "
                             "restarted since it was shown): reload the page and try again.")
    what = request.path_params["action"]
    if what == "ack":
        event_id = _int(request.path_params["name"])
        with _open(board, write=True) as catalog:
            done = actions.acknowledge(catalog, event_id, str(form.get("who") or "") or None)
        message = "Acknowledged." if done else "No such event."
        return _back(board, f"/event/{event_id}", message)
    name = request.path_params["name"]
    back = f"/t/{quote(name, safe='')}"
    if what == "run":
        message = (board.daemon.run_now(name) if board.daemon else
                   "Not started: this dashboard was started without --config, so it knows no "
                   "target's settings.")
    elif what in ("pause", "resume"):
        with _open(board, write=True) as catalog:
            (actions.pause if what == "pause" else actions.resume)(catalog, name)
        message = (f"{name}: schedule paused: scheduled runs are skipped until it is resumed."
                   if what == "pause" else f"{name}: schedule resumed.")
    else:
        return _missing(request, f"No action {what!r}.")
    return _back(board, back, message)


def _back(board: Dashboard, path: str, message: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?said={board.say(message)}", status_code=303)


# -- plumbing -----------------------------------------------------------------------------------

@contextlib.contextmanager
def _open(board: Dashboard, *, write: bool = False) -> Iterator[Catalog]:
    """Open the catalog for one request (read-only unless an action writes)."""
    catalog = Catalog.open(board.settings.root, read_only=not write)
    try:
        yield catalog
    finally:
        catalog.close()


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


class _Guard(BaseHTTPMiddleware):
    """Host check, access token, and the security headers on every answer."""

    async def dispatch(self, request: Request,
                       call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        board: Dashboard = request.app.state.board
        settings = board.settings
        host = (request.url.hostname or "").strip("[]")
        if not _host_allowed(settings, host):
            return Response("this dashboard does not answer to that host name\n", 421,
                            media_type="text/plain")
        if settings.token is not None:
            given = request.query_params.get("token")
            if given is not None and hmac.compare_digest(given, settings.token):
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
                response: Response = RedirectResponse(target, status_code=303)
                response.set_cookie(COOKIE, settings.token, httponly=True, samesite="strict")
                return _secured(response, board)
            if not _authorised(request, settings.token):
                return _secured(Response(
                    "access token needed: open the address the dashboard printed at start "
                    "(it ends in ?token=...), or send Authorization: Bearer TOKEN\n", 401,
                    media_type="text/plain"), board)
        return _secured(await call_next(request), board)


def _host_allowed(settings: WebSettings, host: str) -> bool:
    if host in LOOPBACK_NAMES or host == settings.host:
        return True
    # listening on every address of this machine: any name of it, the token guards it
    return settings.token is not None and settings.host in ("0.0.0.0", "::")


def _authorised(request: Request, token: str) -> bool:
    cookie = request.cookies.get(COOKIE, "")
    header = request.headers.get("authorization", "")
    bearer = header[7:] if header.lower().startswith("bearer ") else ""
    return any(hmac.compare_digest(value, token) for value in (cookie, bearer) if value)


def _secured(response: Response, board: Dashboard) -> Response:
    frames = (f"http://127.0.0.1:{board.replayer.port}" if board.replayer and
              board.replayer.port else "'none'")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        f"frame-src {frames}; base-uri 'none'; frame-ancestors 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def create_app(settings: WebSettings, *, daemon: Daemon | None = None,
               replayer: Replayer | None = None) -> Starlette:
    """Return the dashboard application."""
    routes = [
        Route("/", home),
        Route("/search", search),
        Route("/t/{target}", target),
        Route("/t/{target}/hosts", host_list),
        Route("/t/{target}/url", url_history),
        Route("/t/{target}/c/{crawl}", crawl),
        Route("/t/{target}/c/{crawl}/report", report_file),
        Route("/event/{event}", event),
        Route("/event/{event}/evidence.zip", evidence_package),
        Route("/capture/{capture}", replay),
        Route("/record/{capture}", record),
        Route("/do/{action}/{name}", act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=_STATIC), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(_Guard)])
    app.state.board = Dashboard(settings, daemon, replayer)
    return app
