"""Command line: each command parses its options, makes one call, and exits with a named code.

Running a target (progress, signals, ``asyncio.run``) is ``runner.py``'s; the daemon's commands
are in ``cli_daemon.py``, the archive tools in ``cli_tools.py``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from crawler import __version__
from crawler.archive.catalog import CATALOG_NAME
from crawler.capture import urls
from crawler.capture.fetcher import FetchSettings
from crawler.capture.pagetext import TextRules
from crawler.capture.robots import RobotsPolicy
from crawler.capture.scope import ScopeKind, ScopeRules, TrapRules
from crawler.capture.settings import (
    CrawlSettings,
    DedupSettings,
    DetectSettings,
    Limits,
    Politeness,
    proxy_url,
)
from crawler.commands import (
    cli_daemon,
    cli_distributed,
    cli_evidence,
    cli_rescue,
    cli_tools,
    cli_web,
)
from crawler.commands.cli_tools import open_catalog as _catalog
from crawler.commands.runner import run_with_ui
from crawler.core.errors import CrawlerError, ExitCode
from crawler.core.units import duration_text, parse_duration, parse_size, size_text
from crawler.demo.sample_site import DEMO_DELAY, DEMO_PER_HOST, SampleSite
from crawler.reporting import status as status_of

if TYPE_CHECKING:
    pass

# Every default an option shows is the settings' own (settings.py): one home, so the CLI,
# the targets file and --help agree (tests/test_defaults.py).
_D = CrawlSettings(seeds=())
DEMO_PORT = 8737  # fixed, so that running the demo again is a recrawl of the same URLs
FAILURE_CLASSES = ["dns", "refused", "tls", "timeout", "reset", "protocol", "connect", "other",
                   "too-large", "robots", "robots-unreachable", "trap", "host-hung",
                   "out-of-scope"]

class SizeType(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2
    """A byte count such as 500M, 1G or 1048576."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        found = parse_size(value)
        if found is None:
            self.fail(f"{value!r} is not a size (examples: 500M, 1G, 1048576)", param, ctx)
        return found


class DurationType(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2
    """A duration such as 90, 30s, 15m, 2h or 1d."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        found = parse_duration(value)
        if found is None:
            self.fail(f"{value!r} is not a duration (examples: 90, 30s, 15m, 2h)", param, ctx)
        return found


class RegexType(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2
    """A Python regular expression, compiled."""

    name = "REGEX"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> re.Pattern[str]:
        if isinstance(value, re.Pattern):
            return value
        try:
            return re.compile(value)
        except re.error as exc:
            self.fail(f"{value!r} is not a valid regular expression: {exc}", param, ctx)


class SeedType(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2
    """An http(s) URL to start from."""

    name = "URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if "://" not in value:
            value = "http://" + value
        try:
            return urls.normalize(value)
        except CrawlerError as exc:
            self.fail(str(exc), param, ctx)


def _positive(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Reject zero and negative numbers for counts and sizes."""
    if value is not None and value <= 0:
        raise click.BadParameter(f"must be greater than 0, not {value}")
    return value


def _non_negative(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Reject negative numbers."""
    if value is not None and value < 0:
        raise click.BadParameter(f"must not be negative, not {value}")
    return value


def _proxy_urls(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Reject vantage proxies that are not proxy URLs."""
    try:
        return tuple(proxy_url(v) for v in value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _host_ip(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    pairs = []
    for item in value:
        host, sep, ip = item.rpartition(":")
        if not sep or not host or not ip:
            raise click.BadParameter(f"{item!r}: use HOST:IP")
        pairs.append((host.strip("[]").lower(), ip.strip("[]")))
    return tuple(pairs)


def crawl_options(*, per_host: int = _D.politeness.per_host,
                  delay: float = _D.politeness.delay, wacz: bool = True,
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Options shared by every command that crawls; a command with other defaults (the demo)
    passes them here, so its ``--help`` shows the values it uses."""
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(_crawl_options(per_host, delay, wacz)):
            func = option(func)
        return func
    return decorate


def _crawl_options(per_host: int, delay: float, wacz: bool) -> list[Callable[..., Any]]:
    """Return the shared crawl options, with these defaults."""
    options = [
        click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
                     default=_D.output, show_default=True,
                     help="Archive root; crawls go to OUTPUT/TARGET/CRAWL-ID/."),
        click.option("--concurrency", type=int, default=_D.politeness.concurrency,
                     show_default=True,
                     callback=_positive, help="Requests in flight across all hosts."),
        click.option("--per-host", type=int, default=per_host, show_default=True,
                     callback=_positive,
                     help="Requests in flight to one host."),
        click.option("--delay", type=float, default=delay, show_default=True,
                     callback=_non_negative,
                     help="Seconds between request starts to one host (raised by Crawl-delay)."),
        click.option("--robots", type=click.Choice([p.value for p in RobotsPolicy]),
                     default=_D.robots.value, show_default=True,
                     help="Obey robots.txt, or ignore it for rescue crawls (it is still "
                          "fetched and archived, and the policy is written into warcinfo)."),
        click.option("--user-agent", default=_D.fetch.user_agent, show_default=False,
                     help="User-Agent header."),
        click.option("--warc-size", type=SizeType(), default=size_text(_D.warc_size),
                     show_default=True,
                     callback=_positive, help="Start a new WARC file past this size."),
        click.option("--no-dedup", is_flag=True,
                     help="Store every payload in full, even one archived before."),
        click.option("--dedup-min-size", type=SizeType(), default=size_text(_D.dedup.min_size),
                     show_default=True,
                     callback=_non_negative,
                     help="Payloads smaller than this are stored in full, not as revisits."),
        click.option("--no-conditional", is_flag=True,
                     help="Do not send If-None-Match/If-Modified-Since from earlier crawls."),
        click.option("--no-search-index", is_flag=True,
                     help="Leave pages' text out of the search index while crawling (saves "
                          "CPU and catalog space); `crawler search-index` adds it later."),
        *([click.option("--wacz", is_flag=True,
                        help="Also package the finished crawl as OUTPUT/TARGET/TARGET-ID.wacz.")]
          if wacz else []),
        click.option("--quiet", "-q", is_flag=True, help="Only print warnings and errors."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print a machine-readable summary on stdout (one JSON document)."),
    ]
    return options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crawler")
def cli() -> None:
    """Capture at-risk web sites into standard WARC files that replay in pywb and ReplayWeb.page.

    Start with `crawler demo` (no network needed), then `crawler archive URL`.
    """


@cli.command()
@click.argument("seeds", nargs=-1, required=True, type=SeedType())
@click.option("--target", "-t", help="Name to file the crawl under (default: the first seed's "
              "host). Re-running with the same target is a recrawl.")
@click.option("--scope", type=click.Choice([k.value for k in ScopeKind]),
              default=_D.scope.kind.value,
              show_default=True, help="page: the seeds only; prefix: under each seed's "
              "directory; host: the seed hosts; domain: their registrable domains.")
@click.option("--depth", type=int, default=None, callback=_non_negative,
              help="Link hops from a seed (default: unlimited).")
@click.option("--max-pages", type=int, default=None, callback=_positive,
              help="Stop queueing pages after this many (requisites not counted).")
@click.option("--max-bytes", type=SizeType(), default=None, callback=_positive,
              help="Stop after downloading this much (e.g. 5G).")
@click.option("--max-time", type=DurationType(), default=None, callback=_positive,
              help="Stop after this long (e.g. 90m, 6h).")
@click.option("--min-free-space", type=SizeType(), default=size_text(_D.limits.min_free_space),
              show_default=True,
              help="Warn at the start when the archive root has less free space. A full "
                   "disk stops the crawl cleanly (exit 10); resume once space is freed.")
@click.option("--include", type=RegexType(), multiple=True,
              help="Regex of extra URLs in scope (repeatable).")
@click.option("--exclude", type=RegexType(), multiple=True,
              help="Regex of URLs never fetched (repeatable; wins over --include).")
@click.option("--no-requisites", is_flag=True,
              help="Do not fetch images, CSS, scripts and fonts of pages.")
@click.option("--no-sitemaps", is_flag=True, help="Do not read sitemaps of the seed hosts.")
@click.option("--retries", type=int, default=_D.politeness.retries, show_default=True,
              callback=_non_negative,
              help="Extra attempts after timeouts, resets, 429 and 5xx.")
@click.option("--adaptive-delay", is_flag=True,
              help="Let each host's delay follow its response times (AutoThrottle): it starts "
                   "at --delay, aims at response time / --per-host, stays within --min-delay "
                   "and --max-delay, and doubles on 5xx, 429, timeouts, resets and failed "
                   "connections.")
@click.option("--min-delay", type=float, default=_D.politeness.min_delay, show_default=True,
              callback=_non_negative, help="Lowest delay --adaptive-delay may reach.")
@click.option("--max-delay", type=float, default=_D.politeness.max_delay, show_default=True,
              callback=_non_negative, help="Highest delay --adaptive-delay may reach.")
@click.option("--timeout", type=DurationType(), default=duration_text(_D.fetch.read_timeout),
              show_default=True,
              callback=_positive, help="Longest silence allowed while reading a response.")
@click.option("--max-body", type=SizeType(), default=size_text(_D.fetch.max_body_bytes),
              show_default=True,
              callback=_positive, help="Truncate responses past this size (WARC-Truncated).")
@click.option("--max-query-variants", type=int, default=_D.scope.traps.max_query_variants,
              show_default=True,
              callback=_positive, help="Trap defence: distinct query shapes per path (page "
              "numbers, ids and dates are one shape; free-text values make new ones).")
@click.option("--verify-tls", is_flag=True, help="Refuse servers with invalid certificates "
              "(default: archive them anyway, as Heritrix and Browsertrix do).")
@click.option("--parse-workers", type=int, default=_D.extract_workers, show_default=True,
              callback=_non_negative,
              help="Processes that parse HTML/CSS (0: parse in the main process).")
@click.option("--operator", help="Who runs this crawl (written into warcinfo).")
@click.option("--resolve", "resolve", multiple=True, metavar="HOST:IP", callback=_host_ip,
              help="Connect to HOST at IP instead of asking DNS (repeatable), like curl's "
                   "--resolve: for a site whose domain was seized or is blocked by DNS.")
@click.option("--notify", "notify_urls", multiple=True, metavar="APPRISE_URL",
              help="Tell this Apprise URL about takedown state changes (repeatable), e.g. "
                   "mailtos://…, json://host/path, tgram://…")
@click.option("--vantage", multiple=True, metavar="PROXY_URL", callback=_proxy_urls,
              help="A second vantage point: a proxy (http://, https://, socks5://) through "
                   "which a suspected takedown is fetched again before it is believed; a page "
                   "fine from there is blocked-here, not removed (repeatable).")
@click.option("--control-url", help="A URL outside the target, fetched when fetches fail: if it "
              "fails too, our own network is down and the failures are not evidence.")
@click.option("--ignore-text", type=RegexType(), multiple=True,
              help="Regex removed from page text before comparing crawls (repeatable).")
@click.option("--ignore-selector", multiple=True, metavar="CSS",
              help="Elements removed before comparing crawls, e.g. '.banner' (repeatable).")
@click.option("--recheck", type=int, default=_D.detect.recheck_probes, show_default=True,
              callback=_non_negative,
              help="Fetch each suspected takedown again this many times to confirm it.")
@click.option("--recheck-spacing", type=DurationType(),
              default=duration_text(_D.detect.recheck_spacing), show_default=True,
              help="Time between those fetches.")
@click.option("--redis", "redis_url", metavar="redis://HOST:PORT/N",
              help="Start a distributed crawl whose queue lives in this Redis: other "
                   "machines join it with `crawler worker --redis URL TARGET`; this process "
                   "is its first worker and merges it when it is over (docs/distributed.md).")
@click.option("--worker-name", metavar="NAME",
              help="With --redis: this worker's name (default: HOST-PID).")
@click.option("--lease", type=DurationType(), default="5m", show_default=True,
              callback=_positive,
              help="With --redis: how long a worker holds a URL without renewing it (it "
                   "renews every quarter of this while alive); a killed worker's URLs go "
                   "back to the queue after it.")
@crawl_options()
def archive(seeds: tuple[str, ...], **opts: Any) -> None:
    """Crawl SEEDS and write WARCs, a CDXJ index and a page list under --output.

    Running it again for the same target is a recrawl that also re-checks every URL earlier
    crawls captured. If the target's last crawl with the same seeds was interrupted or
    killed, it is resumed instead.
    """
    settings = _settings_from_options(seeds, opts)
    if opts["redis_url"]:
        sys.exit(cli_distributed.run_start(settings, opts["redis_url"], opts["worker_name"],
                                           lease=opts["lease"], quiet=opts["quiet"],
                                           as_json=opts["as_json"]))
    resume = None
    with _catalog(settings.output) as catalog:
        last = catalog.latest_crawl(settings.target_name())
        if (last is not None and last.crawl_resumable
                and tuple(last.settings["seeds"]) == seeds):
            resume = last
    sys.exit(run_with_ui(settings, quiet=opts["quiet"], as_json=opts["as_json"], resume=resume))


@cli.command()
@click.argument("target", required=False)
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=_D.output, show_default=True, help="Archive root.")
@click.option("--quiet", "-q", is_flag=True, help="Only print warnings and errors.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
def resume(target: str | None, output: Path, quiet: bool, as_json: bool) -> None:
    """Continue an interrupted or killed crawl of TARGET (or the only one there is).

    Also finishes a run that a kill cut short after its crawl: detection, report and
    notifications are done then, from where they stopped.
    """
    if not (output / CATALOG_NAME).exists():  # (a root that is not there stays so)
        click.echo(f"crawler: nothing to resume under {output}: no archive there", err=True)
        sys.exit(int(ExitCode.CONFIG))
    with _catalog(output) as catalog:
        try:
            row = status_of.crawl_to_resume(catalog, output, target)
        except CrawlerError as exc:
            click.echo(f"crawler: {exc}", err=True)
            sys.exit(int(exc.exit_code))
    settings, warnings = status_of.settings_to_resume(row, output)
    for warning in warnings:
        click.echo(f"crawler: warning: {warning}", err=True)
    sys.exit(run_with_ui(settings, quiet=quiet, as_json=as_json, resume=row))


@cli.command()
@click.argument("target", required=False)
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=_D.output, show_default=True, help="Archive root.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Show the configured targets instead: last crawl, result, open takedown "
                   "events and next run.")
@click.option("--redis", "redis_url", metavar="URL",
              help="Show TARGET's distributed crawl as this Redis holds it: counts and "
                   "workers, from any machine.")
def status(target: str | None, output: Path, as_json: bool, config_path: Path | None,
           redis_url: str | None) -> None:
    """List targets and their crawls: start, end, pages, bytes, failures, exit status."""
    if redis_url is not None:
        cli_distributed.show_status(redis_url, target, as_json)
        return
    if config_path is not None:
        cli_daemon.config_status(config_path, as_json)
        return
    with _catalog(output, read_only=True) as catalog:
        report = status_of.crawl_report(catalog, output, target)
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    elif not report:
        click.echo(f"No crawls under {output}.")
    else:
        click.echo("\n".join(status_of.report_lines(report)))


@cli.command(name="list")
@click.argument("target")
@click.option("--crawl", "crawl_id", help="Crawl id (default: the latest).")
@click.option("--status", "http_status", type=int, help="Only this HTTP status.")
@click.option("--failure", type=click.Choice(FAILURE_CLASSES), help="Only this failure class.")
@click.option("--url", "url_pattern", type=RegexType(), help="Only URLs matching this regex.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=_D.output, show_default=True, help="Archive root.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def list_captures(target: str, crawl_id: str | None, http_status: int | None,
                  failure: str | None, url_pattern: re.Pattern[str] | None, output: Path,
                  as_json: bool) -> None:
    """List the captures of a crawl of TARGET, with filters."""
    with _catalog(output, read_only=True) as catalog:
        row = catalog.crawl(target, crawl_id) if crawl_id else catalog.latest_crawl(target)
        if row is None:
            click.echo(f"crawler: no crawl {crawl_id or ''} of target {target!r} under "
                       f"{output}".replace("  ", " "), err=True)
            sys.exit(int(ExitCode.CONFIG))
        for cap in catalog.captures(row.pk, status=http_status, failure=failure):
            if url_pattern is not None and not url_pattern.search(cap.url):
                continue
            if as_json:
                click.echo(json.dumps(asdict(cap), ensure_ascii=False))
            else:
                click.echo(f"{cap.fetched_at[:19]}  {cap.status or '-':>3}  "
                           f"{cap.failure or '':<12} {cap.length or 0:>9}  {cap.kind:<9} "
                           f"{cap.url}")


def _settings_from_options(seeds: tuple[str, ...], opts: dict[str, Any]) -> CrawlSettings:
    """Build crawl settings from parsed archive options."""
    if opts["min_delay"] > opts["max_delay"]:
        raise click.BadParameter(f"{opts['min_delay']:g} is above --max-delay "
                                 f"({opts['max_delay']:g})", param_hint="--min-delay")
    return CrawlSettings(
        seeds=seeds,
        output=opts["output"],
        target=_target_name(opts["target"]),
        scope=ScopeRules(kind=ScopeKind(opts["scope"]), depth=opts["depth"],
                         include=tuple(opts["include"]), exclude=tuple(opts["exclude"]),
                         requisites=not opts["no_requisites"],
                         traps=TrapRules(max_query_variants=opts["max_query_variants"])),
        limits=Limits(max_pages=opts["max_pages"], max_bytes=opts["max_bytes"],
                      min_free_space=opts["min_free_space"],
                      max_time=opts["max_time"]),
        politeness=Politeness(concurrency=opts["concurrency"], per_host=opts["per_host"],
                              delay=opts["delay"], retries=opts["retries"],
                              adaptive=opts["adaptive_delay"], min_delay=opts["min_delay"],
                              max_delay=opts["max_delay"]),
        fetch=FetchSettings(user_agent=opts["user_agent"], read_timeout=opts["timeout"],
                            max_body_bytes=opts["max_body"], verify_tls=opts["verify_tls"],
                            max_connections=max(opts["concurrency"], 1),
                            resolve=opts["resolve"]),
        robots=RobotsPolicy(opts["robots"]),
        warc_size=opts["warc_size"],
        sitemaps=not opts["no_sitemaps"],
        extract_workers=opts["parse_workers"],
        operator=opts["operator"],
        dedup=_dedup_settings(opts),
        wacz=opts["wacz"],
        search_index=not opts["no_search_index"],
        detect=DetectSettings(
            rules=TextRules(ignore_selectors=tuple(opts["ignore_selector"]),
                            ignore_patterns=tuple(opts["ignore_text"])),
            recheck_probes=opts["recheck"], recheck_spacing=opts["recheck_spacing"],
            control_url=opts["control_url"], notify=tuple(opts["notify_urls"]),
            vantage=tuple(opts["vantage"])),
    )


def _dedup_settings(opts: dict[str, Any]) -> DedupSettings:
    """Build the store-only-what-changed settings from parsed options."""
    return DedupSettings(dedup=not opts["no_dedup"], min_size=opts["dedup_min_size"],
                         conditional=not opts["no_conditional"])


def _target_name(value: str | None) -> str | None:
    """Validate a target name: it becomes a directory name."""
    if value is None:
        return None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", value):
        raise click.BadParameter("use letters, digits, '.', '_' or '-' (max 100)",
                                 param_hint="'--target'")
    return value


@cli.command()
@click.option("--persons", type=int, default=30, show_default=True, callback=_positive,
              help="Size of the sample site's person index.")
@crawl_options(per_host=DEMO_PER_HOST, delay=DEMO_DELAY, wacz=False)
def demo(persons: int, **opts: Any) -> None:
    """A guided tour on a bundled sample history site (127.0.0.1, no network needed).

    It archives the site, simulates a takedown (pages removed, one blocked by a 451, part of
    the person index gutted), archives it again, prints the takedown report, and shows how to
    open both crawls in pywb or ReplayWeb.page. Both crawls are packaged as WACZ. With --json,
    one JSON document holds both crawls' summaries, under "crawls".
    """
    quiet, as_json = opts["quiet"], opts["as_json"]

    def say(text: str) -> None:
        if not quiet and not as_json:
            click.echo(text)

    summaries: list[dict[str, Any]] = []
    with SampleSite(persons=persons, port=DEMO_PORT, cdn_port=DEMO_PORT + 1) as site:
        settings = CrawlSettings(
            seeds=(site.url,), output=opts["output"], target="demo",
            scope=ScopeRules(kind=ScopeKind.HOST, traps=TrapRules(max_query_variants=24)),
            politeness=Politeness(concurrency=opts["concurrency"], per_host=opts["per_host"],
                                  delay=opts["delay"]),
            fetch=FetchSettings(user_agent=opts["user_agent"]),
            robots=RobotsPolicy(opts["robots"]), warc_size=opts["warc_size"],
            dedup=_dedup_settings(opts), wacz=True,  # the demo always shows the WACZ
            detect=DetectSettings(recheck_spacing=0.5))
        say(f"1/3  Archiving the sample history site at {site.url} (CDN at {site.cdn_url})")
        first = run_with_ui(settings, quiet=quiet, as_json=as_json, json_into=summaries)
        say(f"\n2/3  Simulating a takedown: {site.take_down()}")
        say("\n3/3  Archiving it again and comparing the two crawls")
        code = run_with_ui(settings, quiet=quiet, as_json=as_json, replay_help=True,
                           json_into=summaries)
    if as_json:
        click.echo(json.dumps({"crawls": summaries}, indent=2, ensure_ascii=False))
    # The tour succeeded if it ran: its sample site has a calendar trap, so its crawls end
    # incomplete (and say why), and its takedown is the point.
    toured = (ExitCode.OK, ExitCode.TAKEDOWN, ExitCode.INCOMPLETE)
    failed = [c for c in (first, code) if c not in toured]
    sys.exit(failed[0] if failed else 0)


for _command in (cli_rescue.rescue, cli_distributed.worker, cli_distributed.merge,
                 cli_distributed.stop, cli_tools.wacz, cli_tools.replay, cli_tools.diff,
                 cli_tools.verify, cli_tools.outbox_command, cli_tools.reindex,
                 cli_daemon.daemon,
                 cli_daemon.run_command, cli_daemon.config_group, cli_web.serve,
                 cli_web.search_command, cli_web.search_index, cli_evidence.evidence):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the `crawler` command."""
    import sqlite3

    try:
        cli(prog_name="crawler")
    except sqlite3.DatabaseError as exc:  # found damaged while in use (not at open)
        text = str(exc)
        if "locked" in text or "readonly" in text:
            click.echo(f"crawler: error: the catalog could not be written: {text}", err=True)
            sys.exit(int(ExitCode.CONFIG))
        click.echo(f"crawler: error: the catalog is damaged ({text}). The WARC files are the "
                   "source of truth: `crawler reindex --output ROOT` rebuilds the catalog "
                   "from them.", err=True)
        sys.exit(int(ExitCode.DAMAGED))


if __name__ == "__main__":
    main()
