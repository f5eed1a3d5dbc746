"""RFC 3161 time-stamps over a package's digest, from a time-stamping authority the user names.

A time-stamp token is the authority's signed statement that a given SHA-256 digest existed at
a given time. It is asked for and checked with the ``openssl ts`` command (OpenSSL's own RFC
3161 client), so the crawler carries no ASN.1 code of its own; the request goes to the TSA
over HTTP (``application/timestamp-query``) with httpx.

What a token proves depends on trusting the authority: verification takes the TSA's CA
certificate from the user (``--tsa-ca``); a check against the certificate shipped inside the
package only shows the token is consistent, and says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from crawler.core.errors import NotFound, OutputError

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"


@dataclass(frozen=True, slots=True)
class Stamp:
    """What a time-stamp reply says."""

    time: str  # as the token gives it, e.g. "Dec  2 12:30:01 2026 GMT"
    digest: str  # the hex SHA-256 it stamps
    tsa: str  # the authority's name in the token, if it gives one
    serial: str


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise NotFound("time-stamping needs the `openssl` command (Debian: apt-get install "
                          "openssl)")
    return found


def _run(args: list[str], what: str) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([_openssl(), *args], capture_output=True, check=False, timeout=60)
    if done.returncode != 0:
        raise OutputError(f"{what}: openssl said: "
                          f"{done.stderr.decode('utf-8', 'replace').strip()[-400:]}")
    return done


def request(digest_hex: str, tsa_url: str, *, timeout: float = 30.0) -> bytes:
    """Return the DER time-stamp reply of ``tsa_url`` for a SHA-256 digest (with a nonce and
    the authority's certificate asked for)."""
    query = _run(["ts", "-query", "-digest", digest_hex, "-sha256", "-cert"],
                 "building the time-stamp request").stdout
    try:
        answer = httpx.post(tsa_url, content=query, timeout=timeout,
                            headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPE})
    except httpx.HTTPError as exc:
        raise OutputError(f"time-stamping authority {tsa_url} did not answer: {exc}") from exc
    if answer.status_code != 200:
        raise OutputError(f"time-stamping authority {tsa_url} answered HTTP "
                          f"{answer.status_code}")
    stamp = read(answer.content)
    if stamp.digest.lower() != digest_hex.lower():
        raise OutputError(f"time-stamping authority {tsa_url} stamped another digest "
                          f"({stamp.digest}) than the one asked for ({digest_hex})")
    return answer.content


def read(reply: bytes) -> Stamp:
    """Return what a DER time-stamp reply says (an error if it is not a granted stamp)."""
    with tempfile.NamedTemporaryFile(suffix=".tsr") as tmp:
        tmp.write(reply)
        tmp.flush()
        text = _run(["ts", "-reply", "-in", tmp.name, "-text"],
                    "reading the time-stamp reply").stdout.decode("utf-8", "replace")
    status = re.search(r"^Status: (.*)$", text, re.M)
    if not status or not status.group(1).startswith("Granted"):
        raise OutputError("the time-stamping authority did not grant the stamp: "
                          + (status.group(1) if status else "no status in its reply"))
    found = {key: (m.group(1).strip() if (m := re.search(rf"^{key}: (.*)$", text, re.M))
                   else "") for key in ("Time stamp", "TSA", "Serial number")}
    digest = re.search(r"^Message data:\s*\n((?:\s+[0-9a-f]{4} - .*\n)+)", text, re.M)
    hex_digest = ""
    if digest:
        for line in digest.group(1).splitlines():
            hex_digest += "".join(re.findall(r"\b[0-9a-f]{2}\b", line.split(" - ", 1)[1]
                                             .split("   ")[0]))
    return Stamp(found["Time stamp"], hex_digest, found["TSA"], found["Serial number"])


def check(reply: Path, digest_hex: str, ca_file: Path) -> str | None:
    """Return None if ``reply`` is a valid token over ``digest_hex`` signed under
    ``ca_file``'s authority, else why not (openssl's own words)."""
    done = subprocess.run([_openssl(), "ts", "-verify", "-digest", digest_hex, "-in",
                           str(reply), "-CAfile", str(ca_file)],
                          capture_output=True, check=False, timeout=60)
    if done.returncode == 0 and b"Verification: OK" in done.stdout:
        return None
    said = (done.stderr + done.stdout).decode("utf-8", "replace")
    reasons = re.findall(r"routines:[^:]*:([^:]+):", said)
    return "; ".join(dict.fromkeys(reasons)) or "openssl ts -verify failed"
