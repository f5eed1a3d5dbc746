"""A generated benchmark site: N linked pages with images, CSS and PDFs, served on 127.0.0.1.

Served by a small asyncio HTTP/1.1 server (keep-alive, pre-rendered responses) in its own
process, with optional latency per response, so that the crawler and GNU wget hit exactly the
same site. Run directly to serve: ``python benchmarks/benchsite.py --pages 2000 --port 8000``.

Two page-weight profiles: ``light`` (the default; ~5 KB pages, a 2 KB image on every other
page, a PDF on every tenth) and ``heavy``, sized like a real history site's pages: ~40 KB of
HTML (navigation, long text, an inline script), a 30 KB photo (incompressible, like a JPEG)
on every page and a 150 KB PDF on every tenth. With ``validators`` every response carries an
ETag and Last-Modified and a matching conditional request gets a 304, as static files and
most CMSs do.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import random
import zlib

PNG_HEADER = bytes.fromhex("89504e470d0a1a0a")


def build_site(pages: int, seed: int = 7, profile: str = "light",
               ) -> dict[str, tuple[str, bytes]]:
    """Return path -> (content type, body) for a site of ``pages`` HTML pages."""
    if profile == "heavy":
        return build_heavy_site(pages, seed)
    if profile == "listing":
        return build_listing_site(pages, seed)
    rng = random.Random(seed)
    site: dict[str, tuple[str, bytes]] = {}
    site["/robots.txt"] = ("text/plain", b"User-agent: *\nAllow: /\n")
    site["/style.css"] = ("text/css", b"body{font:16px serif;background:url(/img/bg.png)}\n"
                                      b".photo{border:1px solid #ccc}\n" * 20)
    site["/img/bg.png"] = ("image/png", PNG_HEADER + rng.randbytes(600))
    words = ["память", "архив", "история", "репрессии", "список", "имя", "дело", "год",
             "город", "лагерь", "memory", "archive", "history", "record", "name", "year"]
    for i in range(pages):
        links = {(i + k) % pages for k in (1, 2, 3, 5, 8)} | {rng.randrange(pages)}
        anchors = "".join(f'<li><a href="/p/{j}.html">Страница {j}</a></li>' for j in links)
        text = " ".join(rng.choice(words) for _ in range(600))
        parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Page {i}</title>"
                 "<link rel='stylesheet' href='/style.css'></head><body>"
                 f"<h1>Page {i}</h1><p>{text}</p><ul>{anchors}</ul>"]
        if i % 2 == 0:
            parts.append(f"<img class='photo' src='/img/{i}.png' alt=''>")
            site[f"/img/{i}.png"] = ("image/png", PNG_HEADER + rng.randbytes(2000))
        _finish_page(site, parts, i, rng, pdf_bytes=8000)
    _add_home(site, pages)
    return site


def build_heavy_site(pages: int, seed: int = 7) -> dict[str, tuple[str, bytes]]:
    """Return a site whose pages weigh what a real archive site's do (see the docstring)."""
    rng = random.Random(seed)
    site: dict[str, tuple[str, bytes]] = {}
    site["/robots.txt"] = ("text/plain", b"User-agent: *\nAllow: /\n")
    site["/style.css"] = ("text/css", b".nav a{margin:0 4px}.photo{border:1px solid #ccc}\n" * 200)
    words = ["память", "архив", "история", "репрессии", "список", "имя", "дело", "год",
             "город", "лагерь", "приговор", "реабилитирован", "арестован", "родился",
             "memory", "archive", "history", "record", "name", "year", "sentence", "camp"]
    nav = "".join(f'<li><a href="/p/{j}.html">Раздел {j}</a></li>'
                  for j in range(0, pages, max(1, pages // 120)))
    script = "<script>" + "var archive = {section: 'lists', lang: 'ru'};" * 100 + "</script>"
    for i in range(pages):
        links = {(i + k) % pages for k in (1, 2, 3, 5, 8)} | {rng.randrange(pages)}
        anchors = "".join(f'<li><a href="/p/{j}.html">Страница {j}</a></li>' for j in links)
        text = " ".join(rng.choice(words) for _ in range(3500))
        parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Page {i}</title>"
                 f"<link rel='stylesheet' href='/style.css'>{script}</head><body>"
                 f"<nav><ul>{nav}</ul></nav><h1>Page {i}</h1>"
                 f"<img class='photo' src='/img/{i}.jpg' alt=''><p>{text}</p><ul>{anchors}</ul>"]
        site[f"/img/{i}.jpg"] = ("image/jpeg", b"\xff\xd8\xff\xe0" + rng.randbytes(30_000))
        _finish_page(site, parts, i, rng, pdf_bytes=150_000)
    _add_home(site, pages)
    return site


PER_LISTING_PAGE = 30


def build_listing_site(persons: int, seed: int = 7) -> dict[str, tuple[str, bytes]]:
    """Return a name-index site like Memorial's database: ``persons`` person pages
    (``/person?id=N``) reached only through alphabetical listings paged by ``?page=N``.

    Letters get very different shares of the names, as surnames do: the largest letters
    have well over 150 listing pages, reachable only by following "next page" links, one
    after another (and the first, last and neighbouring pages from each page).
    """
    rng = random.Random(seed)
    letters = "АБВГДЕЖЗИКЛМНОПРСТУФХЦЧШЩЭЮЯ"
    weights = [rng.uniform(0.2, 1.0) * (6 if i % 7 == 1 else 1) for i in range(len(letters))]
    total = sum(weights)
    shares = [max(1, int(persons * w / total)) for w in weights]
    shares[0] += persons - sum(shares)
    site: dict[str, tuple[str, bytes]] = {}
    site["/robots.txt"] = ("text/plain", b"User-agent: *\nAllow: /\n")
    html = "text/html; charset=utf-8"
    first_ids = []
    person = 0
    for n, (letter, share) in enumerate(zip(letters, shares, strict=True)):
        pages = -(-share // PER_LISTING_PAGE)
        first_ids.append((letter, pages))
        for page in range(1, pages + 1):
            ids = range(person, min(person + PER_LISTING_PAGE, persons))
            rows = "".join(f'<li><a href="/person?id={i}">{letter}{rng.choice("аеиоуя")}'
                           f'{rng.randrange(10**6)} {i}</a></li>' for i in ids)
            for i in ids:
                site[f"/person?id={i}"] = (html, (
                    f"<html><head><title>{letter} {i}</title></head><body><h1>Person {i}</h1>"
                    f"<p>Letter {letter}, born {1880 + i % 60}.</p>"
                    f'<a href="/list?letter={n}&page={page}">back</a></body></html>').encode())
            person += len(ids)
            nav = " ".join(f'<a href="/list?letter={n}&page={p}">{p}</a>'
                           for p in sorted({1, page - 1, page + 1, pages}) if 1 <= p <= pages)
            site[f"/list?letter={n}&page={page}"] = (html, (
                f"<html><head><title>{letter}, page {page}</title></head><body>"
                f"<h1>{letter}</h1><ul>{rows}</ul><p>{nav}</p></body></html>").encode())
    index = " ".join(f'<a href="/list?letter={n}&page=1">{letter} ({pages} pages)</a>'
                     for n, (letter, pages) in enumerate(first_ids))
    site["/"] = (html, f"<html><body><h1>Index</h1>{index}</body></html>".encode())
    return site


def _finish_page(site: dict[str, tuple[str, bytes]], parts: list[str], i: int,
                 rng: random.Random, *, pdf_bytes: int) -> None:
    """Add page ``i`` (and a PDF linked from every tenth page) to the site."""
    if i % 10 == 0:
        parts.append(f"<a href='/doc/{i}.pdf'>PDF</a>")
        site[f"/doc/{i}.pdf"] = ("application/pdf", b"%PDF-1.4\n" + rng.randbytes(pdf_bytes))
    parts.append("</body></html>")
    site[f"/p/{i}.html"] = ("text/html; charset=utf-8", "".join(parts).encode())


def _add_home(site: dict[str, tuple[str, bytes]], pages: int) -> None:
    """Add the home page, linking to every fiftieth page."""
    index = "".join(f'<a href="/p/{i}.html">{i}</a> ' for i in range(0, pages, max(1, pages // 50)))
    site["/"] = ("text/html; charset=utf-8",
                 f"<html><head><title>Bench</title></head><body>{index}</body></html>".encode())


LAST_MODIFIED = "Mon, 02 Nov 2026 10:00:00 GMT"


def etag_of(body: bytes) -> bytes:
    """Return a strong ETag for a body."""
    return b'"' + hashlib.sha1(body).hexdigest()[:20].encode() + b'"'


def render(site: dict[str, tuple[str, bytes]], *, gzip: bool,
           validators: bool = False) -> dict[bytes, bytes]:
    """Pre-render full HTTP responses (gzip for HTML and CSS if asked, as real servers do)."""
    rendered = {}
    for path, (ctype, body) in site.items():
        extra = b""
        if gzip and ctype.startswith(("text/html", "text/css")):
            comp = zlib.compressobj(6, zlib.DEFLATED, 31)
            body = comp.compress(body) + comp.flush()
            extra = b"Content-Encoding: gzip\r\n"
        if validators:
            extra += b"ETag: " + etag_of(body) + b"\r\nLast-Modified: " + \
                LAST_MODIFIED.encode() + b"\r\n"
        head = (f"HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n").encode() + extra + b"\r\n"
        rendered[path.encode()] = head + body
    return rendered


def not_modified(site: dict[str, tuple[str, bytes]], *, gzip: bool) -> dict[bytes, bytes]:
    """Return path -> the ETag a conditional request must carry to get a 304."""
    tags = {}
    for path, (ctype, body) in site.items():
        if gzip and ctype.startswith(("text/html", "text/css")):
            comp = zlib.compressobj(6, zlib.DEFLATED, 31)
            body = comp.compress(body) + comp.flush()
        tags[path.encode()] = etag_of(body)
    return tags


NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nContent-Type: text/plain\r\n\r\n"
             b"not found")


async def serve(pages: int, port: int, latency: float, ready: object = None, *,
                profile: str = "light", validators: bool = False) -> None:
    """Serve the site forever."""
    site = build_site(pages, profile=profile)
    plain = render(site, gzip=False, validators=validators)
    compressed = render(site, gzip=True, validators=validators)
    tags = {False: not_modified(site, gzip=False), True: not_modified(site, gzip=True)}
    unchanged = (b"HTTP/1.1 304 Not Modified\r\nServer: bench\r\nLast-Modified: " +
                 LAST_MODIFIED.encode() + b"\r\nETag: ")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1]
                if latency:
                    await asyncio.sleep(latency)
                lower = head.lower()
                gzipped = b"accept-encoding: gzip" in lower
                responses = compressed if gzipped else plain
                path = target if profile == "listing" else target.split(b"?")[0]
                tag = tags[gzipped].get(path)
                if validators and tag is not None and b"if-none-match: " + tag.lower() in lower:
                    writer.write(unchanged + tag + b"\r\n\r\n")
                else:
                    writer.write(responses.get(path, NOT_FOUND))
                await writer.drain()
                if b"connection: close" in lower:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    if ready is not None:
        ready.send(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    async with server:
        await server.serve_forever()


def run_server(pages: int, latency: float, conn: object, profile: str = "light",
               validators: bool = False) -> None:
    """Process entry point: serve and report the port through ``conn``."""
    asyncio.run(serve(pages, 0, latency, conn, profile=profile, validators=validators))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--profile", choices=["light", "heavy", "listing"], default="light")
    parser.add_argument("--validators", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.pages, args.port, args.latency_ms / 1000, profile=args.profile,
                      validators=args.validators))


def serve_listing(persons: int) -> tuple[str, multiprocessing.process.BaseProcess]:
    """Start the listing site in its own (spawned) process; return its URL and the process."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=run_server, args=(persons, 0.0, child, "listing"), daemon=True)
    server.start()
    return f"http://127.0.0.1:{parent.recv()}/", server
