"""The phrases that give away a page nobody wrote for this URL: block, outage, login and
challenge pages.

Pure tables and one crawl-time test. ``detect.py`` uses the tables to tell, against a page's
last good capture, whether such a page replaced it; the crawl uses ``challenge`` to notice,
with no earlier capture to compare with, that an anti-DDoS or bot-protection service answered
instead of the site (the crawl then saw the wall, not the page, and must not say "complete").
"""

from __future__ import annotations

BLOCK_MARKERS = (
    "доступ ограничен", "доступ к ресурсу ограничен", "доступ к информационному ресурсу",
    "ресурс заблокирован", "сайт заблокирован", "страница заблокирована",
    "заблокирован по решению", "заблокирован на основании", "роскомнадзор", "реестр запрещ",
    "eais.rkn.gov.ru", "blocklist.rkn.gov.ru", "access to this resource has been restricted",
    "access to this website has been restricted", "this site has been blocked",
    "this website has been blocked", "this page has been blocked", "blocked by court order",
    "blocked by order of", "unavailable for legal reasons", "this domain has been seized",
)
# Maintenance and database-error pages: phrase -> what it says.
OUTAGE_MARKERS = {
    "сайт временно недоступен": "site temporarily unavailable",
    "технические работы": "maintenance", "техническое обслуживание": "maintenance",
    "ведутся работы": "maintenance", "under maintenance": "maintenance",
    "scheduled maintenance": "maintenance", "down for maintenance": "maintenance",
    "temporarily unavailable": "temporarily unavailable",
    "we'll be back soon": "maintenance", "error establishing a database connection":
    "database error", "database error": "database error", "ошибка базы данных":
    "database error", "ошибка подключения к базе данных": "database error",
    "too many connections": "database error",
}
# A login form in place of a page's content: phrase -> what it says.
LOGIN_MARKERS = {
    "войдите, чтобы": "sign in", "войдите в систему": "sign in",
    "авторизуйтесь": "sign in", "доступно только зарегистрированным": "members only",
    "sign in to continue": "sign in", "log in to continue": "sign in",
    "please log in": "sign in", "please sign in": "sign in", "members only": "members only",
    "you must be logged in": "sign in",
}
# Path segments of login pages (a redirect there puts the page behind an account).
LOGIN_SEGMENTS = frozenset({"login", "signin", "sign-in", "log-in", "logon", "auth",
                            "wp-login.php", "accounts", "sso", "вход"})
# Challenge pages of anti-DDoS and bot-protection services: phrase -> who shows it.
WALL_MARKERS = {
    "just a moment": "a JS challenge", "checking your browser before accessing":
    "a JS challenge", "checking if the site connection is secure": "a JS challenge",
    "needs to review the security of your connection": "Cloudflare",
    "verifying you are human": "a captcha",
    "performance & security by cloudflare": "Cloudflare", "cloudflare ray id": "Cloudflare",
    "attention required! | cloudflare": "Cloudflare", "cf-chl": "Cloudflare",
    "ddos-guard": "DDoS-Guard", "ddos protection by": "an anti-DDoS service",
    "qrator": "Qrator", "variti": "Variti", "stormwall": "StormWall",
    "enable javascript and cookies to continue": "a JS challenge",
    "verify you are human": "a captcha", "complete the captcha": "a captcha",
    "i'm not a robot": "a captcha", "проверка браузера": "a JS challenge",
    "вы не робот": "a captcha", "подтвердите, что вы не робот": "a captcha",
}

# How a capture's detail marks a challenge page (``bot-wall:Cloudflare``), for the crawl's
# shortfall and for detection, which must not take a wall for the page.
WALL_NOTE = "bot-wall:"
# How a capture's detail names the vantage point (proxy) it was fetched through.
VANTAGE_NOTE = "vantage:"
# A challenge page is small and leads nowhere: longer pages or pages with more links than
# this are the site's own (an article about Cloudflare or captchas is no wall).
CHALLENGE_MAX_CHARS = 2000
CHALLENGE_MAX_LINKS = 3  # (a site's own short page has its navigation)


def challenge(lines: list[str], title: str | None, links: int) -> str | None:
    """Return who shows the challenge page whose normalized text is ``lines``, or None.

    With no earlier capture to compare with, a page is a challenge only when it is small,
    has almost no links, and either names a service or carries two challenge phrases (one
    generic phrase such as "just a moment" can be a page's own loading text).
    """
    text = " ".join([*lines, (title or "").casefold()])
    if len(text) > CHALLENGE_MAX_CHARS or links > CHALLENGE_MAX_LINKS:
        return None
    found = [marker for marker in WALL_MARKERS if marker in text]
    who = sorted({WALL_MARKERS[marker] for marker in found})
    specific = [name for name in who if not generic(name)]
    if specific or len(found) >= 2:
        return ", ".join(specific or who)
    return None


def generic(name: str) -> bool:
    """Return True if a challenge's maker is a kind ("a captcha"), not a named service."""
    return name.startswith(("a ", "an "))
