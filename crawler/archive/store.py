"""How each fetch result is archived: in full, or as a revisit of a payload already archived.

Deduplication (Heritrix and Browsertrix do the same): a 2xx response whose payload digest
matches a response already archived for the target becomes an identical-payload-digest
revisit. Conditional requests: a URL whose last good capture carried an ETag or Last-Modified
is requested with If-None-Match / If-Modified-Since, and a 304 becomes a server-not-modified
revisit carrying the original's HTTP head (see ``warc.WarcWriter.write_revisit``). Only
records of this crawl and of complete crawls are ever referred to.

Catalog look-ups run on the caller's (event-loop) thread, the only user of the connection;
WARC writes and reads run in the single sink thread, the only writer of WARC files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ParamSpec, TypedDict, TypeVar

from crawler.archive.catalog import CaptureRow, Catalog, Prior, StoredRecord
from crawler.archive.digestfilter import DigestFilter
from crawler.archive.recovery import OrphanRecord, result_from_record
from crawler.archive.warc import (
    SERVER_NOT_MODIFIED,
    IndexEntry,
    Original,
    WarcWriter,
    kind_fields,
    record_kind,
    timestamp17_of,
    warc_date,
)
from crawler.archive.warcread import RecordUnreadable, read_intact, read_record
from crawler.capture import extract, urls
from crawler.capture.settings import DedupSettings
from crawler.core.models import CrawlUrl, Extracted, FetchResult, Truncation, UrlKind

log = logging.getLogger("crawler.store")
_CHECKED_ORIGINALS = 65_536  # verdicts on originals remembered per crawl (bounded memory)


@dataclass(frozen=True, slots=True)
class Conditional:
    """A conditional request prepared from a URL's last good capture."""

    prior: Prior
    head: bytes  # the HTTP head a 304 revisit will carry (read back from the prior record)

    @property
    def headers(self) -> dict[str, str]:
        """Return the request headers that make the request conditional."""
        if self.prior.etag:  # a server must ignore If-Modified-Since beside it (RFC 9110
            return {"If-None-Match": self.prior.etag}  # 13.1.3): sending both only costs bytes
        if self.prior.last_modified:
            return {"If-Modified-Since": self.prior.last_modified}
        return {}


LEASE_FIELD = "WARC-Crawler-Lease"


class Validators(TypedDict):
    """A good 200's validators, which a later crawl sends as conditions."""

    etag: str | None
    last_modified: str | None


P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Stored:
    """Where a result was archived and what the catalog should say about it."""

    entry: IndexEntry
    refers_to: int | None = None  # revisits: the capture holding the payload
    mime: str | None = None  # a 304 revisit: the media type of the original
    etag: str | None = None
    last_modified: str | None = None


def original_of(record: StoredRecord) -> Original:
    """Return what a revisit needs to know about the record it refers to."""
    return Original(url=record.url, date=record.date, record_id=record.record_id,
                    digest=record.digest)


class Store:
    """Archives results for one crawl; see the module docstring for the decisions it makes."""

    def __init__(self, warc: WarcWriter, catalog: Catalog, *, target: str, crawl_pk: int,
                 settings: DedupSettings,
                 elsewhere: Callable[[str], Awaitable[Original | None]] | None = None) -> None:
        self.warc = warc
        # A distributed crawl's worker: payloads the target's earlier crawls hold, looked up
        # by digest in the shared index (their records are on the machine that merges).
        self._elsewhere = elsewhere
        self.catalog = catalog
        self.target = target
        self.crawl_pk = crawl_pk
        self.settings = settings
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="warc-sink")
        self._unreadable_logged = False
        # capture id -> whether its record was found intact (read only in the sink thread)
        self._intact: OrderedDict[int, bool] = OrderedDict()
        self.damaged_originals = 0  # originals found damaged or missing, so stored in full
        # A target's first crawl has no earlier capture to be conditional on: skip the look-up.
        self._history = catalog.db.execute(
            "SELECT 1 FROM crawls WHERE target=? AND status IN ('complete', 'incomplete') "
            "AND id<? LIMIT 1",
            (target, crawl_pk)).fetchone() is not None
        # Payloads the target may hold: most "archived before?" questions end here (no).
        self._digests = DigestFilter(catalog.response_digests(target))

    async def _in_sink(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``func`` in the sink thread."""
        call = functools.partial(func, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.pool, call)

    async def conditional(self, item: CrawlUrl) -> Conditional | None:
        """Return a conditional request for ``item`` if its last good capture allows one."""
        if not self._history or not self.settings.conditional or item.kind is UrlKind.ROBOTS:
            return None
        prior = self.catalog.prior(self.target, item.key)
        if prior is None:
            return None
        try:
            record = await self._in_sink(read_intact, prior.head.path, prior.head.offset,
                                         prior.head.length, record_id=prior.head.record_id)
        except (RecordUnreadable, OSError) as exc:
            # Without the original head a 304 could not be made replayable: fetch in full.
            if not self._unreadable_logged:
                log.warning("earlier capture unreadable, fetching in full: %s", exc)
                self._unreadable_logged = True
            return None
        if not await self._in_sink(self._is_intact, prior.payload):
            return None  # a 304 would refer to a damaged payload: fetch in full
        return Conditional(prior, record.http_head)

    async def write(self, result: FetchResult, item: CrawlUrl,
                    conditional: Conditional | None = None, *,
                    fields: dict[str, str] | None = None) -> Stored:
        """Archive ``result`` as a response, a revisit, or (failures) a metadata record;
        ``fields`` are WARC fields to add (a rescued capture's provenance)."""
        extra = kind_fields(item.kind)  # why we fetched it (audit trail)
        if item.lease:  # a distributed crawl: which lease fetched it (merge keeps the last)
            extra[LEASE_FIELD] = f"{item.lease}; attempt={item.attempt}"
        extra.update(fields or {})
        if result.ok and result.status == 304 and conditional is not None:
            prior = conditional.prior
            entry = await self._in_sink(self._write_not_modified, result, prior.payload,
                                        extra, conditional.head)
            return Stored(entry, refers_to=prior.payload.capture, mime=prior.head.mime,
                          etag=result.header("etag") or prior.etag,
                          last_modified=result.header("last-modified") or prior.last_modified)
        found = validators(result)
        original = await self._original(result)
        if original is not None:
            entry = await self._in_sink(self.warc.write_revisit, result, original_of(original),
                                        extra)
            return Stored(entry, refers_to=original.capture, **found)
        if self._elsewhere is not None and self._may_refer(result):
            far = await self._elsewhere(result.payload_digest)
            if far is not None:
                entry = await self._in_sink(self.warc.write_revisit, result, far, extra)
                return Stored(entry, **found)
        entry = await self._in_sink(self.warc.write_exchange, result, extra)
        if entry.record_type == "response" and result.payload_digest:
            self._digests.add(result.payload_digest)
        return Stored(entry, **found)

    def _write_not_modified(self, result: FetchResult, payload: StoredRecord,
                            extra: dict[str, str], head: bytes) -> IndexEntry:
        return self.warc.write_revisit(result, original_of(payload), extra, carried_head=head)

    async def _original(self, result: FetchResult) -> StoredRecord | None:
        """Return the archived response this result duplicates, if it may refer to one.

        A revisit is only as good as its original, so the original is read back and checked
        (gzip CRC, digests, record id) before the first revisit depends on it; a missing or
        damaged original is passed over, and with no intact one the payload is stored in
        full. The verdicts are remembered, so each original is read once per crawl.
        """
        if not self._may_refer(result) or result.payload_digest not in self._digests:
            return None
        for candidate in self.catalog.dedup_originals(self.target, self.crawl_pk,
                                                      result.payload_digest):
            if await self._in_sink(self._is_intact, candidate):
                return candidate
        return None

    def _may_refer(self, result: FetchResult) -> bool:
        """Return True if ``result`` may be stored as a revisit of an identical payload."""
        return bool(self.settings.dedup and result.ok and 200 <= result.status < 300
                    and result.status != 206 and result.truncated is None
                    and result.body_length >= max(1, self.settings.min_size)
                    and result.payload_digest)

    def _is_intact(self, record: StoredRecord) -> bool:
        """Return True if an original record reads back whole and matches the catalog
        (sink thread only)."""
        verdict = self._intact.get(record.capture)
        if verdict is not None:
            self._intact.move_to_end(record.capture)
            return verdict
        try:
            read_intact(record.path, record.offset, record.length,
                        record_id=record.record_id, digest=record.digest or None)
            verdict = True
        except (RecordUnreadable, OSError) as exc:
            log.warning("not deduplicating against a damaged original, storing in full: %s",
                        exc)
            self.damaged_originals += 1
            verdict = False
        self._intact[record.capture] = verdict
        if len(self._intact) > _CHECKED_ORIGINALS:
            self._intact.popitem(last=False)
        return verdict

    async def original_content(self, result: FetchResult, conditional: Conditional,
                               ) -> FetchResult:
        """Return the archived original of a 304 as a result (its head and payload), so its
        links are extracted again exactly as if the page had been downloaded."""
        payload = conditional.prior.payload
        record = await self._in_sink(read_record, payload.path, payload.offset, payload.length)
        status, headers = parse_head(conditional.head)
        body = io.BytesIO(record.payload)
        return FetchResult(url=result.url, started=result.started, status=status,
                           headers=headers, body=body, body_length=len(record.payload),
                           payload_digest=payload.digest)

    async def close(self) -> None:
        """Finish the open WARC file and stop the sink thread."""
        await self._in_sink(self.warc.close)
        self.pool.shutdown()


def validators(result: FetchResult) -> Validators:
    """Return the ETag and Last-Modified of a good 200 (a later crawl makes them conditions)."""
    if not result.ok or result.status != 200 or result.truncated is not None:
        return {"etag": None, "last_modified": None}
    return {"etag": result.header("etag"), "last_modified": result.header("last-modified")}


def parse_head(head: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    """Return the status and raw headers of a stored HTTP response head."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return status, headers


def failure_class(result: FetchResult) -> str | None:
    """Return the catalog's failure class for a fetch result."""
    if result.failure is not None:
        return result.failure.value
    if result.truncated is Truncation.LENGTH:
        return "too-large"
    return None


def capture_row(item: CrawlUrl, result: FetchResult, stored: Stored,
                found: Extracted | None, *, final: bool = True) -> CaptureRow:
    """Return the catalog row for a fetch result archived as ``stored``."""
    entry = stored.entry
    return CaptureRow(
        url=item.url, key=item.key, kind=item.kind.value, depth=item.depth,
        fetched_at=warc_date(result.started),
        status=result.status if result.ok else None,
        mime=(stored.mime or result.content_type or None) if result.ok else None,
        location=result.header("location") if result.ok else None,
        failure=failure_class(result),
        detail=_detail(result),
        peer_ip=result.peer_ip,
        digest=entry.digest or None,
        length=result.body_length if result.ok else None,
        warc_file=entry.filename, warc_offset=entry.offset, warc_length=entry.length,
        record_type=entry.record_type,
        title=found.title if found else None,
        text_hash=found.text_hash if found else None,
        text=found.text if found else None,
        outlinks=len(found.links) if found and result.ok else None,
        final=final,
        record_id=entry.record_id or None,
        refers_to=stored.refers_to,
        etag=stored.etag,
        last_modified=stored.last_modified,
        surt=urls.surt_key(item.url))


def _detail(result: FetchResult) -> str | None:
    """Return the catalog detail of a result: a truncated body says how it was cut first
    (``time``, ``disconnect``, ``length``), then why, so it can be counted."""
    if result.truncated is not None:
        why = result.failure_detail
        return result.truncated.value + (f": {why}" if why else "")
    return result.failure_detail or None


def unfetched_row(item: CrawlUrl, failure: str, detail: str) -> CaptureRow:
    """Return the catalog row of a URL deliberately not fetched (robots, out of scope)."""
    return CaptureRow(url=item.url, key=item.key, kind=item.kind.value, depth=item.depth,
                      fetched_at=warc_date(datetime.now(UTC)), failure=failure, detail=detail,
                      surt=urls.surt_key(item.url))


def stored_from_record(catalog: Catalog, target: str, orphan: OrphanRecord,
                       result: FetchResult) -> tuple[Stored, bytes]:
    """Return how a record recovered after a kill was stored, and its payload (for a revisit,
    the payload of the original it refers to, read back so its links can be extracted)."""
    headers = orphan.headers
    entry = IndexEntry(url=orphan.url, timestamp=timestamp17_of(orphan.date),
                       mime=result.content_type, status=result.status,
                       digest=headers.get("WARC-Payload-Digest", ""), offset=orphan.offset,
                       length=orphan.length, filename=orphan.warc_file,
                       record_type=orphan.record_type, record_id=headers.get("WARC-Record-ID", ""))
    if orphan.record_type != "revisit":
        return Stored(entry, **validators(result)), orphan.payload
    original = catalog.original_record(target, entry.digest,
                                       headers.get("WARC-Refers-To-Target-URI", ""),
                                       headers.get("WARC-Refers-To-Date", ""))
    payload = b""
    if original is not None:
        try:
            payload = read_record(original.path, original.offset, original.length).payload
        except RecordUnreadable as exc:
            log.warning("original of a recovered revisit unreadable: %s", exc)
    not_modified = headers.get("WARC-Profile") == SERVER_NOT_MODIFIED
    return Stored(entry, refers_to=original.capture if original else None,
                  mime=result.content_type if not_modified else None,
                  **validators(result)), payload


_RECORD_EXTRACTED = extract.HTML_TYPES | {"text/css"}  # parsed again when read back


def capture_from_record(catalog: Catalog, target: str, record: OrphanRecord,
                        default_kind: UrlKind) -> tuple[CaptureRow, Extracted | None]:
    """Return the catalog row of a record read back from a WARC (one a kill left
    unentered, or any record when the catalog is rebuilt), as the run that wrote it would
    have entered it: its kind from ``WARC-Crawler-Kind``, text fingerprints extracted again."""
    kind = record_kind(record.headers, default_kind)
    fetched = result_from_record(record)
    try:
        stored, payload = stored_from_record(catalog, target, record, fetched)
        found = None
        media = fetched.content_type
        good = (fetched.ok and 200 <= fetched.status < 300) or record.record_type == "revisit"
        if good and (media in _RECORD_EXTRACTED or kind is UrlKind.SITEMAP):
            found = extract.extract_safely(record.url, media, payload,
                                           fetched.header("content-type"),
                                           fetched.header("content-encoding"))
        item = CrawlUrl(url=record.url, key=urls.canonical_key(record.url), kind=kind, depth=0)
        row = capture_row(item, fetched, stored, found)
    finally:
        fetched.close()
    if record.headers.get("WARC-Profile") == SERVER_NOT_MODIFIED:
        row = dataclasses.replace(row, status=304)  # the revisit carries the original's
    return row, found
