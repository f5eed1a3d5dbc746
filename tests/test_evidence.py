"""Evidence packages (issue 19): `crawler evidence` packages a takedown event as a signed
BagIt bag with a WACZ of the records behind it; `crawler evidence verify` checks it.

The archives are real: `crawler demo` (a removal, a legal block, a partial removal of names)
and a crawl of the sample site whose every page became a block page, both run through the
command line from a directory other than the archive root. The packages are opened in pywb
and in ReplayWeb.page (headless Chromium), validated with `wacz validate` and with the
Library of Congress's bagit validator, time-stamped by an `openssl ts` authority on
127.0.0.1, and tampered with byte by byte.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bagit
import pytest
from bs4 import BeautifulSoup
from conftest import free_port, pywb_with_wacz
from test_takedown import settings_for
from viewers import ReplayWebPage

from crawler.archive.warc import timestamp17_of
from crawler.demo.sample_site import SampleSite, SampleSiteContent
from crawler.jobs.pipeline import run_target

CLI = [sys.executable, "-m", "crawler"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


@dataclass
class Archive:
    """An archive root, a working directory elsewhere, and a signing key."""

    root: Path
    cwd: Path
    key: Path
    target: str

    def events(self) -> dict[str, int]:
        """Return class -> the id of its first non-host event."""
        db = sqlite3.connect(self.root / "catalog.sqlite3")
        try:
            rows = db.execute("SELECT class, min(id) FROM events WHERE key NOT LIKE 'host:%' "
                              "GROUP BY class").fetchall()
        finally:
            db.close()
        return dict(rows)

    def make(self, out: Path, *items: str, extra: tuple[str, ...] = ()
             ) -> subprocess.CompletedProcess[str]:
        return run("evidence", self.target, *items, "--output", str(self.root), "--out",
                   str(out), *extra, cwd=self.cwd)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key pair made by `crawler evidence keygen`."""
    home = tmp_path_factory.mktemp("keys")
    done = run("evidence", "keygen", "--key", str(home / "k.pem"), cwd=home)
    assert done.returncode == 0, done.stderr
    assert "fingerprint (SHA-256):" in done.stdout
    return home / "k.pem"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, keys: Path) -> Archive:
    """`crawler demo`, run from another directory: its second crawl confirms a legal block,
    two removals and a partial removal of names from the index."""
    home = tmp_path_factory.mktemp("demo")
    (home / "elsewhere").mkdir()
    done = run("demo", "--output", str(home / "archive"), "--quiet", cwd=home / "elsewhere")
    assert done.returncode == 0, done.stdout + done.stderr
    return Archive(home / "archive", home / "elsewhere", keys, "demo")


@pytest.fixture(scope="module")
def blocked(tmp_path_factory: pytest.TempPathFactory, keys: Path) -> Archive:
    """The sample site crawled, then every page of it replaced by a block page."""
    home = tmp_path_factory.mktemp("blocked")
    (home / "elsewhere").mkdir()
    with SampleSite() as site:
        asyncio.run(run_target(settings_for(site, home / "archive")))
        site.content.takedown.block_all = True
        second = asyncio.run(run_target(settings_for(site, home / "archive")))
    assert second.report is not None
    assert any(f["class"] == "block-page" for f in second.report["findings"])
    return Archive(home / "archive", home / "elsewhere", keys, "test")


def unpack(package: Path, into: Path) -> Path:
    with zipfile.ZipFile(package) as zf:
        zf.extractall(into)
    (bag_dir,) = into.iterdir()
    return bag_dir


def main_text(body: bytes) -> str:
    soup = BeautifulSoup(body, "lxml")
    part = soup.find("main") or soup.body or soup
    return " ".join(part.get_text(" ").split())


def verify(package: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("evidence", "verify", str(package), *extra, cwd=package.parent)


def test_packages_of_a_removal_a_legal_block_and_a_partial_removal(
        demo: Archive, tmp_path: Path) -> None:
    events = demo.events()
    names = SampleSiteContent()
    for cls in ("removed", "legal-block", "partial-removal"):
        package = tmp_path / f"{cls}.zip"
        made = demo.make(package, str(events[cls]), extra=("--key", str(demo.key),
                                                           "--operator", "Test Archive"))
        assert made.returncode == 0, made.stderr
        assert "signed, key fingerprint" in made.stdout and str(package) in made.stdout
        checked = verify(package)
        assert checked.returncode == 0, checked.stdout
        assert checked.stdout.rstrip().endswith("VALID") and "FAIL" not in checked.stdout
        bag_dir = unpack(package, tmp_path / cls)
        bagit.Bag(str(bag_dir)).validate()  # the Library of Congress's validator agrees
        wacz = subprocess.run([sys.executable, "-m", "wacz", "validate", "-f",
                               str(bag_dir / "data" / "evidence.wacz")],
                              capture_output=True, text=True, check=False)
        assert wacz.returncode == 0, wacz.stdout + wacz.stderr
        doc = json.loads((bag_dir / "data" / "finding.json").read_text("utf-8"))
        (subject,) = doc["subjects"]
        assert subject["events"][-1]["class"] == cls
        assert subject["events"][-1]["state"] == "confirmed"
        roles = [r["role"] for r in doc["records"]]
        assert "before: the last good capture" in roles
        assert "after: the crawl's capture" in roles
        assert any(role.startswith("re-check") for role in roles)  # what confirmed it
        history = json.loads((bag_dir / "data" / "history.json").read_text("utf-8"))
        assert len(history[subject["url"]]["captures"]) >= 3
        readme = (bag_dir / "data" / "README.txt").read_text("utf-8")
        assert f"What happened: {cls} (confirmed)" in readme
        assert "Source-Organization: Test Archive" in (bag_dir / "bag-info.txt").read_text(
            "utf-8")
        if cls == "removed":
            person = names.name(3)
            assert subject["headline"].startswith(person) and person in readme
            assert subject["after"]["status"] == 404 and subject["before"]["status"] == 200
        if cls == "legal-block":
            assert subject["after"]["status"] == 451
        if cls == "partial-removal":
            gone = subject["finding"]["removed_as_written"]
            assert gone == [names.name(7), names.name(8)]
            assert all(name in readme for name in gone)


def test_any_changed_byte_makes_verification_fail(demo: Archive, tmp_path: Path) -> None:
    package = tmp_path / "p.zip"
    assert demo.make(package, str(demo.events()["removed"]),
                     extra=("--key", str(demo.key))).returncode == 0
    original = unpack(package, tmp_path / "original")
    assert verify(original).returncode == 0  # a bag folder is checked as the zip is
    files = ["data/evidence.wacz", "data/summary.html", "data/finding.json",
             "data/history.json", "data/public-key.pem", "bag-info.txt",
             "manifest-sha256.txt", "signature/manifest-sha256.txt.sig.json"]
    for name in files:
        copy = tmp_path / "copies" / name.replace("/", "_")
        shutil.copytree(original, copy)
        target = copy / name
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
        checked = verify(copy)
        assert checked.returncode == 7, (name, checked.stdout)
        assert "NOT VALID" in checked.stdout and "FAIL" in checked.stdout, name
    # An edit with every hash recomputed: the manifest's signature no longer matches.
    forged = tmp_path / "forged"
    shutil.copytree(original, forged)
    summary = forged / "data" / "summary.html"
    summary.write_text(summary.read_text("utf-8").replace("removed", "edited"), "utf-8")
    bag = bagit.Bag(str(forged))
    bag.save(manifests=True)  # bagit-python rewrites manifest and tag manifest
    assert bagit.Bag(str(forged)).is_valid()  # a plain bag check is fooled...
    checked = verify(forged)
    assert checked.returncode == 7  # ...the signature is not
    assert "the manifest's signature does not match" in checked.stdout
    # A file added to the payload is reported.
    added = tmp_path / "added"
    shutil.copytree(original, added)
    (added / "data" / "note.txt").write_text("added later", "utf-8")
    checked = verify(added)
    assert checked.returncode == 7 and "not in manifest-sha256.txt" in checked.stdout
    # And the zip itself, damaged: a clear failure, never a traceback.
    damaged = tmp_path / "damaged.zip"
    raw = bytearray(package.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    checked = verify(damaged)
    assert checked.returncode == 7 and "Traceback" not in checked.stderr


def test_an_unsigned_package_says_what_it_cannot_prove(demo: Archive, tmp_path: Path) -> None:
    package = tmp_path / "unsigned.zip"
    made = demo.make(package, str(demo.events()["removed"]), extra=("--unsigned",))
    assert made.returncode == 0 and "NOT signed" in made.stdout
    checked = verify(package)
    assert checked.returncode == 0
    assert "it is not signed, so anyone could have rebuilt it" in checked.stdout
    assert "no trusted time-stamp" in checked.stdout
    readme = (unpack(package, tmp_path / "u") / "data" / "README.txt").read_text("utf-8")
    assert "NOT signed" in readme and "NO trusted time-stamp" in readme


def test_bad_requests_get_clear_errors_and_write_nothing(demo: Archive, tmp_path: Path) -> None:
    out = tmp_path / "x.zip"
    for items, said in ((["99999"], "no such event"), (["http://nowhere.test/"],
                                                      "never captured")):
        done = demo.make(out, *items)
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert not out.exists() and "Traceback" not in done.stderr
    db = sqlite3.connect(demo.root / "catalog.sqlite3")
    host_events = [r[0] for r in db.execute("SELECT id FROM events WHERE key LIKE 'host:%'")]
    db.close()
    for event in host_events[:1]:
        done = demo.make(out, str(event))
        assert done.returncode == 2 and "whole host" in done.stderr
    again = run("evidence", "keygen", "--key", str(demo.key), cwd=tmp_path)
    assert again.returncode == 3 and "not overwritten" in again.stderr
    assert oct(demo.key.stat().st_mode & 0o777) == "0o600"
    # a URL that never changed packages too, and says there was no event
    home = demo.make(out, f"{_seed(demo)}about.html", extra=("--unsigned",))
    assert home.returncode == 0, home.stderr
    readme = (unpack(out, tmp_path / "h") / "data" / "README.txt").read_text("utf-8")
    assert "no event" in readme
    before = out.read_bytes()
    again = demo.make(out, f"{_seed(demo)}about.html", extra=("--unsigned",))
    assert again.returncode == 3 and "never written over" in again.stderr
    assert out.read_bytes() == before  # an existing package is kept as it was


# --- RFC 3161, against an `openssl ts` authority on 127.0.0.1 -------------------------------

_TSA_CONFIG = """[ tsa ]
default_tsa = tsa1
[ tsa1 ]
serial = {dir}/serial
crypto_device = builtin
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5
digests = sha256
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
certs = {dir}/tsa.crt
"""


def _ca(home: Path, name: str) -> Path:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(home / f"{name}.key"), "-out", str(home / f"{name}.pem"), "-subj",
                    f"/CN={name}", "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True)
    return home / f"{name}.pem"


@dataclass
class Tsa:
    url: str
    ca: Path
    other_ca: Path


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tsa]:
    """A time-stamping authority: a CA, a TSA certificate it issued, and `openssl ts -reply`
    behind an HTTP server on 127.0.0.1."""
    home = tmp_path_factory.mktemp("tsa")
    ca = _ca(home, "Test TSA CA")
    other = _ca(home, "Another CA")
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(home / "tsa.key"), "-out", str(home / "tsa.csr"), "-subj",
                    "/CN=Test Time Stamping Authority"], check=True, capture_output=True)
    (home / "ext.cnf").write_text("extendedKeyUsage=critical,timeStamping\n"
                                  "keyUsage=critical,digitalSignature\n"
                                  "basicConstraints=CA:FALSE\n", "utf-8")
    subprocess.run(["openssl", "x509", "-req", "-in", str(home / "tsa.csr"), "-CA", str(ca),
                    "-CAkey", str(home / "Test TSA CA.key"), "-CAcreateserial", "-out",
                    str(home / "tsa.crt"), "-days", "2", "-extfile", str(home / "ext.cnf")],
                   check=True, capture_output=True)
    (home / "serial").write_text("01\n", "utf-8")
    (home / "tsa.cnf").write_text(_TSA_CONFIG.format(dir=home), "utf-8")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = self.rfile.read(int(self.headers["Content-Length"]))
            with tempfile.TemporaryDirectory() as scratch:
                (Path(scratch) / "q.tsq").write_bytes(query)
                subprocess.run(["openssl", "ts", "-reply", "-queryfile",
                                str(Path(scratch) / "q.tsq"), "-signer", str(home / "tsa.crt"),
                                "-inkey", str(home / "tsa.key"), "-config",
                                str(home / "tsa.cnf"), "-out", str(Path(scratch) / "r.tsr")],
                               check=True, capture_output=True)
                reply = (Path(scratch) / "r.tsr").read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Tsa(f"http://127.0.0.1:{server.server_address[1]}/tsa", ca, other)
    server.shutdown()
    server.server_close()


def test_an_rfc3161_time_stamp_from_a_local_authority(demo: Archive, tsa: Tsa,
                                                      tmp_path: Path) -> None:
    package = tmp_path / "stamped.zip"
    made = demo.make(package, str(demo.events()["removed"]),
                     extra=("--key", str(demo.key), "--tsa", tsa.url, "--tsa-ca", str(tsa.ca)))
    assert made.returncode == 0, made.stderr
    assert "time-stamped" in made.stdout
    trusted = verify(package, "--tsa-ca", str(tsa.ca))
    assert trusted.returncode == 0, trusted.stdout
    assert "the time-stamp is valid" in trusted.stdout and "existed at" in trusted.stdout
    inside = verify(package)  # only the CA kept in the package: consistent, not trusted
    assert inside.returncode == 0
    assert "which only shows it is consistent" in inside.stdout
    assert "existed at" not in inside.stdout
    other = verify(package, "--tsa-ca", str(tsa.other_ca))
    assert other.returncode == 7 and "the time-stamp is not valid" in other.stdout
    bag_dir = unpack(package, tmp_path / "s")
    token = bag_dir / "signature" / "manifest-sha256.txt.tsr"
    data = bytearray(token.read_bytes())
    data[-40] ^= 0x01
    token.write_bytes(bytes(data))
    assert verify(bag_dir, "--tsa-ca", str(tsa.ca)).returncode == 7
    # An authority that does not answer: a clear error, no package.
    dead = tmp_path / "dead.zip"
    done = demo.make(dead, str(demo.events()["removed"]),
                     extra=("--tsa", f"http://127.0.0.1:{free_port()}/tsa"))
    assert done.returncode != 0 and "did not answer" in done.stderr
    assert not dead.exists() and "Traceback" not in done.stderr


# --- the viewers ----------------------------------------------------------------------------


def _before_after(bag_dir: Path) -> list[tuple[str, str, int, str]]:
    """Return (url, 17-digit timestamp, status, text the page shows) for the package's
    before and after captures, the text read from the package's own WARC."""
    doc = json.loads((bag_dir / "data" / "finding.json").read_text("utf-8"))
    (subject,) = doc["subjects"]
    with zipfile.ZipFile(bag_dir / "data" / "evidence.wacz") as zf:
        (warc_name,) = [n for n in zf.namelist() if n.startswith("archive/")]
        warc = bag_dir / "w.warc.gz"
        warc.write_bytes(zf.read(warc_name))
    from warcio.archiveiterator import ArchiveIterator
    payloads: dict[str, bytes] = {}
    refers: dict[str, str] = {}  # a revisit's record ID -> its original's
    with open(warc, "rb") as stream:
        for record in ArchiveIterator(stream):
            rid = record.rec_headers.get_header("WARC-Record-ID")
            if record.rec_type == "response":
                payloads[rid] = record.content_stream().read()
            elif record.rec_type == "revisit":
                refers[rid] = record.rec_headers.get_header("WARC-Refers-To")
    warc.unlink()
    payloads.update({rid: payloads[original] for rid, original in refers.items()})
    shown = []
    for side in ("before", "after"):
        capture = subject[side]
        shown.append((capture["url"], timestamp17_of(capture["fetched_at"]),
                      capture["status"], main_text(payloads[capture["record_id"]])))
    return shown


@pytest.mark.pywb
def test_packages_replay_before_and_after_in_pywb_and_replaywebpage(
        demo: Archive, blocked: Archive, tmp_path: Path) -> None:
    packages = []
    for archive, items in ((demo, [str(demo.events()["removed"])]),
                           (demo, [str(demo.events()["partial-removal"])]),
                           (blocked, [f"{_seed(blocked)}persons/5.html"])):
        package = tmp_path / f"p{len(packages)}.zip"
        made = archive.make(package, *items, extra=("--key", str(archive.key)))
        assert made.returncode == 0, made.stderr
        bag_dir = unpack(package, tmp_path / f"u{len(packages)}")
        packages.append((bag_dir, _before_after(bag_dir)))
    person = SampleSiteContent().name(3)
    assert person in packages[0][1][0][3]  # before: the person's page
    assert packages[0][1][1][2] == 404
    assert SampleSiteContent().name(7) in packages[1][1][0][3]  # the list named them
    assert SampleSiteContent().name(7) not in packages[1][1][1][3]  # and no longer does
    assert "Доступ ограничен" in packages[2][1][1][3]  # after: the block page
    assert "Доступ ограничен" not in packages[2][1][0][3]
    assert all(text for _, views in packages for *_, text in views)  # something to see
    public_key = json.loads(zipfile.ZipFile(packages[0][0] / "data" / "evidence.wacz").read(
        "datapackage-digest.json"))["signedData"]["publicKey"]
    forged = tmp_path / "forged.wacz"  # the first package's WACZ, its signature changed
    _with_signature_changed(packages[0][0] / "data" / "evidence.wacz", forged)
    with ReplayWebPage(tmp_path / "rwp") as rwp:
        with rwp.session() as session:
            for n, (bag_dir, views) in enumerate(packages):
                source = rwp.add(bag_dir / "data" / "evidence.wacz", f"evidence-{n}.wacz")
                for url, ts, _status, text in views:
                    view = session.view(source, url, ts)
                    shown = " ".join(view.text.split())
                    assert not view.not_found and text[:80] in shown, (n, url, ts,
                                                                       shown[:300])
            # ReplayWeb.page checked each package's signature (WebCrypto) and found it good
            checked = _signature_checks(session.page)
            assert len(checked) == 3 and all(c["matched"] is True for c in checked), checked
            assert all(c["publicKey"] == public_key for c in checked)
        with rwp.session() as session:  # a fresh browser: the forged signature is caught
            url, ts, _status, _text = packages[0][1][0]
            session.view(rwp.add(forged), url, ts)
            (check,) = _signature_checks(session.page)
            assert check["matched"] is False, check
    for n, (bag_dir, views) in enumerate(packages):
        with pywb_with_wacz(bag_dir / "data" / "evidence.wacz", tmp_path / f"pywb{n}") as pywb:
            for url, ts, status, text in views:
                got = pywb.get(ts, url, raw=True, follow=False)
                assert got.status_code == status, (n, url, ts)
                assert got.headers.get("Memento-Datetime"), (n, url)
                assert text[:80] in main_text(got.content), (n, url, ts)


# Reads what ReplayWeb.page recorded when it checked the WACZ signatures it loaded: its
# service worker keeps one "verification" store per archive in IndexedDB (the page shares
# the worker's origin).
_READ_VERIFICATION = """async () => {
  const found = [];
  for (const info of await indexedDB.databases()) {
    const db = await new Promise((ok, fail) => {
      const open = indexedDB.open(info.name);
      open.onsuccess = () => ok(open.result);
      open.onerror = () => fail(open.error);
    });
    if (db.objectStoreNames.contains("verification")) {
      const rows = await new Promise((ok) => {
        const all = db.transaction("verification").objectStore("verification").getAll();
        all.onsuccess = () => ok(all.result);
      });
      const signature = rows.find((r) => r.id.endsWith("signature"));
      const key = rows.find((r) => r.id.endsWith("publicKey"));
      if (signature) found.push({db: info.name, matched: signature.matched,
                                 publicKey: key ? key.expected : null});
    }
    db.close();
  }
  return found;
}"""


def _signature_checks(page: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = page.evaluate(_READ_VERIFICATION)  # type: ignore[attr-defined]
    return found


def _with_signature_changed(wacz: Path, out: Path) -> None:
    """Copy a WACZ with one character of its signature changed (all else identical)."""
    with zipfile.ZipFile(wacz) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "datapackage-digest.json":
                doc = json.loads(data)
                sig = doc["signedData"]["signature"]
                doc["signedData"]["signature"] = ("B" if sig[0] == "A" else "A") + sig[1:]
                data = json.dumps(doc).encode()
            dst.writestr(info, data, compress_type=info.compress_type)


def _seed(archive: Archive) -> str:
    db = sqlite3.connect(archive.root / "catalog.sqlite3")
    try:
        (url,) = db.execute("SELECT url FROM captures WHERE kind='seed' LIMIT 1").fetchone()
    finally:
        db.close()
    return str(url)


def test_the_key_file_is_checked(tmp_path: Path, demo: Archive) -> None:
    """A key of another kind is refused with the reason (the viewer verifies P-384 only)."""
    other = tmp_path / "rsa.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-out", str(other)],
                   check=True, capture_output=True)
    done = demo.make(tmp_path / "x.zip", str(demo.events()["removed"]),
                     extra=("--key", str(other)))
    assert done.returncode == 2 and "must be ECDSA P-384" in done.stderr
    missing = demo.make(tmp_path / "x.zip", str(demo.events()["removed"]),
                        extra=("--key", str(tmp_path / "none.pem")))
    assert missing.returncode == 2 and "crawler evidence keygen" in missing.stderr
    assert os.listdir(tmp_path) == ["rsa.pem"]
