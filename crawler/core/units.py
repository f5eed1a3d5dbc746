"""Sizes and durations as people write them ("500M", "1G", "90s", "6h"), shared by the CLI
options and the configuration file so that both read them alike."""

from __future__ import annotations

import re
from typing import Any

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.I)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.I)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_size(value: Any) -> int | None:
    """Return bytes for 1048576 or a string such as 500M or 1G; None if it is not a size."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    match = _SIZE.match(value) if isinstance(value, str) else None
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]) if match else None


def parse_duration(value: Any) -> float | None:
    """Return seconds for 90 or a string such as 90s, 30m, 6h, 1d; None if not a duration."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if value >= 0 else None
    match = _DURATION.match(value) if isinstance(value, str) else None
    return float(match.group(1)) * _TIME_UNITS[match.group(2).lower()] if match else None


def format_size(value: int) -> str:
    """Return a byte count for people: 1.5 GiB, 320.0 MiB, 512 B."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def size_text(value: int) -> str:
    """Return a byte count as people write it and ``parse_size`` reads it back exactly:
    1073741824 -> "1G", 268435456 -> "256M", 256 -> "256"."""
    for unit in ("t", "g", "m", "k"):
        step = _SIZE_UNITS[unit]
        if value >= step and value % step == 0:
            return f"{value // step}{unit.upper()}"
    return str(value)


def duration_text(value: float) -> str:
    """Return seconds as people write them and ``parse_duration`` reads them back exactly:
    21600 -> "6h", 2 -> "2s", 0.5 -> "0.5s"."""
    for unit in ("d", "h", "m"):
        step = _TIME_UNITS[unit]
        if value >= step and value % step == 0:
            return f"{int(value // step)}{unit}"
    return f"{value:g}s"
