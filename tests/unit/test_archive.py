from pathlib import Path

import pytest

from engine.errors import ArchiveDamagedError, ArchiveDuplicateError, ChecksumError, UsageError
from engine.repository import layout
from engine.repository.codec import Codec
from engine.repository.storage import Storage, open_storage
from engine.wal import archive
from tests.unit.conftest import allow_loopback, fake_segment, s3_url

CODEC = Codec("zstd", 3)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    allow_loopback(monkeypatch)  # the moto server


@pytest.fixture(params=["posix", "s3"])
def storage(request: pytest.FixtureRequest, storage: Storage) -> Storage:
    """The repository on each driver: what wal-push and wal-get do cannot depend on it."""
    if request.param == "posix":
        return storage
    endpoint = request.getfixturevalue("moto_endpoint")
    repo = open_storage(s3_url(endpoint, request.getfixturevalue("s3_bucket")))
    for key in (layout.REPO_MARKER, layout.cluster_info_key("main")):
        repo.put(key, storage.get(key))
    return repo


def _rewrite(storage: Storage, name: str, change: object) -> bytes:
    """Replace the archived ``name`` by ``change(its bytes)`` behind Lifeboat's back."""
    key = layout.wal_key("main", name)
    good = storage.get(key)
    storage.put(key, change(good))  # type: ignore[operator]
    return good


def _flip(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0x40
    return bytes(damaged)


def push(storage: Storage, tmp_path: Path, name: str, data: bytes) -> archive.PushResult:
    source = tmp_path / "pg_wal" / name
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(data)
    return archive.push(storage, "main", source, CODEC)


def test_push_and_get_round_trip(storage: Storage, tmp_path: Path) -> None:
    data = fake_segment(1, 3)
    result = push(storage, tmp_path, "000000010000000000000003", data)
    assert not result.already_archived and result.stored_bytes < len(data) // 10
    dest = tmp_path / "RECOVERYXLOG"
    assert archive.get(storage, "main", "000000010000000000000003", dest)
    assert dest.read_bytes() == data


def test_same_content_twice_succeeds(storage: Storage, tmp_path: Path) -> None:
    data = fake_segment(1, 4)
    push(storage, tmp_path, "000000010000000000000004", data)
    assert push(storage, tmp_path, "000000010000000000000004", data).already_archived


def test_same_content_at_another_level_succeeds(storage: Storage, tmp_path: Path) -> None:
    data = fake_segment(1, 4)
    push(storage, tmp_path, "000000010000000000000004", data)
    source = tmp_path / "pg_wal" / "000000010000000000000004"
    assert archive.push(storage, "main", source, Codec("zstd", 9)).already_archived


def test_different_content_fails_loudly(storage: Storage, tmp_path: Path) -> None:
    push(storage, tmp_path, "000000010000000000000005", fake_segment(1, 5))
    with pytest.raises(ArchiveDuplicateError, match="already archived.*different content"):
        push(storage, tmp_path, "000000010000000000000005", fake_segment(1, 5, fill=7))
    dest = tmp_path / "out"
    archive.get(storage, "main", "000000010000000000000005", dest)
    assert dest.read_bytes() == fake_segment(1, 5)  # the original was kept


def test_segment_of_another_cluster_is_refused(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(ArchiveDuplicateError, match="belongs to database system 42"):
        push(storage, tmp_path, "000000010000000000000006", fake_segment(1, 6, sysid=42))


def test_wrong_size_and_bad_names(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="bytes"):
        push(storage, tmp_path, "000000010000000000000006", b"short")
    with pytest.raises(UsageError, match="not a WAL file name"):
        push(storage, tmp_path, "notawalfile", b"x")


def test_history_and_backup_files(storage: Storage, tmp_path: Path) -> None:
    push(storage, tmp_path, "00000002.history", b"1\t0/3000000\treason\n")
    push(storage, tmp_path, "000000010000000000000003.00000028.backup", b"START WAL ...\n")
    assert storage.exists(layout.wal_key("main", "00000002.history"))
    dest = tmp_path / "h"
    assert archive.get(storage, "main", "00000002.history", dest)
    assert dest.read_bytes() == b"1\t0/3000000\treason\n"


def test_missing_at_the_end_is_absent(storage: Storage, tmp_path: Path) -> None:
    push(storage, tmp_path, "000000010000000000000001", fake_segment(1, 1))
    assert not archive.get(storage, "main", "000000010000000000000002", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert not archive.get(storage, "main", "00000003.history", tmp_path / "x")
    assert not archive.get(storage, "main", "00000001.history", tmp_path / "x")


def test_gap_in_the_middle_is_damage(storage: Storage, tmp_path: Path) -> None:
    for segno in (1, 2, 4):
        push(storage, tmp_path, f"0000000100000000000000{segno:02X}", fake_segment(1, segno))
    with pytest.raises(ArchiveDamagedError) as caught:
        archive.get(storage, "main", "000000010000000000000003", tmp_path / "x")
    assert "000000010000000000000003 is missing" in str(caught.value)
    assert "000000010000000000000004" in str(caught.value)
    assert caught.value.exit_code > 125


def test_gap_across_log_directories(storage: Storage, tmp_path: Path) -> None:
    push(storage, tmp_path, "0000000100000001000000FE", fake_segment(1, 256 + 0xFE))
    push(storage, tmp_path, "000000010000000200000001", fake_segment(1, 512 + 1))
    with pytest.raises(ArchiveDamagedError, match="000000010000000200000001"):
        archive.get(storage, "main", "0000000100000001000000FF", tmp_path / "x")


def test_corrupt_segment_is_refused(storage: Storage, tmp_path: Path) -> None:
    push(storage, tmp_path, "000000010000000000000007", fake_segment(1, 7))
    _rewrite(storage, "000000010000000000000007", _flip)
    with pytest.raises(ArchiveDamagedError, match="000000010000000000000007: checksum mismatch"):
        archive.get(storage, "main", "000000010000000000000007", tmp_path / "x")


def test_timeline_history_rules(storage: Storage, tmp_path: Path) -> None:
    # timeline 2 began in segment 5; segment 3 of timeline 2 never existed
    push(storage, tmp_path, "00000002.history", b"1\t0/5000100\tpromoted\n")
    push(storage, tmp_path, "000000020000000000000006", fake_segment(2, 6))
    assert not archive.get(storage, "main", "000000020000000000000003", tmp_path / "x")
    with pytest.raises(ArchiveDamagedError, match="000000020000000000000005 is missing"):
        archive.get(storage, "main", "000000020000000000000005", tmp_path / "x")
    storage.delete(layout.wal_key("main", "00000002.history"))
    with pytest.raises(ArchiveDamagedError, match="history file 00000002.history is missing"):
        archive.get(storage, "main", "00000002.history", tmp_path / "x")


def test_archive_ranges(storage: Storage, tmp_path: Path) -> None:
    for tl, segno in ((1, 1), (1, 2), (1, 3), (2, 3), (2, 4)):
        push(storage, tmp_path, f"{tl:08X}{0:08X}{segno:08X}", fake_segment(tl, segno))
    ranges = archive.archive_ranges(storage, "main", 16 * 1024 * 1024)
    assert [(r.timeline, r.first, r.last, r.count) for r in ranges] == [
        (1, "000000010000000000000001", "000000010000000000000003", 3),
        (2, "000000020000000000000003", "000000020000000000000004", 2),
    ]


@pytest.mark.parametrize("level", ["zstd", "none"])
def test_check_streams_what_decode_proves(storage: Storage, tmp_path: Path, level: str) -> None:
    name = "000000010000000000000008"
    source = tmp_path / name
    source.write_bytes(fake_segment(1, 8))
    archive.push(storage, "main", source, Codec(level, 3))  # type: ignore[arg-type]
    archive.check(storage, "main", name)
    good = _rewrite(storage, name, _flip)
    with pytest.raises(ChecksumError, match=f"{name}: (checksum mismatch|compressed data is damaged)"):
        archive.check(storage, "main", name)
    lying = bytearray(good)
    lying[8:16] = (len(fake_segment(1, 8)) + 1).to_bytes(8, "little")  # the raw size, not hashed
    _rewrite(storage, name, lambda _: bytes(lying))
    with pytest.raises(ChecksumError, match=f"{name}: decompressed to"):
        archive.check(storage, "main", name)
    _rewrite(storage, name, lambda _: good[:-5])
    with pytest.raises(ChecksumError, match=name):
        archive.check(storage, "main", name)
