"""Fetch one URL with httpx and return a FetchResult. The only module that speaks HTTP for crawling.

Redirects are never followed here: each hop is its own capture. Failures are returned as data
(``FailureKind``), never raised, so the crawl records them as evidence and moves on.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import http.cookiejar
import re
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType

import httpx

from crawler import __version__
from crawler.capture import resolver
from crawler.core.models import FailureKind, FetchResult, Truncation, new_body_buffer

DEFAULT_USER_AGENT = (
    f"Mozilla/5.0 (compatible; crawler/{__version__}; web-archive preservation crawler)"
)
# No zstd or br: pywb and ReplayWeb.page must be able to decode what we store (docs/warc.md).
ACCEPT_ENCODING = "gzip, deflate"
ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """Network limits for every request of a crawl."""

    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout: float = 15.0
    read_timeout: float = 30.0  # longest silence allowed between bytes
    total_timeout: float = 180.0  # whole exchange, head and body
    max_body_bytes: int = 256 * 1024 * 1024  # beyond this the record is truncated (length)
    verify_tls: bool = False  # archive sites with broken certificates, as Heritrix does
    max_connections: int = 64
    accept_language: str | None = None
    # host -> IP address to connect to instead of asking DNS (curl's --resolve): reach a site
    # whose domain was taken away or is blocked by DNS, at an address known to serve it.
    resolve: tuple[tuple[str, str], ...] = ()
    # Fetch through this proxy (http://, https://, socks5://): takedown detection's second
    # vantage point, another network path to the site.
    proxy: str | None = None


MAX_COOKIE_BYTES = 4096  # what browsers keep of one cookie
MAX_COOKIES_PER_DOMAIN = 50  # browsers keep ~180; a session needs a handful


class _StorableCookiePolicy(http.cookiejar.DefaultCookiePolicy):
    """Keeps a cookie only if it can be sent back as it came: printable ASCII, browser-sized.

    A server may set a cookie with raw non-ASCII bytes (a Cyrillic value in UTF-8); stored,
    it made every later request to that host fail while the Cookie header was built, so one
    bad header cost the rest of the site. Such a cookie is not kept, nor one larger than a
    browser keeps (its Set-Cookie header is archived as received all the same).
    """

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        texts = (cookie.name, cookie.value or "", cookie.path or "", cookie.domain or "")
        if sum(len(t) for t in texts) > MAX_COOKIE_BYTES:
            return False
        for text in texts:
            if not (text.isascii() and text.isprintable()) or ";" in text:
                return False
        return bool(super().set_ok(cookie, request))  # type: ignore[arg-type]


class _BoundedCookieJar(http.cookiejar.CookieJar):
    """A cookie jar that keeps at most ``MAX_COOKIES_PER_DOMAIN`` cookies per domain.

    httpx copies the jar into every request it builds, so a server that sets thousands of
    cookies would slow down every later request to it.
    """

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        kept = self._cookies.get(cookie.domain, {})  # type: ignore[attr-defined]
        count = sum(len(by_name) for by_name in kept.values())
        known = cookie.name in kept.get(cookie.path, {})
        if count >= MAX_COOKIES_PER_DOMAIN and not known:
            return
        super().set_cookie(cookie)


class _ArchivingClient(httpx.AsyncClient):
    """httpx's client, minus the redirect request it prepares for every 3xx.

    Redirects are never followed here (each hop is its own capture, its target worked out by
    the crawl), but httpx parses the ``Location`` of every 3xx into a next request anyway,
    and one it cannot parse (``javascript:``, a tab or a control byte) raised and lost the
    response itself: the redirect record that is the evidence.
    """

    def _build_redirect_request(self, request: httpx.Request,
                                response: httpx.Response) -> httpx.Request:
        return request


class Fetcher:
    """An httpx AsyncClient configured for archiving; use as ``async with Fetcher(...)``."""

    def __init__(self, settings: FetchSettings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        headers = {"User-Agent": settings.user_agent, "Accept": ACCEPT,
                   "Accept-Encoding": ACCEPT_ENCODING}
        if settings.accept_language:
            headers["Accept-Language"] = settings.accept_language
        self._client = _ArchivingClient(
            cookies=_BoundedCookieJar(policy=_StorableCookiePolicy()),
            http1=True,
            http2=False,
            follow_redirects=False,
            verify=settings.verify_tls,
            trust_env=False,
            headers=headers,
            timeout=httpx.Timeout(connect=settings.connect_timeout, read=settings.read_timeout,
                                  write=settings.read_timeout, pool=None),
            limits=httpx.Limits(max_connections=settings.max_connections,
                                max_keepalive_connections=settings.max_connections),
            transport=transport or self._transport(settings),
        )
        # httpx adds "Connection: keep-alive" by default: HTTP/1.1 keeps connections open
        # without it, so it only costs every stored request record 13 bytes
        del self._client.headers["Connection"]

    @staticmethod
    def _transport(settings: FetchSettings) -> httpx.AsyncBaseTransport:
        """Return the transport: through the proxy if one is set (the proxy resolves names
        where it stands, so ``resolve`` does not apply), else through our resolver."""
        if settings.proxy:
            return httpx.AsyncHTTPTransport(
                verify=settings.verify_tls, trust_env=False, proxy=settings.proxy,
                limits=httpx.Limits(max_connections=settings.max_connections))
        return resolver.transport(dict(settings.resolve), verify=settings.verify_tls,
                                  max_connections=settings.max_connections)

    async def __aenter__(self) -> Fetcher:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._client.__aexit__(exc_type, exc, tb)

    async def fetch(self, url: str, headers: dict[str, str] | None = None) -> FetchResult:
        """GET ``url`` once and return what happened; never raises for network trouble."""
        started = datetime.now(UTC)
        clock = time.monotonic()
        result = FetchResult(url=url, started=started)
        try:
            request = self._client.build_request("GET", url, headers=headers)
        except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
            result.failure, result.failure_detail = FailureKind.OTHER, f"invalid URL: {exc}"
            return result
        result.request_head = _request_head(request)
        try:
            async with asyncio.timeout(self.settings.total_timeout):
                response = await self._client.send(request, stream=True)
                try:
                    _take_head(result, response)
                    await self._read_body(result, response)
                finally:
                    await response.aclose()
        except TimeoutError:
            if result.status:
                result.truncated = Truncation.TIME
            else:
                result.failure = FailureKind.TIMEOUT
                result.failure_detail = f"no response within {self.settings.total_timeout:g}s"
        except httpx.HTTPError as exc:
            if result.status:  # the head arrived, the body broke off
                result.truncated = (Truncation.TIME if isinstance(exc, httpx.TimeoutException)
                                    else Truncation.DISCONNECT)
                result.failure_detail = _describe(exc)
            else:
                result.failure, result.failure_detail = classify(exc), _describe(exc)
        except (OSError, ssl.SSLError) as exc:  # rare: raised outside httpx's mapping
            result.failure, result.failure_detail = classify(exc), _describe(exc)
        except Exception as exc:  # anything else is still evidence, never a crashed crawl
            if result.status:
                result.truncated = Truncation.DISCONNECT
            else:
                result.failure = FailureKind.OTHER
            result.failure_detail = _describe(exc)
        result.elapsed = time.monotonic() - clock
        return result

    async def _read_body(self, result: FetchResult, response: httpx.Response) -> None:
        """Spool the raw (still content-coded) body, stopping at the size cap."""
        cap = self.settings.max_body_bytes
        body = new_body_buffer()
        result.body = body
        sha1 = hashlib.sha1()  # the payload digest, known before writing: dedup looks it up
        size = 0
        try:
            async for chunk in response.aiter_raw():
                if size + len(chunk) > cap:
                    chunk = chunk[: cap - size]
                    result.truncated = Truncation.LENGTH
                body.write(chunk)
                sha1.update(chunk)
                size += len(chunk)
                result.body_length = size
                if result.truncated is not None:
                    break
        finally:
            result.body_length = size
            result.payload_digest = payload_digest(sha1)


def payload_digest(sha1: hashlib._Hash) -> str:
    """Return a SHA-1 as WARC spells it (warcio: ``sha1:`` and upper-case base32)."""
    return "sha1:" + base64.b32encode(sha1.digest()).decode("ascii")


def _request_head(request: httpx.Request) -> bytes:
    """Return the request line and headers exactly as httpx sends them over HTTP/1.1."""
    target = request.url.raw_path
    lines = [b"GET " + target + b" HTTP/1.1"]
    lines.extend(name + b": " + value for name, value in request.headers.raw)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _take_head(result: FetchResult, response: httpx.Response) -> None:
    """Copy status line, raw headers and peer address from a streamed response."""
    result.status = response.status_code
    reason = response.extensions.get("reason_phrase", b"")
    result.reason = reason.decode("latin-1") if isinstance(reason, bytes) else str(reason)
    result.http_version = response.http_version
    result.headers = list(response.headers.raw)
    stream = response.extensions.get("network_stream")
    if stream is not None:
        addr = stream.get_extra_info("server_addr")
        if addr:
            result.peer_ip = str(addr[0])


def classify(exc: BaseException) -> FailureKind:
    """Map an exception (and its causes) to a FailureKind, keeping DNS/refused/TLS apart."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return FailureKind.TIMEOUT
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for item in chain:
        if isinstance(item, socket.gaierror):
            return FailureKind.DNS
        if isinstance(item, ConnectionRefusedError):
            return FailureKind.REFUSED
        if isinstance(item, ssl.SSLError):
            return FailureKind.TLS
        if isinstance(item, ConnectionResetError | BrokenPipeError):
            return FailureKind.RESET
        if isinstance(item, OSError) and item.errno == errno.ECONNREFUSED:
            return FailureKind.REFUSED
    text = " ".join(str(item) for item in chain).lower()
    errnos = set(re.findall(r"\[errno (-?\d+)\]", text))  # "Multiple exceptions: [Errno …"
    if errnos == {str(errno.ECONNREFUSED)}:  # every address refused (asyncio keeps only text)
        return FailureKind.REFUSED
    if "name or service not known" in text or "nodename nor servname" in text \
            or "temporary failure in name resolution" in text or "no address associated" in text:
        return FailureKind.DNS
    if "certificate" in text or "ssl" in text or "tls" in text:
        return FailureKind.TLS
    if isinstance(exc, httpx.RemoteProtocolError):
        if "without sending" in text or "disconnected" in text or "closed" in text:
            return FailureKind.RESET
        return FailureKind.PROTOCOL
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return FailureKind.RESET
    if isinstance(exc, httpx.ConnectError):
        return FailureKind.CONNECT
    return FailureKind.OTHER


def _describe(exc: BaseException) -> str:
    """Return a one-line description naming the exception class and its root cause."""
    root: BaseException = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    text = str(exc) or type(exc).__name__
    if root is not exc and str(root) and str(root) not in text:
        text = f"{text} ({type(root).__name__}: {root})"
    return f"{type(exc).__name__}: {text}"[:500]


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header (seconds or HTTP date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
