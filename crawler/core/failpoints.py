"""Crash injection for the durability tests: kill the process at a named point.

``CRAWLER_FAILPOINT=name:N`` makes the N-th pass through ``hit("name")`` send SIGKILL to the
process itself, so tests can prove that a crash at exactly that point loses nothing. Unset
(always, outside tests) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("CRAWLER_FAILPOINT", "")
_NAME, _, _COUNT = _SPEC.partition(":")
_REMAINING = {_NAME: int(_COUNT or 1)} if _NAME else {}


def hit(name: str) -> None:
    """Pass a failpoint; die here if the environment asks for it."""
    if name in _REMAINING:
        _REMAINING[name] -= 1
        if _REMAINING[name] <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
