"""URL normalization and keys."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawler.capture import urls
from crawler.core.errors import InvalidURL


@pytest.mark.parametrize(("raw", "expected"), [
    ("HTTP://Example.COM:80/a/../b/?q=1#frag", "http://example.com/b/?q=1"),
    ("https://example.com:443/", "https://example.com/"),
    ("http://пример.испытание/путь", "http://xn--e1afmkfd.xn--80akhbyknj4f/%D0%BF%D1%83%D1%82%D1%8C"),
    ("http://example.com/a b", "http://example.com/a%20b"),
    ("http://example.com/%zz", "http://example.com/%zz"),  # broken escape kept, as browsers do
    ("http://127.0.0.1:8000/x", "http://127.0.0.1:8000/x"),
])
def test_normalize(raw: str, expected: str) -> None:
    assert urls.normalize(raw) == expected


@pytest.mark.parametrize("raw", ["javascript:alert(1)", "mailto:a@b", "data:text/html,hi",
                                 "ftp://example.com/", "http://", "http://host:99999/",
                                 "http://[::bad/", "tel:+7"])
def test_normalize_rejects(raw: str) -> None:
    with pytest.raises(InvalidURL):
        urls.normalize(raw)
    assert urls.try_normalize(raw) is None


def test_relative_resolution() -> None:
    assert urls.normalize("../c.html", "http://h.org/a/b/page.html") == "http://h.org/a/c.html"
    assert urls.normalize("//cdn.org/x.png", "https://h.org/") == "https://cdn.org/x.png"


def test_canonical_key_ignores_parameter_order_and_case() -> None:
    a = urls.canonical_key("http://Example.com/p?b=2&a=1")
    b = urls.canonical_key("http://example.com/p?a=1&b=2")
    assert a == b == "com,example)/p?a=1&b=2"


def _netloc(url: str) -> str:
    return urlsplit(url).netloc.lower()


def _outcome(host_of: Callable[[str], str], url: str) -> str | type[ValueError]:
    """Return what ``host_of`` gives for ``url``, or ValueError if it raises that."""
    try:
        return host_of(url)
    except ValueError:
        return ValueError


def test_hosts_and_domains() -> None:
    assert urls.host_of("http://Lists.Memo.ru:8080/x") == "lists.memo.ru:8080"
    # the fast path gives what urlsplit gives, for every shape of URL
    for url in ("http://a.example", "https://A.example:443?q=1", "http://a.example#f",
                "http://user:pw@A.example:8/p", "http://[::1]:8080/x", "http://[::1/x",
                "http://a.exa\tmple/x", "http://a.example\n/x", "HTTP://A.example/x",
                "https://пример.рф/путь", "http://xn--e1afmkfd.xn--p1ai/", "http:///x",
                "http://a.example?x=http://b.example/", "ftp://a.example/x", "http:/a/b",
                "http://a.example:99999/x", "https://A.EXAMPLE/%2F?#"):
        assert _outcome(urls.host_of, url) == _outcome(_netloc, url), url
    assert urls.registered_domain("lists.memo.ru") == "memo.ru"
    assert urls.registered_domain("www.bbc.co.uk") == "bbc.co.uk"
    assert urls.directory_prefix("http://h.org/a/b.html?x") == "http://h.org/a/"
    assert urls.robots_url("https://h.org/a/b?c") == "https://h.org/robots.txt"


_paths = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)


@given(_paths, _paths)
def test_normalize_is_idempotent(path: str, query: str) -> None:
    first = urls.try_normalize(f"http://example.com/{path}?{query}")
    if first is not None:
        assert urls.normalize(first) == first
        assert urls.canonical_key(first) == urls.canonical_key(urls.normalize(first))


_plain = st.text(alphabet="abcXYZ019-._~/?&=;,+!*@$:%#[] ", max_size=25)


@given(st.sampled_from(["http", "https", "HTTP"]), st.sampled_from(
    ["example.org", "Example.ORG", "127.0.0.1", "a-b.c"]),
    st.sampled_from(["", ":80", ":443", ":8080", ":0", ":99999"]), _plain)
def test_fast_path_agrees_with_full_normalization(scheme: str, host: str, port: str,
                                                  path: str) -> None:
    raw = f"{scheme}://{host}{port}/{path}"
    fast = urls._normalize_plain(raw)
    if fast is None:
        return
    assert urls._normalize_full(raw) == fast


@given(st.sampled_from(["http://", "https://", "HTTP://", "http:/", ""]), st.text(max_size=40))
def test_host_of_is_urlsplit_s_netloc(scheme: str, rest: str) -> None:
    url = scheme + rest
    assert _outcome(urls.host_of, url) == _outcome(_netloc, url)
