"""Check an evidence package and say plainly what it proves and what it does not.

Checks, in order: the bag (every file's SHA-256 against the manifests, nothing added, the
payload size), the WACZ inside (its own file hashes, the digest of ``datapackage.json``, its
signature under the public key it carries, and that key being the package's), the manifest's
signature under the same key, and the RFC 3161 token (over the manifest's digest, signed under
the authority the user trusts). Read-only: a zip is unpacked into a temporary folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from crawler.evidence import bag, signing, timestamp
from crawler.evidence.package import SIGNATURE, TOKEN, TSA_CA


@dataclass
class Verdict:
    """The checks' results: each line is (passed, what was checked and what was found)."""

    checks: list[tuple[bool, str]] = field(default_factory=list)
    proves: list[str] = field(default_factory=list)
    not_proven: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(passed for passed, _ in self.checks)

    def check(self, passed: bool, text: str) -> bool:
        self.checks.append((passed, text))
        return passed


def verify(path: Path, tsa_ca: Path | None = None) -> Verdict:
    """Return the verdict on a package (a zip, or a bag folder)."""
    verdict = Verdict()
    with tempfile.TemporaryDirectory(prefix="crawler-evidence-") as scratch:
        if path.is_dir():
            root = path
        else:
            try:
                root = bag.unzip_bag(path, Path(scratch))
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                verdict.check(False, f"{path}: not a readable zipped bag ({exc})")
                return verdict
        _check(root, verdict, tsa_ca)
    return verdict


def _check(root: Path, verdict: Verdict, tsa_ca: Path | None) -> None:
    found = bag.problems(root)
    intact = verdict.check(not found, "every file matches manifest-sha256.txt and "
                           "tagmanifest-sha256.txt; nothing added or missing" if not found else
                           "the package was changed or damaged: " + "; ".join(found[:10])
                           + (f"; and {len(found) - 10} more" if len(found) > 10 else ""))
    key_b64 = _package_key(root)
    wacz_key = _wacz(root / "data" / "evidence.wacz", verdict, key_b64)
    manifest_digest = bag.sha256_file(root / bag.MANIFEST) if (root / bag.MANIFEST).is_file() \
        else ""
    signed = _manifest_signature(root, verdict, manifest_digest, key_b64)
    if intact:
        verdict.proves.append("Every file is exactly as it was when the package was made "
                              "(or when its manifest was last written; see the signature).")
    if signed and wacz_key:
        fingerprint = signing.fingerprint(base64.b64decode(key_b64 or ""))
        verdict.proves.append("The package was signed by whoever holds the private key with "
                              f"fingerprint {fingerprint}.")
        verdict.not_proven.append("Who holds that key: compare the fingerprint with one the "
                                  "archive published elsewhere.")
    elif key_b64 is None:
        verdict.not_proven.append("Who made the package: it is not signed, so anyone could "
                                  "have rebuilt it with matching hashes.")
    _timestamp(root, verdict, manifest_digest, tsa_ca)
    verdict.not_proven.append("That the website itself sent these bytes: HTTP responses carry "
                              "no signature of the server; the records are the crawler "
                              "operator's account of what it received.")


def _package_key(root: Path) -> str | None:
    """Return the base64 SubjectPublicKeyInfo of ``data/public-key.pem`` (None if absent)."""
    pem = root / "data" / "public-key.pem"
    if not pem.is_file():
        return None
    try:
        key = serialization.load_pem_public_key(pem.read_bytes())
    except ValueError:
        return None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return None
    return base64.b64encode(signing.public_der(key)).decode()


def _wacz(path: Path, verdict: Verdict, key_b64: str | None) -> bool:
    """Check the WACZ's hashes and signature; return True if it is signed by the package key."""
    if not path.is_file():
        verdict.check(False, "data/evidence.wacz is missing")
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            package = zf.read("datapackage.json")
            digest_doc = json.loads(zf.read("datapackage-digest.json"))
            resources = json.loads(package)["resources"]
            bad = [r["path"] for r in resources
                   if "sha256:" + hashlib.sha256(zf.read(r["path"])).hexdigest() != r["hash"]]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        verdict.check(False, f"evidence.wacz is not a readable WACZ ({exc})")
        return False
    verdict.check(not bad, "evidence.wacz: every file matches datapackage.json" if not bad
                  else f"evidence.wacz: changed files: {', '.join(bad)}")
    own = "sha256:" + hashlib.sha256(package).hexdigest()
    verdict.check(digest_doc.get("hash") == own, "evidence.wacz: datapackage-digest.json "
                  "matches datapackage.json" if digest_doc.get("hash") == own else
                  "evidence.wacz: datapackage.json was changed after its digest was taken")
    signed = digest_doc.get("signedData")
    if not signed:
        if key_b64 is not None:
            verdict.check(False, "evidence.wacz carries no signature, but the package has a "
                                 "signing key: its WACZ was replaced")
        return False
    good = signed.get("hash") == own and signing.verify(
        own, str(signed.get("signature", "")), str(signed.get("publicKey", "")))
    verdict.check(good, "evidence.wacz: the WACZ signature (WACZ signing specification, "
                        "anonymous form) is valid" if good else
                  "evidence.wacz: its signature does not match its contents")
    same = signed.get("publicKey") == key_b64
    verdict.check(same, "evidence.wacz is signed with the package's key (data/public-key.pem)"
                  if same else "evidence.wacz is signed with another key than "
                               "data/public-key.pem")
    return good and same


def _manifest_signature(root: Path, verdict: Verdict, digest: str,
                        key_b64: str | None) -> bool:
    path = root / SIGNATURE
    if not path.is_file():
        if key_b64 is not None:
            return verdict.check(False, "the package has a public key but no manifest "
                                        "signature: it was removed")
        verdict.check(True, "not signed (made without a signing key): nothing to check")
        return False
    try:
        signed = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        return verdict.check(False, f"{SIGNATURE} is unreadable ({exc})")
    message = f"sha256:{digest}"
    good = signed.get("hash") == message and signing.verify(
        message, str(signed.get("signature", "")), str(signed.get("publicKey", "")))
    verdict.check(good, "the manifest's signature is valid" if good else
                  "the manifest's signature does not match the manifest: the package changed "
                  "after it was signed")
    same = signed.get("publicKey") == key_b64
    verdict.check(same, "the manifest is signed with the package's key" if same else
                  "the manifest is signed with another key than data/public-key.pem")
    return good and same


def _timestamp(root: Path, verdict: Verdict, digest: str, tsa_ca: Path | None) -> None:
    token = root / TOKEN
    if not token.is_file():
        verdict.not_proven.append("When the package was made: it has no trusted time-stamp; "
                                  "its dates come from the crawler's own clock.")
        return
    try:
        stamp = timestamp.read(token.read_bytes())
    except Exception as exc:  # openssl missing or the token unreadable: say which
        verdict.check(False, f"the time-stamp token cannot be read: {exc}")
        return
    if not verdict.check(stamp.digest == digest, "the time-stamp covers this manifest"
                         if stamp.digest == digest else "the time-stamp covers another "
                         "manifest than this one"):
        return
    anchor = tsa_ca or (root / TSA_CA if (root / TSA_CA).is_file() else None)
    if anchor is None:
        verdict.check(False, "the time-stamp's signature cannot be checked: give the "
                             "authority's CA certificate (--tsa-ca)")
        return
    why = timestamp.check(token, digest, anchor)
    trusted = tsa_ca is not None
    if verdict.check(why is None, f"the time-stamp is valid: {stamp.time} by "
                     f"{stamp.tsa or 'the authority'} (serial {stamp.serial})" if why is None
                     else f"the time-stamp is not valid: {why}"):
        if trusted:
            verdict.proves.append(f"The manifest, and so every file it lists, existed at "
                                  f"{stamp.time}, as certified by {stamp.tsa or 'the TSA'} "
                                  f"under the CA certificate you gave ({tsa_ca}).")
        else:
            verdict.not_proven.append(
                f"That the time-stamp ({stamp.time}) comes from a trusted authority: it was "
                "checked against the CA certificate inside the package, which only shows it "
                "is consistent. Give the authority's CA certificate with --tsa-ca.")
