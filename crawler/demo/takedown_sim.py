"""Switches that make the sample site suffer what at-risk sites suffer, between two crawls.

Used by the takedown tests, the scoring benchmark and the guided demo: each switch turns the
sample site into one scenario of docs/detection.md (pages removed, a legal block, a block page,
soft-404s, redirects home, noise that must not alarm, a flaky server...).
"""

from __future__ import annotations

import itertools
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class Reply:
    """One canned response of the sample site (the switches below rewrite them)."""

    status: int
    body: bytes = b""
    content_type: str | None = "text/html; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()
    mode: str = "plain"  # plain | gzip | chunked | truncate | stall | garbage | reset
    etag: str | None = None  # validators: the handler answers a matching condition with 304
    last_modified: str | None = None



BLOCK_TEXT = ("<h1>Доступ ограничен</h1><p>Доступ к информационному ресурсу ограничен на "
              "основании Федерального закона от 27.07.2006 № 149-ФЗ «Об информации, "
              "информационных технологиях и о защите информации».</p>")
# Challenge pages of anti-DDoS services in front of a site (shortened from the real ones).
WALLS: dict[str, tuple[int, bytes]] = {
    "cloudflare-503": (503, b"<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
                            b"<body><h1>Checking your browser before accessing the site.</h1>"
                            b"<p>Enable JavaScript and cookies to continue</p>"
                            b"<p>Performance &amp; security by Cloudflare</p></body></html>"),
    "ddos-guard-200": (200, b"<!DOCTYPE html><html><head><title>DDoS-Guard</title></head><body>"
                            b"<h1>\xd0\x9f\xd1\x80\xd0\xbe\xd0\xb2\xd0\xb5\xd1\x80\xd0\xba"
                            b"\xd0\xb0 \xd0\xb1\xd1\x80\xd0\xb0\xd1\x83\xd0\xb7\xd0\xb5"
                            b"\xd1\x80\xd0\xb0</h1><p>Checking your browser before accessing. "
                            b"DDoS protection by DDoS-Guard</p></body></html>"),
    "captcha-403": (403, b"<!DOCTYPE html><html><head><title>Access check</title></head><body>"
                         b"<h1>Please verify you are human</h1><div class='captcha'>"
                         b"<p>Complete the CAPTCHA to continue</p></div></body></html>"),
}
# Pages a site shows while it is down for maintenance or its database fails.
OUTAGES: dict[str, tuple[int, bytes]] = {
    "maintenance-200": (200, "<!DOCTYPE html><html><head><title>Мемориал</title></head><body>"
                             "<h1>Сайт временно недоступен</h1><p>Ведутся технические работы. "
                             "Приносим извинения.</p></body></html>".encode()),
    "maintenance-503": (503, b"<!DOCTYPE html><html><head><title>Maintenance</title></head>"
                             b"<body><h1>Down for maintenance</h1><p>The site is temporarily "
                             b"unavailable. We'll be back soon.</p></body></html>"),
    "db-error-500": (500, b"<!DOCTYPE html><html><head><title>Database Error</title></head>"
                          b"<body><h1>Error establishing a database connection</h1></body>"
                          b"</html>"),
}
LOGIN_TEXT = ("<h1>Вход</h1><p>Войдите, чтобы продолжить.</p><form method='post'>"
              "<label>Логин <input name='user'></label><label>Пароль "
              "<input type='password' name='password'></label><button>Войти</button></form>")
NOT_FOUND_TEXT = "<h1>Страница не найдена</h1><p>Запрошенная страница не существует.</p>"
BLOCKED_BY = "https://rkn.example/registry"
# What a rotating "from the archive" block shows, a few at random on every visit.
ARCHIVE_DOCUMENTS = (
    "Письмо из лагеря, 1938", "Протокол допроса", "Справка о реабилитации, выданная "
    "прокуратурой Ленинградской области в 1989 году по заявлению дочери",
    "Фотография семьи", "Анкета арестованного", "Приговор тройки НКВД",
    "Воспоминания сына о последнем свидании с отцом в Бутырской тюрьме весной 1937 года",
    "Открытка", "Ордер на арест", "Список этапа", "Дневник", "Заявление о пересмотре дела",
)
LOCAL_CLIENT = "127.0.0.1"  # the crawler's own address, as the site sees it


@dataclass
class Takedown:
    """What is done to the site now; everything off by default."""

    removed: dict[str, int] = field(default_factory=dict)  # path -> 404 or 410
    legal: set[str] = field(default_factory=set)  # paths answered 451 (Link: rel=blocked-by)
    block_all: bool = False  # every HTML page becomes the same block page (200)
    block_redirect: str | None = None  # every URL redirects (302) here
    soft404: set[str] = field(default_factory=set)  # these paths serve a 200 "not found"...
    soft404_all: bool = False  # ...and so does every unknown path (instead of 404)
    home: set[str] = field(default_factory=set)  # paths redirected (301) to the home page
    noise: bool = False  # counters, timestamps, tokens and a rotating banner on every page
    flaky_every: int = 0  # every N-th request gets a 503
    rewrite: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # path -> (old, new)
    wall: tuple[int, bytes] | None = None  # every URL answers this challenge (WALLS)
    outage: tuple[int, bytes] | None = None  # every HTML page answers this (OUTAGES)
    login: set[str] = field(default_factory=set)  # paths redirected (302) to /login?next=…
    unauthorized: set[str] = field(default_factory=set)  # paths answered 401 with a login form
    # paths answered with a block page to clients at LOCAL_CLIENT only: a block on our own
    # network path (an ISP's), which a second vantage point does not see
    local: set[str] = field(default_factory=set)
    rotating: bool = False  # every page shows 1-4 random documents in its main content
    _requests: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    def apply(self, path: str, reply: Reply, page: Callable[[str, str], bytes],
              client: str = "") -> Reply:
        """Return what the site serves for ``path`` to ``client`` (an IP address) instead
        of ``reply``.

        ``page(title, body)`` renders a page in the site's layout.
        """
        if path == "/robots.txt":
            return reply
        if path in self.local and client == LOCAL_CLIENT:
            return _page_reply(reply, page("Доступ ограничен", BLOCK_TEXT), 200)
        if self.wall is not None:  # an anti-DDoS service in front of the whole site
            status, body = self.wall
            return _page_reply(reply, body, status)
        if self.flaky_every and next(self._requests) % self.flaky_every == self.flaky_every - 1:
            return replace(reply, status=503, body=b"busy", content_type="text/plain",
                           etag=None, last_modified=None, mode="plain")
        if self.block_redirect:
            return _redirect(reply, 302, self.block_redirect)
        if path in self.removed:
            return _page_reply(reply, page("Не найдено", NOT_FOUND_TEXT), self.removed[path])
        if path in self.legal:
            legal = page("Недоступно", "<h1>Недоступно по юридическим причинам</h1>")
            return replace(_page_reply(reply, legal, 451), headers=(
                ("Link", f'<{BLOCKED_BY}>; rel="blocked-by"'),))
        if path in self.home:
            return _redirect(reply, 301, "/")
        if path == "/login":
            return _page_reply(reply, page("Вход", LOGIN_TEXT), 200)
        if path in self.login:
            return _redirect(reply, 302, f"/login?next={path}")
        if path in self.unauthorized:
            return replace(_page_reply(reply, page("Вход", LOGIN_TEXT), 401), headers=(
                ("WWW-Authenticate", 'Basic realm="members"'),))
        if path in self.rewrite:
            old, new = self.rewrite[path]
            reply = replace(reply, body=reply.body.replace(old, new), etag=None,
                            last_modified=None)
        html = (reply.content_type or "").startswith("text/html")
        if self.outage is not None and html:  # the site's own maintenance or error page
            status, body = self.outage
            return _page_reply(reply, body, status)
        if self.block_all and html and reply.status == 200:
            return _page_reply(reply, page("Доступ ограничен", BLOCK_TEXT), 200)
        if path in self.soft404 or (self.soft404_all and reply.status == 404):
            return _page_reply(reply, page("Не найдено", NOT_FOUND_TEXT), 200)
        if self.rotating and html and reply.status == 200 and reply.mode == "plain":
            picks = random.sample(ARCHIVE_DOCUMENTS, random.randint(1, 4))
            block = ("<div class='random'><h2>Из архива</h2>" + "".join(
                f"<p>{title}</p>" for title in picks) + "</div></main>").encode()
            reply = replace(reply, body=reply.body.replace(b"</main>", block, 1), etag=None,
                            last_modified=None)
        if self.noise and html and reply.status == 200 and reply.mode == "plain":
            stamp = datetime.now(UTC).isoformat()
            extra = (f"<p>Просмотров: {secrets.randbelow(90000) + 1000}. Страница "
                     f"сгенерирована {stamp}. Сессия {secrets.token_hex(16)}</p></main>"
                     f"<aside>Баннер: {secrets.token_hex(4)}</aside>").encode()
            return replace(reply, body=reply.body.replace(b"</main>", extra, 1), etag=None,
                           last_modified=None)
        return reply


def _page_reply(reply: Reply, body: bytes, status: int) -> Reply:
    return replace(reply, status=status, body=body, content_type="text/html; charset=utf-8",
                   headers=(), mode="plain", etag=None, last_modified=None)


def _redirect(reply: Reply, status: int, location: str) -> Reply:
    return replace(reply, status=status, body=b"", content_type=None,
                   headers=(("Location", location),), mode="plain", etag=None,
                   last_modified=None)
