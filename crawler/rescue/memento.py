"""What an archive served for a memento, turned back into what the origin served then, and
judged: is it the page, or an archive's error page, a block page or a soft-404 (pure).

An archive answering ``TIMESTAMPid_/URL`` sends the archived status and payload, and the
archived headers either as they were (pywb) or renamed ``X-Archive-Orig-*`` (the Wayback
Machine), mixed with headers of its own (``Memento-Datetime``, a ``Link`` to the TimeGate
and TimeMap, ``X-Archive-Src``…). The record we write must be the origin's response: its
status, its headers without the archive's, its payload byte for byte, its redirect pointing
at the original URL, and dated when the archive captured it.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from crawler.capture import extract, pagetext
from crawler.capture.fingerprints import (
    BLOCK_MARKERS,
    CHALLENGE_MAX_CHARS,
    OUTAGE_MARKERS,
    challenge,
)
from crawler.core.models import Extracted, FetchResult
from crawler.rescue.sources import Memento, Source

ORIG_PREFIX = b"x-archive-orig-"
# Headers an archive adds to a memento (RFC 7089 §2.1, and the Wayback Machine's and pywb's
# own); never the origin's. Link is dropped only when it is the archive's memento links.
_ARCHIVE_HEADERS = frozenset({
    b"memento-datetime", b"x-archive-src", b"x-archive-guessed-content-type",
    b"x-archive-guessed-charset", b"x-archive-guessed-encoding", b"x-archive-playback",
    b"x-archive-wayback-runtime-error", b"x-app-server", b"x-ts", b"x-tr", b"x-location",
    b"x-cache-key", b"x-page-cache", b"x-nid", b"server-timing", b"x-wb-redirect",
    b"preference-applied", b"x-archive-screenname", b"x-archive-redirect-reason",
})
_MAX_LINKS = 3  # a page with more links is the site's own (fingerprints.CHALLENGE_MAX_LINKS)
SHARED_BY = 3  # a page whose bytes this many other URLs' captures share may be a template
# Headers archives rename X-Archive-Orig-* when the origin sent them (pywb's rules, the
# Wayback Machine's): in an answer that renames any, these unrenamed are the archive's own
# (its caching, its security policy, its framing), never the origin's.
_RENAMED_WHEN_ORIGINAL = frozenset({
    b"date", b"server", b"etag", b"last-modified", b"cache-control", b"expires", b"vary",
    b"age", b"via", b"pragma", b"content-security-policy",
    b"content-security-policy-report-only", b"strict-transport-security",
    b"referrer-policy", b"permissions-policy", b"x-frame-options", b"x-xss-protection",
    b"transfer-encoding", b"content-length", b"connection", b"keep-alive",
})
_MEMENTO_RELS = re.compile(rb'rel="[^"]*\b(?:original|timegate|timemap|memento)\b')
# Whole words only: "Not Foundland" is a place, not an error.
_NOT_FOUND = re.compile(r"\b(?:page not found|not found|страница не найдена|ошибка 404|"
                        r"error 404|404|no such page|page does not exist|"
                        r"страница не существует)(?!\w)")


@dataclasses.dataclass(frozen=True, slots=True)
class Restored:
    """A memento as the origin served it, and what the archive said about it."""

    result: FetchResult  # URL, date, status, headers and payload as the origin served them
    memento_time: datetime | None  # the archive's Memento-Datetime, if it sent one
    digest_match: bool | None  # our payload digest equals the source's; None: none given


def restore(served: FetchResult, memento: Memento, source: Source) -> Restored:
    """Return the origin's response inside an archive's answer for ``memento``.

    A header the archive also sends renamed ``X-Archive-Orig-H`` is the archive's own as
    ``H`` (its Date, its Server, its Content-Length): the renamed one is the origin's. In an
    answer that renames any, the headers archives always rename (``_RENAMED_WHEN_ORIGINAL``:
    caching, security policy) are the archive's when they come unrenamed. The rest is the
    origin's (pywb renames only the headers it knows: Set-Cookie, Link, a site's own
    ``X-…`` come as they were), except what the archive adds to every memento
    (``_ARCHIVE_HEADERS``, its memento ``Link``, a ``Content-Location`` into its replay).
    """
    originals = {name.lower()[len(ORIG_PREFIX):] for name, _ in served.headers
                 if name.lower().startswith(ORIG_PREFIX)}
    headers: list[tuple[bytes, bytes]] = []
    own_encoding = None
    for name, value in served.headers:
        lname = name.lower()
        if lname == b"content-encoding":
            own_encoding = value  # how the bytes we hold are coded, whatever was archived
        if lname.startswith(ORIG_PREFIX):
            headers.append((name[len(ORIG_PREFIX):], value))
        elif lname in originals or lname in _ARCHIVE_HEADERS or (
                originals and lname in _RENAMED_WHEN_ORIGINAL) or (
                lname == b"link" and _MEMENTO_RELS.search(value)) or (
                lname == b"content-location" and _into_archive(value, source)):
            continue
        else:
            headers.append((name, value))
    headers = _coded_as_held(headers, own_encoding)
    headers = [(n, _original_location(v, source)) if n.lower() == b"location" else (n, v)
               for n, v in headers]
    memento_time = _http_date(served.header("memento-datetime"))
    started = capture_time(memento.timestamp)
    if memento_time is not None and memento_time.replace(microsecond=0) != \
            started.replace(microsecond=0):
        started = memento_time  # the archive served another capture than the one listed
    result = dataclasses.replace(served, url=memento.url, started=started, headers=headers,
                                 request_head=b"", peer_ip=None)
    match = (served.payload_digest == memento.digest) if memento.digest and \
        served.payload_digest else None
    return Restored(result, memento_time, match)


def _into_archive(value: bytes, source: Source) -> bool:
    """Return True if a header's URL points into the source's own replay."""
    text = value.decode("latin-1")
    return text.startswith(source.replay + "/") or (bool(
        urlpath(source.replay)) and text.startswith(urlpath(source.replay) + "/"))


def _coded_as_held(headers: list[tuple[bytes, bytes]],
                   own_encoding: bytes | None) -> list[tuple[bytes, bytes]]:
    """Return the headers with a Content-Encoding that says how the payload we hold is
    coded: an archive that decoded a gzip capture must not leave it saying gzip."""
    kept = [(n, v) for n, v in headers if n.lower() != b"content-encoding"]
    return kept if own_encoding is None else [*kept, (b"Content-Encoding", own_encoding)]


def _original_location(value: bytes, source: Source) -> bytes:
    """Return a redirect's target as the origin sent it (an archive may point it into its
    own replay: ``PREFIX/TIMESTAMP[mode]/URL``)."""
    text = value.decode("latin-1")
    for base in (source.replay, urlpath(source.replay)):
        if base and text.startswith(base + "/"):
            rest = text[len(base) + 1:]
            found = re.match(r"\d{1,17}(?:[a-z]{2}_)?/", rest)
            if found:
                return rest[found.end():].encode("latin-1")
    return value


def urlpath(url: str) -> str:
    """Return the path part of an absolute URL (redirects may be relative to the host)."""
    found = re.match(r"[a-z]+://[^/]+(/.*)?$", url)
    return (found.group(1) or "") if found else ""


def capture_time(timestamp: str) -> datetime:
    """Return the moment a 14- or 17-digit archive timestamp names, in UTC."""
    digits = (timestamp + "000")[:17]
    moment = datetime.strptime(digits[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return moment.replace(microsecond=int(digits[14:17]) * 1000)


def _http_date(value: str | None) -> datetime | None:
    """Return an HTTP date in UTC, or None."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def archive_error(served: FetchResult, memento: Memento) -> str | None:
    """Return why the archive's answer is not the capture listed, or None if it is.

    Memento-aware archives date every memento (RFC 7089 §2.1.1); an answer without
    ``Memento-Datetime`` whose status or bytes are not the listed ones is the archive's own
    page (its "not archived", its error, its rate-limit notice), not the origin's.
    """
    if not served.ok:
        return f"fetch failed: {served.failure.value if served.failure else 'error'}"
    dated = served.header("memento-datetime") is not None
    listed = memento.status
    other_bytes = bool(memento.digest and served.payload_digest
                       and memento.digest != served.payload_digest)
    if not dated and (listed is None or served.status != listed or other_bytes):
        return f"the archive's own answer ({served.status}, no Memento-Datetime)"
    if listed is not None and served.status != listed and not memento.is_revisit:
        return f"served {served.status} for a capture listed as {listed}"
    return None


def page_problem(result: FetchResult, body: bytes, found: Extracted | None, *,
                 shared: int = 0) -> str | None:
    """Return what a 2xx memento shows instead of the page (a block, outage or challenge
    page, or a not-found page served with 200), or None if it looks like the page.

    ``found`` is what link extraction found in it (None: not HTML). A small page with few
    links is judged on its whole text, as the crawl judges challenge pages: a long article
    about blocking, or a site's own page that mentions "not found", keeps its navigation and
    its length. A page whose bytes ``shared`` other URLs' captures also have (the source's
    listing says so) may be a template served for many URLs, navigation and all: a site's
    not-found page served with 200, a block or maintenance page; whatever its size, its
    title and first lines are read for those. Other pages are not read again (most pages:
    the cost of this test stays off them).
    """
    if found is None or result.content_type not in extract.HTML_TYPES:
        return None
    links = len(found.links)
    template = shared >= SHARED_BY
    if links > _MAX_LINKS and not template:
        return None
    if found.wall:
        return f"challenge page ({found.wall})"
    try:
        raw = extract.decode_content(body, result.header("content-encoding"))
        html, _ = extract.decode_text(raw, result.header("content-type"))
    except Exception:  # undecodable: no judgement, the bytes are kept as they are
        return None
    lines = [line.casefold() for line in pagetext.html_lines(html)]
    title = (found.title or "").casefold()
    text = " ".join(lines)
    if links > _MAX_LINKS or len(text) > CHALLENGE_MAX_CHARS:
        if not template:
            return None
        text = " ".join([title, *lines[:2]])  # a template: its title and first lines only
        also = f" (the same bytes as {shared} other URLs' captures)"
    else:
        also = ""
        if who := challenge(lines, found.title, links):
            return f"challenge page ({who})"
    if any(marker in text or marker in title for marker in BLOCK_MARKERS):
        return "block page" + also
    for marker, what in OUTAGE_MARKERS.items():
        if marker in text or marker in title:
            return f"outage page ({what})" + also
    head = " ".join([title, *lines[:2]])
    if _NOT_FOUND.search(head):
        return "soft-404 (a not-found page served with 200)" + also
    return None
