from pathlib import Path

from engine.repository.codec import Codec
from engine.repository.storage.posix import PosixStorage
from engine.wal import archive, timelines
from tests.unit.conftest import fake_segment

SIZE = 16 * 1024 * 1024


def push(storage: PosixStorage, tmp_path: Path, name: str, data: bytes) -> None:
    source = tmp_path / name
    source.write_bytes(data)
    archive.push(storage, "main", source, Codec("zstd", 1))


def test_recovery_follows_the_newest_descendant(storage: PosixStorage, tmp_path: Path) -> None:
    # timeline 2 branched from 1 in segment 5, timeline 3 from 2 in segment 8
    push(storage, tmp_path, "00000002.history", b"1\t0/5000100\tpromoted\n")
    push(storage, tmp_path, "00000003.history", b"1\t0/5000100\tx\n2\t0/8000200\ty\n")
    for tl, segnos in {1: range(3, 7), 2: range(5, 9), 3: range(8, 11)}.items():
        for segno in segnos:
            push(storage, tmp_path, f"{tl:08X}{0:08X}{segno:08X}", fake_segment(tl, segno))
    spans = timelines.recovery_path(storage, "main", 1, 0x3000028, 0x3000100, SIZE)
    assert spans == [timelines.Span(1, 3, 4), timelines.Span(2, 5, 7), timelines.Span(3, 8, None)]
    archived = archive.segments_by_timeline(storage, "main", SIZE)
    needed = timelines.required_segments(spans, archived)
    assert needed == [(1, 3), (1, 4), (2, 5), (2, 6), (2, 7), (3, 8), (3, 9), (3, 10)]
    # a backup taken on timeline 1 after timeline 2 branched cannot follow it
    assert timelines.recovery_path(storage, "main", 1, 0x6000028, 0x6000100, SIZE) == [
        timelines.Span(1, 6, None)]
    # asking for the backup's own timeline stays on it
    assert timelines.recovery_path(storage, "main", 1, 0x3000028, 0x3000100, SIZE, "current") == [
        timelines.Span(1, 3, None)]
