"""Pure WAL arithmetic: LSNs, segment and history file names, timelines.

Nothing here does I/O. Segment numbers are absolute (``XLogSegNo``), so the
arithmetic works for any ``wal_segment_size``.
"""

from __future__ import annotations

from collections import namedtuple

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
_HEX = frozenset("0123456789ABCDEF")


def _hex(text: str, length: int) -> bool:
    """Upper-case hex of exactly ``length`` characters (what PostgreSQL writes)."""
    return len(text) == length and _HEX.issuperset(text)


def parse_lsn(text: str) -> int:
    """``'0/16B3740'`` -> integer byte position."""
    high, sep, low = text.strip().partition("/")
    if not sep:
        raise ValueError(f"'{text}' is not an LSN (expected e.g. 0/16B3740)")
    try:
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        raise ValueError(f"'{text}' is not an LSN (expected e.g. 0/16B3740)") from None


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def segments_per_xlogid(segment_size: int) -> int:
    return 0x100000000 // segment_size


def segment_name(timeline: int, segno: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    per = segments_per_xlogid(segment_size)
    return f"{timeline:08X}{segno // per:08X}{segno % per:08X}"


class Segment(namedtuple("Segment", "timeline segno")):
    """A WAL segment: timeline and absolute segment number.

    (A plain namedtuple: this module is on the WAL path, where importing typing costs.)
    """

    __slots__ = ()

    timeline: int
    segno: int

    def name(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
        return segment_name(self.timeline, self.segno, segment_size)


def parse_segment(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> Segment:
    if not is_segment(name):
        raise ValueError(f"'{name}' is not a WAL segment name")
    timeline, log, seg = int(name[:8], 16), int(name[8:16], 16), int(name[16:], 16)
    per = segments_per_xlogid(segment_size)
    if seg >= per:
        raise ValueError(f"'{name}' is not a valid segment for {segment_size}-byte segments")
    return Segment(timeline, log * per + seg)


def segment_of_lsn(lsn: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The segment holding the byte at ``lsn``."""
    return lsn // segment_size


def segment_before_lsn(lsn: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """The segment holding the byte just before ``lsn`` (PostgreSQL's XLByteToPrevSeg).

    A backup's stop LSN can sit exactly on a segment boundary; the WAL it needs ends
    in the previous segment.
    """
    return (lsn - 1) // segment_size


def is_segment(name: str) -> bool:
    return _hex(name, 24)


def is_history(name: str) -> bool:
    return name.endswith(".history") and _hex(name[:-8], 8)


def wal_file_kind(name: str) -> str | None:
    """``segment``, ``partial``, ``backup`` (backup history), ``history`` or None."""
    if _hex(name, 24):
        return "segment"
    if name.endswith(".partial") and _hex(name[:-8], 24):
        return "partial"
    if name.endswith(".backup") and _hex(name[:24], 24) and name[24:25] == "." and \
            _hex(name[25:-7], 8):
        return "backup"
    if is_history(name):
        return "history"
    return None


def history_timeline(name: str) -> int:
    if not is_history(name):
        raise ValueError(f"'{name}' is not a timeline history file name")
    return int(name[:8], 16)


def history_name(timeline: int) -> str:
    return f"{timeline:08X}.history"


class TimelineSwitch(namedtuple("TimelineSwitch", "parent switch_lsn reason")):
    """One line of a history file: ``parent`` ended at ``switch_lsn``."""

    __slots__ = ()

    parent: int
    switch_lsn: int
    reason: str


def parse_history(text: str) -> list[TimelineSwitch]:
    """Parse a ``NNNNNNNN.history`` file (ancestors, oldest first)."""
    switches: list[TimelineSwitch] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(None, 2)
        if len(fields) < 2:
            raise ValueError(f"malformed history line: {raw!r}")
        switches.append(
            TimelineSwitch(int(fields[0]), parse_lsn(fields[1]), fields[2] if len(fields) > 2 else "")
        )
    return switches


def timeline_begin_lsn(history: list[TimelineSwitch]) -> int:
    """Where the timeline described by ``history`` begins (0 for timeline 1)."""
    return history[-1].switch_lsn if history else 0


SYSID_OFFSET = 24  # XLogLongPageHeaderData: magic, info, tli, pageaddr, rem_len, pad, sysid
XLP_LONG_HEADER = 0x0002


def segment_system_identifier(header: bytes) -> int | None:
    """The system identifier in a segment's first (long) page header, if it has one."""
    if len(header) < SYSID_OFFSET + 8:
        return None
    info = int.from_bytes(header[2:4], "little")
    if not info & XLP_LONG_HEADER:
        return None
    return int.from_bytes(header[SYSID_OFFSET:SYSID_OFFSET + 8], "little")
