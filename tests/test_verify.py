"""`crawler verify` proves an archive whole and finds every kind of damage; damage never
spreads: recrawls and packages do not lean on damaged records."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import sqlite3
import struct
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import fast_settings, read_records

from crawler.archive.catalog import Catalog
from crawler.archive.verify import Problem, scan_warc
from crawler.archive.wacz import zip_layout_problems
from crawler.capture.settings import DetectSettings
from crawler.commands.cli import cli
from crawler.core.errors import ExitCode
from crawler.demo.sample_site import SampleSite
from crawler.jobs.pipeline import run_target


@dataclass
class Archive:
    site_persons: int
    root: Path  # a pristine archive: copy it before damaging it


def _crawl(site: SampleSite, root: Path) -> None:
    settings = fast_settings(site.url, root, sitemaps=False, extract_workers=0, wacz=True,
                             detect=DetectSettings(recheck_probes=0))
    asyncio.run(run_target(settings))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    root = tmp_path_factory.mktemp("pristine")
    with SampleSite(persons=8) as site:
        _crawl(site, root)
        _crawl(site, root)  # a recrawl: revisits that refer to the first crawl's records
    yield Archive(8, root)


def _copy(archive: Archive, tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    shutil.copytree(archive.root, root)
    return root


def _verify(root: Path, *args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(cli, ["verify", "--output", str(root), "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def _first_crawl_warc(root: Path) -> Path:
    catalog = Catalog.open(root)
    try:
        first = catalog.crawls("test")[0]
    finally:
        catalog.close()
    (warc,) = sorted((first.directory / "warc").glob("test-2*.warc.gz"))
    return warc


def _where(report: dict[str, object]) -> str:
    return "\n".join(f"{p['where']}: {p['what']}" for p in report["problems"])  # type: ignore[index, union-attr]


def test_a_sound_archive_verifies(pristine: Archive) -> None:
    code, report = _verify(pristine.root)
    assert code == 0 and report["ok"], _where(report)
    checked = report["checked"]
    assert checked["warc files"] >= 2 and checked["catalog rows"] > 50  # type: ignore[index]
    assert checked["revisits"] > 10 and checked["wacz files"] == 2  # type: ignore[index]
    result = CliRunner().invoke(cli, ["verify", "--output", str(pristine.root)])
    assert result.exit_code == 0 and "No problems found." in result.stdout


def test_finds_a_truncated_warc(pristine: Archive, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path)
    warc = _first_crawl_warc(root)
    size = warc.stat().st_size
    with open(warc, "r+b") as fh:
        fh.truncate(size - size // 3)
    code, report = _verify(root)
    assert code == ExitCode.DAMAGED
    text = _where(report)
    assert "cut short" in text
    assert "points at no record" in text  # the rows of the records that were cut off
    assert "original of this revisit is missing or damaged" in text  # crawl 2 leaned on them


def test_finds_a_deleted_warc(pristine: Archive, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path)
    warc = _first_crawl_warc(root)
    warc.unlink()
    code, report = _verify(root)
    assert code == ExitCode.DAMAGED
    assert f"{warc}: WARC file missing" in _where(report)
    result = CliRunner().invoke(cli, ["wacz", "test", "--output", str(root)])
    assert result.exit_code == ExitCode.CONFIG
    assert "missing" in result.output and warc.name in result.output
    assert not list((root / "test").glob("test-all-*.wacz"))  # nothing half-written left


def test_finds_a_flipped_byte_in_a_payload(pristine: Archive, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path)
    warc, offset = _flip_a_byte(root, "persons/2.html")
    code, report = _verify(root)
    assert code == ExitCode.DAMAGED
    text = _where(report)
    assert f"{warc.name}@{offset}" in text
    assert "damaged gzip data" in text or "digest does not match" in text


def test_finds_a_catalog_row_without_its_record(pristine: Archive, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path)
    db = sqlite3.connect(root / "catalog.sqlite3")
    db.execute("UPDATE captures SET warc_offset = warc_offset + 7 WHERE id = "
               "(SELECT min(id) FROM captures WHERE url LIKE '%persons/3.html')")
    db.commit()
    db.close()
    code, report = _verify(root)
    assert code == ExitCode.DAMAGED
    assert "persons/3.html) points at no record" in _where(report)


def test_finds_a_damaged_wacz(pristine: Archive, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path)
    wacz = sorted((root / "test").glob("*.wacz"))[0]
    with zipfile.ZipFile(wacz) as zf:
        info = zf.getinfo("pages/pages.jsonl")
    data = bytearray(wacz.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 3] ^= 0xFF  # inside the deflated page list
    wacz.write_bytes(bytes(data))
    code, report = _verify(root)
    assert code == ExitCode.DAMAGED
    assert f"{wacz.name}" in _where(report)


def test_a_recrawl_after_damage_stores_payloads_in_full(pristine: Archive,
                                                        tmp_path: Path) -> None:
    """Dedup never writes a revisit that refers to a damaged original."""
    root = _copy(pristine, tmp_path)
    warc, offset = _flip_a_byte(root, "persons/2.html")
    with SampleSite(persons=pristine.site_persons) as site:
        # the same site again, at a new port: the same bytes for persons/2.html
        settings = fast_settings(site.url, root, sitemaps=False, extract_workers=0,
                                 detect=DetectSettings(recheck_probes=0))
        run = asyncio.run(run_target(settings))
    records = read_records(list(run.outcome.warcs))
    person = site.url + "persons/2.html"
    kinds = [r.type for r in records if r.uri == person and r.type != "request"]
    assert kinds == ["response"], kinds
    assert run.outcome.stats["damaged_originals"] >= 1
    damaged_ids = set()
    catalog = Catalog.open(root)
    try:
        for row in catalog.db.execute("SELECT record_id FROM captures WHERE warc_file=? "
                                      "AND warc_offset=?", (warc.name, offset)):
            damaged_ids.add(row[0])
    finally:
        catalog.close()
    assert not [r for r in records if r.warc.get("WARC-Refers-To") in damaged_ids]


def _flip_a_byte(root: Path, suffix: str) -> tuple[Path, int]:
    """Flip one bit in the middle of the first crawl's response record for a URL; return
    its WARC and the record's offset."""
    warc = _first_crawl_warc(root)
    offset, length = _record_of(root, suffix)
    with open(warc, "r+b") as fh:
        fh.seek(offset + length // 2)
        byte = fh.read(1)
        fh.seek(offset + length // 2)
        fh.write(bytes([byte[0] ^ 0x04]))
    return warc, offset


def _record_of(root: Path, suffix: str) -> tuple[int, int]:
    """Return (offset, length) of the first crawl's response for a URL ending in suffix."""
    catalog = Catalog.open(root)
    try:
        first = catalog.crawls("test")[0]
        row = catalog.db.execute(
            "SELECT warc_offset, warc_length FROM captures WHERE crawl=? AND url LIKE ? "
            "AND record_type='response'", (first.pk, f"%{suffix}")).fetchone()
    finally:
        catalog.close()
    return int(row[0]), int(row[1])


def test_scan_resumes_after_damage(tmp_path: Path, pristine: Archive) -> None:
    """Damage in one record does not hide the records after it."""
    warc = tmp_path / "copy.warc.gz"
    shutil.copy(_first_crawl_warc(pristine.root), warc)
    problems: list[object] = []
    sound = scan_warc(warc, [])
    offsets = sorted(sound)
    victim = offsets[len(offsets) // 2]
    data = bytearray(warc.read_bytes())
    data[victim + 40] ^= 0xFF
    warc.write_bytes(bytes(data))
    found = scan_warc(warc, problems)  # type: ignore[arg-type]
    assert problems
    intact = {o for o, r in found.items() if not r.damaged}
    assert intact == set(offsets) - {victim}



def _member(url: str, body: bytes, level: int = 6) -> bytes:
    """Return one response record (without digests) as its own gzip member."""
    block = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
             % len(body)) + body
    head = (f"WARC/1.1\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{uuid.uuid4()}>\r\n"
            f"WARC-Date: 2026-12-02T00:00:00Z\r\nWARC-Target-URI: {url}\r\n"
            "Content-Type: application/http; msgtype=response\r\n"
            f"Content-Length: {len(block)}\r\n\r\n").encode()
    packer = zlib.compressobj(level, zlib.DEFLATED, 31)
    return packer.compress(head + block + b"\r\n\r\n") + packer.flush()


@pytest.mark.parametrize("before", [5, 300, 2000])
def test_a_large_record_starting_just_before_a_read_boundary_is_sound(
        tmp_path: Path, before: int) -> None:
    """Found by CI: a record of more than 1 MiB inflated whose gzip member began a few hundred
    bytes before the scan's 1 MiB read boundary was reported as "WARC header too long" (its
    first bytes came from one read, the next 1 MiB from the next, and all of it was counted
    as header)."""
    target = (1 << 20) - before
    size = target - 1000
    for _ in range(5):  # a stored (level 0) padding member ending exactly at ``target``
        pad = _member("http://x.test/pad", b"p" * size, level=0)
        if len(pad) == target:
            break
        size += target - len(pad)
    assert len(pad) == target
    big = b"".join(f"{n:08d} a person's name and dates\n".encode() for n in range(60_000))
    warc = tmp_path / "boundary.warc.gz"
    warc.write_bytes(pad + _member("http://x.test/big", big)
                     + _member("http://x.test/after", b"hello"))
    problems: list[Problem] = []
    found = scan_warc(warc, problems)
    assert [str(p) for p in problems] == []
    assert [r.target_uri for r in found.values()] == [
        "http://x.test/pad", "http://x.test/big", "http://x.test/after"]


def test_a_member_of_runaway_header_bytes_is_still_reported(tmp_path: Path) -> None:
    """The bound that the test above must not trip still holds for real runaway headers."""
    warc = tmp_path / "bomb.warc.gz"
    warc.write_bytes(gzip.compress(b"WARC/1.1\r\nX-Pad: " + b"a" * (3 << 20)))
    problems: list[Problem] = []
    scan_warc(warc, problems)
    assert [p.what for p in problems] == ["WARC header too long or missing"]

# -- the WACZ zip: what ReplayWeb.page reads ------------------------------------------------------

def _central_offsets_as_replaywebpage_reads_them(path: Path) -> dict[str, int]:
    """Return where each entry's data starts, computed the way ReplayWeb.page (wabac.js
    ``ZipRangeReader``) does: from the central directory alone when the central entry has no
    extra field, from the local header otherwise."""
    data = path.read_bytes()
    end = data.rfind(b"PK\x05\x06")
    count, _, cd_offset = struct.unpack("<HII", data[end + 10:end + 20])
    if cd_offset == 0xFFFFFFFF:  # ZIP64 end of central directory
        locator = data.rfind(b"PK\x06\x07")
        (z64,) = struct.unpack("<Q", data[locator + 8:locator + 16])
        count, cd_offset = struct.unpack("<QQ", data[z64 + 32:z64 + 40] + data[z64 + 48:z64 + 56])
    found = {}
    pos = cd_offset
    for _ in range(count):
        assert data[pos:pos + 4] == b"PK\x01\x02"
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[pos + 28:pos + 34])
        (local,) = struct.unpack("<I", data[pos + 42:pos + 46])
        name = data[pos + 46:pos + 46 + name_len].decode()
        extra = data[pos + 46 + name_len:pos + 46 + name_len + extra_len]
        if local == 0xFFFFFFFF:
            local = struct.unpack("<Q", extra[-8:])[0]
        if extra_len == 0:
            found[name] = local + 30 + name_len
        else:
            local_name, local_extra = struct.unpack("<HH", data[local + 26:local + 30])
            found[name] = local + 30 + local_name + local_extra
        pos += 46 + name_len + extra_len + comment_len
    return found


@pytest.mark.parametrize("limit", [zipfile.ZIP64_LIMIT, 4000])
def test_wacz_entries_are_where_replaywebpage_looks(pristine: Archive, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    limit: int) -> None:
    """Local headers carry a ZIP64 field exactly when the central directory does, also for
    files past the ZIP64 limit (made small here, to exercise that path)."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", limit)
    root = _copy(pristine, tmp_path)
    result = CliRunner().invoke(cli, ["wacz", "test", "--output", str(root)])
    assert result.exit_code == 0, result.output
    wacz = Path(result.stdout.strip())
    assert zip_layout_problems(wacz) == []
    data = wacz.read_bytes()
    with zipfile.ZipFile(wacz) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        if limit == 4000:
            assert [i for i in infos.values() if i.file_size > limit], "entries past the limit"
        for name, start in _central_offsets_as_replaywebpage_reads_them(wacz).items():
            info = infos[name]
            raw = data[start:start + info.compress_size]
            if info.compress_type == zipfile.ZIP_STORED:
                assert raw == zf.read(name), name
            else:
                assert zlib.decompress(raw, -15) == zf.read(name), name


def test_zip_layout_check_catches_the_old_mismatch(tmp_path: Path) -> None:
    """A zip written as before (ZIP64 field forced in local headers only) is reported."""
    path = tmp_path / "old.zip"
    source = tmp_path / "pages.jsonl"
    source.write_text('{"format": "json-pages-1.0"}\n', "utf-8")
    with zipfile.ZipFile(path, "w") as zf, zf.open("pages/pages.jsonl", "w",
                                                   force_zip64=True) as dst:
        dst.write(source.read_bytes())
    problems = zip_layout_problems(path)
    assert problems and "extra field that the central directory lacks" in problems[0]


def test_zip64_decision_at_and_around_the_limit(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Sizes just under the limit (where Python's guess adds a local ZIP64 field), at it and
    past it: every entry is read right by the central-directory reader."""
    from crawler.archive import wacz as wacz_module

    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    members = []
    for size in (10, 960, 999, 1000, 1001, 1500):
        source = tmp_path / f"f{size}"
        source.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
        members.append((source, f"archive/f{size}.warc.gz", zipfile.ZIP_STORED))
    path = tmp_path / "t.wacz"
    wacz_module.zip_package(path, members, {"profile": "data-package"})
    assert zip_layout_problems(path) == []
    data = path.read_bytes()
    offsets = _central_offsets_as_replaywebpage_reads_them(path)
    for source, name, _ in members:
        expected = source.read_bytes()
        assert data[offsets[name]:offsets[name] + len(expected)] == expected, name


def test_an_index_of_an_earlier_version_is_not_damage(pristine: Archive,
                                                      tmp_path: Path) -> None:
    """Earlier versions wrote 14-digit index timestamps: verify does not call that damage,
    and still finds an entry that is really missing."""
    root = _copy(pristine, tmp_path)
    index = next(root.glob("test/*/indexes/index.cdxj"))
    lines = index.read_text("utf-8").splitlines()
    old = [" ".join([k, ts[:14], rest]) for k, ts, rest in (ln.split(" ", 2) for ln in lines)]
    index.write_text("\n".join(old) + "\n", "utf-8")
    code, report = _verify(root)
    assert code == 0, _where(report)
    index.write_text("\n".join(old[1:]) + "\n", "utf-8")
    code, report = _verify(root)
    assert code == ExitCode.DAMAGED
    assert "1 entries missing, 0 unexpected" in _where(report)
