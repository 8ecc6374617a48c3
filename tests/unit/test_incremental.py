"""Incremental copies: unchanged blocks are referenced, never stored again, and an
incremental backup still restores on its own."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from engine.backup.blockcopy import BaseFiles, BlockCopier, PackSet
from engine.errors import ChecksumError, NotFoundError
from engine.postgres import pgdata
from engine.repository import blocklist, layout, verify
from engine.repository.codec import Codec
from engine.repository.expire import collect_garbage
from engine.repository.manifest import FileEntry, ManifestWriter, read_manifest
from engine.repository.storage.posix import PosixStorage
from engine.restore.files import FileWriter
from engine.restore.written_state import RECORD
from engine.wal import archive
from tests.unit.conftest import fake_segment
from tests.unit.helpers import summary

BLOCK = 64 * 1024
FRAME = 4 * BLOCK


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def back_up(storage: PosixStorage, source: Path, backup_id: str, base_id: str | None = None,
            use_mtime: bool = True) -> tuple[BlockCopier, PackSet]:
    packs = PackSet(storage, "main", pack_size=1024 * 1024)
    base = None
    if base_id:
        base = BaseFiles(read_manifest(storage, "main", base_id), time.time() + 3600, use_mtime)
    copier = BlockCopier(packs, Codec("zstd", 3), BLOCK, FRAME, jobs=2, base=base)
    writer = ManifestWriter()
    size = 0
    for entry in copier.copy(pgdata.walk(source, 15)):
        writer.add(entry)
        size += entry.size
    ids = packs.finish()
    data = b"".join(writer.finish(summary(backup_id, packs=ids, block_size=BLOCK, frame_size=FRAME,
                                          size_bytes=size, reused_bytes=copier.stats.reused_bytes)))
    storage.put(layout.manifest_key("main", backup_id), data)
    return copier, packs


def restored(storage: PosixStorage, backup_id: str, target: Path) -> dict[str, bytes]:
    manifest = read_manifest(storage, "main", backup_id)
    target.mkdir()
    FileWriter(storage, "main", manifest.summary, target, jobs=2).write(manifest, {})
    return {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*")
            if p.is_file() and p.name != RECORD}


def test_only_changed_blocks_are_stored(tmp_path: Path) -> None:
    source = tmp_path / "src"
    relation = os.urandom(BLOCK * 40)  # incompressible, so stored bytes track new blocks
    files = {"global/pg_control": os.urandom(8192), "base/5/16384": relation,
             "base/5/16390": os.urandom(BLOCK * 3)}
    write_tree(source, files)
    storage = PosixStorage(tmp_path / "repo")
    _, full = back_up(storage, source, "20261125-010000F")
    assert full.stored_bytes > len(relation)

    changed = bytearray(relation)
    changed[BLOCK * 7 + 100] ^= 0xFF  # one block changes
    changed[BLOCK * 30: BLOCK * 31] = relation[BLOCK * 2: BLOCK * 3]  # one block moves
    files["base/5/16384"] = bytes(changed) + os.urandom(BLOCK)  # and one is appended
    write_tree(source, {"base/5/16384": files["base/5/16384"]})
    copier, incr = back_up(storage, source, "20261125-020000I", "20261125-010000F")

    # the changed, the moved (blocks are compared with the base's at the same place: in a
    # relation file, blocks do not move) and the appended block
    assert BLOCK * 3 <= incr.stored_bytes < BLOCK * 4
    assert copier.stats.reused_bytes >= len(relation) - 2 * BLOCK
    assert len(incr.ids) > len(incr._written)  # the base's packs are referenced, not copied
    assert restored(storage, "20261125-020000I", tmp_path / "out") == files


def test_unchanged_files_are_not_read_again(tmp_path: Path) -> None:
    """A file with the base's size and mtime is taken from the base without being read: its
    bytes changed behind the backup's back (same size, mtime put back), yet the incremental
    restores the old content; --checksum reads it and restores the new."""
    source = tmp_path / "src"
    files = {"global/pg_control": b"c" * 8192, "base/5/1": os.urandom(BLOCK * 5)}
    write_tree(source, files)
    old = time.time() - 3600
    os.utime(source / "base/5/1", (old, old))
    storage = PosixStorage(tmp_path / "repo")
    back_up(storage, source, "20261125-010000F")
    other = os.urandom(BLOCK * 5)
    (source / "base/5/1").write_bytes(other)
    os.utime(source / "base/5/1", (old, old))
    _, incr = back_up(storage, source, "20261125-020000I", "20261125-010000F")
    assert incr.stored_bytes == 0
    assert restored(storage, "20261125-020000I", tmp_path / "incr") == files  # not read: the old bytes
    # --checksum reads everything: the new bytes are stored and restored
    _, incr = back_up(storage, source, "20261125-030000I", "20261125-020000I", use_mtime=False)
    assert BLOCK * 5 <= incr.stored_bytes < BLOCK * 6
    assert restored(storage, "20261125-030000I", tmp_path / "checked") == files | {"base/5/1": other}


def test_a_file_changed_within_the_same_second_is_read(tmp_path: Path) -> None:
    source = tmp_path / "src"
    write_tree(source, {"global/pg_control": b"c" * 8192, "base/5/1": b"a" * BLOCK})
    storage = PosixStorage(tmp_path / "repo")
    back_up(storage, source, "20261125-010000F")
    manifest = read_manifest(storage, "main", "20261125-010000F")
    entry = next(e for e in manifest.entries() if e.path == "base/5/1")
    (source / "base/5/1").write_bytes(b"b" * BLOCK)
    os.utime(source / "base/5/1", (entry.mtime, entry.mtime))  # same size, same mtime
    base = BaseFiles(manifest, trust_mtime_before=entry.mtime, use_mtime=True)
    walked = next(e for e in pgdata.walk(source, 15) if e.path == "base/5/1")
    assert base.find("base/5/1") is not None
    assert not base.unchanged(base.find("base/5/1"), walked)  # too close to trust



def test_an_unchanged_file_shares_its_list_and_a_changed_one_reuses_the_base_frames(
        tmp_path: Path, storage: PosixStorage) -> None:
    source = tmp_path / "src"
    files = {"global/pg_control": b"c" * 8192, "base/5/1": os.urandom(BLOCK * 40),
             "base/5/2": os.urandom(BLOCK * 40)}
    write_tree(source, files)
    segment = tmp_path / "000000010000000000000002"  # the WAL the backups need
    segment.write_bytes(fake_segment(1, 2))
    archive.push(storage, "main", segment, Codec("zstd", 3))
    _, full = back_up(storage, source, "20261125-010000F")
    assert full.lists_written == 2  # the two large files; pg_control's list is inline
    base = read_manifest(storage, "main", "20261125-010000F")
    kept_id = next(e.list_id for e in base.entries() if e.path == "base/5/1")
    assert kept_id is not None
    kept = Path(storage.path_of(layout.list_key("main", kept_id.hex())))
    kept.rename(tmp_path / "hidden")  # an unchanged file's list is not even read
    changed = bytearray(files["base/5/2"])
    changed[BLOCK * 20 + 7] ^= 1
    files["base/5/2"] = bytes(changed)
    write_tree(source, {"base/5/2": files["base/5/2"]})
    copier, incr = back_up(storage, source, "20261125-020000I", "20261125-010000F")
    (tmp_path / "hidden").rename(kept)
    assert copier.stats.reused_files == 2 and incr.lists_written == 1
    manifest = read_manifest(storage, "main", "20261125-020000I")
    assert next(e.list_id for e in manifest.entries() if e.path == "base/5/1") == kept_id
    new = manifest.block_list(next(e for e in manifest.entries() if e.path == "base/5/2"))
    old = base.block_list(next(e for e in base.entries() if e.path == "base/5/2"))
    assert len(set(new.frames) - set(old.frames)) == 1  # the changed block's; the rest is the base's
    assert restored(storage, "20261125-020000I", tmp_path / "out") == files
    frames = {(f.pack, f.offset) for m in (base, manifest) for e in m.entries() if e.size
              for f in m.block_list(e).frames}
    report = verify.run(storage, "main")
    assert report.ok and report.lists == 3  # base/5/1's once for both backups, base/5/2's twice
    assert report.frames == len(frames)  # each frame once, though two lists refer to most


def test_verify_in_groups_of_packs_checks_the_same_and_holds_fewer_claims(
        tmp_path: Path, storage: PosixStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    """With many frames, packs are checked a group at a time (the lists read again for each):
    every frame and block is checked as in one pass, damage in a later group is named with
    the backups it breaks, and no more than a group's claims are held at once."""
    source = tmp_path / "src"
    files = {f"base/5/{16384 + i}": os.urandom(BLOCK * 8) for i in range(6)}
    files["global/pg_control"] = os.urandom(8192)
    write_tree(source, files)
    segment = tmp_path / "000000010000000000000002"  # the WAL the backups need
    segment.write_bytes(fake_segment(1, 2))
    archive.push(storage, "main", segment, Codec("zstd", 3))
    back_up(storage, source, "20261125-010000F")
    changed = bytearray(files["base/5/16386"])
    changed[BLOCK * 3] ^= 1
    write_tree(source, {"base/5/16386": bytes(changed)})
    back_up(storage, source, "20261125-020000I", "20261125-010000F", use_mtime=False)
    whole = verify.run(storage, "main")
    assert whole.ok and whole.packs >= 3

    owners_seen: list[list[str]] = []  # each set of claims, told apart by its owners list
    held: list[int] = []  # the frames each set held

    def counting(storage_, cluster, pack, claims, owners, limit):
        if not owners_seen or owners_seen[-1] is not owners:
            owners_seen.append(owners)
            held.append(0)
        held[-1] += len(claims)
        return real_check(storage_, cluster, pack, claims, owners, limit)

    real_check = verify.check_pack

    monkeypatch.setattr(verify, "check_pack", counting)
    monkeypatch.setattr(verify, "MAX_CLAIMS", 4)
    grouped = verify.run(storage, "main")
    assert grouped.ok
    assert (grouped.packs, grouped.frames, grouped.blocks, grouped.lists) == \
        (whole.packs, whole.frames, whole.blocks, whole.lists)
    groups = verify._pack_groups(sorted(p.rsplit("/", 1)[-1] for p in storage.list("clusters/main/packs")),
                                 [read_manifest(storage, "main", i).summary
                                  for i in ("20261125-010000F", "20261125-020000I")])
    assert len(groups) > 1 and len(held) == len(groups)  # a set of claims per group
    assert sum(held) == whole.frames and max(held) < whole.frames

    # damage a frame of a pack of the last group: found, with the backups it breaks
    last = groups[-1][-1]
    path = Path(storage.path_of(layout.pack_key("main", last)))
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    damaged = verify.run(storage, "main")
    assert not damaged.ok
    assert [p.key for p in damaged.problems] == [layout.pack_key("main", last)]
    users = [i for i in ("20261125-010000F", "20261125-020000I")
             if last in read_manifest(storage, "main", i).summary.packs]
    assert users and all(user in damaged.problems[0].affects for user in users)


def test_a_grown_files_list_takes_its_first_ids_from_the_base_list(
        tmp_path: Path, storage: PosixStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocklist, "BASE_MIN_BLOCKS", 16)
    source = tmp_path / "src"
    files = {"global/pg_control": b"c" * 8192, "base/5/1": os.urandom(BLOCK * 40)}
    write_tree(source, files)
    segment = tmp_path / "000000010000000000000002"
    segment.write_bytes(fake_segment(1, 2))
    archive.push(storage, "main", segment, Codec("zstd", 3))

    def entry_of(backup_id: str) -> FileEntry:
        return next(e for e in read_manifest(storage, "main", backup_id).entries()
                    if e.path == "base/5/1")

    def grow(blocks: int) -> None:
        files["base/5/1"] += os.urandom(BLOCK * blocks)
        write_tree(source, {"base/5/1": files["base/5/1"]})

    back_up(storage, source, "20261125-010000F")
    root = entry_of("20261125-010000F")
    assert root.list_id is not None and root.base is None
    grow(2)
    _, first = back_up(storage, source, "20261125-020000I", "20261125-010000F")
    grow(1)
    _, second = back_up(storage, source, "20261125-030000I", "20261125-020000I")
    # each list names the full backup's list as its base (never a list with a base itself),
    # and stores only the ids that list lacks
    for backup_id, packs, blocks in (("20261125-020000I", first, 42), ("20261125-030000I", second, 43)):
        entry = entry_of(backup_id)
        assert entry.base == root.list_id and entry.stored_lists == (entry.list_id, root.list_id)
        listed = read_manifest(storage, "main", backup_id).block_list(entry)
        assert listed.count == blocks and listed.root.ids == listed.ids[:40 * 16]
        assert packs.list_bytes < (blocks - 40 + 4) * 16 + 1024  # not the 40 shared ids
    assert restored(storage, "20261125-030000I", tmp_path / "out") == files
    # the base list outlives the backup that wrote it, as long as a list takes ids from it
    storage.delete(layout.manifest_key("main", "20261125-010000F"))
    storage.delete(layout.manifest_key("main", "20261125-020000I"))
    gc = collect_garbage(storage, "main", grace=0, segment_size=16 * 1024 * 1024)
    assert gc.lists_removed == 1  # the first incremental's own list
    assert storage.exists(layout.list_key("main", root.list_id.hex()))
    report = verify.run(storage, "main")
    assert report.ok, report.problems
    assert restored(storage, "20261125-030000I", tmp_path / "again") == files
    # an unchanged file keeps its entry, base and all; read again, it has the same list
    for backup_id, use_mtime in (("20261125-040000I", True), ("20261125-050000I", False)):
        _, again = back_up(storage, source, backup_id, "20261125-030000I", use_mtime)
        kept, before = entry_of(backup_id), entry_of("20261125-030000I")
        assert (kept.list_id, kept.base) == (before.list_id, before.base)
        assert again.lists_written == 0


def test_an_unchanged_file_read_again_has_its_list_not_one_taking_ids_from_it(
        tmp_path: Path, storage: PosixStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocklist, "BASE_MIN_BLOCKS", 16)
    source = tmp_path / "src"
    write_tree(source, {"base/5/1": os.urandom(BLOCK * 40)})
    back_up(storage, source, "20261125-010000F")
    _, incr = back_up(storage, source, "20261125-020000I", "20261125-010000F", use_mtime=False)
    assert incr.lists_written == 0
    entries = [next(e for e in read_manifest(storage, "main", b).entries() if e.path == "base/5/1")
               for b in ("20261125-010000F", "20261125-020000I")]
    assert entries[1].list_id == entries[0].list_id and entries[1].base is None


def test_a_list_shares_no_ids_when_the_files_start_changed(
        tmp_path: Path, storage: PosixStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocklist, "BASE_MIN_BLOCKS", 16)
    source = tmp_path / "src"
    data = bytearray(os.urandom(BLOCK * 40))
    write_tree(source, {"base/5/1": bytes(data)})
    back_up(storage, source, "20261125-010000F")
    data[BLOCK * 10] ^= 1  # only 10 blocks in common from the start: fewer than the minimum
    write_tree(source, {"base/5/1": bytes(data)})
    back_up(storage, source, "20261125-020000I", "20261125-010000F")
    entry = next(e for e in read_manifest(storage, "main", "20261125-020000I").entries()
                 if e.path == "base/5/1")
    assert entry.list_id is not None and entry.base is None


def test_a_list_whose_base_is_missing_or_not_named_is_refused(
        tmp_path: Path, storage: PosixStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocklist, "BASE_MIN_BLOCKS", 16)
    source = tmp_path / "src"
    data = os.urandom(BLOCK * 40)
    write_tree(source, {"base/5/1": data, "base/5/2": os.urandom(BLOCK * 40)})
    back_up(storage, source, "20261125-010000F")
    other = next(e.list_id for e in read_manifest(storage, "main", "20261125-010000F").entries()
                 if e.path == "base/5/2")
    write_tree(source, {"base/5/1": data + os.urandom(BLOCK)})
    back_up(storage, source, "20261125-020000I", "20261125-010000F")
    manifest = read_manifest(storage, "main", "20261125-020000I")
    entry = next(e for e in manifest.entries() if e.path == "base/5/1")
    assert entry.list_id is not None and entry.base is not None
    with pytest.raises(ChecksumError, match="does not name"):
        manifest.block_list(dataclasses.replace(entry, base=None))
    with pytest.raises(ChecksumError, match="not the one the manifest names"):
        manifest.block_list(dataclasses.replace(entry, base=other))
    storage.delete(layout.list_key("main", entry.base.hex()))
    with pytest.raises(NotFoundError, match=f"base of .*{entry.list_id.hex()}.* is missing"):
        manifest.block_list(entry)
    assert not verify.run(storage, "main").ok


def test_a_list_read_by_its_id_alone_brings_its_base(
        tmp_path: Path, storage: PosixStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    """What delta restore does with the list a file was last restored from."""
    monkeypatch.setattr(blocklist, "BASE_MIN_BLOCKS", 16)
    source = tmp_path / "src"
    data = os.urandom(BLOCK * 40)
    write_tree(source, {"base/5/1": data})
    back_up(storage, source, "20261125-010000F")
    write_tree(source, {"base/5/1": data + os.urandom(BLOCK * 3)})
    back_up(storage, source, "20261125-020000I", "20261125-010000F")
    manifest = read_manifest(storage, "main", "20261125-020000I")
    entry = next(e for e in manifest.entries() if e.path == "base/5/1")
    assert entry.list_id is not None and entry.base is not None
    loaded = blocklist.load_stored(storage, "main", entry.list_id, "L")
    assert loaded.ids == manifest.block_list(entry).ids and loaded.count == 43
    storage.delete(layout.list_key("main", entry.base.hex()))
    with pytest.raises(NotFoundError):
        blocklist.load_stored(storage, "main", entry.list_id, "L")
