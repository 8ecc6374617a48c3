"""Results derived from a file's bytes, kept under their digest (engine.memo), and the
cluster identity a wal-push takes from there: any change of the document is seen."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.errors import ArchiveDuplicateError, ChecksumError, FormatError
from engine.memo import derived
from engine.repository import clusterinfo, formats, layout
from engine.repository.codec import Codec
from engine.repository.storage.posix import PosixStorage
from engine.wal import archive
from tests.unit.conftest import SEGMENT_SIZE, SYSID, fake_segment


def test_derived_once_per_content_and_code(tmp_path: Path) -> None:
    source = tmp_path / "deriver.py"
    source.write_text("v1")
    calls: list[bytes] = []

    def derive(raw: bytes) -> dict[str, int]:
        calls.append(raw)
        return {"length": len(raw)}

    sources = (str(source),)
    assert derived("test", b"abc", sources, lambda: derive(b"abc")) == {"length": 3}
    assert derived("test", b"abc", sources, lambda: derive(b"abc")) == {"length": 3}
    assert calls == [b"abc"]  # the second came from the cache
    assert derived("test", b"abcd", sources, lambda: derive(b"abcd")) == {"length": 4}
    source.write_text("v2, another deriver")  # new code: derived again
    assert derived("test", b"abc", sources, lambda: derive(b"abc")) == {"length": 3}
    assert calls == [b"abc", b"abcd", b"abc"]


def test_a_failure_is_not_kept_and_a_broken_cache_is_passed_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> dict[str, int]:
        raise ValueError("invalid")

    for _ in range(2):
        with pytest.raises(ValueError):
            derived("test", b"bad", (), refuse)
    cache = Path(os.environ["LIFEBOAT_CACHE_DIR"])
    assert not cache.exists()  # nothing kept
    assert derived("test", b"good", (), lambda: {"ok": 1}) == {"ok": 1}
    for kept in cache.iterdir():
        kept.write_bytes(b"\xff not marshal")
    assert derived("test", b"good", (), lambda: {"ok": 2}) == {"ok": 2}  # derived anew
    (tmp_path / "blocked").write_text("")
    monkeypatch.setenv("LIFEBOAT_CACHE_DIR", str(tmp_path / "blocked" / "sub"))  # cannot be made
    assert derived("test", b"good", (), lambda: {"ok": 3}) == {"ok": 3}
    assert derived("test", b"good", (), lambda: {"ok": 4}) == {"ok": 4}  # no cache: derived each time


def _push(storage: PosixStorage, tmp_path: Path, segno: int, sysid: int = SYSID) -> archive.PushResult:
    name = f"0000000100000000000000{segno:02X}"
    source = tmp_path / "pg_wal" / name
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(fake_segment(1, segno, sysid))
    return archive.push(storage, "main", source, Codec("zstd", 3))


def test_a_push_sees_every_change_of_cluster_json(storage: PosixStorage, tmp_path: Path) -> None:
    key = layout.cluster_info_key("main")
    good = storage.get(key)
    assert not _push(storage, tmp_path, 1).already_archived
    assert any(Path(os.environ["LIFEBOAT_CACHE_DIR"]).glob("cluster-*"))  # kept for the next push
    damaged = bytearray(good)
    damaged[-5] ^= 0x01
    storage.put(key, bytes(damaged))
    with pytest.raises(ChecksumError):
        _push(storage, tmp_path, 2)
    storage.put(key, good.replace(b"CLUSTER %d " % formats.REPOSITORY, b"CLUSTER 99 ", 1))
    with pytest.raises(FormatError):
        _push(storage, tmp_path, 2)
    other = clusterinfo.ClusterInfo(SYSID + 1, 150020, SEGMENT_SIZE, 8192, "2026-11-25T00:00:00+00:00")
    storage.delete(key)
    clusterinfo.write(storage, "main", other)  # another cluster's identity
    with pytest.raises(ArchiveDuplicateError, match="belongs to database system"):
        _push(storage, tmp_path, 2)
    assert not _push(storage, tmp_path, 2, sysid=SYSID + 1).already_archived
    storage.delete(key)
    storage.put(key, good)
    assert clusterinfo.read(storage, "main", cached=True) == clusterinfo.read(storage, "main")
