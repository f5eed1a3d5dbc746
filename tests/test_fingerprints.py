"""The crawl-time challenge-page test: walls are recognised with no earlier capture to compare
with, and the site's own pages that talk about walls are not."""

from __future__ import annotations

import pytest

from crawler.capture.extract import extract_from_html

CLOUDFLARE = """<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="refresh" content="390">
<script src="/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1"></script>
</head><body><div class="main-wrapper" role="main"><div class="main-content">
<h1 class="zone-name-title h1">memo.example</h1>
<h2 class="h2" id="challenge-running">Verifying you are human. This may take a few seconds.</h2>
<div id="challenge-body-text" class="core-msg spacer">memo.example needs to review the security
of your connection before proceeding.</div></div></div>
<div class="footer" role="contentinfo"><div class="footer-inner">
<div class="clearfix diagnostic-wrapper">
<div class="ray-id">Ray ID: <code>8a1b2c3d4e5f6789</code></div></div>
<div class="text-center" id="footer-text">Performance &amp; security by
<a rel="noopener noreferrer" href="https://www.cloudflare.com" target="_blank">Cloudflare</a></div>
</div></div></body></html>"""

QRATOR = """<html><head><title>Checking your browser</title></head><body>
<h1>Проверка браузера</h1><p>Пожалуйста, подождите. Ваш браузер проверяется.</p>
<p>Protected by Qrator</p><script>/* challenge */</script></body></html>"""

STORMWALL = """<html><head><title>StormWall</title></head><body><h1>Вы не робот?</h1>
<p>Подтвердите, что вы не робот.</p><p>DDoS protection by StormWall</p></body></html>"""

ARTICLE = ("<html><head><title>Почему сайт открывается медленно</title></head><body>"
           "<nav><a href='/'>Главная</a> <a href='/articles/'>Статьи</a> <a href='/persons/'>"
           "Имена</a> <a href='/about.html'>О проекте</a></nav><main><h1>Защита сайта</h1>"
           + "<p>Сайт защищён DDoS-Guard и Cloudflare; если вы видите «Проверка браузера», "
             "подождите несколько секунд. Ray ID можно сообщить нам.</p>" * 30
           + "</main></body></html>")

SPA_SHELL = ("<html><head><title>Книга памяти</title></head><body><div id='app'>"
             "<p>Just a moment, loading…</p></div><script src='/app.js'></script></body></html>")

SHORT_NOTICE = ("<html><head><title>Защита</title></head><body><nav><a href='/'>Главная</a> "
                "<a href='/news/'>Новости</a> <a href='/persons/'>Имена</a> <a href='/about'>"
                "О нас</a></nav><main><p>Мы подключили DDoS-Guard.</p></main></body></html>")


@pytest.mark.parametrize(("html", "who"), [
    (CLOUDFLARE, "Cloudflare"), (QRATOR, "Qrator"), (STORMWALL, "StormWall")])
def test_challenge_pages_are_recognised(html: str, who: str) -> None:
    found, _ = extract_from_html(html, "https://memo.example/person/1")
    assert found.wall == who


@pytest.mark.parametrize("html", [ARTICLE, SPA_SHELL, SHORT_NOTICE],
                         ids=["long-article", "loading-shell", "short-notice-with-navigation"])
def test_pages_about_walls_are_not_walls(html: str) -> None:
    found, _ = extract_from_html(html, "https://memo.example/news/1")
    assert found.wall is None
