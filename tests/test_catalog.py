"""The catalog: migrations, capture rows, and the WARC repair used on resume."""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import read_records

from crawler.archive.catalog import MIGRATIONS, SCHEMA_VERSION, CaptureRow, Catalog
from crawler.archive.recovery import complete_members_end, recover_warcs
from crawler.archive.warc import OPEN_SUFFIX, WarcSettings, WarcWriter
from crawler.core.errors import OutputError
from crawler.core.models import FetchResult


def test_migrates_an_older_schema_and_keeps_its_data(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "catalog.sqlite3")
    db.executescript(MIGRATIONS[0])  # a catalog written by schema version 1
    db.execute("PRAGMA user_version=1")
    # As an earlier version stored them: the directory as given on the command line (here
    # relative to a working directory long gone) and notification URLs in clear.
    secret = "tgram://123456:SECRET-TOKEN/987"
    settings = json.dumps({"detect": {"notify": [secret]}})
    db.execute("INSERT INTO crawls (target, crawl_id, directory, started, status, settings) "
               "VALUES ('memo', 'c1', 'somewhere/else/memo/c1', '2026-01-01T00:00:00Z', "
               "'complete', ?)", (settings,))
    db.execute("INSERT INTO captures (crawl, url, key, kind, depth, fetched_at, status) "
               "VALUES (1, 'http://memo.ru/', 'ru,memo)/', 'seed', 0, '2026', 200)")
    db.execute("INSERT INTO captures (crawl, url, key, kind, depth, fetched_at, status) "
               "VALUES (1, 'http://memo.ru/Doc?id=Ab3', 'ru,memo)/doc?id=ab3', 'page', 1, "
               "'2026', 200)")
    db.commit()
    db.close()
    (tmp_path / "memo" / "c1").mkdir(parents=True)
    (tmp_path / "memo" / "c1" / "crawl.json").write_text(json.dumps({"settings": json.loads(
        settings)}), "utf-8")
    catalog = Catalog.open(tmp_path)
    assert catalog.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 11
    # v5: directories relative to the archive root; secrets redacted everywhere
    assert catalog.crawls("memo")[0].directory == tmp_path.resolve() / "memo" / "c1"
    stored = catalog.db.execute("SELECT directory, settings FROM crawls").fetchone()
    assert stored[0] == "memo/c1"
    assert "SECRET" not in stored[1] and "tgram://[redacted sha256:" in stored[1]
    assert "SECRET" not in (tmp_path / "memo" / "c1" / "crawl.json").read_text("utf-8")
    assert catalog.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    (crawl,) = catalog.crawls("memo")
    capture, upper = catalog.captures(crawl.pk)
    assert capture.url == "http://memo.ru/"
    # v6: keys keep the case of path and query; pywb's SURT is kept beside them
    assert (upper.key, upper.surt) == ("ru,memo)/Doc?id=Ab3", "ru,memo)/doc?id=ab3")
    assert crawl.shortfall == {}
    assert capture.record_id is None and capture.refers_to is None  # columns added by v3
    catalog.db.execute("SELECT count(*) FROM frontier").fetchone()  # the v2 table exists
    # v11: the search index exists, and lacks the texts of pages captured before it did
    assert catalog.db.execute("SELECT count(*) FROM page_search").fetchone()[0] == 0
    catalog.close()


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "catalog.sqlite3")
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(OutputError, match="newer crawler"):
        Catalog.open(tmp_path)


def test_capture_round_trip(tmp_path: Path) -> None:
    catalog = Catalog.open(tmp_path)
    pk = catalog.add_crawl("t", "c", tmp_path, {"seeds": []})
    row = CaptureRow(url="http://h/", key="h)/", kind="page", depth=1,
                     fetched_at="2026-11-23T10:00:00.000000Z", status=200, mime="text/html",
                     title="Заголовок", outlinks=3)
    with catalog.transaction():
        catalog.add_capture(pk, row)
    assert list(catalog.captures(pk)) == [row]
    assert catalog.crawl_totals(pk)["pages"] == 1


def _exchange(n: int) -> FetchResult:
    body = f"<a href='/next{n}'>next</a>".encode()
    return FetchResult(url=f"http://h/{n}", started=datetime.now(UTC), status=200, reason="OK",
                       headers=[(b"Content-Type", b"text/html")], body=io.BytesIO(body),
                       body_length=len(body), request_head=b"GET / HTTP/1.1\r\n\r\n")


def test_repair_cuts_a_partial_record_and_returns_uncommitted_ones(tmp_path: Path) -> None:
    writer = WarcWriter(WarcSettings(directory=tmp_path))
    first = writer.write_exchange(_exchange(1))
    writer.write_exchange(_exchange(2))
    assert writer._file is not None
    path = Path(writer._file.name)
    complete = path.stat().st_size
    writer._file.write(b"\x1f\x8b\x08\x00partial gzip member")  # a kill mid-record
    writer._file.close()  # the process is gone; nothing renames the file
    assert path.name.endswith(OPEN_SUFFIX)
    assert complete_members_end(path) == complete
    found = recover_warcs(tmp_path, lambda name: {first.offset}, payload_cap=1 << 20)
    closed, orphans = found.closed, found.orphans
    assert [p.name for p in closed] == [first.filename]
    assert closed[0].stat().st_size == complete
    assert [(o.url, o.status, o.payload) for o in orphans] == [
        ("http://h/2", 200, b"<a href='/next2'>next</a>")]
    assert orphans[0].length > 0
    read_records(closed)  # valid, digests verify


def test_processes_creating_one_catalog_at_once_upgrade_it_once(tmp_path: Path) -> None:
    """Three crawls started together on an empty root each ran the migrations ("table
    crawls already exists"); the upgrade now runs once, under the write turn."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from crawler.archive.catalog import Catalog; "
            "Catalog.open(Path(sys.argv[1])).close()")
    for round_ in range(5):
        root = tmp_path / str(round_)
        procs = [subprocess.Popen([sys.executable, "-c", code, str(root)],
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
        catalog = Catalog.open(root)
        assert catalog.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        catalog.close()


def test_a_watermark_never_passes_a_record_not_entered() -> None:
    from crawler.archive.watermark import Watermark

    mark = Watermark()
    mark.written("f", 100)  # the warcinfo record: no catalog row
    for start, end in ((100, 200), (200, 300)):
        mark.begin("f", start)
        mark.written("f", end)
    assert mark.marks() == {"f": 100}
    assert mark.marks([("f", 100)]) == {"f": 200}  # as if the commit about to run succeeds
    mark.entered([("f", 200)])  # entered out of order: the first group still holds it
    assert mark.marks() == {"f": 100}
    mark.entered([("f", 100)])
    assert mark.marks() == {"f": 300}
    mark.begin("f", 300)  # a write that failed and was cut back
    mark.abandon("f", 300)
    assert mark.marks() == {"f": 300}


def test_a_capture_rolled_back_is_not_counted_as_entered(tmp_path: Path) -> None:
    from crawler.archive.watermark import Watermark

    catalog = Catalog.open(tmp_path)
    pk = catalog.add_crawl("t", "c1", tmp_path / "t" / "c1", {})
    mark = Watermark()
    mark.written("f", 10)
    for start in (10, 20):
        mark.begin("f", start)
    mark.written("f", 30)
    catalog.track_marks(pk, mark)
    catalog.begin_batch()
    with catalog.transaction():
        catalog.add_capture(pk, CaptureRow(url="http://h/a", key="a", kind="page", depth=0,
                                           fetched_at="2026", warc_file="f", warc_offset=10))
    with pytest.raises(RuntimeError), catalog.transaction():
        catalog.add_capture(pk, CaptureRow(url="http://h/b", key="b", kind="page", depth=0,
                                           fetched_at="2026", warc_file="f", warc_offset=20))
        raise RuntimeError("the page's transaction failed")
    catalog.end_batch()
    assert catalog.warc_marks(pk) == {"f": 20}  # b's record is not in the catalog
    assert mark.marks() == {"f": 20}
    catalog.close()
