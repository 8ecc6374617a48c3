"""Manifests and block lists: what is written is read back; damage and other formats are refused."""

import hashlib
import struct

import pytest

from engine.errors import ChecksumError, FormatError, NotFoundError
from engine.repository import blocklist, formats, layout
from engine.repository.blocklist import BlockList, Frame, ListBuilder
from engine.repository.manifest import (
    FileEntry,
    ManifestWriter,
    list_backup_ids,
    read_manifest,
    read_summary,
)
from engine.repository.storage.posix import PosixStorage
from tests.unit.helpers import summary

BLOCK = 65536
P0, P1 = "0" * 31 + "a", "1" * 31 + "b"
FRAME_A = Frame(P0, 0, 100, 1, hashlib.sha256(b"a").digest())
FRAME_B = Frame(P1, 4096, 10, 0, hashlib.sha256(b"b").digest())
IDS = [hashlib.sha256(bytes([i])).digest()[:16] for i in range(4)]


def big_list() -> bytes:
    """Four blocks: two and the last of FRAME_A, the third from FRAME_B (reused elsewhere)."""
    builder = ListBuilder(BLOCK)
    builder.add(FRAME_A, 2, 0)
    builder.add(FRAME_B, 1, 0)
    builder.add(FRAME_A, 1, 2 * BLOCK)
    builder.add_ids(b"".join(IDS))
    return builder.finish(BLOCK * 3 + 8192)


def small_list() -> bytes:
    builder = ListBuilder(BLOCK)
    builder.add(FRAME_A, 1, 0)
    builder.add_ids(IDS[0])
    return builder.finish(100)


def entries() -> list[FileEntry]:
    stored = big_list()
    return [
        FileEntry("base", "dir", 0o700),
        FileEntry("base/1/1259", "file", 0o600, BLOCK * 3 + 8192, 1.5,
                  list_id=blocklist.list_id(stored), packs=(0, 1)),
        FileEntry("base/1/2", "file", 0o600, 100, 1.75, inline=small_list(), corrupt_pages=[0]),
        FileEntry("base/1/empty", "file", 0o600, 0, 2.0),
        FileEntry("pg_tblspc/16384", "link", 0o777, target="/srv/ts1"),
    ]


def store(storage: PosixStorage, backup_id: str = "20261125-010000F") -> bytes:
    data = big_list()
    storage.put(layout.list_key("main", blocklist.list_id(data).hex()), data)
    writer = ManifestWriter()
    for entry in entries():
        writer.add(entry)
    data = b"".join(writer.finish(summary(backup_id, packs=[P0, P1], block_size=BLOCK)))
    storage.put(layout.manifest_key("main", backup_id), data)
    return data


def test_round_trip(storage: PosixStorage) -> None:
    store(storage)
    manifest = read_manifest(storage, "main", "20261125-010000F")
    assert manifest.summary.packs == [P0, P1]
    assert list(manifest.entries()) == entries()
    assert read_summary(storage, "main", "20261125-010000F").body_sha256 == manifest.summary.body_sha256
    assert list_backup_ids(storage, "main") == ["20261125-010000F"]
    stored = manifest.block_list(entries()[1])
    assert [(n, r.pack, r.offset, r.raw, r.skip, r.digest) for n, r in stored.refs(0, 4)] == [
        (0, P0, 0, BLOCK, 0, IDS[0]), (1, P0, 0, BLOCK, BLOCK, IDS[1]),
        (2, P1, 4096, BLOCK, 0, IDS[2]), (3, P0, 0, 8192, 2 * BLOCK, IDS[3])]
    assert stored.packs == [P0, P1] and stored.frames == [FRAME_A, FRAME_B]
    inline = manifest.block_list(entries()[2])
    assert inline.count == 1 and inline.refs(0, 1)[0][1].raw == 100


def test_an_unchanged_file_costs_the_same_few_bytes_whatever_its_size() -> None:
    def entry(size: int) -> bytes:
        return FileEntry("base/5/16384", "file", 0o600, size, 1732500000.123456,
                         list_id=hashlib.sha256(b"x").digest(), packs=(0, 3, 7)).encode()

    assert len(entry(1 << 20)) < 200
    assert len(entry(1 << 20)) == len(entry(100 << 20)) - 2  # two more digits of size


@pytest.mark.parametrize("where", ["header", "summary", "body"])
def test_any_damage_is_detected(storage: PosixStorage, where: str) -> None:
    data = bytearray(store(storage))
    first_newline = data.index(b"\n")
    offset = {"header": 20, "summary": first_newline + 10, "body": len(data) - 5}[where]
    data[offset] ^= 0x01
    storage.put(layout.manifest_key("main", "20261125-010000F"), bytes(data))
    with pytest.raises((ChecksumError, FormatError), match="20261125-010000F.manifest"):
        read_manifest(storage, "main", "20261125-010000F")


def test_truncation_is_detected(storage: PosixStorage) -> None:
    data = store(storage)
    storage.put(layout.manifest_key("main", "20261125-010000F"), data[:-10])
    with pytest.raises(ChecksumError, match="damaged or truncated"):
        read_manifest(storage, "main", "20261125-010000F")


@pytest.mark.parametrize(("found", "says"), [(3, "written by a newer Lifeboat"),
                                             (1, "written by an older Lifeboat")])
def test_a_manifest_of_another_format_is_refused(storage: PosixStorage, found: int, says: str) -> None:
    data = store(storage)
    storage.put(layout.manifest_key("main", "20261125-010000F"),
                data.replace(b"LIFEBOAT-MANIFEST 2 ", b"LIFEBOAT-MANIFEST %d " % found, 1))
    for read in (read_manifest, read_summary):
        with pytest.raises(FormatError, match=rf"manifest clusters/main/backups/20261125-010000F"
                                              rf"\.manifest is in format {found}, {says}; this "
                                              r"Lifeboat reads format 2"):
            read(storage, "main", "20261125-010000F")


def test_a_block_list_of_another_format_is_refused() -> None:
    data = bytearray(big_list())
    struct.pack_into("<H", data, 6, formats.BLOCK_LIST + 1)
    with pytest.raises(FormatError, match=f"block list L is in format {formats.BLOCK_LIST + 1}, "
                       "written by a newer Lifeboat"):
        BlockList(bytes(data), "L")


def test_a_damaged_or_missing_list_is_named(storage: PosixStorage) -> None:
    store(storage)
    manifest = read_manifest(storage, "main", "20261125-010000F")
    entry = entries()[1]
    key = layout.list_key("main", entry.list_id.hex())
    data = bytearray(storage.get(key))
    data[-1] ^= 1
    storage.put(key, bytes(data))
    with pytest.raises(ChecksumError, match=f"block list {key} \\(file base/1/1259\\): checksum mismatch"):
        manifest.block_list(entry)
    storage.delete(key)
    with pytest.raises(NotFoundError, match=f"block list {key} \\(file base/1/1259\\) is missing"):
        manifest.block_list(entry)


def test_a_list_naming_a_pack_its_entry_does_not_list_is_refused(storage: PosixStorage) -> None:
    """A later backup takes the entry's packs over without reading the list: were one
    missing, garbage collection could remove it while the list still needs it."""
    store(storage)
    manifest = read_manifest(storage, "main", "20261125-010000F")
    entry = entries()[1]
    entry.packs = (0,)
    with pytest.raises(ChecksumError, match=f"names pack {P1}, which the manifest does not list"):
        manifest.block_list(entry)
