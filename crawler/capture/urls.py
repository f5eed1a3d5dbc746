"""URL normalization, canonical keys (SURT) and host/domain helpers. Pure functions.

Two forms of every URL are kept apart, as Heritrix does:

* the *fetch URL*: the link made safe (IDNA host, percent-encoded non-ASCII, dot segments
  resolved, fragment and default port dropped) and otherwise left as the site wrote it, because
  some servers care about parameter order; it is what the request line and WARC-Target-URI carry;
* the *key*: a SURT of the canonicalized URL (sorted query, lower-cased host), used to fetch each
  URL once per crawl and to sort the CDXJ index exactly as pywb does.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from w3lib.url import safe_url_string

from crawler.core.errors import InvalidURL

MAX_URL_LENGTH = 2048
_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@lru_cache(maxsize=1)
def _suffixes() -> Any:
    """Return tldextract's offline public-suffix list snapshot (never fetched over the
    network). Loaded on first use, as surt is: with what they import (requests, urllib3,
    chardet) they are ~6 MB that the parser process, which needs neither, does not hold."""
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def normalize(url: str, base: str | None = None) -> str:
    """Return the fetch URL for ``url`` (resolved against ``base``), or raise InvalidURL."""
    raw = url.strip()
    if base is not None:
        try:
            raw = urljoin(base, raw)
        except ValueError as exc:
            raise InvalidURL(f"cannot resolve {url!r}: {exc}") from exc
    scheme = raw.split(":", 1)[0].lower() if ":" in raw else ""
    if scheme not in _SCHEMES:
        raise InvalidURL(f"not an http(s) URL: {url[:200]!r}")
    return _normalize_plain(raw) or _normalize_full(raw)


def _normalize_full(raw: str) -> str:
    """Return the fetch URL of an absolute http(s) URL via w3lib and httpx (any input).

    httpx parses it because httpx will request it: the URL the crawler records is exactly the
    one it fetches (fetcher.py and resolver.py, the HTTP client, are the only other modules
    that import httpx).
    """
    try:
        safe = safe_url_string(raw)
        parsed = httpx.URL(safe)
    except (ValueError, UnicodeError, httpx.InvalidURL) as exc:
        raise InvalidURL(f"malformed URL {raw[:200]!r}: {exc}") from exc
    if not parsed.host:
        raise InvalidURL(f"URL has no host: {raw[:200]!r}")
    if parsed.port == _DEFAULT_PORTS.get(parsed.scheme):
        parsed = parsed.copy_with(port=None)
    if not parsed.path:
        parsed = parsed.copy_with(path="/")
    result = str(parsed.copy_with(fragment=None))
    if len(result) > MAX_URL_LENGTH * 4:
        raise InvalidURL(f"URL longer than {MAX_URL_LENGTH * 4} characters")
    return result


# URLs made only of these characters need no escaping or IDNA work (the common case).
_PLAIN_URL = re.compile(r"https?://([a-z0-9.-]+)(:[0-9]{1,5})?(/[A-Za-z0-9\-._~/?&=;,+!*@$:]*)?",
                        re.I)


def _normalize_plain(raw: str) -> str | None:
    """Return the fetch URL of a plain ASCII URL cheaply, or None to take the full path.

    Gives exactly what the full path gives (a property test checks it); anything unusual
    (escapes, dot segments, IDN, brackets, fragments) is left to w3lib and httpx.
    """
    match = _PLAIN_URL.fullmatch(raw)
    if match is None or "/." in raw or ".." in match.group(1) or raw.endswith("?"):
        return None
    host, port, path = match.group(1).lower(), match.group(2), match.group(3) or "/"
    if not host or host.startswith(".") or host.endswith("-"):
        return None
    scheme = raw[:5].lower().rstrip(":")
    if port is not None:
        number = int(port[1:])
        if number > 65535 or port[1] == "0":
            return None
        if number == _DEFAULT_PORTS[scheme]:
            port = None
    return f"{scheme}://{host}{port or ''}{path}"


def try_normalize(url: str, base: str | None = None) -> str | None:
    """Return the fetch URL, or None for links that cannot be crawled (mailto:, garbage...)."""
    try:
        return normalize(url, base)
    except InvalidURL:
        return None


@lru_cache(maxsize=8192)
def surt_key(url: str) -> str:
    """Return the SURT key pywb would compute for ``url`` (CDXJ sort key)."""
    import surt  # (see _suffixes)

    return str(surt.surt(url))


@lru_cache(maxsize=8192)
def canonical_key(url: str) -> str:
    """Return the key that makes two spellings of one URL count as the same URL.

    A SURT as pywb computes it (host lower-cased and without ``www.``, query arguments
    sorted, session ids dropped), except that path and query keep their case: servers tell
    ``/doc?id=Ab3`` from ``/doc?id=aB3`` and MediaWiki ``/wiki/Memorial`` from
    ``/wiki/MEMORIAL``, so the crawler must fetch both. (pywb's own SURT, lower-cased, stays
    the replay index's key: ``surt_key``.)
    """
    import surt  # (see _suffixes)

    return str(surt.surt(url, path_lowercase=False, query_lowercase=False))


def host_of(url: str) -> str:
    """Return 'host[:port]' of a URL, lower-cased: the unit of politeness and host scope.

    Exactly ``urlsplit(url).netloc.lower()``; an http(s) URL without the characters
    urlsplit cleans or checks (tabs, line breaks, brackets, non-ASCII hosts) is cut without it
    (detection asks this of every URL of a three-million-page site, several times)."""
    if url.startswith(("http://", "https://")) and "\t" not in url and "\n" not in url \
            and "\r" not in url:
        start = url.index("//") + 2
        end = len(url)
        for delimiter in "/?#":
            found = url.find(delimiter, start, end)
            if found >= 0:
                end = found
        netloc = url[start:end]
        if netloc.isascii() and "[" not in netloc and "]" not in netloc:
            return netloc.lower()
    return urlsplit(url).netloc.lower()


def hostname_of(url: str) -> str:
    """Return the host name of a URL without port or credentials."""
    return (urlsplit(url).hostname or "").lower()


@lru_cache(maxsize=4096)
def registered_domain(hostname: str) -> str:
    """Return the registrable domain (memo.ru for lists.memo.ru); IPs and local names as is."""
    parts = _suffixes()(hostname)
    domain = parts.top_domain_under_public_suffix
    return domain or hostname


def directory_prefix(url: str) -> str:
    """Return the URL up to and including the last '/' of its path (the 'prefix' scope)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    path = path[: path.rfind("/") + 1]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def robots_url(url: str) -> str:
    """Return the robots.txt URL that governs ``url`` (RFC 9309 §2.3)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))


def origin(url: str) -> str:
    """Return scheme://host[:port]/ of a URL."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
