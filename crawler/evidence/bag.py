"""BagIt (RFC 8493) bags: write one from a folder of payload files, check one.

A bag is a folder: ``bagit.txt`` (version and encoding), ``data/`` (the payload),
``manifest-sha256.txt`` (a SHA-256 line for every payload file), ``bag-info.txt`` (who, when,
``Payload-Oxum`` = bytes.files) and ``tagmanifest-sha256.txt`` (SHA-256 of the other tag
files). Serialized, it is a zip holding the bag under one top-level folder named like the
zip (RFC 8493 §4.2). Institutions ingest bags as they are; the checks below are the ones
RFC 8493 §3 names for a valid bag.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

MANIFEST = "manifest-sha256.txt"
TAGMANIFEST = "tagmanifest-sha256.txt"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _quote(name: str) -> str:
    """Encode a path for a manifest line (RFC 8493 §2.1.3: CR, LF and % percent-encoded)."""
    return name.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _unquote(name: str) -> str:
    return name.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")


def payload_files(bag: Path) -> list[str]:
    """Return the bag's payload files as bag-relative POSIX paths (``data/...``), sorted."""
    return sorted(p.relative_to(bag).as_posix() for p in (bag / "data").rglob("*")
                  if p.is_file())


def write_manifest(bag: Path, names: Iterable[str], manifest: str) -> None:
    lines = [f"{sha256_file(bag / name)}  {_quote(name)}\n" for name in names]
    (bag / manifest).write_text("".join(lines), "utf-8")


def finish(bag: Path, info: list[tuple[str, str]], extra_tags: Iterable[str] = ()) -> None:
    """Write the bag's tag files around its ``data/`` folder. ``info``: bag-info.txt fields
    (Payload-Oxum is added); ``extra_tags``: other tag files already written (covered by
    the tag manifest)."""
    files = payload_files(bag)
    (bag / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
                                   "utf-8")
    if not (bag / MANIFEST).exists():
        write_manifest(bag, files, MANIFEST)
    size = sum((bag / f).stat().st_size for f in files)
    fields = [*info, ("Payload-Oxum", f"{size}.{len(files)}")]
    (bag / "bag-info.txt").write_text(
        "".join(f"{k}: {' '.join(str(v).split())}\n" for k, v in fields), "utf-8")
    tags = ["bagit.txt", "bag-info.txt", MANIFEST, *extra_tags]
    write_manifest(bag, tags, TAGMANIFEST)


def problems(bag: Path) -> list[str]:
    """Return why ``bag`` is not a valid, complete bag (empty: it is)."""
    found: list[str] = []
    if not (bag / "bagit.txt").is_file():
        return [f"{bag}: no bagit.txt: not a bag"]
    for manifest in (MANIFEST, TAGMANIFEST):
        path = bag / manifest
        if not path.is_file():
            found.append(f"{manifest} is missing")
            continue
        listed = set()
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            digest, _, name = line.partition("  ")
            name = _unquote(name)
            listed.add(name)
            target = bag / name
            if not name or ".." in Path(name).parts or Path(name).is_absolute():
                found.append(f"{manifest} line {number}: a path outside the bag: {name!r}")
            elif not target.is_file():
                found.append(f"{name}: listed in {manifest}, missing")
            elif sha256_file(target) != digest.lower():
                found.append(f"{name}: its SHA-256 differs from {manifest}: the file changed")
        if manifest == MANIFEST:
            for name in payload_files(bag):
                if name not in listed:
                    found.append(f"{name}: in data/ but not in {MANIFEST} (added later?)")
    oxum = _info(bag).get("Payload-Oxum")
    if oxum:
        files = payload_files(bag)
        actual = f"{sum((bag / f).stat().st_size for f in files)}.{len(files)}"
        if actual != oxum:
            found.append(f"Payload-Oxum says {oxum}, the payload is {actual} (bytes.files)")
    return found


def _info(bag: Path) -> dict[str, str]:
    path = bag / "bag-info.txt"
    if not path.is_file():
        return {}
    fields = {}
    for line in path.read_text("utf-8").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def info(bag: Path) -> dict[str, str]:
    """Return bag-info.txt's fields."""
    return _info(bag)


def zip_bag(bag: Path, path: Path) -> Path:
    """Write the bag as a zip holding it under one folder named like the zip; atomic."""
    top = path.name.removesuffix(".zip")
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for file in sorted(p for p in bag.rglob("*") if p.is_file()):
            name = f"{top}/{file.relative_to(bag).as_posix()}"
            method = zipfile.ZIP_STORED if file.suffix == ".wacz" else zipfile.ZIP_DEFLATED
            zf.write(file, name, compress_type=method)
    os.replace(tmp, path)
    return path


def unzip_bag(path: Path, into: Path) -> Path:
    """Unpack a zipped bag into ``into``; return the bag's folder (refuses unsafe names)."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        tops = {n.split("/", 1)[0] for n in names}
        for name in names:
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"{path}: unsafe path in the zip: {name!r}")
        if len(tops) != 1:
            raise ValueError(f"{path}: a zipped bag holds one top-level folder; this holds "
                             f"{len(tops)}")
        zf.extractall(into)
    return into / tops.pop()
