"""Public web archives as sources of a rescue: how a source is named, where its CDX server,
TimeMaps and raw mementos are, and how their answers are read (pure).

A source is given by its replay address, the prefix under which ``PREFIX/TIMESTAMPid_/URL``
returns a capture raw, as archived (pywb, the Wayback Machine, OpenWayback and most national
libraries' archives answer this form). Its CDX server is guessed from it (pywb:
``PREFIX/cdx``; web.archive.org: ``/cdx/search/cdx``) unless given, and ``cdx=none`` makes the
rescue ask TimeMaps (RFC 7089 §5) per URL instead, for archives without a CDX server.

CDX answers come in three shapes, all read here: pywb's NDJSON (one object per line,
``url``/``mime``/``status``), the Wayback Machine's JSON (an array of arrays, the first row the
field names, ``original``/``mimetype``/``statuscode``, then an empty row and the resume key)
and the Wayback Machine's plain text (``urlkey timestamp original mimetype statuscode digest
length``, a blank line, then the resume key).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import itertools
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import IO

from crawler.core.errors import ConfigError

DEFAULT_RATE = 1.0  # requests per second to one source: the Wayback Machine asks for less
# than one a second on its CDX server; a local or institutional archive may allow more.
PAGE_SIZE = 5000  # CDX rows asked for per request, where the server pages (resume keys)
# Asked of a CDX server that does not page (pywb): it answers at most ``limit`` rows (pywb's
# default is 100,000, without a word), so the limit is asked explicitly, above any site, and
# an answer of exactly this many rows is taken as cut short.
UNPAGED_LIMIT = 50_000_000
_WAYBACK_HOSTS = ("web.archive.org", "wayback.archive.org")
_TEXT_FIELDS = ("urlkey", "timestamp", "original", "mimetype", "statuscode", "digest",
                "length")
_TIMESTAMP_IN_URI = re.compile(r"/(\d{14,17})(?:[a-z]{2}_)?/")


@dataclass(frozen=True, slots=True)
class Source:
    """One public web archive a rescue reads from."""

    name: str  # how reports and provenance name it (its host, unless given)
    replay: str  # PREFIX of PREFIX/TIMESTAMPid_/URL, without a trailing slash
    cdx: str | None  # its CDX server's endpoint; None: TimeMaps per URL
    timemap: str  # PREFIX of PREFIX/URL: a link-format TimeMap
    rate: float = DEFAULT_RATE  # most requests per second (0: no limit)

    def memento_url(self, timestamp: str, url: str) -> str:
        """Return the address of a capture's raw payload and headers (``id_``)."""
        return f"{self.replay}/{timestamp}id_/{url}"

    def timemap_url(self, url: str) -> str:
        """Return the address of a URL's TimeMap in link format."""
        return f"{self.timemap}/{url}"

    def cdx_url(self, url: str, match: str, *, start: str | None = None,
                end: str | None = None, resume: str | None = None) -> str:
        """Return a CDX query for every capture of ``url`` (``match``: exact, prefix,
        domain), from ``start`` to ``end`` (timestamps), after ``resume`` (a resume key)."""
        assert self.cdx is not None
        # allowFuzzy=0: pywb would answer a query without a match with look-alike URLs
        params = [("url", url), ("matchType", match), ("output", "json"), ("allowFuzzy", "0")]
        if start:
            params.append(("from", start))
        if end:
            params.append(("to", end))
        if self.is_wayback:  # pages results with resume keys (pywb returns them all)
            params += [("limit", str(PAGE_SIZE)), ("showResumeKey", "true")]
            if resume:
                params.append(("resumeKey", resume))
        else:
            params.append(("limit", str(UNPAGED_LIMIT)))
        return f"{self.cdx}?{urllib.parse.urlencode(params)}"

    @property
    def is_wayback(self) -> bool:
        """Return True for the Wayback Machine's own CDX server (paged, JSON arrays)."""
        return urllib.parse.urlsplit(self.cdx or "").path.endswith("/cdx/search/cdx")


def parse_source(spec: str, *, where: str = "--source", key: str = "source") -> Source:
    """Return the source a ``--source`` value (or config entry) names:
    ``URL[;name=N][;cdx=URL|none][;timemap=URL][;rate=R]``."""
    first, *options = [part.strip() for part in spec.split(";")]
    replay = first.rstrip("/")
    parts = urllib.parse.urlsplit(replay)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(where, key, f"{spec!r}: a source is the http(s) address of an "
                                      "archive's replay, e.g. https://web.archive.org/web")
    values: dict[str, str] = {}
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or name not in ("name", "cdx", "timemap", "rate"):
            raise ConfigError(where, key, f"{spec!r}: unknown option {option!r} (known: "
                                          "name, cdx, timemap, rate)")
        values[name] = value.strip()
    host = parts.hostname or ""
    default_cdx = (f"{parts.scheme}://{parts.netloc}/cdx/search/cdx" if host in _WAYBACK_HOSTS
                   else f"{replay}/cdx")
    cdx = values.get("cdx", default_cdx)
    try:
        rate = float(values.get("rate", DEFAULT_RATE))
    except ValueError:
        rate = -1.0
    if rate < 0:
        raise ConfigError(where, key, f"{spec!r}: rate must be a number of requests per "
                                      "second, 0 for no limit")
    return Source(name=values.get("name") or parts.netloc, replay=replay,
                  cdx=None if cdx.lower() == "none" else cdx.rstrip("?"),
                  timemap=values.get("timemap", f"{replay}/timemap/link").rstrip("/"),
                  rate=rate)


@dataclass(frozen=True, slots=True)
class Memento:
    """One capture a source lists: enough to choose among them before fetching any."""

    url: str  # the original URL
    timestamp: str  # as the source spells it (14 digits, or pywb's 17 to the millisecond)
    status: int | None  # the archived status; None: not listed (revisit "-", TimeMaps)
    mime: str  # the archived media type ("warc/revisit" for a revisit), or ""
    digest: str  # the source's payload digest as ``sha1:BASE32``, or ""

    @property
    def is_revisit(self) -> bool:
        """Return True if the source lists a revisit (its status is the original's)."""
        return self.mime == "warc/revisit"


@dataclass(frozen=True, slots=True)
class CdxPage:
    """One answer of a CDX server: its captures and where the next page starts."""

    mementos: tuple[Memento, ...]
    resume: str | None  # the resume key of the next page; None: this was the last
    unreadable: int = 0  # lines that were not a CDX row (skipped, counted)
    rows: int = 0  # rows the server sent (before any was refused): is it its limit?


def parse_cdx(body: bytes) -> CdxPage:
    """Return the captures of a CDX answer in any of the three shapes (module docstring)."""
    return read_cdx(io.BytesIO(body))


def read_cdx(stream: IO[bytes], *, batch: int = PAGE_SIZE,
             on_batch: Callable[[list[Memento]], None] | None = None) -> CdxPage:
    """Read a CDX answer from a file, line by line where the shape allows (pywb's NDJSON and
    the text form), so an answer of millions of lines is never held whole: with
    ``on_batch``, captures are handed over ``batch`` at a time and not kept."""
    first = stream.read(1)
    while first in (b" ", b"\n", b"\r", b"\t"):
        first = stream.read(1)
    if not first:
        return CdxPage((), None)
    if first == b"[":  # the Wayback Machine's JSON: pages are small (``limit``)
        page = _parse_json_rows(json.loads(first + stream.read()))
        page = CdxPage(page.mementos, page.resume, page.unreadable, len(page.mementos))
        if on_batch is not None:
            on_batch(list(page.mementos))
            return CdxPage((), page.resume)
        return page
    kept: list[Memento] = []
    pending: list[Memento] = []
    resume = None
    blank = False
    unreadable = rows = 0
    lines = itertools.chain([first + stream.readline()], stream)
    for raw in lines:
        line = raw.decode("utf-8", "replace").strip()
        if not line:
            blank = True
            continue
        if blank:  # the text form: after a blank line, the resume key
            resume = line
            break
        rows += 1
        try:
            fields = json.loads(line) if line.startswith("{") else dict(
                zip(_TEXT_FIELDS, line.split(" "), strict=False))
            memento = _memento(fields) if isinstance(fields, dict) else None
        except ValueError:
            memento = None
        if memento is None:
            unreadable += 1
            continue
        pending.append(memento)
        if len(pending) >= batch:
            if on_batch is not None:
                on_batch(pending)
            else:
                kept.extend(pending)
            pending = []
    if on_batch is not None:
        on_batch(pending)
    else:
        kept.extend(pending)
    return CdxPage(tuple(kept), resume, unreadable, rows)


def _parse_json_rows(rows: list[list[str]]) -> CdxPage:
    """Read the Wayback Machine's JSON rows (field names first; then [], [resume key])."""
    if not rows:
        return CdxPage((), None)
    names, found, resume = rows[0], [], None
    body = rows[1:]
    if len(body) >= 2 and body[-2] == [] and len(body[-1]) == 1:
        resume = body[-1][0]
        body = body[:-2]
    for row in body:
        if row and (m := _memento(dict(zip(names, row, strict=False)))) is not None:
            found.append(m)
    return CdxPage(tuple(found), resume)


def _memento(fields: dict[str, str]) -> Memento | None:
    """Return the capture a CDX row describes (either server's field names), or None for a
    row that names no URL or time."""
    url = fields.get("url") or fields.get("original") or ""
    timestamp = str(fields.get("timestamp") or "")
    if not url or not timestamp.isdigit() or str(fields.get("is_fuzzy", "")) == "1":
        return None  # (pywb answers a query without a match with "fuzzy" look-alikes)
    status = str(fields.get("status") or fields.get("statuscode") or "")
    return Memento(url=url, timestamp=timestamp,
                   status=int(status) if status.isdigit() else None,
                   mime=str(fields.get("mime") or fields.get("mimetype") or ""),
                   digest=normal_digest(str(fields.get("digest") or "")))


def normal_digest(value: str) -> str:
    """Return a payload digest as ``sha1:BASE32`` (CDX servers drop the prefix; some write
    hex), or "" if it is none."""
    value = value.strip()
    if not value or value == "-":
        return ""
    algorithm, sep, digits = value.partition(":")
    if not sep:
        algorithm, digits = "sha1", value
    if algorithm.lower() == "sha1" and len(digits) == 40:
        with contextlib.suppress(binascii.Error):
            digits = base64.b32encode(binascii.unhexlify(digits)).decode()
    return f"{algorithm.lower()}:{digits.upper()}"


def parse_timemap(body: bytes) -> list[Memento]:
    """Return the mementos of a link-format TimeMap (RFC 7089 §5.1): entries whose ``rel``
    names ``memento``, their times from the URI's timestamp, else from ``datetime``."""
    return read_timemap(body)[0]


def read_timemap(body: bytes) -> tuple[list[Memento], list[str]]:
    """Return the mementos of a link-format TimeMap and the other TimeMaps it links to
    (``rel="timemap"``, not ``self``): an archive splits a long TimeMap in pages (RFC 7089
    §4.1.1, the Wayback Machine's ``from=`` pages)."""
    text = body.decode("utf-8", "replace")
    original = ""
    found: list[tuple[str, str]] = []
    more: list[str] = []
    for uri, params in _links(text):
        rels = params.get("rel", "").split()
        if "original" in rels:
            original = uri
        if "memento" in rels:
            timestamp = _timestamp_of(uri, params.get("datetime", ""))
            if timestamp:
                found.append((uri, timestamp))
        if "timemap" in rels and "self" not in rels:
            more.append(uri)
    return [Memento(url=original or _original_of(uri), timestamp=ts, status=None, mime="",
                    digest="") for uri, ts in found], more


def _links(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield each ``<uri>; name="value"; …`` entry of a link-format document."""
    for match in re.finditer(r"<([^>]*)>([^<]*)", text):
        params: dict[str, str] = {}
        for pm in re.finditer(r';\s*([A-Za-z_-]+)\s*=\s*("([^"]*)"|[^;,\s]*)',
                              match.group(2)):
            params[pm.group(1).lower()] = pm.group(3) if pm.group(3) is not None \
                else pm.group(2)
        yield match.group(1), params


def _timestamp_of(uri: str, datetime_value: str) -> str:
    """Return a memento's timestamp: from its URI (exact), else its Memento datetime."""
    if found := _TIMESTAMP_IN_URI.search(uri):
        return found.group(1)
    try:
        return parsedate_to_datetime(datetime_value).strftime("%Y%m%d%H%M%S")
    except (TypeError, ValueError):
        return ""


def _original_of(memento_uri: str) -> str:
    """Return the original URL inside a memento's address (``…/TIMESTAMP[mode]/URL``)."""
    found = _TIMESTAMP_IN_URI.search(memento_uri)
    return memento_uri[found.end():] if found else ""


def window_bound(value: str | None, *, end: bool) -> str | None:
    """Return a ``--from``/``--to`` date (YYYY[-MM[-DD[THH:MM:SS]]] or digits) as 14 digits,
    the start of its period or (``end``) its last second; None when not given."""
    if not value:
        return None
    text = value.strip()
    shaped = re.fullmatch(r"\d{4}(-\d{2}(-\d{2}([T ]\d{2}(:\d{2}(:\d{2})?)?)?)?)?Z?", text)
    digits = "".join(ch for ch in text if ch.isdigit())
    if not (shaped or text.isdigit()) or len(digits) not in (4, 6, 8, 10, 12, 14):
        raise ConfigError("--from/--to", "date", f"{value!r}: give a date as YYYY, "
                                                  "YYYY-MM, YYYY-MM-DD or YYYYMMDDhhmmss")
    return digits + ("99991231235959"[len(digits):] if end else
                     "00000101000000"[len(digits):])


def in_window(timestamp: str, start: str | None, end: str | None) -> bool:
    """Return True if a capture's timestamp lies in the window (bounds included)."""
    ts = timestamp[:14].ljust(14, "0")
    return (start is None or ts >= start) and (end is None or ts <= end)
