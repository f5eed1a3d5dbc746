"""Find links in HTML, CSS and sitemaps; decode bodies safely. Pure functions.

Runs in a worker process during crawls (see ``crawl.py``), so everything here takes and returns
plain picklable data and never touches the network or the disk.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
import warnings
import zlib
from typing import Final

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning
from charset_normalizer import from_bytes
from lxml import etree
from w3lib.encoding import (
    html_body_declared_encoding,
    http_content_type_encoding,
    read_bom,
    resolve_encoding,
)

from crawler.capture import fingerprints, pagetext, urls
from crawler.core.models import Extracted

log = logging.getLogger("crawler.extract")
MAX_DECODED_BYTES: Final = 32 * 1024 * 1024  # cap on inflated bodies: gzip bombs stop here
# Per-page caps that keep every parse bounded in time and memory; hitting one is recorded
# (``Extracted.capped``), because the links past it are not followed.
MAX_PARSE_CHARS: Final = 8 * 1024 * 1024  # HTML characters given to the parser
MAX_LINKS: Final = 20_000  # links (and as many requisites) kept from one HTML or CSS document
MAX_SITEMAP_LINKS: Final = 50_000  # the sitemap protocol's own limit per file
_CSS_CHARSET = re.compile(rb'^@charset\s+"([a-zA-Z0-9_\-]+)"')
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)'"\s]*))\s*\)""", re.I)
_CSS_IMPORT = re.compile(r"""@import\s+(?:"([^"]*)"|'([^']*)')""", re.I)
_REFRESH_URL = re.compile(r"""^\s*\d*\s*[;,]?\s*(?:url\s*=\s*)?["']?([^"']+)["']?""", re.I)
_DIGIT_RUNS = re.compile(r"\d+")
_IGNORED_SCHEMES: Final = ("javascript:", "data:", "mailto:", "tel:", "about:", "blob:", "#")

# rel values of <link> whose target is needed to render the page.
_REQUISITE_RELS: Final = frozenset(
    {"stylesheet", "icon", "shortcut", "apple-touch-icon", "preload", "modulepreload",
     "prefetch", "manifest", "mask-icon"}
)
# Attributes holding one URL, per tag, that are page requisites.
_REQUISITE_ATTRS: Final = {
    "img": ("src", "data-src", "lowsrc"),
    "script": ("src",),
    "iframe": ("src",),
    "frame": ("src",),
    "embed": ("src",),
    "video": ("src", "poster", "data-src"),
    "audio": ("src",),
    "track": ("src",),
    "source": ("src", "data-src"),
    "object": ("data",),
    "input": ("src",),
    "body": ("background",),
    "table": ("background",),
    "td": ("background",),
}
_SRCSET_TAGS: Final = ("img", "source")
HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})
SITEMAP_TYPES: Final = frozenset({"application/xml", "text/xml", "application/gzip",
                                 "application/x-gzip"})


def charset_from_content_type(value: str | None) -> str | None:
    """Return the codec a Content-Type header's charset names, if it is a known one (labels
    are read as browsers read them: ``latin-1`` is windows-1252)."""
    return http_content_type_encoding(value) if value else None


def sniff_charset(body: bytes, http_charset: str | None, *, markup: bool = True) -> str:
    """Choose a charset: BOM, then HTTP header, then the document's own declaration (``<meta>``
    or an XML declaration; ``@charset`` for CSS), then detection (WHATWG order)."""
    bom, _ = read_bom(body)
    if bom:
        return bom
    if http_charset:
        return http_charset
    if markup:
        declared = html_body_declared_encoding(body)
    else:
        rule = _CSS_CHARSET.search(body[:1024])
        declared = resolve_encoding(rule.group(1).decode("ascii")) if rule else None
    if declared:
        # A page that claims UTF-16 in ASCII-compatible bytes is really ASCII-compatible.
        return "utf-8" if declared.startswith("utf-16") else declared
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    best = from_bytes(body[:65536]).best()
    return best.encoding if best is not None else "windows-1252"


def decode_text(body: bytes, content_type: str | None, *, markup: bool = True) -> tuple[str, str]:
    """Return (text, charset) for a body, never raising on bad bytes."""
    charset = sniff_charset(body, charset_from_content_type(content_type), markup=markup)
    text = body.decode(charset, errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, charset


def decode_content(body: bytes, encoding: str | None, limit: int = MAX_DECODED_BYTES) -> bytes:
    """Undo Content-Encoding (gzip, deflate) with an output cap; unknown codings pass through.

    A truncated or corrupt stream yields what could be inflated: link extraction works on
    partial documents, and the WARC keeps the raw bytes regardless.
    """
    codings = [c.strip().lower() for c in (encoding or "").split(",") if c.strip()]
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, zlib.MAX_WBITS | 32, limit)
        elif coding == "deflate":
            try:
                body = _inflate(body, zlib.MAX_WBITS, limit, strict=True)
            except zlib.error:  # many servers send raw deflate without the zlib wrapper
                body = _inflate(body, -zlib.MAX_WBITS, limit)
        elif coding != "identity":
            return b""
    return body


def _inflate(data: bytes, wbits: int, limit: int, *, strict: bool = False) -> bytes:
    """Inflate at most ``limit`` bytes of output."""
    inflater = zlib.decompressobj(wbits)
    try:
        return inflater.decompress(data, limit)
    except zlib.error:
        if strict:
            raise
        return b""


def _clean(value: str | None) -> str | None:
    """Return a stripped link, or None for empty and non-fetchable ones."""
    if not value:
        return None
    value = value.strip()
    if not value or value.lower().startswith(_IGNORED_SCHEMES):
        return None
    return value


def parse_srcset(value: str) -> list[str]:
    """Return the URLs of a srcset attribute ("a.jpg 1x, b.jpg 2x")."""
    found = []
    for candidate in value.split(","):
        parts = candidate.strip().split()
        if parts:
            found.append(parts[0])
    return found


def css_urls(text: str) -> list[str]:
    """Return url() and @import targets of a style sheet or style attribute."""
    found = [next(g for g in m.groups() if g is not None) for m in _CSS_URL.finditer(text)]
    found.extend(m.group(1) or m.group(2) for m in _CSS_IMPORT.finditer(text))
    return [u for u in found if u]


def extract_from_html(text: str, url: str = "") -> tuple[Extracted, str | None]:
    """Return (links found, <base href> or None) for an HTML document at ``url``.

    URLs are returned as written; the caller resolves them against the base.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(text, "lxml")
    links: list[str] = []
    requisites: list[str] = []
    base = None
    base_tag = soup.find("base", href=True)
    if base_tag is not None:
        base = _clean(str(base_tag["href"]))
    for tag in soup.find_all(True):
        name = tag.name
        attrs = tag.attrs
        if name in ("a", "area"):
            _add(links, attrs.get("href"))
        elif name == "link":
            rels: object = attrs.get("rel") or []
            rel_set = {str(r).lower() for r in (rels if isinstance(rels, list) else [rels])}
            target = requisites if rel_set & _REQUISITE_RELS else links
            _add(target, attrs.get("href"))
        elif name == "meta":
            if str(attrs.get("http-equiv", "")).lower() == "refresh":
                match = _REFRESH_URL.match(str(attrs.get("content", "")))
                if match and not match.group(1).strip().isdigit():
                    _add(links, match.group(1))
        elif name == "style" and tag.string:
            requisites.extend(u for u in map(_clean, css_urls(str(tag.string))) if u)
        for attr in _REQUISITE_ATTRS.get(name, ()):
            _add(requisites, attrs.get(attr))
        if name in _SRCSET_TAGS:
            for attr in ("srcset", "data-srcset"):
                value = attrs.get(attr)
                if value:
                    for candidate in parse_srcset(str(value)):
                        _add(requisites, candidate)
        style = attrs.get("style")
        if style:
            requisites.extend(u for u in map(_clean, css_urls(str(style))) if u)
    title = " ".join(soup.title.get_text(" ").split()) if soup.title else None
    lines = pagetext.page_lines(soup)  # main content without noise: see pagetext.py
    return Extracted(links=tuple(links), requisites=tuple(requisites), title=title or None,
                     text_hash=pagetext.text_hash(lines), text="\n".join(lines),
                     shape_hash=echo_free_hash(url, lines),
                     wall=fingerprints.challenge(lines, title, len(links))), base


def echo_free_hash(url: str, lines: list[str]) -> str:
    """Return the fingerprint of a page's text without the numbers its own URL holds.

    Pages that differ only in what they echo of their address ("events of 2026-11" at
    ``?month=2026-11``, "page 9999: nothing found" at ``?page=9999``) share it: that is how
    an endless calendar or a listing paged past its end looks. A listing of case numbers
    keeps its own numbers, which are not in its URL, and stays distinct.
    """
    echoed = {d.lstrip("0") or "0" for d in _DIGIT_RUNS.findall(url)}
    if not echoed:
        return pagetext.text_hash(lines)

    def unechoed(match: re.Match[str]) -> str:
        return "" if (match.group(0).lstrip("0") or "0") in echoed else match.group(0)

    return pagetext.text_hash([_DIGIT_RUNS.sub(unechoed, line) for line in lines])


def _add(target: list[str], value: object) -> None:
    """Append a cleaned link if it is fetchable."""
    if isinstance(value, list):
        value = " ".join(value)
    cleaned = _clean(value if isinstance(value, str) else None)
    if cleaned is not None:
        target.append(cleaned)


_SITEMAP_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, recover=True,
                                  huge_tree=False)


def extract_sitemap(body: bytes) -> Extracted:
    """Return page URLs (as links) and child sitemaps of a sitemap or sitemap index."""
    body = body.lstrip()
    if not body.startswith(b"<"):
        # Plain-text sitemap: one URL per line.
        lines = body.decode("utf-8", "replace").splitlines()
        return Extracted(links=tuple(line.strip() for line in lines if line.strip()))
    try:
        root = etree.fromstring(body, _SITEMAP_PARSER)
    except etree.XMLSyntaxError:
        return Extracted()
    if root is None:
        return Extracted()
    is_index = etree.QName(root).localname == "sitemapindex"
    locs = [
        (el.text or "").strip()
        for el in root.iter()
        if isinstance(el.tag, str) and etree.QName(el).localname == "loc"
    ]
    locs = [loc for loc in locs if loc]
    if is_index:
        return Extracted(sitemaps=tuple(locs))
    return Extracted(links=tuple(locs))


def extract(url: str, media_type: str, raw_body: bytes, content_type: str | None,
            content_encoding: str | None) -> Extracted:
    """Return the normalized absolute links of a fetched document, by its media type.

    The entry point used by the crawl (in a worker process): inflates the raw body with a cap,
    decodes text, finds links, resolves them against the URL (or ``<base href>``) and drops
    anything that is not a crawlable http(s) URL.
    """
    body = decode_content(raw_body, content_encoding)
    base: str | None = None
    capped: list[str] = []
    if len(body) >= MAX_DECODED_BYTES:
        capped.append("inflated-bytes")
    limit = MAX_LINKS
    if media_type in HTML_TYPES:
        text, charset = decode_text(body, content_type)
        if len(text) > MAX_PARSE_CHARS:
            text = text[:MAX_PARSE_CHARS]
            capped.append("parse-bytes")
        found, base = extract_from_html(text, url)
        found = Extracted(links=found.links, requisites=found.requisites, title=found.title,
                          charset=charset, text_hash=found.text_hash, text=found.text,
                          shape_hash=found.shape_hash, wall=found.wall)
    elif media_type == "text/css":
        text, charset = decode_text(body, content_type, markup=False)
        found = Extracted(requisites=tuple(u for u in map(_clean, css_urls(text)) if u),
                          charset=charset)
    elif media_type in SITEMAP_TYPES or url.endswith((".xml", ".xml.gz")):
        if body[:2] == b"\x1f\x8b":  # a .xml.gz file served as application/gzip
            body = _inflate(body, zlib.MAX_WBITS | 32, MAX_DECODED_BYTES)
        found = extract_sitemap(body)
        limit = MAX_SITEMAP_LINKS
    else:
        return Extracted()
    base_url = urls.try_normalize(base, url) if base else None
    base_url = base_url or url
    links = _resolve(found.links, base_url, limit)
    requisites = _resolve(found.requisites, base_url, limit)
    sitemaps = _resolve(found.sitemaps, base_url, limit)
    if limit in (len(links), len(requisites), len(sitemaps)):
        capped.append("links")
    keys = {u: urls.canonical_key(u) for group in (links, requisites, sitemaps) for u in group}
    return Extracted(links=links, requisites=requisites, sitemaps=sitemaps, title=found.title,
                     charset=found.charset, keys=keys, text_hash=found.text_hash,
                     text=found.text, capped=tuple(capped), shape_hash=found.shape_hash,
                     wall=found.wall)


def _resolve(found: tuple[str, ...], base: str, limit: int) -> tuple[str, ...]:
    """Return unique normalized absolute URLs, in document order, at most ``limit``."""
    seen: dict[str, None] = {}
    for link in found:
        resolved = urls.try_normalize(link, base)
        if resolved is not None:
            seen.setdefault(resolved, None)
            if len(seen) >= limit:
                break
    return tuple(seen)


def extract_safely(url: str, media_type: str, raw_body: bytes, content_type: str | None,
                   content_encoding: str | None) -> Extracted:
    """Run :func:`extract` in this process; a parser bug costs the links, not the crawl."""
    try:
        return extract(url, media_type, raw_body, content_type, content_encoding)
    except Exception:
        log.exception("could not extract links from %s", url)
        return Extracted()


def extract_batch(pages: list[tuple[str, str, bytes, str | None, str | None]],
                  ) -> list[Extracted]:
    """Run :func:`extract_safely` on each page (one hand-over to a parser process)."""
    return [extract_safely(*page) for page in pages]


def exit_with_parent(parent: int) -> None:
    """Parser-process initializer: exit when the crawl process is gone (even after kill -9).

    Otherwise an orphaned parser keeps the dead crawl's stdout and stderr open, and whoever
    waits for them (a shell pipeline, a supervisor) waits forever.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    # Ctrl-C reaches the whole process group: the crawl process handles it (finishing its
    # in-flight work and shutting this pool down); here it would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
