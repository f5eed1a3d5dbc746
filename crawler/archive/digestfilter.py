"""Which payload digests a target may already hold: a Bloom filter in front of the catalog.

Deduplication asks the catalog, for every 2xx response, whether the target archived that
payload before. In a first crawl, and for every new page of a recrawl, the answer is no, and
the question cost one SQLite query per response on the event loop's thread. The filter answers
"certainly not" from memory for almost all of those, and sends the rest (the payloads that may
be held, and about 1 % false alarms at three million digests) to the catalog as before. It
never says "not held" for a digest added to it, so no duplicate is missed.

Size: 2^25 bits (4 MiB), three probes taken from the digest itself (a SHA-1: its bits are
already uniform, so no further hashing is needed).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

BITS = 1 << 25
_MASK = BITS - 1


class DigestFilter:
    """A Bloom filter of WARC payload digests (``sha1:`` and base32)."""

    def __init__(self, digests: Iterable[str] = ()) -> None:
        self._bits = bytearray(BITS // 8)
        for digest in digests:
            self.add(digest)

    @staticmethod
    def _probes(digest: str) -> tuple[int, int, int] | None:
        """Return the three bit positions of a digest (None if it is not a SHA-1 digest)."""
        algorithm, _, value = digest.partition(":")
        if algorithm != "sha1" or len(value) != 32:
            return None
        try:
            raw = base64.b32decode(value)
        except ValueError:
            return None
        return (int.from_bytes(raw[0:4], "big") & _MASK,
                int.from_bytes(raw[4:8], "big") & _MASK,
                int.from_bytes(raw[8:12], "big") & _MASK)

    def add(self, digest: str) -> None:
        """Remember a digest."""
        probes = self._probes(digest)
        if probes is not None:
            for bit in probes:
                self._bits[bit >> 3] |= 1 << (bit & 7)

    def __contains__(self, digest: str) -> bool:
        """Return False only if the digest was certainly never added (a digest in another
        algorithm is always "maybe": the catalog decides)."""
        probes = self._probes(digest)
        if probes is None:
            return True
        return all(self._bits[bit >> 3] & (1 << (bit & 7)) for bit in probes)
