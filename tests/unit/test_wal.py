import pytest

from engine.wal import names as wal


def test_lsn_round_trip() -> None:
    assert wal.parse_lsn("0/16B3740") == 0x16B3740
    assert wal.parse_lsn("1A/0") == 0x1A << 32
    assert wal.format_lsn(wal.parse_lsn("3/DEADBEEF")) == "3/DEADBEEF"
    with pytest.raises(ValueError):
        wal.parse_lsn("16B3740")


def test_segment_names_follow_postgresql() -> None:
    assert wal.segment_name(1, 0x10) == "000000010000000000000010"
    assert wal.segment_name(2, 256 + 3) == "000000020000000100000003"
    assert wal.parse_segment("000000020000000100000003") == wal.Segment(2, 259)
    with pytest.raises(ValueError):
        wal.parse_segment("0000000200000001000001FF")  # past 0xFF for 16 MB segments
    # 64 MB segments: 64 per xlogid
    assert wal.segment_name(1, 65, 64 * 1024 * 1024) == "000000010000000100000001"


def test_stop_lsn_on_a_boundary_needs_the_previous_segment() -> None:
    size = wal.DEFAULT_SEGMENT_SIZE
    assert wal.segment_of_lsn(0x3000000, size) == 3
    assert wal.segment_before_lsn(0x3000000, size) == 2
    assert wal.segment_before_lsn(0x3000028, size) == 3


def test_file_kinds() -> None:
    assert wal.wal_file_kind("000000010000000000000001") == "segment"
    assert wal.wal_file_kind("000000010000000000000001.partial") == "partial"
    assert wal.wal_file_kind("000000010000000000000002.00000028.backup") == "backup"
    assert wal.wal_file_kind("00000002.history") == "history"
    assert wal.wal_file_kind("RECOVERYXLOG") is None


def test_history_parsing() -> None:
    text = "1\t0/3000000\tno recovery target specified\n\n2\t0/5000158\tbefore 2026-11-25\n"
    history = wal.parse_history(text)
    assert [(s.parent, s.switch_lsn) for s in history] == [(1, 0x3000000), (2, 0x5000158)]
    assert wal.timeline_begin_lsn(history) == 0x5000158
    assert wal.timeline_begin_lsn([]) == 0


def test_system_identifier_from_long_page_header() -> None:
    header = bytearray(64)
    header[2:4] = (2).to_bytes(2, "little")
    header[24:32] = (123456789).to_bytes(8, "little")
    assert wal.segment_system_identifier(bytes(header)) == 123456789
    header[2:4] = (0).to_bytes(2, "little")  # not a long header
    assert wal.segment_system_identifier(bytes(header)) is None
