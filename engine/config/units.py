"""Parsing of human-written durations ("7d", "90s", "1h30m") and sizes ("64KiB")."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_FACTOR = {
    "B": 1,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4,
}


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration such as ``"7d"``, ``"1h30m"``, ``"250ms"`` or a bare number."""
    if isinstance(text, bool):
        raise ValueError("a duration must be a number of seconds or a string like '60s'")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return float(text)
    compact = text.strip().replace(" ", "")
    if not compact:
        raise ValueError("empty duration")
    if re.fullmatch(r"\d+(?:\.\d+)?", compact):
        return float(compact)  # a bare number is seconds, as in the file's numbers
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(compact):
        raise ValueError(f"'{text}' is not a duration (use e.g. '90s', '15m', '4h', '7d')")
    return total


def parse_size(text: str | int) -> int:
    """Bytes in a size such as ``"64KiB"``, ``"16MB"`` or a bare number of bytes."""
    if isinstance(text, bool):
        raise ValueError("a size must be a number of bytes or a string like '64KiB'")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a size cannot be negative")
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a size (use e.g. '64KiB', '16MiB', '1GB')")
    unit = (match.group(2) or "B").upper()
    return int(float(match.group(1)) * _SIZE_FACTOR[unit])


def format_size(n: float) -> str:
    """A short human-readable size (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_duration(seconds: float) -> str:
    """``"4h"``, ``"1h30m"``, ``"45s"``, ``"1.5s"``: the shape parse_duration reads."""
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)
