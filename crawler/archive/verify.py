"""Fixity and consistency of an archive root (``crawler verify``).

An archive is evidence, so its keeper must be able to prove it whole, and to find out, before
relying on it, what was lost to a bad disk, a careless copy or a killed process. Checked:

* every WARC file read to its end, gzip member by gzip member: warcio parses the records
  and checks their digests as ``warcio check`` does, fed by a reader of our own that inflates
  one member at a time, because warcio alone stops quietly at a file cut short in the middle
  of a record (the damage most worth finding) and cannot go on after damaged gzip data. Per
  record: the gzip CRC, the block length against ``Content-Length``, ``WARC-Block-Digest``
  (not for revisits, as in warcio), and for responses ``WARC-Payload-Digest``;
* every catalog row that names a record: the record starts at that offset, has that length,
  that ``WARC-Record-ID``, type and target URI;
* every revisit: its original is in the catalog, its record intact, with the same payload
  digest;
* every crawl's ``index.cdxj`` lists what the catalog says it should;
* every WACZ: the zip's central directory and local headers agree, and every file's sha256
  and size match ``datapackage.json``, whose own digest matches ``datapackage-digest.json``.

Only reads: nothing is repaired. A crawl running now is not checked (its files are being
written), and the report says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.statusandheaders import StatusAndHeadersParserException

from crawler.archive.catalog import Catalog, CrawlRow, CrawlStatus
from crawler.archive.wacz import zip_layout_problems
from crawler.archive.warc import OPEN_SUFFIX
from crawler.archive.warcread import RecordUnreadable, read_intact

_CHUNK = 1 << 20
_HEAD_ROOM = 1 << 20  # inflated bytes allowed while a record's headers are sought
_DIGEST_FAILED = re.compile(r"^(block|payload) digest failed: (.*)$")
_GZIP_MAGIC = b"\x1f\x8b\x08"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing found wrong: where (a file, with an offset if any) and what."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass(slots=True)
class VerifyReport:
    """What was checked, what was wrong, and what was deliberately not checked."""

    checked: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return True if nothing checked was wrong."""
        return not self.problems

    def to_json(self) -> dict[str, object]:
        """Return the report as JSON-ready data."""
        return {"ok": self.ok, "checked": dict(self.checked),
                "problems": [{"where": p.where, "what": p.what} for p in self.problems],
                "not_checked": self.not_checked}


@dataclass(frozen=True, slots=True)
class ScannedRecord:
    """A record found by reading a WARC file from start to end."""

    offset: int  # of its gzip member
    length: int  # of its gzip member (compressed bytes)
    warc_type: str
    record_id: str
    target_uri: str
    damaged: bool = False  # the member could not be read whole (reported where found)


# -- reading a WARC file to its end ------------------------------------------------------------

class _Trouble(Exception):
    """The member cannot be read on: damaged gzip data, the file's end, or runaway headers."""


class _Member(io.RawIOBase):
    """The inflated bytes of one gzip member of a file, handed out in bounded pieces.

    warcio parses what this yields; this class owns what warcio does not report: gzip damage
    (a CRC or data error, raised as ``_Trouble`` wherever it is met), a file that ends inside
    the member, and where the member ends (its compressed length, and the bytes read past it).
    ``limit`` caps what may be inflated while warcio is still looking for a record's headers,
    so a gzip bomb of header bytes costs bounded memory.
    """

    def __init__(self, fh: BinaryIO, pending: bytes) -> None:
        self._fh = fh
        self._unzip = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._pending = pending
        self._fed = 0  # compressed bytes given to the decompressor
        self._out = 0  # inflated bytes so far
        self._ready = memoryview(b"")  # inflated bytes not yet handed out
        self._at = 0
        self.limit: int | None = _HEAD_ROOM
        self.rest = b""  # compressed bytes read past the member's end

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._out - (len(self._ready) - self._at)

    @property
    def ended(self) -> bool:
        return self._unzip.eof

    @property
    def length(self) -> int:
        """Return the member's compressed length so far (all of it, once ended)."""
        return self._fed - len(self.rest)

    def release(self) -> None:
        """A record's headers were found: its block may be read at any length."""
        self.limit = None

    def hold(self) -> None:
        """A record ended: the next one's headers get the same bounded room."""
        self.limit = self._out + _HEAD_ROOM  # counted from what was inflated

    def readinto(self, buffer: Any) -> int:
        if self._at >= len(self._ready):
            self._ready, self._at = self._inflate(), 0
        taken = min(len(buffer), len(self._ready) - self._at)
        buffer[:taken] = self._ready[self._at:self._at + taken]
        self._at += taken
        return taken

    def _inflate(self) -> memoryview:
        """Return the next piece of the member's inflated bytes (empty at its end)."""
        while not self._unzip.eof:
            source = self._unzip.unconsumed_tail
            if not source:
                source, self._pending = self._pending or self._fh.read(_CHUNK), b""
                if not source:
                    raise _Trouble("the file ends inside this record: it was cut short"
                                   if self._fed else "no data")
                self._fed += len(source)
            # While headers are sought, inflate no more than the room left: a member that
            # starts just before a read boundary inflates a little from the bytes already
            # read, then up to _CHUNK from the next read, and those are a record's
            # ordinary bytes, not runaway headers.
            room = _CHUNK if self.limit is None else min(_CHUNK, self.limit - self._out)
            if room <= 0:
                raise _Trouble("WARC header too long or missing")
            try:
                out = self._unzip.decompress(source, room)
            except zlib.error as exc:
                raise _Trouble(f"damaged gzip data ({exc})") from exc
            if self._unzip.eof:
                self.rest = self._unzip.unused_data
            if out:
                self._out += len(out)
                return memoryview(out)
        return memoryview(b"")


def _read_records(member: _Member, where: str, problems: list[Problem],
                  ) -> list[tuple[str, str, str]]:
    """Parse the member's records with warcio, reading each block to its end so its digests
    are checked; return (type, id, target URI) of each. Digests are checked as ``warcio
    check`` checks them: block and payload for responses, blocks of other records except
    revisits (whose bytes the gzip CRC still covers)."""
    found = []
    for record in ArchiveIterator(member, check_digests=True, arc2warc=False):
        member.release()
        read = 0
        while chunk := record.raw_stream.read(_CHUNK):
            read += len(chunk)
        if record.http_headers is not None and record.payload_length >= 0:
            read += record.length - record.payload_length  # the HTTP head, parsed by warcio
        if record.length is not None and read < record.length:
            problems.append(Problem(where, f"record cut short: {record.length - read} bytes "
                                    "of its block missing"))
        for said in record.digest_checker.problems:
            problems.append(Problem(where, _DIGEST_FAILED.sub(r"\1 digest does not match (\2)",
                                                              said)))
        headers = record.rec_headers
        found.append((record.rec_type or "", headers.get_header("WARC-Record-ID") or "",
                      headers.get_header("WARC-Target-URI") or ""))
        member.hold()
    if not member.ended:
        raise _Trouble("bytes after the record that are not a WARC record")
    return found


def scan_warc(path: Path, problems: list[Problem]) -> dict[int, ScannedRecord]:
    """Read a ``.warc.gz`` file to its end; return its records by member offset.

    Problems (damaged gzip data, records cut short, digests that do not match, bytes after
    the last record) are appended to ``problems``. After damaged gzip data the scan resumes
    at the next gzip member header, so what follows the damage is still checked.
    """
    found: dict[int, ScannedRecord] = {}
    size = path.stat().st_size
    with open(path, "rb") as fh:
        start = 0  # file offset of the member being read
        pending = b""  # compressed bytes read but not yet inflated, starting at ``start``
        while start < size:
            member = _Member(fh, pending)
            where = _where(path.name, start)
            trouble = None
            try:
                records = _read_records(member, where, problems)
            except _Trouble as exc:
                records, trouble = [], str(exc)
            except (ArchiveLoadFailed, StatusAndHeadersParserException, ValueError) as exc:
                records, trouble = [], f"not a WARC record ({exc})"
            for kind, record_id, uri in records[:1]:
                found[start] = ScannedRecord(start, member.length, kind, record_id, uri)
            if trouble is None:
                start, pending = start + member.length, member.rest
                continue
            found.setdefault(start, ScannedRecord(start, member.length, "", "", "", True))
            problems.append(Problem(where, trouble))
            resume = _next_member(fh, start + 1, size)
            if resume is None:
                break
            problems.append(Problem(where, f"{resume - start} bytes skipped to the next record"))
            start, pending = resume, b""
            fh.seek(resume)
    return found


def _next_member(fh: BinaryIO, after: int, size: int) -> int | None:
    """Return the offset of the next gzip member header after ``after`` (None if none)."""
    position = after
    fh.seek(position)
    tail = b""
    while position < size:
        chunk = fh.read(_CHUNK)
        if not chunk:
            return None
        data = tail + chunk
        found = data.find(_GZIP_MAGIC)
        if found >= 0:
            return position - len(tail) + found
        tail = data[-2:]
        position += len(chunk)
    return None


# -- the archive --------------------------------------------------------------------------------

def _where(name: str, offset: int) -> str:
    """Return where a record starts, as problems name it: file@offset."""
    return f"{name}@{offset}"


def verify_archive(catalog: Catalog, *, target: str | None = None,
                   crawl_id: str | None = None,
                   is_running: Callable[[CrawlRow], bool] = lambda row: False,
                   progress: Callable[[str], object] | None = None) -> VerifyReport:
    """Check the crawls of ``target`` (or of every target), or one crawl, and their WACZs."""
    report = VerifyReport()
    crawls = catalog.crawls(target)
    if crawl_id is not None:
        crawls = [c for c in crawls if c.crawl_id == crawl_id]
    intact: dict[int, bool] = {}
    for crawl in crawls:
        if is_running(crawl):
            report.not_checked.append(f"{crawl.target}/{crawl.crawl_id}: being crawled now")
            continue
        if progress is not None:
            progress(f"checking {crawl.target}/{crawl.crawl_id}")
        _verify_crawl(catalog, crawl, report, intact)
    if crawl_id is None:
        for name in sorted({c.target for c in crawls}):
            for wacz in sorted((catalog.root / name).glob("*.wacz")):
                if progress is not None:
                    progress(f"checking {wacz.name}")
                report.checked["wacz files"] += 1
                report.problems.extend(verify_wacz(wacz))
    return report


def _verify_crawl(catalog: Catalog, crawl: CrawlRow, report: VerifyReport,
                  intact: dict[int, bool]) -> None:
    """Check one crawl's WARCs against its catalog rows, its revisits and its index."""
    label = f"{crawl.target}/{crawl.crawl_id}"
    warc_dir = crawl.directory / "warc"
    if not crawl.directory.is_dir():
        report.problems.append(Problem(str(crawl.directory), "crawl directory is missing"))
    for leftover in sorted(warc_dir.glob(f"*{OPEN_SUFFIX}")):
        state = ("the crawl was killed: `crawler resume` closes it"
                 if crawl.status == CrawlStatus.RUNNING else "left open")
        report.problems.append(Problem(str(leftover), f"unfinished WARC ({state})"))
    scanned: dict[str, dict[int, ScannedRecord]] = {}
    for path in sorted(warc_dir.glob("*.warc.gz")):
        report.checked["warc files"] += 1
        records = scan_warc(path, report.problems)
        report.checked["warc records"] += sum(not r.damaged for r in records.values())
        scanned[path.name] = records
    rows = catalog.db.execute(
        "SELECT id, url, warc_file, warc_offset, warc_length, record_id, record_type, digest, "
        "refers_to FROM captures WHERE crawl=? AND warc_file IS NOT NULL AND warc_file != '' "
        "ORDER BY warc_file, warc_offset", (crawl.pk,))
    referenced: set[str] = set()
    missing_files: Counter[str] = Counter()
    for row in rows:
        report.checked["catalog rows"] += 1
        name = row["warc_file"]
        referenced.add(name)
        if name not in scanned:
            missing_files[name] += 1
            continue
        where = f"{name}@{row['warc_offset']}"
        record = scanned[name].get(row["warc_offset"])
        if record is None or record.damaged:
            state = "no record" if record is None else "the damaged record above"
            report.problems.append(Problem(where, f"catalog row {row['id']} ({row['url']}) "
                                           f"points at {state}"))
            continue
        wrong = [what for what, ok in (
            (f"length {record.length}, catalog says {row['warc_length']}",
             record.length == row["warc_length"]),
            (f"record id {record.record_id}, catalog says {row['record_id']}",
             not row["record_id"] or record.record_id == row["record_id"]),
            (f"type {record.warc_type}, catalog says {row['record_type']}",
             not row["record_type"] or record.warc_type == row["record_type"]),
            (f"URI {record.target_uri}, catalog says {row['url']}",
             record.target_uri == row["url"])) if not ok]
        if wrong:
            report.problems.append(Problem(where, "; ".join(wrong)))
        if row["record_type"] == "revisit":
            report.checked["revisits"] += 1
            _check_original(catalog, row, where, report, intact)
    for name, count in missing_files.items():
        report.problems.append(Problem(str(warc_dir / name), f"WARC file missing ({count} "
                                       "catalog rows point into it)"))
    for name in sorted(set(scanned) - referenced):
        if any(r.warc_type not in ("warcinfo", "request") for r in scanned[name].values()):
            report.not_checked.append(f"{label}: {name} is not in the catalog (its records "
                                      "were read, not matched)")
    _check_index(catalog, crawl, report)


def _check_original(catalog: Catalog, row: object, where: str, report: VerifyReport,
                    intact: dict[int, bool]) -> None:
    """Check that a revisit's original is in the catalog, intact, with the same digest."""
    r = row  # a sqlite3.Row
    if r["refers_to"] is None:  # type: ignore[index]
        report.problems.append(Problem(where, "revisit whose original the catalog does not "
                                       "know"))
        return
    original = catalog.db.execute(
        "SELECT c.*, k.directory FROM captures c JOIN crawls k ON k.id = c.crawl "
        "WHERE c.id = ?", (r["refers_to"],)).fetchone()  # type: ignore[index]
    if original is None:
        report.problems.append(Problem(where, f"revisit of capture {r['refers_to']}, which "  # type: ignore[index]
                                       "is not in the catalog"))
        return
    if original["digest"] != r["digest"]:  # type: ignore[index]
        report.problems.append(Problem(where, "revisit digest differs from its original's"))
    verdict = intact.get(original["id"])
    if verdict is None:
        path = catalog.resolve(original["directory"]) / "warc" / (original["warc_file"] or "")
        try:
            read_intact(path, original["warc_offset"] or 0, original["warc_length"] or 0,
                        record_id=original["record_id"], digest=original["digest"])
            verdict = True
        except (RecordUnreadable, OSError) as exc:
            report.problems.append(Problem(where, f"the original of this revisit is missing "
                                           f"or damaged: {exc}"))
            verdict = False
        intact[original["id"]] = verdict
    elif not verdict:
        report.problems.append(Problem(where, "the original of this revisit is missing or "
                                       "damaged (see above)"))


def _check_index(catalog: Catalog, crawl: CrawlRow, report: VerifyReport) -> None:
    """Check that the crawl's CDXJ index lists what the catalog says it should."""
    from crawler.archive.package import index_entries

    index = crawl.directory / "indexes" / "index.cdxj"
    if crawl.status == CrawlStatus.RUNNING:
        return  # killed: the index is written when the crawl is resumed and ends
    if not index.is_file():
        report.problems.append(Problem(str(index), "index missing"))
        return
    report.checked["indexes"] += 1
    expected = {_comparable(e.cdxj()) for e in index_entries(catalog, crawl.pk)}
    with open(index, encoding="utf-8", errors="replace") as fh:
        actual = {_comparable(line.rstrip("\n")) for line in fh if line.strip()}
    if actual != expected:
        extra, lost = len(actual - expected), len(expected - actual)
        report.problems.append(Problem(str(index), f"index differs from the catalog: {lost} "
                                       f"entries missing, {extra} unexpected"))


def _comparable(line: str) -> tuple[str, str, str]:
    """Return an index line with its timestamp cut to the second: indexes written by earlier
    versions have 14 digits where this one writes 17, and are not wrong for it."""
    key, ts, rest = [*line.split(" ", 2), "", ""][:3]
    return key, ts[:14], rest


def verify_wacz(path: Path) -> list[Problem]:
    """Check a WACZ: zip layout, and every file's hash and size against datapackage.json."""
    problems = [Problem(path.name, p) for p in zip_layout_problems(path)]
    if problems:
        return problems
    try:
        with zipfile.ZipFile(path) as zf:
            package_bytes = zf.read("datapackage.json")
            package = json.loads(package_bytes)
            try:
                digest_doc = json.loads(zf.read("datapackage-digest.json"))
            except KeyError:
                digest_doc = None
            if digest_doc is not None:
                declared = digest_doc.get("hash", "")
                actual = "sha256:" + hashlib.sha256(package_bytes).hexdigest()
                if declared != actual:
                    problems.append(Problem(f"{path.name}:datapackage.json",
                                            "hash differs from datapackage-digest.json"))
            names = set(zf.namelist())
            for resource in package.get("resources", []):
                name = resource.get("path", "")
                where = f"{path.name}:{name}"
                if name not in names:
                    problems.append(Problem(where, "listed in datapackage.json, not in the zip"))
                    continue
                digest, size = hashlib.sha256(), 0
                with zf.open(name) as member:
                    while chunk := member.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                if resource.get("hash") != "sha256:" + digest.hexdigest():
                    problems.append(Problem(where, "sha256 differs from datapackage.json"))
                if resource.get("bytes") is not None and resource["bytes"] != size:
                    problems.append(Problem(where, f"{size} bytes, datapackage.json says "
                                            f"{resource['bytes']}"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        problems.append(Problem(path.name, f"unreadable: {exc}"))
    return problems


def iter_lines(report: VerifyReport) -> Iterator[str]:
    """Yield the human report."""
    checked = ", ".join(f"{v} {k}" for k, v in report.checked.items()) or "nothing"
    yield f"Checked {checked}."
    for note in report.not_checked:
        yield f"  not checked: {note}"
    if report.ok:
        yield "No problems found."
        return
    yield f"{len(report.problems)} problem(s):"
    for problem in report.problems:
        yield f"  {problem}"


