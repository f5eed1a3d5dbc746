"""Commands of the dashboard and the search index: `crawler serve`, `search`, `search-index`,
and the web server that `crawler daemon --web` runs beside the scheduler.

Registered on the main group by ``cli.py``.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from crawler.commands.cli_tools import load_or_exit, open_catalog
from crawler.core.errors import ExitCode

if TYPE_CHECKING:
    from uvicorn import Server

    from crawler.schedule.daemon import Daemon
    from crawler.web.app import WebSettings
    from crawler.web.replayer import Replayer

ARCHIVES = Path("archives")
TOKEN_ENV = "CRAWLER_WEB_TOKEN"


def web_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that serves the dashboard takes."""
    for option in reversed([
        click.option("--host", default="127.0.0.1", show_default=True,
                     help="Address to listen on. Anything but loopback needs --token."),
        click.option("--port", type=int, default=8008, show_default=True,
                     help="Port to listen on (0: any free port)."),
        click.option("--token", envvar=TOKEN_ENV, default=None,
                     help=f"Access token (or ${TOKEN_ENV}); 'generate' makes one. Required "
                          "off loopback."),
        click.option("--read-only", is_flag=True,
                     help="No actions and no writes (automatic on a read-only archive root)."),
        click.option("--no-replay", is_flag=True,
                     help="Do not start pywb for replay inside the dashboard."),
    ]):
        function = option(function)
    return function


def web_settings(root: Path, host: str, port: int, token: str | None,
                 read_only: bool) -> WebSettings:
    """Return the dashboard's settings, or exit with a usage error: a token is required
    when listening anywhere but on loopback."""
    from crawler.web.app import WebSettings, is_loopback

    if token == "generate":
        token = secrets.token_urlsafe(24)
    if not is_loopback(host) and not token:
        click.echo(f"crawler: usage error: --host {host} makes the dashboard reachable from "
                   f"other machines: give an access token (--token TOKEN, or --token "
                   f"generate, or ${TOKEN_ENV})", err=True)
        sys.exit(int(ExitCode.USAGE))
    if token is not None and len(token) < 16:
        click.echo("crawler: usage error: --token must be at least 16 characters", err=True)
        sys.exit(int(ExitCode.USAGE))
    writable = os.access(root, os.W_OK) if root.exists() else True
    return WebSettings(root=root, host=host, port=port, token=token,
                       read_only=read_only or not writable)


class Bound:
    """A uvicorn server for the dashboard whose socket is already bound (so the address
    printed is the one it answers on), serving once ``serve`` is called."""

    def __init__(self, settings: WebSettings, daemon: Daemon | None,
                 replayer: Replayer | None) -> None:
        import socket

        import uvicorn

        from crawler.web.app import create_app

        app = create_app(settings, daemon=daemon, replayer=replayer)
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((settings.host, settings.port))
        except OSError as exc:
            self.sock.close()
            click.echo(f"crawler: cannot listen on {settings.host}:{settings.port}: {exc}",
                       err=True)
            sys.exit(int(ExitCode.CONFIG))
        settings.port = self.sock.getsockname()[1]
        self.server: Server = uvicorn.Server(uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off"))

    def serve(self) -> None:
        """Serve until ``stop`` (or, in the main thread, SIGINT/SIGTERM)."""
        self.server.run(sockets=[self.sock])

    def stop(self) -> None:
        self.server.should_exit = True


def address(settings: WebSettings) -> str:
    """Return the address to open, with the token if there is one."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}/" + (f"?token={settings.token}" if settings.token
                                               else "")


@click.command()
@click.option("--archives", "--output", "-o", "root", type=click.Path(file_okay=False,
              path_type=Path), default=ARCHIVES, show_default=True, help="Archive root.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Targets' configuration: shows schedules and enables Run now.")
@web_options
def serve(root: Path, config_path: Path | None, host: str, port: int, token: str | None,
          read_only: bool, no_replay: bool) -> None:
    """Serve the dashboard: targets, timelines, events, per-URL history, replay, search.

    On 127.0.0.1:8008 by default; stop with Ctrl-C. With --config, targets can be run now
    from the dashboard (in this process) and their schedules are shown; pausing a schedule
    is obeyed by a `crawler daemon` running elsewhere on the same archives.
    """
    from crawler.schedule.daemon import Daemon
    from crawler.web.replayer import Replayer

    daemon = None
    if config_path is not None:
        config = load_or_exit(config_path)
        root = config.archives
        daemon = Daemon(config_path)
        if not read_only:  # configured targets are shown before their first run
            with open_catalog(root):
                pass
    if not (root / "catalog.sqlite3").is_file():
        click.echo(f"crawler: no archive under {root} (no catalog.sqlite3): crawl something "
                   "first, or give --archives", err=True)
        sys.exit(int(ExitCode.CONFIG))
    settings = web_settings(root, host, port, token, read_only)
    replayer = None if no_replay else Replayer(root)
    bound = Bound(settings, daemon, replayer)
    if replayer is not None:
        replayer.start()
    click.echo(f"dashboard of {root.resolve()} on {address(settings)}"
               + (" (read-only)" if settings.read_only else ""), err=True)
    try:
        bound.serve()
    finally:
        if daemon is not None:
            daemon.stop()
        if replayer is not None:
            replayer.stop()


def bind(settings: WebSettings, daemon: Daemon, *, replay: bool = True,
         ) -> tuple[Bound, Replayer | None]:
    """Bind the dashboard of ``crawler daemon --web`` (before the daemon starts anything)."""
    from crawler.web.replayer import Replayer

    replayer = Replayer(settings.root) if replay else None
    return Bound(settings, daemon, replayer), replayer


def serve_in_thread(bound: Bound, replayer: Replayer | None) -> None:
    """Serve a bound dashboard beside the running daemon."""
    if replayer is not None:
        replayer.start()
    threading.Thread(target=bound.serve, name="web", daemon=True).start()


@click.command(name="search")
@click.argument("words", nargs=-1, required=True)
@click.option("--target", default=None, help="Only this target's pages.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Page texts to list.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=ARCHIVES, show_default=True, help="Archive root.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable results.")
def search_command(words: tuple[str, ...], target: str | None, limit: int, output: Path,
                   as_json: bool) -> None:
    """Find archived pages whose main text has all of WORDS (in every crawl, removed pages
    too), with every capture that has the text. "Quote" phrases; end a word with * for a
    prefix."""
    from crawler.archive import textindex

    with open_catalog(output, read_only=True) as catalog:
        missing = textindex.unindexed(catalog.db)
        try:
            found = textindex.search(catalog.db, " ".join(words), target=target, limit=limit)
        except textindex.BadQuery as exc:
            click.echo(f"crawler: {exc}", err=True)
            sys.exit(int(ExitCode.USAGE))
    if as_json:
        click.echo(json.dumps({"query": found.query, "unindexed_texts": missing,
                               "more": found.more, "hits": [_hit_json(h) for h in found.hits]},
                              indent=2, ensure_ascii=False))
        return
    for hit in found.hits:
        snippet = hit.snippet.replace(textindex.HIT_START, "[").replace(textindex.HIT_END, "]")
        click.echo(f"{hit.title or hit.url}\n  {hit.target} {hit.url}\n  "
                   + " ".join(snippet.split())[:300])
        for c in hit.captures:
            click.echo(f"    {c.fetched_at[:19]}  {c.status if c.status is not None else '-'}"
                       f"  {c.cls or ''}  crawl {c.crawl_id}")
    if not found.hits:
        click.echo("nothing found")
    elif found.more:
        click.echo(f"(more than {limit} matching texts: --limit to see more)")
    if missing:
        click.echo(f"note: {missing} page text(s) are not searched (captured before the "
                   "search index existed, or with search_index off): run `crawler "
                   "search-index`", err=True)


def _hit_json(hit: Any) -> dict[str, Any]:
    return {"target": hit.target, "url": hit.url, "title": hit.title, "snippet": hit.snippet,
            "captures": [{"capture": c.capture, "crawl_id": c.crawl_id,
                          "fetched_at": c.fetched_at, "status": c.status, "class": c.cls}
                         for c in hit.captures]}


@click.command(name="search-index")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=ARCHIVES, show_default=True, help="Archive root.")
@click.option("--rebuild", is_flag=True, help="Empty the index and fill it again from the "
                                                "WARCs.")
def search_index(output: Path, rebuild: bool) -> None:
    """Fill the full-text search index from the WARCs: pages captured before it existed
    (crawls fill it as they capture), or all of it with --rebuild."""
    from crawler.jobs.searchindex import fill

    with open_catalog(output) as catalog:
        done = fill(catalog, rebuild=rebuild, progress=lambda d: click.echo(
            f"  {d.indexed} of {d.texts} texts indexed", err=True))
    click.echo(f"search index: {done.indexed} page text(s) indexed of {done.texts} missing "
               f"in {done.seconds:.1f} s" + (f"; {done.unreadable} could not be read back "
                                              "(WARC missing or damaged: `crawler verify`)"
                                              if done.unreadable else "")
               + (f"; {done.changed} read back with a text that no longer gives the "
                  "fingerprint recorded at capture (indexed as read)" if done.changed else ""))
    sys.exit(int(ExitCode.DAMAGED if done.unreadable else ExitCode.OK))
