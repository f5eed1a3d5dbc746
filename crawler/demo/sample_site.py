"""A small bundled stand-in for an at-risk history site, served on 127.0.0.1.

Used by ``crawler demo`` (the machine may have no internet) and by the test suite. It has
articles, a paginated person index, person pages with portraits, CSS with url() images and
@import, srcset, a PDF, a windows-1251 page declared only in <meta>, gzip and chunked
responses, redirects and a redirect chain, a 404, a robots.txt Disallow, a gzipped sitemap behind
a sitemap index, a calendar trap and a "CDN" on a second port. With ``bad=True`` it also serves
misbehaving responses (truncated bodies, stalls, a gzip bomb, endless redirects, non-HTTP
garbage, resets, a flaky 503) for robustness tests.

Like a real CMS, static files and articles carry an ETag and Last-Modified and answer
conditional requests with 304, while the person pages are generated without validators.
Switches change the site between crawls: ``clock`` stamps articles with the time of each
request (bytes change, the ETag does not), ``edited`` changes person pages, ``moved`` serves a
page's bytes under a new address and redirects the old one there, ``validators`` turns
conditional-request support off.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

from crawler.demo.takedown_sim import BLOCK_TEXT, LOCAL_CLIENT, Reply, Takedown

PERSON_NAMES = [
    "Иванов Иван Петрович", "Смирнова Анна Сергеевна", "Кузнецов Павел Ильич",
    "Попова Мария Андреевна", "Соколов Николай Фёдорович", "Лебедева Ольга Ивановна",
    "Козлов Дмитрий Алексеевич", "Новикова Елена Борисовна", "Морозов Григорий Львович",
    "Волкова Татьяна Юрьевна", "Алексеев Семён Маркович", "Фёдорова Вера Константиновна",
]
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e5278ede0000000049454e44ae426082"
)
PDF_DOC = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 300 144]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


LAST_MODIFIED = "Mon, 02 Nov 2026 10:00:00 GMT"
# Article 3 is about censorship, as Memorial's own articles are: it quotes block-page phrases
# (an innocent page that detection must not take for a block page).
CENSORSHIP_TEXT = ("<p>В 2021 году Роскомнадзор внёс сайт в реестр запрещённых ресурсов, и "
                   "для читателей в России доступ ограничен.</p>"
                   "<p>Мы продолжаем публиковать документы о репрессиях.</p>")


def _static(reply: Reply) -> Reply:
    """Give a reply the validators a web server sends for a static file."""
    etag = '"' + hashlib.sha1(reply.body).hexdigest()[:16] + '"'
    return replace(reply, etag=etag, last_modified=LAST_MODIFIED)


def _image(path: str) -> bytes:
    """Return a deterministic ~2 KB "image": real images are far above the dedup threshold."""
    return PNG_1PX + hashlib.sha256(path.encode()).digest() * 64


def _page(title: str, body: str, *, extra_head: str = "") -> bytes:
    """Return a UTF-8 HTML page in the site's layout."""
    return f"""<!DOCTYPE html>
<html lang="ru"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="/style.css"><link rel="icon" href="/favicon.ico">{extra_head}
</head><body>
<header><img src="/img/logo.png" alt="Logo"><nav><a href="/">Главная</a>
· <a href="/articles/">Статьи</a> · <a href="/persons/?page=1">Список имён</a>
· <a href="/about.html">О проекте</a></nav></header>
<main>{body}</main>
<footer>Sample history archive · <a href="/calendar?month=2026-11">Календарь событий</a></footer>
</body></html>""".encode()


@dataclass(slots=True)
class SampleSiteContent:
    """The routes of the sample site; pure, so tests can ask what any path returns."""

    persons: int = 30
    per_page: int = 10
    cdn: str = ""  # "http://127.0.0.1:PORT" of the CDN server
    bad: bool = False
    stall_seconds: float = 5.0
    latency: float = 0.0  # seconds each response is delayed (slow-server tests)
    # seconds each response to LOCAL_CLIENT only is delayed: our network path loses the
    # site (an ISP dropping its packets) while it answers everyone else
    local_latency: float = 0.0
    delisted: set[int] = field(default_factory=set)  # persons served but no longer linked
    edited: set[int] = field(default_factory=set)  # persons whose page text changed
    moved: dict[str, str] = field(default_factory=dict)  # old path -> new path (301)
    clock: bool = False  # articles show the time of each request
    validators: bool = True  # send ETag/Last-Modified and answer conditions with 304
    takedown: Takedown = field(default_factory=Takedown)  # scenario switches (takedown_sim)
    hits: Counter[str] = field(default_factory=Counter)

    def name(self, n: int) -> str:
        """Return the name of person ``n`` (1-based)."""
        base = PERSON_NAMES[(n - 1) % len(PERSON_NAMES)]
        return base if n <= len(PERSON_NAMES) else f"{base} ({n})"

    @property
    def pages(self) -> int:
        """Return the number of index pages."""
        return max(1, -(-len(self.listed()) // self.per_page))

    def listed(self) -> list[int]:
        """Return the persons the index lists, in its order (pages re-flow, as real ones do:
        when names are dropped, every later name moves up)."""
        return [n for n in range(1, self.persons + 1) if n not in self.delisted]

    def page_paths(self) -> list[str]:
        """Return the paths of every HTML page a full crawl should capture."""
        paths = ["/", "/about.html", "/articles/", "/cp1251.html", "/gzip.html", "/chunked.html",
                 "/only-in-sitemap.html", quote("/поиск/Иванов.html")]
        paths += [f"/articles/{n}.html" for n in (1, 2, 3)]
        paths += [f"/persons/?page={n}" for n in range(1, self.pages + 1)]
        paths += [f"/persons/{n}.html" for n in range(1, self.persons + 1)]
        return paths

    def image_paths(self) -> list[str]:
        """Return the paths of every image a full crawl should capture (main host)."""
        paths = ["/img/logo.png", "/img/bg.png", "/img/photo-320.png", "/img/photo-640.png",
                 "/img/lazy.png", "/favicon.ico"]
        paths += [f"/img/persons/{n}.png" for n in range(1, self.persons + 1)]
        return paths

    def respond(self, target: str, client: str = "") -> Reply:
        """Return the reply for a request target (path and query) to a client (its IP)."""
        parts = urlsplit(target)
        path = unquote(parts.path)
        if path in self.moved:
            return Reply(301, b"", None, (("Location", quote(self.moved[path])),))
        source = next((old for old, new in self.moved.items() if new == path), path)
        reply = self._route(source, parse_qs(parts.query))
        if not self.validators:
            reply = replace(reply, etag=None, last_modified=None)
        return self.takedown.apply(path, reply, _page, client)

    def _route(self, path: str, query: dict[str, list[str]]) -> Reply:
        """Return the reply for a path, before the moved-pages and validators switches."""
        if path == "/robots.txt":
            return Reply(200, b"User-agent: *\nDisallow: /private/\n"
                              b"Sitemap: /sitemap.xml\n", "text/plain")
        if path == "/":
            return Reply(200, self._home())
        if path == "/style.css":
            return _static(Reply(200, b'@import url("/print.css");\n'
                              b"body { background: #fdfaf3 url('/img/bg.png') repeat-x; }\n"
                              b'@font-face { font-family: Archive; src: url("' +
                              f"{self.cdn}/lib/archive.woff2".encode() +
                              b'") format("woff2"); }\n', "text/css"))
        if path == "/print.css":
            return _static(Reply(200, b"@media print { nav { display: none } }\n", "text/css"))
        if path == "/favicon.ico":
            return _static(Reply(200, PNG_1PX, "image/x-icon"))
        if path.startswith("/img/") and path.endswith(".png"):
            return _static(Reply(200, _image(path), "image/png"))
        if path == "/about.html":
            return _static(Reply(200, _page("О проекте", "<h1>О проекте</h1><p>Архив памяти "
                                            "жертв политического террора.</p>")))
        if path == "/articles/":
            items = "".join(f'<li><a href="{n}.html">Статья {n}</a></li>' for n in (1, 2, 3))
            return Reply(200, _page("Статьи", f"<h1>Статьи</h1><ul>{items}</ul>"))
        if path.startswith("/articles/") and path[10:-5] in ("1", "2", "3"):
            n = path[10:-5]
            article = _static(Reply(200, _page(
                f"Статья {n}", f"<h1>Статья {n}</h1>"
                f'<img src="/img/photo-320.png" srcset="/img/photo-320.png 1x,'
                f' /img/photo-640.png 2x" alt="">'
                f"<p>Текст статьи номер {n} о репрессиях 1937 года.</p>"
                f"{CENSORSHIP_TEXT if n == '3' else ''}"
                f'<p><a href="/docs/report.pdf">Доклад (PDF)</a></p>')))
            if self.clock:  # a CMS footer: new bytes on every request, same ETag
                stamp = f" · {datetime.now(UTC).isoformat()}</footer>".encode()
                article = replace(article, body=article.body.replace(b"</footer>", stamp))
            return article
        if path == "/docs/report.pdf":
            return _static(Reply(200, PDF_DOC, "application/pdf"))
        if path == "/persons/":
            return self._person_index(int((query.get("page") or ["1"])[0] or 1))
        if path.startswith("/persons/") and path.endswith(".html"):
            return self._person(path[9:-5])
        if path == "/cp1251.html":
            html = ('<html><head><meta http-equiv="Content-Type" content="text/html; '
                    'charset=windows-1251"><title>Книга памяти</title></head><body>'
                    '<h1>Книга памяти</h1><p><a href="/поиск/Иванов.html">Поиск: Иванов</a>'
                    "</p></body></html>")
            return _static(Reply(200, html.encode("cp1251"), "text/html"))
        if path == "/поиск/Иванов.html":
            return Reply(200, _page("Поиск", "<h1>Иванов</h1><p>Найдено: 1</p>"))
        if path == "/gzip.html":
            return Reply(200, _page("Сжатая страница", "<p>" + "Память. " * 200 + "</p>"),
                         mode="gzip")
        if path == "/chunked.html":
            return Reply(200, _page("Поток", "<p>" + "Часть. " * 300 + "</p>"), mode="chunked")
        if path == "/old-address.html":
            return Reply(301, b"", None, (("Location", "/about.html"),))
        if path.startswith("/chain/"):
            step = path[7:]
            nxt = {"1": "/chain/2", "2": "/chain/3", "3": "/only-in-sitemap.html"}.get(step)
            if nxt:
                return Reply(302 if step != "3" else 308, b"", None, (("Location", nxt),))
        if path == "/only-in-sitemap.html":
            return Reply(200, _page("Страница из карты сайта", "<p>Только в sitemap.</p>"))
        if path == "/private/archive.html":
            return Reply(200, _page("Закрыто", "<p>robots.txt запрещает эту страницу.</p>"))
        if path == "/sitemap.xml":
            return Reply(200, b'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns='
                              b'"http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>'
                              b"/sitemap-pages.xml.gz</loc></sitemap></sitemapindex>\n",
                         "application/xml")
        if path == "/sitemap-pages.xml.gz":
            locs = "".join(f"<url><loc>{p}</loc></url>" for p in ("/", "/only-in-sitemap.html"))
            xml = ('<?xml version="1.0" encoding="UTF-8"?><urlset xmlns='
                   f'"http://www.sitemaps.org/schemas/sitemap/0.9">{locs}</urlset>')
            return Reply(200, gzip.compress(xml.encode(), mtime=0), "application/gzip")
        if path == "/calendar":
            return self._calendar((query.get("month") or ["2026-11"])[0])
        if self.bad and path.startswith("/bad/"):
            return self._bad(path, query)
        return Reply(404, _page("Не найдено", "<h1>404</h1><p>Страница не найдена.</p>"))

    def _home(self) -> bytes:
        """Return the home page."""
        links = [
            ("/articles/", "Статьи"), ("/persons/?page=1", "Список имён"),
            ("/cp1251.html", "Книга памяти (windows-1251)"), ("/gzip.html", "Сжатая"),
            ("/chunked.html", "Поток"), ("/old-address.html", "Старый адрес"),
            ("/chain/1", "Цепочка переадресаций"), ("/missing.html", "Удалённая страница"),
            ("/private/archive.html", "Закрытый раздел"), ("/docs/report.pdf", "Доклад"),
            ("mailto:info@example.org", "Почта"), ("javascript:void(0)", "JS"),
        ]
        if self.bad:
            links.append(("/bad/", "Bad responses"))
        items = "".join(f'<li><a href="{href}">{text}</a></li>' for href, text in links)
        body = (f'<h1>Архив памяти</h1><img data-src="/img/lazy.png" alt="">'
                f'<img src="{self.cdn}/lib/banner.png" alt="banner"><ul>{items}</ul>')
        return _page("Архив памяти", body)

    def _person_index(self, page: int) -> Reply:
        """Return one page of the alphabetical person index."""
        if page < 1 or page > self.pages:
            return Reply(404, _page("Не найдено", "<p>Нет такой страницы.</p>"))
        shown = self.listed()[(page - 1) * self.per_page:page * self.per_page]
        rows = "".join(f'<tr><td><a href="/persons/{n}.html">{self.name(n)}</a></td></tr>'
                       for n in shown)
        nav = " ".join(f'<a href="/persons/?page={p}">{p}</a>' for p in range(1, self.pages + 1))
        return Reply(200, _page(f"Список имён, страница {page}",
                                f"<h1>Список имён</h1><table>{rows}</table><p>{nav}</p>"))

    def _person(self, ident: str) -> Reply:
        """Return one person page."""
        if not ident.isdigit() or not 1 <= int(ident) <= self.persons:
            return Reply(404, _page("Не найдено", "<p>Нет такого человека.</p>"))
        n = int(ident)
        fate = "Арестован в 1937 году." + (" Реабилитирован в 1989 году." if n in self.edited
                                           else "")
        return Reply(200, _page(self.name(n), f"<h1>{self.name(n)}</h1>"
                                f'<img src="/img/persons/{n}.png" alt="Портрет">'
                                f"<p>Родился в 1900 году. {fate}</p>"
                                f'<p><a href="/persons/?page={(n - 1) // self.per_page + 1}">'
                                f"К списку</a></p>"))

    def _calendar(self, month: str) -> Reply:
        """Return an endless calendar: every month links to the next and the previous one."""
        try:
            year, mon = (int(x) for x in month.split("-"))
        except ValueError:
            return Reply(404, _page("Не найдено", "<p>Неверная дата.</p>"))
        prev_y, prev_m = (year - 1, 12) if mon == 1 else (year, mon - 1)
        next_y, next_m = (year + 1, 1) if mon == 12 else (year, mon + 1)
        return Reply(200, _page(f"Календарь {month}", f"<h1>{month}</h1>"
                                f'<a href="/calendar?month={prev_y:04d}-{prev_m:02d}">←</a> '
                                f'<a href="/calendar?month={next_y:04d}-{next_m:02d}">→</a>'))

    def _bad(self, path: str, query: dict[str, list[str]]) -> Reply:
        """Return misbehaving responses for robustness tests."""
        if path == "/bad/":
            links = ["malformed.html", "truncated.html", "stall.html", "bomb.html", "loop?n=1",
                     "self-redirect", "wrong-charset.html", "garbage", "reset", "flaky.html",
                     "big.bin"]
            items = "".join(f'<a href="{link}">{link}</a> ' for link in links)
            return Reply(200, _page("Bad", items))
        if path == "/bad/malformed.html":
            return Reply(200, b"<html><head><title>Broken</title><body>"
                              b"<a href='javascript:alert(1)'>js</a>"
                              b"<a href=\"data:text/html,hi\">data</a><a href='mailto:x@y'>m</a>"
                              b"<a href='http://[::bad'>v6</a><a href='/bad/%zz%'>esc</a>"
                              b"<a href='http://\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80"
                              b".invalid/'>idn</a><a href='/about.html'<<<>>><table><tr><td>"
                              b"<img src= ><div style='background:url(/img/bg.png'>\x00\xff\xfe"
                              b"<a href='/articles/1.html'>ok</a")
        if path == "/bad/truncated.html":
            return Reply(200, b"<html><body>only part of the", mode="truncate")
        if path == "/bad/stall.html":
            return Reply(200, b"<html><body>the server stops here", mode="stall")
        if path == "/bad/bomb.html":
            return Reply(200, b"<html><body>" + b" " * (64 * 1024 * 1024) + b"</body></html>",
                         mode="gzip")
        if path == "/bad/loop":
            n = int((query.get("n") or ["1"])[0])
            return Reply(302, b"", None, (("Location", f"/bad/loop?n={n + 1}"),))
        if path == "/bad/self-redirect":
            return Reply(302, b"", None, (("Location", "/bad/self-redirect"),))
        if path == "/bad/wrong-charset.html":
            return Reply(200, "<html><body>Неправильная кодировка</body></html>".encode("cp1251"))
        if path == "/bad/garbage":
            return Reply(200, b"THIS IS NOT HTTP\r\n\r\n", mode="garbage")
        if path == "/bad/reset":
            return Reply(200, b"", mode="reset")
        if path == "/bad/flaky.html":
            if self.hits["/bad/flaky.html"] <= 1:
                return Reply(503, b"busy", "text/plain", (("Retry-After", "1"),))
            return Reply(200, _page("Flaky", "<p>Recovered.</p>"))
        if path == "/bad/big.bin":
            return Reply(200, bytes(range(256)) * 4096, "application/octet-stream")
        return Reply(404, b"not found", "text/plain")


class _Handler(BaseHTTPRequestHandler):
    """Serves a SampleSiteContent (set on the server object)."""

    protocol_version = "HTTP/1.1"
    server_version = "SampleArchive/1.0"

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        content: SampleSiteContent = self.server.content  # type: ignore[attr-defined]
        key = unquote(urlsplit(self.path).path)
        with self.server.lock:  # type: ignore[attr-defined]
            content.hits[key] += 1
            self.server.requests.append(self.path)  # type: ignore[attr-defined]
        reply = content.respond(self.path, self.client_address[0])
        delay = content.latency + (content.local_latency
                                   if self.client_address[0] == LOCAL_CLIENT else 0.0)
        if delay:
            time.sleep(delay)
        if _not_modified(reply, self.headers.get("If-None-Match"),
                         self.headers.get("If-Modified-Since")):
            reply = replace(reply, status=304, body=b"", content_type=None, mode="plain")
        if reply.mode == "garbage":
            self.wfile.write(reply.body)
            self.close_connection = True
            return
        if reply.mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.close_connection = True
            return
        body = gzip.compress(reply.body, mtime=0) if reply.mode == "gzip" else reply.body
        self.send_response(reply.status)
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.etag:
            self.send_header("ETag", reply.etag)
        if reply.last_modified:
            self.send_header("Last-Modified", reply.last_modified)
        if reply.status == 304:
            self.end_headers()
            return
        if reply.mode == "gzip":
            self.send_header("Content-Encoding", "gzip")
        if reply.mode == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 700):
                chunk = body[start:start + 700]
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if reply.mode in ("truncate", "stall"):
            self.send_header("Content-Length", str(len(body) + 5000))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            if reply.mode == "stall":
                time.sleep(content.stall_seconds)
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # (the client may have given up waiting, in a slow-server scenario)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


def _not_modified(reply: Reply, if_none_match: str | None, if_modified_since: str | None) -> bool:
    """Return True if a conditional request matches the reply's validators (RFC 9110 §13.2)."""
    if reply.status != 200:
        return False
    if if_none_match is not None:
        return reply.etag is not None and reply.etag in {t.strip() for t in
                                                          if_none_match.split(",")}
    return reply.last_modified is not None and if_modified_since == reply.last_modified


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _bind(port: int, handler: type[BaseHTTPRequestHandler]) -> _Server:
    """Return a server on 127.0.0.1:port, or on a free port if that one is taken."""
    try:
        return _Server(("127.0.0.1", port), handler)
    except OSError:
        if port == 0:
            raise
        return _Server(("127.0.0.1", 0), handler)


# The tour's politeness: its site is local, so it need not wait between requests.
DEMO_PER_HOST = 4
DEMO_DELAY = 0.0


class SampleSite:
    """The sample site and its CDN, each on its own 127.0.0.1 port; a context manager."""

    def __init__(self, *, persons: int = 30, bad: bool = False, stall_seconds: float = 5.0,
                 latency: float = 0.0, port: int = 0, cdn_port: int = 0) -> None:
        """Serve on ``port`` and ``cdn_port`` (0: any free port; a busy port falls back to 0).

        The demo asks for fixed ports so that its recrawls find the same URLs again.
        """
        self.content = SampleSiteContent(persons=persons, bad=bad, stall_seconds=stall_seconds,
                                         latency=latency)
        self._main = _bind(port, _Handler)
        self._cdn = _bind(cdn_port, _CdnHandler)
        self.lock = threading.Lock()
        for server in (self._main, self._cdn):
            server.content = self.content  # type: ignore[attr-defined]
            server.lock = self.lock  # type: ignore[attr-defined]
            server.requests = []  # type: ignore[attr-defined]
        self.content.cdn = f"http://127.0.0.1:{self._cdn.server_address[1]}"
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        """Return the site's root URL."""
        return f"http://127.0.0.1:{self._main.server_address[1]}/"

    @property
    def cdn_url(self) -> str:
        """Return the CDN's root URL."""
        return self.content.cdn + "/"

    def take_down(self) -> str:
        """Make the site suffer the demo's takedown; return what was done, in words."""
        takedown = self.content.takedown
        takedown.removed = {"/persons/3.html": 404, "/persons/4.html": 410}
        takedown.legal = {"/articles/2.html"}
        self.content.delisted = {7, 8}
        return ("persons 3 and 4 removed (404, 410), article 2 blocked (451),\n     persons 7 "
                "and 8 cut from the name index (their pages are still served)")

    @property
    def requests(self) -> list[str]:
        """Return the request targets the main site received, in order."""
        return self._main.requests  # type: ignore[attr-defined, no-any-return]

    def start(self) -> SampleSite:
        """Serve in background threads."""
        for server in (self._main, self._cdn):
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving and close the sockets."""
        for server in (self._main, self._cdn):
            server.shutdown()
            server.server_close()

    def __enter__(self) -> SampleSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _CdnHandler(_Handler):
    """The 'CDN': serves fonts and images for the main site; everything else is 404."""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.requests.append(self.path)  # type: ignore[attr-defined]
        if path == "/robots.txt":
            body, ctype, status = b"User-agent: *\nAllow: /\n", "text/plain", 200
        elif path == "/blocked.html":  # where a blocked site's URLs may be redirected
            body, ctype, status = _page("Доступ ограничен", BLOCK_TEXT), "text/html", 200
        elif path in ("/lib/banner.png", "/lib/archive.woff2"):
            body = PNG_1PX if path.endswith(".png") else b"wOF2fakefont"
            ctype = "image/png" if path.endswith(".png") else "font/woff2"
            status = 200
        else:
            body, ctype, status = b"not found", "text/plain", 404
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()
        self.wfile.write(body)
