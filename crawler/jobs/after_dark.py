"""When a run finds its target gone dark, rescue it from the public web archives it names.

"Gone dark" is said exactly: the run confirmed a host-level takedown (every page of a host
gone, blocked or unreachable: detection's host events), or no seed could be captured at all
(a site already gone when it was first configured, Memorial's case). A rescue then runs per
seed site, in latest mode: what the target does not hold, or holds only older. It runs once
per dark period: not again after a rescue completed since the last crawl that captured a
page; an incomplete one (a source failed) is continued by the next run.
"""

from __future__ import annotations

import logging

from crawler.archive.catalog import Catalog
from crawler.capture import urls
from crawler.capture.scope import ScopeKind
from crawler.capture.settings import CrawlSettings
from crawler.core.errors import ConfigError, ExitCode
from crawler.rescue.run import RescueOutcome, RescueSettings, run_rescue
from crawler.rescue.sources import parse_source

log = logging.getLogger("crawler.after_dark")


def gone_dark(catalog: Catalog, target: str, exit_code: ExitCode) -> str | None:
    """Return why the target is dark after a run, or None: a confirmed host-level state is
    open (every page of a host gone, blocked or unreachable), or no seed could be captured."""
    hosts = sorted(row["key"][len("host:"):] for row in catalog.db.execute(
        "SELECT key FROM url_states WHERE target = ? AND key LIKE 'host:%' AND "
        "state = 'confirmed'", (target,)))
    if hosts:
        return f"host-level takedown confirmed ({', '.join(hosts)})"
    if exit_code is ExitCode.CRAWL_FAILED:
        return "no seed could be captured"
    return None


def rescue_settings(settings: CrawlSettings) -> list[RescueSettings]:
    """Return one rescue per seed site: its prefix (prefix and page scopes), its host, or
    its registered domain (domain scope), from the target's sources."""
    sources = tuple(parse_source(spec, where="config", key="sources")
                    for spec in settings.rescue_sources)
    found: dict[tuple[str | None, str | None], RescueSettings] = {}
    for seed in settings.seeds:
        kind = settings.scope.kind
        url, domain = None, None
        if kind is ScopeKind.DOMAIN:
            domain = urls.registered_domain(urls.hostname_of(seed))
        elif kind is ScopeKind.HOST:
            url = urls.origin(seed)
        elif kind is ScopeKind.PREFIX:
            url = urls.directory_prefix(seed)
        else:
            url = seed
        found.setdefault((url, domain), RescueSettings(
            target=settings.target_name(), output=settings.output, sources=sources, url=url,
            domain=domain, user_agent=settings.fetch.user_agent))
    return list(found.values())


def rescued_since_dark(catalog: Catalog, target: str) -> bool:
    """Return True if a rescue of the target completed after its last crawl that captured
    a page (this dark period is rescued already)."""
    row = catalog.db.execute(
        "SELECT (SELECT max(id) FROM crawls WHERE target = ? AND kind = 'rescue' AND "
        "status = 'complete'), (SELECT max(k.id) FROM crawls k WHERE k.target = ? AND "
        "k.kind = 'crawl' AND EXISTS (SELECT 1 FROM captures c WHERE c.crawl = k.id AND "
        "c.kind IN ('seed', 'page') AND c.status BETWEEN 200 AND 299))",
        (target, target)).fetchone()
    return row[0] is not None and (row[1] is None or row[0] > row[1])


async def rescue_if_dark(catalog: Catalog, settings: CrawlSettings, exit_code: ExitCode,
                         ) -> tuple[str | None, list[RescueOutcome]]:
    """Rescue the target if it is dark after a run and names sources (the caller holds
    the target's lock); return why it is dark (or None) and what each rescue did."""
    target = settings.target_name()
    why = gone_dark(catalog, target, exit_code)
    if why is None or not settings.rescue_sources:
        return why, []
    if rescued_since_dark(catalog, target):
        log.info("%s: gone dark (%s); rescued from web archives already", target, why)
        return why, []
    try:
        plans = rescue_settings(settings)
    except ConfigError as exc:
        log.error("%s: gone dark (%s), not rescued: %s", target, why, exc)
        return why, []
    log.warning("%s: gone dark (%s): rescuing it from %s", target, why,
                ", ".join(s.name for s in plans[0].sources))
    done = []
    for plan in plans:
        done.append(await run_rescue(plan, catalog=catalog, locked=True))
    return why, done
