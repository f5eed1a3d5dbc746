"""Link extraction and decoding (pure functions)."""

from __future__ import annotations

import gzip
import zlib

from crawler.capture import extract, pagetext

BASE = "http://h.org/dir/page.html"


def html(body: str, head: str = "") -> bytes:
    return f"<html><head>{head}</head><body>{body}</body></html>".encode()


def test_every_kind_of_link_is_found() -> None:
    doc = html(
        '<a href="a.html#frag">a</a><area href="area.html"><img src="i.png" '
        'srcset="i1.png 1x, i2.png 2x" data-src="lazy.png" data-srcset="l1.png 1x">'
        '<picture><source srcset="s.webp"></picture><script src="/j.js"></script>'
        '<iframe src="f.html"></iframe><frame src="fr.html"><video src="v.mp4" poster="p.jpg">'
        '<track src="t.vtt"></video><audio src="au.mp3"></audio><embed src="e.swf">'
        '<object data="o.swf"></object><div style="background:url(\'st.png\')"></div>',
        head='<link rel="stylesheet" href="s.css"><link rel="icon" href="/fav.ico">'
             '<link rel="preload" href="font.woff2"><link rel="alternate" href="feed.xml">'
             '<meta http-equiv="refresh" content="0; url=next.html">'
             "<style>@import 'imp.css'; body{background:url(bg.png)}</style>")
    found = extract.extract(BASE, "text/html", doc, "text/html", None)
    d = "http://h.org/dir/"
    assert set(found.links) == {d + "a.html", d + "area.html", d + "feed.xml", d + "next.html"}
    assert set(found.requisites) == {
        d + x for x in ("i.png", "i1.png", "i2.png", "lazy.png", "l1.png", "s.webp", "f.html",
                        "fr.html", "v.mp4", "p.jpg", "t.vtt", "au.mp3", "e.swf", "o.swf",
                        "st.png", "s.css", "font.woff2", "imp.css", "bg.png")
    } | {"http://h.org/j.js", "http://h.org/fav.ico"}


def test_base_href_and_garbage_links() -> None:
    doc = html('<a href="x.html">x</a><a href="javascript:void(0)">j</a><a href="mailto:a@b">'
               'm</a><a href="data:text/html,x">d</a><a href="http://[::bad/">v6</a>'
               '<a href="  ">blank</a><a href="#top">top</a>',
               head='<base href="http://other.org/base/">')
    found = extract.extract(BASE, "text/html", doc, "text/html", None)
    assert found.links == ("http://other.org/base/x.html",)


def test_css_urls_and_imports() -> None:
    css = b'@import "a.css"; @import url(b.css); x{background:url( "c.png" )} y{src:url(d.woff)}'
    found = extract.extract("http://h.org/css/s.css", "text/css", css, "text/css", None)
    assert set(found.requisites) == {"http://h.org/css/" + n for n in
                                     ("a.css", "b.css", "c.png", "d.woff")}


def test_windows_1251_declared_only_in_meta() -> None:
    doc = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
           "<title>Книга памяти</title></head><body><a href='/поиск/Иванов.html'>x</a></body>"
           "</html>").encode("cp1251")
    found = extract.extract(BASE, "text/html", doc, "text/html", None)
    assert found.title == "Книга памяти"
    assert found.charset == "cp1251"
    assert found.links == ("http://h.org/%D0%BF%D0%BE%D0%B8%D1%81%D0%BA/"
                           "%D0%98%D0%B2%D0%B0%D0%BD%D0%BE%D0%B2.html",)


def test_charset_priority() -> None:
    body = "<meta charset='utf-8'>Привет".encode("cp1251")
    assert extract.sniff_charset(b"\xef\xbb\xbfabc", "cp1251") == "utf-8"  # BOM wins
    assert extract.sniff_charset(body, "cp1251") == "cp1251"  # then HTTP
    assert extract.sniff_charset(b"<meta charset=koi8-r>", None) == "koi8-r"  # then meta
    undeclared = ("<p>" + "Архив памяти жертв политического террора. " * 20).encode("cp1251")
    text, _ = extract.decode_text(undeclared, "text/html")  # then detection
    assert "Архив памяти" in text


def test_charset_labels_are_read_as_browsers_read_them() -> None:
    assert extract.charset_from_content_type("text/html; charset=latin-1") == "cp1252"
    assert extract.charset_from_content_type("text/html; charset=x-klingon") is None
    assert extract.sniff_charset(b'<?xml version="1.0" encoding="windows-1251"?><p>', None) \
        == "cp1251"  # an XML declaration counts as the document's own
    assert extract.sniff_charset(b'<meta charset="utf-16"><p>plain</p>', None) == "utf-8"
    css = '@charset "koi8-r"; a::after { content: "Мемориал" }'.encode("koi8-r")
    assert extract.sniff_charset(css, None, markup=False) == "koi8-r"
    assert extract.sniff_charset(b"<meta charset=koi8-r>", None, markup=False) == "utf-8"


def test_content_decoding_and_bomb_cap() -> None:
    data = b"<a href=x>" * 10
    assert extract.decode_content(gzip.compress(data), "gzip") == data
    assert extract.decode_content(zlib.compress(data), "deflate") == data
    raw_deflate = zlib.compressobj(wbits=-15)
    assert extract.decode_content(raw_deflate.compress(data) + raw_deflate.flush(),
                                  "deflate") == data
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    assert len(extract.decode_content(bomb, "gzip", limit=1024)) == 1024
    assert extract.decode_content(b"not gzip", "gzip") == b""
    assert extract.decode_content(gzip.compress(data)[:-8], "gzip") == data  # no trailer: ok
    assert extract.decode_content(data, "br") == b""  # unknown coding: nothing to parse


def test_sitemaps() -> None:
    index = (b'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/'
             b'sitemap/0.9"><sitemap><loc>/s1.xml.gz</loc></sitemap></sitemapindex>')
    found = extract.extract("http://h.org/sitemap.xml", "application/xml", index, None, None)
    assert found.sitemaps == ("http://h.org/s1.xml.gz",) and not found.links
    urlset = gzip.compress(b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                           b"<url><loc>http://h.org/a</loc></url><url><loc> /b </loc></url>"
                           b"</urlset>")
    found = extract.extract("http://h.org/s1.xml.gz", "application/gzip", urlset, None, None)
    assert found.links == ("http://h.org/a", "http://h.org/b")
    xxe = (b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           b'<urlset><url><loc>http://h.org/&e;</loc></url></urlset>')
    found = extract.extract("http://h.org/x.xml", "text/xml", xxe, None, None)
    assert all("root:" not in link for link in found.links)
    assert extract.extract("http://h.org/x.xml", "text/xml", b"<<<garbage", None, None).links == ()


def test_malformed_html_does_not_raise() -> None:
    doc = (b"<html><head><title>Broken</title><body><a href='/ok.html'<<<>>><table><tr><td>"
           b"<img src= ><div style='background:url(/bg.png'>\x00\xff\xfe<a href='/x.html'>ok</a")
    found = extract.extract(BASE, "text/html", doc, "text/html", None)
    assert "http://h.org/x.html" in found.links


def test_visible_text_fingerprint() -> None:
    page = html("<p>Иванов Иван Петрович, 1937</p><script>var t = Date.now()</script>"
                "<style>p{}</style>", head="<title>T</title>")
    same = html("<p>Иванов   Иван Петрович,\n 1937</p><script>var t = 42</script>",
                head="<title>T</title>")
    found = extract.extract(BASE, "text/html", page, "text/html", None)
    assert found.text_hash == extract.extract(BASE, "text/html", same, "text/html",
                                              None).text_hash  # scripts and spacing ignored


def test_page_name_takes_the_main_heading_and_the_dates_beside_it() -> None:
    page = ("<html><head><title>Книга памяти: Иванов</title></head><body><header><h1>Книга "
            "памяти</h1></header><main><h1>Иванов  Иван\nПетрович</h1><p>Родился в 1895 г., "
            "расстрелян 12.10.1937.</p></main></body></html>")
    name = pagetext.page_name(page)
    assert name.title == "Книга памяти: Иванов"
    assert name.headline == "Иванов Иван Петрович — Родился в 1895 г., расстрелян 12.10.1937."
    assert name.as_written["иванов иван петрович"] == "Иванов Иван Петрович"


def test_page_name_innocent_pages() -> None:
    """The site's own heading is not the page's; a heading without dates stays alone; a
    page without a heading in its content has none; a year far below is not the page's."""
    header_only = ("<html><body><header><h1>Мемориал</h1></header><main><p>Текст 1937 года."
                   "</p></main></body></html>")
    assert pagetext.page_name(header_only).headline is None
    assert pagetext.page_name(header_only).title is None
    plain = ("<html><body><h1>О проекте</h1><p>Архив памяти.</p><p>С 1989 года.</p>"
             "</body></html>")
    assert pagetext.page_name(plain).headline == "О проекте"
    long = f"<html><body><h1>{'Очень длинное имя ' * 40}</h1></body></html>"
    headline = pagetext.page_name(long).headline
    assert headline is not None and len(headline) == 300 and headline.endswith("…")
    # the same lines as detection compares, in the page's own case
    page = "<html><body><ul><li>Петров<br>СИДОРОВ П. П.</li></ul></body></html>"
    written = pagetext.page_name(page).as_written
    assert set(written) == set(pagetext.html_lines(page))
    assert written["сидоров п. п"] == "СИДОРОВ П. П."
