"""Data that crosses module boundaries: URLs to crawl, fetch results and their outcomes."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import IO


class UrlKind(StrEnum):
    """Why a URL is being fetched; decides scope rules and whether it is a 'page'."""

    SEED = "seed"  # given by the user
    PAGE = "page"  # navigational link from an in-scope page
    REQUISITE = "requisite"  # image, CSS, script, font, iframe... needed to render a page
    SITEMAP = "sitemap"  # sitemap or sitemap index
    ROBOTS = "robots"  # robots.txt
    # Fetched after the crawl by takedown detection (evidence, never crawled from):
    PROBE = "probe"  # a random URL beside changed pages: what the site's not-found looks like
    RECHECK = "recheck"  # a suspected URL fetched again to confirm what happened to it
    CONTROL = "control"  # the control URL: is our own network down?
    VANTAGE = "vantage"  # a suspected URL fetched through a vantage-point proxy
    LANDING = "landing"  # where a redirect leads, when the crawl did not fetch it (a limit,
    # a trap rule, out of scope): the evidence a redirect's class rests on


class FailureKind(StrEnum):
    """How a fetch failed before a complete HTTP response head arrived.

    Kept distinct on purpose: takedown detection tells a DNS removal from a refused port.
    """

    DNS = "dns"  # name did not resolve (NXDOMAIN, SERVFAIL)
    REFUSED = "refused"  # TCP connection refused
    TLS = "tls"  # TLS handshake failed
    TIMEOUT = "timeout"  # connect or response-head timeout
    RESET = "reset"  # connection reset or closed before a response head
    PROTOCOL = "protocol"  # the server sent something that is not HTTP
    CONNECT = "connect"  # other connection failure (unreachable network...)
    OTHER = "other"  # anything else, with the detail in the message


class Truncation(StrEnum):
    """Why a stored body is shorter than what the server meant to send (WARC-Truncated values)."""

    LENGTH = "length"  # exceeded the response size cap
    TIME = "time"  # the server stalled mid-body past the read timeout or the total timeout
    DISCONNECT = "disconnect"  # the connection dropped mid-body (e.g. Content-Length mismatch)


@dataclass(frozen=True, slots=True)
class CrawlUrl:
    """One URL in the frontier and how it was reached."""

    url: str  # normalized URL as it will be fetched
    key: str  # canonical key (SURT) used to fetch each URL once per crawl
    kind: UrlKind
    depth: int  # link hops from the seed (requisites and redirects do not add hops)
    via: str | None = None  # URL of the page that linked here
    redirects: int = 0  # redirect hops taken to get here
    embeds: int = 0  # requisite hops (CSS -> image counts 2)
    attempt: int = 0  # retries already made
    lease: str = ""  # distributed crawls: the shared queue's lease it was fetched under


@dataclass(slots=True)
class FetchResult:
    """What one HTTP exchange produced, including the bytes exactly as they crossed the wire.

    ``body`` holds the raw, still content-coded body (spooled to disk when large). The owner
    must call ``close()``.
    """

    url: str
    started: datetime  # UTC time the request was sent
    request_head: bytes = b""  # request line + headers exactly as sent
    status: int = 0
    reason: str = ""
    http_version: str = "HTTP/1.1"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # as received
    body: IO[bytes] | None = None
    body_length: int = 0
    peer_ip: str | None = None
    elapsed: float = 0.0
    failure: FailureKind | None = None
    failure_detail: str = ""
    truncated: Truncation | None = None
    payload_digest: str = ""  # "sha1:BASE32" of the stored body, spelled as WARC-Payload-Digest

    @property
    def ok(self) -> bool:
        """Return True if a response head arrived (whatever its status)."""
        return self.failure is None

    def header(self, name: str) -> str | None:
        """Return the first value of a response header, decoded as latin-1."""
        lname = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key.lower() == lname:
                return value.decode("latin-1")
        return None

    @property
    def content_type(self) -> str:
        """Return the media type without parameters, lower-cased ('' if absent)."""
        value = self.header("content-type") or ""
        return value.split(";", 1)[0].strip().lower()

    def read_body(self, limit: int | None = None) -> bytes:
        """Return the stored raw body (at most ``limit`` bytes)."""
        if self.body is None:
            return b""
        self.body.seek(0)
        return self.body.read() if limit is None else self.body.read(limit)

    def close(self) -> None:
        """Release the spooled body."""
        if self.body is not None:
            self.body.close()
            self.body = None


def new_body_buffer(max_memory: int = 1 << 20) -> IO[bytes]:
    """Return a buffer that keeps small bodies in memory and spills large ones to disk."""
    return tempfile.SpooledTemporaryFile(max_size=max_memory)


@dataclass(frozen=True, slots=True)
class Extracted:
    """Links found in a document, split by how the crawler treats them."""

    links: tuple[str, ...] = ()  # navigational: crawled if in scope
    requisites: tuple[str, ...] = ()  # needed to render: fetched even off-scope
    sitemaps: tuple[str, ...] = ()  # child sitemaps (from a sitemap index)
    title: str | None = None
    charset: str | None = None
    keys: dict[str, str] = field(default_factory=dict)  # url -> canonical key, computed by
    # the parser process so the event loop does not have to
    text_hash: str | None = None  # SHA-1 of the normalized visible text (HTML only)
    text: str | None = None  # that text, for the search index (archive/textindex.py)
    capped: tuple[str, ...] = ()  # per-page caps hit ("parse-bytes", "links"): links lost
    shape_hash: str | None = None  # SHA-1 of that text without digits (the trap rules)
    wall: str | None = None  # who shows the challenge page this is (fingerprints.challenge)
