"""Build an evidence package: one event (or a set of URLs) as a signed BagIt bag.

The bag (docs/evidence.md) holds in ``data/``: ``evidence.wacz`` (the records behind the
verdict, copied byte for byte from the crawls' WARCs, replayable in ReplayWeb.page and pywb,
signed as the WACZ signing specification says), ``finding.json`` (events, finding, names,
which record plays which role), ``history.json`` (the catalog's rows for the URLs),
``summary.html`` and ``README.txt`` (for a reader who is not technical), and the signer's
``public-key.pem``. Around it: the SHA-256 manifests, the manifest's signature and, if a
time-stamping authority was named, its RFC 3161 token over the manifest's digest.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawler import __version__
from crawler.archive.catalog import Catalog, now_iso
from crawler.archive.package import PAGES_HEADER, PageEntry
from crawler.archive.wacz import WACZ_VERSION, copy_records, write_zipnum, zip_package
from crawler.archive.warc import WarcSettings
from crawler.evidence import bag, summary, timestamp
from crawler.evidence.select import Selection, Subject, select
from crawler.evidence.signing import SigningKey, public_pem

SIGNATURE = "signature/manifest-sha256.txt.sig.json"  # the manifest's signature
TOKEN = "signature/manifest-sha256.txt.tsr"  # RFC 3161 token over the manifest's SHA-256
TSA_CA = "signature/tsa-ca.pem"  # the TSA's CA certificate as given when packaging


@dataclass
class Built:
    """What was packaged, for the command's summary."""

    path: Path
    selection: Selection
    records: int
    fingerprint: str | None = None
    stamp: timestamp.Stamp | None = None
    notes: list[str] = field(default_factory=list)


def default_path(root: Path, target: str, items: list[str]) -> Path:
    """Return where a package goes by default: beside the target's crawls."""
    label = "-".join(f"event{i}" if i.isdigit() else "urls" for i in items[:3])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return root / target / "evidence" / f"evidence-{target}-{label}-{stamp}.zip"


def build(catalog: Catalog, target: str, items: list[str], out: Path, *,
          key: SigningKey | None = None, tsa: str | None = None,
          tsa_ca: Path | None = None, operator: str | None = None) -> Built:
    """Write the package for ``items`` (event ids and/or URLs of ``target``) to ``out``:
    a zip (``.zip``) or a bag folder (any other name, which must not exist)."""
    selection = select(catalog, target, items)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; a package is never written over")
    with tempfile.TemporaryDirectory(prefix=".evidence-", dir=out.parent) as scratch:
        work = Path(scratch)
        root = work / "bag"
        data = root / "data"
        data.mkdir(parents=True)
        created = now_iso()
        _wacz(catalog, selection, data / "evidence.wacz", work, key, created)
        records = _record_list(selection)
        (data / "finding.json").write_text(json.dumps(
            _finding_doc(selection, records, created), indent=2, ensure_ascii=False) + "\n",
            "utf-8")
        (data / "history.json").write_text(json.dumps(
            {s.url: {"captures": s.history, "events": s.events, "open_state": s.state}
             for s in selection.subjects}, indent=2, ensure_ascii=False) + "\n", "utf-8")
        if key is not None:
            (data / "public-key.pem").write_bytes(public_pem(key.private.public_key()))
        context = summary.Context(target=target, created=created, subjects=selection.subjects,
                                  records=records, left_out=selection.left_out,
                                  fingerprint=key.fingerprint if key else None,
                                  tsa=tsa, software=f"crawler/{__version__}")
        (data / "summary.html").write_text(summary.html_page(context), "utf-8")
        (data / "README.txt").write_text(summary.text(context), "utf-8")
        bag.write_manifest(root, bag.payload_files(root), bag.MANIFEST)
        digest = bag.sha256_file(root / bag.MANIFEST)
        tags: list[str] = []
        built = Built(out, selection, len(records), notes=list(selection.left_out))
        if key is not None:
            (root / "signature").mkdir()
            signed = key.signed_data(f"sha256:{digest}", created, f"crawler/{__version__}")
            (root / SIGNATURE).write_text(json.dumps(signed, indent=2) + "\n", "utf-8")
            tags.append(SIGNATURE)
            built.fingerprint = key.fingerprint
        if tsa is not None:
            (root / "signature").mkdir(exist_ok=True)
            reply = timestamp.request(digest, tsa)
            (root / TOKEN).write_bytes(reply)
            built.stamp = timestamp.read(reply)
            tags.append(TOKEN)
            if tsa_ca is not None:
                shutil.copyfile(tsa_ca, root / TSA_CA)
                tags.append(TSA_CA)
        bag.finish(root, _bag_info(selection, created, operator, built), tags)
        if out.suffix == ".zip":
            bag.zip_bag(root, out)
        else:
            os.replace(root, out)
    return built


def _bag_info(selection: Selection, created: str, operator: str | None,
              built: Built) -> list[tuple[str, str]]:
    fields = [("Bag-Software-Agent", f"crawler/{__version__}"),
              ("Bagging-Date", created[:10]),
              ("Bagging-Time", created),
              ("External-Description",
               f"Evidence of what happened to {len(selection.subjects)} URL(s) of target "
               f"{selection.target}: web archive records (data/evidence.wacz), the finding "
               "(data/finding.json), catalog history (data/history.json), and a summary "
               "(data/summary.html, data/README.txt)")]
    fields += [("External-Identifier", s.url) for s in selection.subjects]
    if operator:
        fields.append(("Source-Organization", operator))
    if built.fingerprint:
        fields.append(("Signing-Key-Fingerprint-SHA256", built.fingerprint))
    return fields


def _record_list(selection: Selection) -> list[dict[str, Any]]:
    """Return the packaged records with their roles, oldest first."""
    listed = []
    for row, role in sorted(selection.records.values(), key=lambda item: item[0]["id"]):
        listed.append({"role": role, "url": row["url"], "fetched_at": row["fetched_at"],
                       "status": row["status"], "failure": row["failure"],
                       "record_type": row["record_type"], "record_id": row["record_id"],
                       "payload_digest": row["digest"], "crawl": row["crawl_id"],
                       "source_warc": row["warc_file"], "source_offset": row["warc_offset"],
                       "detail": row["detail"]})
    return listed


def _finding_doc(selection: Selection, records: list[dict[str, Any]],
                 created: str) -> dict[str, Any]:
    return {"schema": "crawler-evidence/1", "software": f"crawler/{__version__}",
            "created": created, "target": selection.target,
            "subjects": [_subject_doc(s) for s in selection.subjects],
            "records": records, "left_out": selection.left_out}


def _subject_doc(s: Subject) -> dict[str, Any]:
    def capture(row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        return {k: row[k] for k in ("url", "fetched_at", "status", "failure", "record_type",
                                    "record_id", "digest", "crawl_id", "detail")}
    return {"url": s.url, "key": s.key, "title": s.names.get("title"),
            "headline": s.names.get("headline"), "crawl": s.crawl_id,
            "events": s.events, "open_state": s.state, "finding": s.finding,
            "before": capture(s.before), "after": capture(s.after)}


def _wacz(catalog: Catalog, selection: Selection, path: Path, work: Path,
          key: SigningKey | None, created: str) -> None:
    """Write the WACZ of the selected records (one WARC of byte-for-byte copies)."""
    rows = [row for row, _ in sorted(selection.records.values(), key=lambda r: r[0]["id"])]
    if not rows:
        raise FileNotFoundError("no record of these URLs is in a WARC: nothing to package")
    warcs = work / "warc"
    warcs.mkdir()
    warc, entries = copy_records(catalog, rows, WarcSettings(
        directory=warcs, prefix=f"evidence-{selection.target}",
        warcinfo={"description": "evidence package: the records behind a takedown finding, "
                                 "copied unchanged from the crawls' WARCs",
                  "isPartOf": selection.target}))
    lines = sorted(e.cdxj() for e in entries if e.record_type in ("response", "revisit"))
    blocks, idx = work / "index.cdx.gz", work / "index.idx"
    write_zipnum(lines, blocks, idx)
    pages = work / "pages.jsonl"
    with open(pages, "w", encoding="utf-8") as out:
        out.write(json.dumps(PAGES_HEADER) + "\n")
        for subject in selection.subjects:
            for label, row in (("BEFORE", subject.before), ("AFTER", subject.after)):
                if row is None or row["record_type"] not in ("response", "revisit"):
                    continue
                name = subject.names.get("headline") or subject.names.get("title") or ""
                started = datetime.strptime(row["fetched_at"], "%Y-%m-%dT%H:%M:%S.%fZ"
                                            ).replace(tzinfo=UTC)
                status = 200 if row["record_type"] == "revisit" and row["status"] == 304 \
                    else row["status"] or 0
                title = f"{label} ({status}, {row['fetched_at'][:19]} UTC): {name}".rstrip(": ")
                out.write(PageEntry(row["url"], started, title, status).to_json() + "\n")
    first = selection.subjects[0]
    info: dict[str, object] = {
        "profile": "data-package", "wacz_version": WACZ_VERSION,
        "title": f"Evidence: {selection.target}: "
                 + ", ".join(s.names.get("title") or s.url for s in selection.subjects)[:200],
        "description": "Records behind a takedown finding: the last good capture, the "
                       "capture that showed the change, re-checks and probes",
        "created": created, "modified": created, "software": f"crawler/{__version__}",
        "mainPageURL": first.url}
    if first.before is not None:
        info["mainPageDate"] = first.before["fetched_at"]
    members = [(warc, f"archive/{warc.name}", zipfile.ZIP_STORED),
               (blocks, "indexes/index.cdx.gz", zipfile.ZIP_STORED),
               (idx, "indexes/index.idx", zipfile.ZIP_DEFLATED),
               (pages, "pages/pages.jsonl", zipfile.ZIP_DEFLATED)]

    def sign(digest: str) -> dict[str, str]:
        assert key is not None
        return key.signed_data(digest, created, f"crawler/{__version__}")

    zip_package(path, members, info, sign if key is not None else None)
