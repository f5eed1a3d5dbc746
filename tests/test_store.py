"""The store's dedup decisions against a real catalog and real WARC files."""

from __future__ import annotations

import asyncio
import hashlib
import io
from datetime import UTC, datetime
from pathlib import Path

from conftest import read_records

from crawler.archive.catalog import Catalog
from crawler.archive.store import Store, Stored, capture_row
from crawler.archive.warc import WarcSettings, WarcWriter
from crawler.capture.fetcher import payload_digest
from crawler.capture.settings import DedupSettings
from crawler.core.models import CrawlUrl, FetchResult, UrlKind


def _result(url: str, body: bytes, status: int = 200) -> FetchResult:
    return FetchResult(url=url, started=datetime.now(UTC), request_head=b"GET / HTTP/1.1\r\n\r\n",
                       status=status, reason="OK",
                       headers=[(b"Content-Type", b"image/png"),
                                (b"Content-Length", str(len(body)).encode())],
                       body=io.BytesIO(body), body_length=len(body),
                       payload_digest=payload_digest(hashlib.sha1(body)))


def _archive(tmp_path: Path, crawl_status: str, results: list[FetchResult],
             settings: DedupSettings | None = None) -> list[str]:
    """Store results in a new crawl of target t (after one earlier crawl with ``crawl_status``)
    and return the record type each became."""
    catalog = Catalog.open(tmp_path)
    earlier = catalog.add_crawl("t", "c0", tmp_path / "c0", {})
    warc0 = WarcWriter(WarcSettings(directory=tmp_path / "c0" / "warc"))
    first = _result("http://a.example/old.png", b"\x89PNG" + b"x" * 600)
    entry = warc0.write_exchange(first)
    with catalog.transaction():
        catalog.add_capture(earlier, capture_row(
            CrawlUrl(first.url, "a", UrlKind.REQUISITE, 0), first, Stored(entry), None))
    warc0.close()
    catalog.finish_crawl(earlier, crawl_status, "complete", 0)
    pk = catalog.add_crawl("t", "c1", tmp_path / "c1", {})
    warc = WarcWriter(WarcSettings(directory=tmp_path / "c1" / "warc"))
    store = Store(warc, catalog, target="t", crawl_pk=pk, settings=settings or DedupSettings())

    async def run() -> list[str]:
        kinds = []
        for n, result in enumerate(results):
            item = CrawlUrl(result.url, f"k{n}", UrlKind.REQUISITE, 0)
            stored = await store.write(result, item)
            with catalog.transaction():
                catalog.add_capture(pk, capture_row(item, result, stored, None))
            kinds.append(stored.entry.record_type)
        await store.close()
        return kinds

    try:
        return asyncio.run(run())
    finally:
        catalog.close()


def test_dedup_within_and_across_crawls(tmp_path: Path) -> None:
    same_as_earlier = _result("http://a.example/moved.png", b"\x89PNG" + b"x" * 600)
    new = _result("http://a.example/new.png", b"\x89PNG" + b"y" * 600)
    copy_of_new = _result("http://a.example/copy.png", b"\x89PNG" + b"y" * 600)
    small = _result("http://a.example/dot.png", b"\x89PNG")
    small_again = _result("http://a.example/dot2.png", b"\x89PNG")
    not_found = _result("http://a.example/404", b"\x89PNG" + b"y" * 600, status=404)
    kinds = _archive(tmp_path, "complete",
                     [same_as_earlier, new, copy_of_new, small, small_again, not_found])
    # small payloads (< 256 bytes) and non-2xx responses are always stored in full
    assert kinds == ["revisit", "response", "revisit", "response", "response", "response"]
    records = read_records(sorted((tmp_path / "c1" / "warc").glob("*.warc.gz")))
    revisits = {r.uri: r for r in records if r.type == "revisit"}
    assert revisits[same_as_earlier.url].warc["WARC-Refers-To-Target-URI"] == \
        "http://a.example/old.png"  # across crawls
    assert revisits[copy_of_new.url].warc["WARC-Refers-To-Target-URI"] == new.url  # within


def test_no_dedup_against_an_unfinished_crawl(tmp_path: Path) -> None:
    result = _result("http://a.example/moved.png", b"\x89PNG" + b"x" * 600)
    assert _archive(tmp_path, "interrupted", [result]) == ["response"]


def test_dedup_switched_off(tmp_path: Path) -> None:
    result = _result("http://a.example/moved.png", b"\x89PNG" + b"x" * 600)
    assert _archive(tmp_path, "complete", [result], DedupSettings(dedup=False)) == ["response"]


def test_the_digest_filter_never_forgets_and_rarely_imagines() -> None:
    import base64
    import hashlib

    from crawler.archive.digestfilter import DigestFilter

    def digest(n: int) -> str:
        raw = hashlib.sha1(str(n).encode()).digest()
        return "sha1:" + base64.b32encode(raw).decode()

    held = DigestFilter(digest(n) for n in range(20_000))
    assert all(digest(n) in held for n in range(20_000))  # no duplicate is ever missed
    imagined = sum(digest(n) in held for n in range(20_000, 40_000))
    assert imagined < 20  # "maybe" for a new payload: only the catalog query is wasted
    assert "sha256:abc" in held  # another algorithm: the catalog decides
