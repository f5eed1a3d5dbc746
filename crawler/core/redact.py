"""Keep secrets out of what the crawler writes: notification URLs carry tokens and passwords.

Apprise URLs hold their secrets in any part (``mailtos://user:password@host``,
``tgram://BOT_TOKEN/CHAT``, ``json://host/hook?token=…``), so a redacted URL keeps only its
scheme and a short fingerprint: enough to tell two configured URLs apart in ``crawl.json``,
the catalog and logs, nothing to use. The URLs themselves are kept only where a later run
needs them (``crawler resume``), in a file only the owner can read (``write_private``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

_MARK = "[redacted "


def redact_url(url: str) -> str:
    """Return ``scheme://[redacted sha256:…]`` for a URL that may hold credentials."""
    if is_redacted(url):
        return url
    scheme, sep, _ = url.partition("://")
    fingerprint = hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]
    return f"{scheme if sep else 'url'}://{_MARK}sha256:{fingerprint}]"


def is_redacted(url: str) -> bool:
    """Return True if ``url`` is the output of ``redact_url``."""
    return _MARK in url


def restore(redacted: Iterable[str], known: Sequence[str]) -> tuple[list[str], list[str]]:
    """Return the URLs among ``known`` that ``redacted`` stand for, and the redacted ones
    that none of them matches (those cannot be restored)."""
    by_mark = {redact_url(url): url for url in known}
    found, lost = [], []
    for item in redacted:
        if not is_redacted(item):
            found.append(item)
        elif item in by_mark:
            found.append(by_mark[item])
        else:
            lost.append(item)
    return found, lost


def write_private(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path``, readable and writable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file left from a crash
        os.write(fd, json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_private(path: Path) -> object:
    """Return what ``write_private`` wrote (None if the file is missing or unreadable)."""
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
