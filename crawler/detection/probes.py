"""The evidence detection fetches after a crawl (the only part that needs the network).

Where redirects the crawl did not follow lead (kind ``landing``), a random URL beside changed
pages (``probe``: what the site's not-found looks like), the control URL when fetches failed
(``control``: is our own network down?), every suspected URL through each vantage point
(``vantage``) and again from here (``recheck``). Each fetch is archived in a
``<target>-detect-…`` WARC beside the crawl's and entered as a capture, so that the comparison
can be redone offline with the same evidence.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from crawler.archive.catalog import Catalog, CrawlRow
from crawler.archive.recovery import recover_warcs
from crawler.archive.store import Stored, capture_from_record, capture_row
from crawler.archive.warc import KIND_FIELD, WarcSettings, WarcWriter
from crawler.capture import extract, urls
from crawler.capture.fetcher import Fetcher, FetchSettings
from crawler.capture.fingerprints import VANTAGE_NOTE
from crawler.capture.settings import DetectSettings, proxy_name
from crawler.core import failpoints
from crawler.core.models import CrawlUrl, UrlKind
from crawler.detection.comparison import (
    MAX_LANDING_HOPS,
    MAX_VANTAGE_CHECKS,
    Comparison,
    compare,
)
from crawler.detection.detect import (
    Cls,
    Finding,
)

_PROBE_PAYLOAD_CAP = 32 * 1024 * 1024  # bytes of a recovered probe read back (as a crawl's)

log = logging.getLogger("crawler.probes")


async def probe(catalog: Catalog, after: CrawlRow, settings: DetectSettings,
                fetch: FetchSettings) -> Comparison:
    """Fetch soft-404 probes, the control URL and rechecks; archive and enter each.

    Returns the comparison made after the probes and the control URL, with ``confirmed``
    from the rechecks (rechecks confirm classes, they never change them).
    """
    first = compare(catalog, after, rules=settings.rules)
    warc_dir = after.directory / "warc"
    writer = WarcWriter(WarcSettings(directory=warc_dir, prefix=f"{after.target}-detect",
                                     warcinfo={"isPartOf": f"{after.target}/{after.crawl_id}",
                                               "description": "takedown detection probes"}),
                        first_serial=len(list(warc_dir.glob("*.warc.gz"))))
    sink = ThreadPoolExecutor(1, thread_name_prefix="probe-sink")  # one writer of the WARC

    async def take(fetcher: Fetcher, url: str, kind: UrlKind, key: str | None = None,
                   vantage: str | None = None) -> str | None:
        """Fetch, archive and enter one URL; return where it redirects, if it does."""
        result = await fetcher.fetch(url)
        headers = {KIND_FIELD: kind.value}  # always: a probe run's records default to RECHECK
        if vantage:
            headers["WARC-Crawler-Vantage"] = vantage
        try:
            entry = await asyncio.get_running_loop().run_in_executor(
                sink, writer.write_exchange, result, headers)
            failpoints.hit("probe-written")
            found = None
            if result.ok and result.content_type in extract.HTML_TYPES:
                found = extract.extract_safely(url, result.content_type, result.read_body(),
                                               result.header("content-type"),
                                               result.header("content-encoding"))
            item = CrawlUrl(url=url, key=key or urls.canonical_key(url), kind=kind, depth=0)
            row = capture_row(item, result, Stored(entry), found)
            if vantage:
                row = replace(row, detail="; ".join(filter(None, (
                    f"{VANTAGE_NOTE}{vantage}", row.detail))))
            with catalog.transaction():
                catalog.add_capture(after.pk, row)
            redirect = result.ok and result.status in (301, 302, 303, 307, 308)
            return result.header("location") if redirect else None
        finally:
            result.close()

    async def take_chain(fetcher: Fetcher, url: str) -> None:
        seen: set[str] = set()
        next_url: str | None = url
        while next_url and next_url not in seen and len(seen) < MAX_LANDING_HOPS:
            seen.add(next_url)
            location = await take(fetcher, next_url, UrlKind.LANDING)
            next_url = urls.try_normalize(location, next_url) if location else None

    try:
        landings = first.unlanded
        network = [f for f in first.findings if f.cls in (Cls.DNS, Cls.REFUSED, Cls.TLS,
                                                           Cls.TIMEOUT, Cls.UNREACHABLE)]
        control = settings.control_url if network else None
        probes = _probe_urls(first, settings.max_probe_dirs)
        async with Fetcher(fetch) as fetcher:
            for url in landings:
                await take_chain(fetcher, url)
            for url in probes:
                await take(fetcher, url, UrlKind.PROBE)
            if control:
                await take(fetcher, control, UrlKind.CONTROL)
        # Landings, probes and the control URL can change classes (where a redirect leads,
        # soft-404, our network down).
        current = compare(catalog, after, rules=settings.rules) if (
            landings or probes or control) else first
        suspects = current.recheck_targets(catalog)
        gate = asyncio.Semaphore(4)  # gentle: a struggling server is being asked again
        if suspects and settings.vantage:
            # Another network path: a page fine from there is blocked here, not removed.
            for proxy in settings.vantage:
                name = proxy_name(proxy)
                async with Fetcher(replace(fetch, proxy=proxy)) as fetcher:
                    async def through(f: Finding, fetcher: Fetcher = fetcher,
                                      name: str = name) -> None:
                        async with gate:
                            await take(fetcher, f.url, UrlKind.VANTAGE, f.key, name)

                    await asyncio.gather(*(through(f) for f in suspects[:MAX_VANTAGE_CHECKS]))
            current = compare(catalog, after, rules=settings.rules)
            suspects = current.recheck_targets(catalog)
        for n in range(settings.recheck_probes if suspects else 0):
            await asyncio.sleep(settings.recheck_spacing if n else 0)
            # A new client per round: no connection, and no remembered DNS failure, is reused.
            async with Fetcher(fetch) as fetcher:
                async def recheck(f: Finding, fetcher: Fetcher = fetcher) -> None:
                    async with gate:
                        await take(fetcher, f.url, UrlKind.RECHECK, f.key)

                await asyncio.gather(*(recheck(f) for f in suspects))
    finally:
        sink.shutdown()
        writer.close()
    if suspects and settings.recheck_probes:
        # Judged again with the re-checks: they confirm classes, and they show which blocks
        # of a page change on every visit.
        current = compare(catalog, after, rules=settings.rules)
    return current


def _probe_urls(comparison: Comparison, limit: int) -> list[str]:
    """Return a random URL beside each directory holding pages whose text changed."""
    dirs: list[str] = []
    for f in comparison.findings:
        if (f.after is not None and f.before is not None and f.after.status == 200
                and f.after.text_hash and f.after.text_hash != f.before.text_hash):
            base = f.after.url.split("?", 1)[0].rsplit("/", 1)[0] + "/"
            if base not in dirs:
                dirs.append(base)
    return [d + f"crawler-probe-{secrets.token_hex(6)}.html" for d in dirs[:limit]]


def repair_probe_files(catalog: Catalog, after: CrawlRow) -> None:
    """Close WARCs a killed detection left open, and enter the probes it archived but had
    not entered, so that a repeated detection keeps them as evidence."""
    warc_dir = after.directory / "warc"
    if not warc_dir.is_dir():
        return
    found = recover_warcs(warc_dir, lambda name: catalog.record_offsets(after.pk, name),
                          payload_cap=_PROBE_PAYLOAD_CAP, marks=catalog.warc_marks(after.pk))
    orphans = found.orphans
    for path in found.closed:
        log.info("closed %s, left open by an interrupted run", path.name)
    for orphan in orphans:
        row, _ = capture_from_record(catalog, after.target, orphan, UrlKind.RECHECK)
        with catalog.transaction():
            catalog.add_capture(after.pk, row)
    if orphans:
        log.info("entered %d records archived before the interruption", len(orphans))

