"""Package crawls as WACZ 1.1.1, the single file ReplayWeb.page opens and pywb can import.

Layout (WACZ 1.1.1): ``archive/`` holds the WARCs, stored uncompressed in the zip so replay can
seek into them. The index is ``indexes/index.cdx.gz`` (sorted CDXJ lines in gzip blocks of
``BLOCK_LINES``, stored) with ``indexes/index.idx`` (one line per block: its first key,
offset and length), the compressed form Browsertrix writes and the only one ``wb-manager add
--unpack-wacz`` imports; ``filename`` fields name files in ``archive/``.
``pages/pages.jsonl`` starts with its header line. ``datapackage.json`` lists every file with
its sha256 and size, and ``datapackage-digest.json`` holds the digest of ``datapackage.json``.

A packaged crawl's revisits may refer to responses archived by earlier crawls. So that the
package replays on its own, those original records are copied byte for byte (same gzip
member, same WARC-Record-ID) into one extra WARC, ``<target>-<crawl>-originals.warc.gz``,
and indexed there.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from crawler import __version__
from crawler.archive.catalog import Catalog, CrawlRow, CrawlStatus
from crawler.archive.package import PAGES_HEADER, index_entries, page_entries
from crawler.archive.warc import IndexEntry, WarcSettings, WarcWriter, timestamp17_of
from crawler.archive.warcread import RecordUnreadable, read_intact, read_member
from crawler.core.errors import OutputError

WACZ_VERSION = "1.1.1"
BLOCK_LINES = 3000
_CHUNK = 1 << 20


def wacz_path(output: Path, target: str, crawls: list[CrawlRow], *, whole: bool) -> Path:
    """Return where the package of these crawls goes (README, "What it writes")."""
    label = f"all-{crawls[-1].crawl_id}" if whole else crawls[0].crawl_id
    return output / target / f"{target}-{label}.wacz"


def packable(crawl: CrawlRow) -> bool:
    """Return True if a crawl's files are closed (it is not running or killed mid-write)."""
    return crawl.status != CrawlStatus.RUNNING


def write_wacz(catalog: Catalog, crawls: list[CrawlRow], path: Path, *,
               title: str | None = None) -> Path:
    """Write a WACZ of ``crawls`` (one target, oldest first) to ``path``; return it."""
    if not crawls:
        raise OutputError("no crawls to package")
    for crawl in crawls:
        if not packable(crawl):
            raise OutputError(f"crawl {crawl.target}/{crawl.crawl_id} is running or was "
                              "killed; run `crawler resume` first")
    missing = missing_warcs(catalog, crawls)
    if missing:
        shown = ", ".join(str(p) for p in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise OutputError(f"cannot package: {len(missing)} WARC file(s) the catalog refers to "
                          f"are missing ({shown}); `crawler verify` tells what else is wrong")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".wacz-", dir=path.parent) as scratch:
        work = Path(scratch)
        warcs = [w for crawl in crawls for w in sorted((crawl.directory / "warc")
                                                       .glob("*.warc.gz"))]
        if not warcs:
            raise OutputError("cannot package: the crawls have no WARC files under "
                              + ", ".join(str(c.directory / "warc") for c in crawls))
        lines = [e.cdxj() for crawl in crawls for e in index_entries(catalog, crawl.pk)]
        originals = _copy_originals(catalog, crawls, work)
        if originals is not None:
            warcs.append(originals[0])
            lines.extend(e.cdxj() for e in originals[1])
        lines.sort()
        blocks, idx = work / "index.cdx.gz", work / "index.idx"
        write_zipnum(lines, blocks, idx)
        pages = work / "pages.jsonl"
        with open(pages, "w", encoding="utf-8") as out:
            out.write(json.dumps(PAGES_HEADER) + "\n")
            for crawl in crawls:
                for page in page_entries(catalog, crawl.pk):
                    out.write(page.to_json() + "\n")
        members = [(w, f"archive/{w.name}", zipfile.ZIP_STORED) for w in warcs]
        members += [(blocks, "indexes/index.cdx.gz", zipfile.ZIP_STORED),
                    (idx, "indexes/index.idx", zipfile.ZIP_DEFLATED),
                    (pages, "pages/pages.jsonl", zipfile.ZIP_DEFLATED)]
        tmp = path.with_name(path.name + ".tmp")
        zip_package(tmp, members, _package_info(crawls, title))
        os.replace(tmp, path)
    return path


def missing_warcs(catalog: Catalog, crawls: list[CrawlRow]) -> list[Path]:
    """Return the WARC files the catalog points into that are not on disk."""
    missing = []
    for crawl in crawls:
        for (name,) in catalog.db.execute(
                "SELECT DISTINCT warc_file FROM captures WHERE crawl=? AND warc_file IS NOT NULL "
                "AND warc_file != ''", (crawl.pk,)):
            path = crawl.directory / "warc" / name
            if not path.is_file():
                missing.append(path)
    return missing


def write_zipnum(lines: list[str], blocks: Path, idx: Path) -> None:
    """Write sorted CDXJ ``lines`` as gzip blocks, and the index of the blocks.

    Each block's index line is the first line's key and timestamp with its offset, length and
    sha256 in ``blocks``, after a ``!meta`` line naming the format (cdxj-gzip-1.0).
    """
    offset = 0
    with open(blocks, "wb") as data, open(idx, "w", encoding="utf-8") as index:
        meta = {"format": "cdxj-gzip-1.0", "filename": blocks.name}
        index.write(f"!meta 0 {json.dumps(meta)}\n")
        for start in range(0, len(lines), BLOCK_LINES):
            block = lines[start:start + BLOCK_LINES]
            packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
            member = packer.compress("".join(f"{line}\n" for line in block).encode("utf-8"))
            member += packer.flush()
            key = " ".join(block[0].split(" ", 2)[:2])
            entry = {"offset": offset, "length": len(member),
                     "digest": "sha256:" + hashlib.sha256(member).hexdigest()}
            index.write(f"{key} {json.dumps(entry)}\n")
            data.write(member)
            offset += len(member)


def zip_package(path: Path, members: list[tuple[Path, str, int]], info: dict[str, object],
         sign: Callable[[str], dict[str, str]] | None = None) -> None:
    """Write the zip: the members, then datapackage.json and its digest (with the
    ``signedData`` that ``sign`` returns for the digest string, if it is given)."""
    resources = []
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        for source, name, method in members:
            digest, size = _add_file(zf, source, name, method)
            resources.append({"name": Path(name).name.lower(), "path": name,
                              "hash": "sha256:" + digest, "bytes": size})
        package = json.dumps({**info, "resources": resources}, indent=2,
                             ensure_ascii=False).encode("utf-8")
        zf.writestr(_entry("datapackage.json", zipfile.ZIP_DEFLATED), package)
        digest_doc: dict[str, object] = {
            "path": "datapackage.json", "hash": "sha256:" + hashlib.sha256(package).hexdigest()}
        if sign is not None:
            digest_doc["signedData"] = sign(str(digest_doc["hash"]))
        zf.writestr(_entry("datapackage-digest.json", zipfile.ZIP_DEFLATED),
                    json.dumps(digest_doc, indent=2))
    problems = zip_layout_problems(path)
    if problems:
        raise OutputError(f"{path}: the zip came out inconsistent: {'; '.join(problems)}")


def _add_file(zf: zipfile.ZipFile, source: Path, name: str, method: int) -> tuple[str, int]:
    """Copy ``source`` into the zip as ``name``; return its sha256 (hex) and size.

    The local header gets a ZIP64 extra field exactly when the central directory entry gets
    one. ReplayWeb.page takes an entry's data offset from the central directory, assuming
    that an entry without an extra field there has none in its local header either; Python
    writes a ZIP64 local field whenever it is told to (``force_zip64``) or guesses the size
    may pass 2 GiB, while its central directory holds one only when the size really does.
    So the exact size decides: an entry up to the ZIP64 limit is opened as size 0 (no
    ZIP64 field) and its local header is rewritten with the real sizes when it is closed.
    """
    size = source.stat().st_size
    info = _entry(name, method)
    info.file_size = size if size > zipfile.ZIP64_LIMIT else 0
    digest = hashlib.sha256()
    copied = 0
    with open(source, "rb") as src, zf.open(info, "w") as dst:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            copied += len(chunk)
    return digest.hexdigest(), copied


def zip_layout_problems(path: Path) -> list[str]:
    """Return how the zip's central directory and local headers disagree (empty: they agree).

    Checked for every entry: the local header is where the central directory says, names
    the same file with the same compression, CRC and sizes, and, where the central entry has
    no extra field, has none either (a reader that trusts the central directory, as
    ReplayWeb.page does, would otherwise read the entry's data from the wrong offset).
    """
    problems = []
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
            for info in zf.infolist():
                raw.seek(info.header_offset)
                head = raw.read(30)
                if len(head) != 30 or head[:4] != b"PK\x03\x04":
                    problems.append(f"{info.filename}: no local header at {info.header_offset}")
                    continue
                flags, method, _, _, crc, packed, size, name_len, extra_len = struct.unpack(
                    "<HHHHIIIHH", head[6:30])
                local_name = raw.read(name_len)
                if local_name != info.filename.encode("utf-8") and local_name != \
                        info.filename.encode("cp437", "replace"):
                    problems.append(f"{info.filename}: local header names {local_name!r}")
                if not info.extra and extra_len:
                    problems.append(f"{info.filename}: {extra_len} bytes of local extra field "
                                    "that the central directory lacks")
                if method != info.compress_type:
                    problems.append(f"{info.filename}: compression {method} in the local "
                                    f"header, {info.compress_type} in the central directory")
                central = (info.CRC, min(info.compress_size, 0xFFFFFFFF),
                           min(info.file_size, 0xFFFFFFFF))
                zip64_sizes = packed == size == 0xFFFFFFFF and extra_len  # sizes in the extra
                if not flags & 0x08 and not zip64_sizes and (crc, packed, size) != central:
                    problems.append(f"{info.filename}: CRC or sizes in the local header "
                                    "differ from the central directory")
    except (OSError, zipfile.BadZipFile) as exc:
        problems.append(f"not a readable zip: {exc}")
    return problems


def _entry(name: str, method: int) -> zipfile.ZipInfo:
    """Return a zip entry dated now with the given compression."""
    info = zipfile.ZipInfo(name, datetime.now(UTC).timetuple()[:6])
    info.compress_type = method
    return info


def _package_info(crawls: list[CrawlRow], title: str | None) -> dict[str, object]:
    """Return datapackage.json's fields other than resources."""
    first = crawls[0]
    seeds = first.settings.get("seeds") or []
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    span = first.crawl_id if len(crawls) == 1 else f"{first.crawl_id} to {crawls[-1].crawl_id}"
    info: dict[str, object] = {
        "profile": "data-package",
        "wacz_version": WACZ_VERSION,
        "title": title or f"{first.target} {span}",
        "description": f"Web archive of {first.target}: {len(crawls)} crawl(s), {span}",
        "created": now,
        "modified": now,
        "software": f"crawler/{__version__}",
    }
    if seeds:
        info["mainPageURL"] = seeds[0]
        info["mainPageDate"] = first.started
    return info


def _copy_originals(catalog: Catalog, crawls: list[CrawlRow],
                    work: Path) -> tuple[Path, list[IndexEntry]] | None:
    """Copy the records that revisits in ``crawls`` refer to, from crawls outside the
    package, into one WARC; return it and its index entries (None if none are needed)."""
    inside = [c.pk for c in crawls]
    marks = ",".join("?" * len(inside))
    rows = catalog.db.execute(
        "SELECT DISTINCT o.*, k.directory FROM captures r "
        "JOIN captures o ON o.id = r.refers_to JOIN crawls k ON k.id = o.crawl "
        f"WHERE r.crawl IN ({marks}) AND o.crawl NOT IN ({marks}) ORDER BY o.id",
        (*inside, *inside)).fetchall()
    if not rows:
        return None
    last = crawls[-1]
    return copy_records(catalog, rows, WarcSettings(
        directory=work, prefix=f"{last.target}-{last.crawl_id}-originals",
        warcinfo={"description": "records referred to by revisits in this package, copied "
                                 "unchanged from earlier crawls of the target",
                  "isPartOf": f"{last.target}/{last.crawl_id}"}))


def copy_records(catalog: Catalog, rows: Iterable[object],
                 settings: WarcSettings) -> tuple[Path, list[IndexEntry]]:
    """Copy catalogued records byte for byte (same gzip member, same WARC-Record-ID) into
    one new WARC after its warcinfo; return it and the copies' index entries. ``rows``:
    captures rows with their crawl's ``directory``."""
    writer = WarcWriter(settings)
    entries = writer.append_members(_members(catalog, rows))
    (path,) = writer.close()
    return path, entries


def _members(catalog: Catalog, rows: Iterable[object],
             ) -> Iterable[tuple[IndexEntry, bytes]]:
    """Yield each record's index entry (file and offset still to be set) and its bytes,
    after checking that the record is the one the catalog names and is undamaged."""
    for row in rows:
        r = dict(row)  # type: ignore[call-overload]
        source = catalog.resolve(r["directory"]) / "warc" / r["warc_file"]
        try:
            read_intact(source, r["warc_offset"], r["warc_length"],
                        record_id=r["record_id"], digest=r["digest"])
            member = read_member(source, r["warc_offset"], r["warc_length"])
        except (RecordUnreadable, OSError) as exc:
            raise OutputError(f"cannot package: a record of {r['url']} is missing or damaged "
                              f"({exc}); `crawler verify` tells what else is wrong") from exc
        kind = r["record_type"] or "response"
        status = 200 if kind == "revisit" and r["status"] == 304 else r["status"] or 0
        entry = IndexEntry(url=r["url"], timestamp=timestamp17_of(r["fetched_at"]),
                           mime=r["mime"] or "", status=status,
                           digest=r["digest"] or "", offset=0, length=len(member),
                           filename="", record_type=kind, record_id=r["record_id"] or "")
        yield entry, member
