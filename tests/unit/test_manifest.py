import hashlib

import pytest

from engine.errors import ChecksumError
from engine.repository import layout
from engine.repository.manifest import (
    BlockRef,
    FileEntry,
    ManifestWriter,
    list_backup_ids,
    read_manifest,
    read_summary,
)
from engine.repository.storage.posix import PosixStorage
from tests.unit.helpers import summary


def entries() -> list[FileEntry]:
    frame_a, frame_b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    ids = [hashlib.sha256(bytes([i])).digest()[:16] for i in range(4)]
    return [
        FileEntry("base", "dir", 0o700),
        FileEntry("base/1/1259", "file", 0o600, 65536 * 3 + 8192, 1.5,
                  blocks=[BlockRef(ids[0], 0, 0, 100, 65536, 1, 0, frame_a),
                          BlockRef(ids[1], 0, 0, 100, 65536, 1, 65536, frame_a),
                          BlockRef(ids[2], 1, 4096, 10, 65536, 0, 0, frame_b),  # reused elsewhere
                          BlockRef(ids[3], 0, 0, 100, 8192, 1, 131072, frame_a)]),
        FileEntry("base/1/empty", "file", 0o600, 0, 2.0),
        FileEntry("pg_tblspc/16384", "link", 0o777, target="/srv/ts1"),
    ]


def store(storage: PosixStorage, backup_id: str = "20261125-010000F") -> bytes:
    writer = ManifestWriter(65536)
    for entry in entries():
        writer.add(entry)
    data = b"".join(writer.finish(summary(backup_id, packs=["p0", "p1"], block_size=65536)))
    storage.put(layout.manifest_key("main", backup_id), data)
    return data


def test_round_trip(storage: PosixStorage) -> None:
    store(storage)
    manifest = read_manifest(storage, "main", "20261125-010000F")
    assert manifest.summary.packs == ["p0", "p1"]
    assert list(manifest.entries()) == entries()
    assert read_summary(storage, "main", "20261125-010000F").body_sha256 == manifest.summary.body_sha256
    assert list_backup_ids(storage, "main") == ["20261125-010000F"]


@pytest.mark.parametrize("where", ["header", "summary", "body"])
def test_any_damage_is_detected(storage: PosixStorage, where: str) -> None:
    data = bytearray(store(storage))
    first_newline = data.index(b"\n")
    offset = {"header": 20, "summary": first_newline + 10, "body": len(data) - 5}[where]
    data[offset] ^= 0x01
    storage.put(layout.manifest_key("main", "20261125-010000F"), bytes(data))
    with pytest.raises(ChecksumError, match="20261125-010000F.manifest"):
        read_manifest(storage, "main", "20261125-010000F")


def test_truncation_is_detected(storage: PosixStorage) -> None:
    data = store(storage)
    storage.put(layout.manifest_key("main", "20261125-010000F"), data[:-10])
    with pytest.raises(ChecksumError, match="damaged or truncated"):
        read_manifest(storage, "main", "20261125-010000F")
