"""Files cut into blocks, stored in packs and written back are identical; damage is named."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.backup.blockcopy import BlockCopier, PackSet
from engine.errors import ChecksumError
from engine.postgres import pgdata
from engine.repository import layout
from engine.repository.codec import Codec
from engine.repository.manifest import ManifestWriter, read_manifest
from engine.repository.packs import PackFrame, parse_tail, tail_size
from engine.repository.storage.posix import PosixStorage
from engine.restore.files import FileWriter
from tests.manifests import blocks_of
from tests.overlap import Overlap, OverlapStorage
from tests.trees import tree
from tests.unit.helpers import summary

BLOCK = 64 * 1024
FRAME = 4 * BLOCK


def make_tree(root: Path) -> dict[str, bytes]:
    rng = os.urandom
    files = {
        "PG_VERSION": b"15\n",
        "global/pg_control": rng(8192),
        "base/5/1259": b"\x01" * (BLOCK * 3),  # compressible
        "base/5/16384": rng(BLOCK * 2 + 8192),  # incompressible, short last block
        "base/5/16385.1": bytes(BLOCK * 70),  # zeros, larger than one chunk
        "base/5/empty": b"",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def back_up(tmp_path: Path, algorithm: str = "zstd", jobs: int = 3,
            through: Callable[[PosixStorage], Any] | None = None) -> tuple[PosixStorage, dict[str, bytes]]:
    """A backup of :func:`make_tree` with ``jobs`` workers, writing through ``through``'s
    wrapper of the storage when given."""
    source = tmp_path / "src"
    files = make_tree(source)
    storage = PosixStorage(tmp_path / "repo")
    packs = PackSet(storage if through is None else through(storage), "main", pack_size=1024 * 1024)
    copier = BlockCopier(packs, Codec(algorithm, 3), BLOCK, FRAME, jobs=jobs)  # type: ignore[arg-type]
    writer = ManifestWriter()
    done: list[int] = []
    for entry in copier.copy(pgdata.walk(source, 15), done.append):
        writer.add(entry)
    ids = packs.finish()
    assert sum(done) == sum(len(d) for d in files.values())
    data = b"".join(writer.finish(summary(packs=ids, block_size=BLOCK, frame_size=FRAME)))
    storage.put(layout.manifest_key("main", "20261125-010000F"), data)
    return storage, files


@pytest.mark.parametrize("algorithm", ["zstd", "lz4", "none"])
def test_restore_is_identical(tmp_path: Path, algorithm: str) -> None:
    storage, files = back_up(tmp_path, algorithm)
    manifest = read_manifest(storage, "main", "20261125-010000F")
    target = tmp_path / "dst"
    target.mkdir()
    result = FileWriter(storage, "main", manifest.summary, target, jobs=2).write(manifest, {})
    assert result.files == len(files)
    for name, data in files.items():
        assert (target / name).read_bytes() == data, name
    stored = blocks_of(manifest, "base/5/1259")
    assert stored[0].stored < BLOCK // 10 or algorithm == "none"


def test_backup_copies_chunks_in_parallel(tmp_path: Path) -> None:
    """With 3 jobs, 3 chunks are compressed and written into packs at the same moment (the
    tree has 6 chunks); a serial copy would show one at a time."""
    overlap = Overlap(want=3)
    storage, files = back_up(tmp_path, jobs=3,
                             through=lambda inner: OverlapStorage(inner, overlap, ("write",)))
    packs = len(storage.list(layout.packs_prefix("main")))
    assert overlap.calls == 6 + packs and overlap.peak == 3  # each chunk's frames, each pack's index
    manifest = read_manifest(storage, "main", "20261125-010000F")
    target = tmp_path / "dst"
    target.mkdir()
    FileWriter(storage, "main", manifest.summary, target, jobs=2).write(manifest, {})
    assert {name: (target / name).read_bytes() for name in files} == files


def test_restore_fetches_files_in_parallel(tmp_path: Path) -> None:
    """With 3 jobs, 3 files' blocks are read from the repository at the same moment."""
    storage, files = back_up(tmp_path)
    manifest = read_manifest(storage, "main", "20261125-010000F")
    overlap = Overlap(want=3)
    target = tmp_path / "dst"
    target.mkdir()
    FileWriter(OverlapStorage(storage, overlap, ("read_range",)), "main",  # type: ignore[arg-type]
               manifest.summary, target, jobs=3).write(manifest, {})
    assert overlap.peak == 3
    assert {name: (target / name).read_bytes() for name in files} == files


def test_consecutive_blocks_share_a_compressed_frame(tmp_path: Path) -> None:
    storage, _ = back_up(tmp_path)
    manifest = read_manifest(storage, "main", "20261125-010000F")
    zeros = blocks_of(manifest, "base/5/16385.1")
    assert len(zeros) == 70
    frames = [zeros[i:i + 4] for i in range(0, 70, 4)]
    for frame in frames:
        assert len({(b.pack, b.offset, b.stored) for b in frame}) == 1
        assert [b.skip for b in frame] == [i * BLOCK for i in range(len(frame))]
    assert len({(b.pack, b.offset) for b in zeros}) == 18
    assert zeros[0].stored < 200  # 256 KiB of zeros compress to almost nothing


def test_incompressible_blocks_are_stored_raw(tmp_path: Path) -> None:
    storage, _ = back_up(tmp_path)
    manifest = read_manifest(storage, "main", "20261125-010000F")
    random_file = blocks_of(manifest, "base/5/16384")
    assert [b.codec for b in random_file] == [0, 0, 0]
    assert [b.raw for b in random_file] == [BLOCK, BLOCK, 8192]


def test_damaged_block_is_named_and_refused(tmp_path: Path) -> None:
    storage, _ = back_up(tmp_path)
    manifest = read_manifest(storage, "main", "20261125-010000F")
    block = blocks_of(manifest, "base/5/16384")[1]
    assert block.codec == 0  # random data: the frame is stored raw, so the damage hits block 1
    pack = Path(storage.path_of(layout.pack_key("main", block.pack)))
    data = bytearray(pack.read_bytes())
    data[block.offset + block.skip + 100] ^= 0xFF
    pack.write_bytes(bytes(data))
    storage.close()
    target = tmp_path / "dst"
    target.mkdir()
    with pytest.raises(ChecksumError, match=r"base/5/16384 block 1 .*checksum mismatch"):
        FileWriter(storage, "main", manifest.summary, target, jobs=2).write(manifest, {})
    assert not (target / "global" / "pg_control").exists()  # cannot be started by mistake


def test_full_packs_are_committed_and_replaced(tmp_path: Path) -> None:
    storage = PosixStorage(tmp_path / "repo")
    packs = PackSet(storage, "main", pack_size=1024 * 1024)
    first = packs.borrow()
    first.append([b"x" * (1024 * 1024)], [hashlib.sha256(b"x" * (1024 * 1024)).digest()])
    packs.give_back(first)
    assert storage.exists(layout.pack_key("main", packs.ids[0]))  # durable and visible
    second = packs.borrow()
    assert second.index == 1
    second.append([b"y"], [hashlib.sha256(b"y").digest()])
    packs.give_back(second)
    assert packs.borrow() is second  # not full: lent again
    packs.give_back(second)
    assert packs.finish() == packs.ids and len(packs.ids) == 2
    tails = 2 * tail_size(1)  # each pack's index (one frame) and footer
    assert packs.stored_bytes == 1024 * 1024 + 1 + tails
    end = storage.get(layout.pack_key("main", packs.ids[1]))
    assert parse_tail(end, len(end), "p") == [PackFrame(0, 1, hashlib.sha256(b"y").digest())]


def test_damage_in_a_compressed_frame_names_its_blocks(tmp_path: Path) -> None:
    storage, _ = back_up(tmp_path)
    manifest = read_manifest(storage, "main", "20261125-010000F")
    frame = blocks_of(manifest, "base/5/1259")[0]  # 3 blocks, 1 frame
    pack = Path(storage.path_of(layout.pack_key("main", frame.pack)))
    data = bytearray(pack.read_bytes())
    data[frame.offset + frame.stored // 2] ^= 0x01
    pack.write_bytes(bytes(data))
    storage.close()
    target = tmp_path / "dst"
    target.mkdir()
    with pytest.raises(ChecksumError, match=r"base/5/1259 blocks 0\.\.2 .*checksum mismatch"):
        FileWriter(storage, "main", manifest.summary, target, jobs=2).write(manifest, {})


def test_failed_backup_leaves_no_packs(tmp_path: Path) -> None:
    storage = PosixStorage(tmp_path / "repo")
    packs = PackSet(storage, "main", pack_size=1024 * 1024)
    pack = packs.borrow()
    pack.append([b"x" * 2_000_000], [bytes(32)])
    packs.give_back(pack)  # over pack_size: committed
    packs.borrow().append([b"y"], [bytes(32)])
    packs.discard()
    assert storage.list("clusters/main/packs") == []


def test_delta_restore_equals_a_clean_restore(tmp_path: Path) -> None:
    storage, files = back_up(tmp_path)
    manifest = read_manifest(storage, "main", "20261125-010000F")
    clean = tmp_path / "clean"
    clean.mkdir()
    FileWriter(storage, "main", manifest.summary, clean, jobs=2).write(manifest, {})
    # An old copy: one block changed, a file truncated, one removed, extras added.
    old = tmp_path / "old"
    old.mkdir()
    FileWriter(storage, "main", manifest.summary, old, jobs=2).write(manifest, {})
    relation = bytearray((old / "base/5/16385.1").read_bytes())
    relation[BLOCK * 33 + 5] = 0x7F
    (old / "base/5/16385.1").write_bytes(bytes(relation))
    (old / "base/5/16384").write_bytes(b"short")
    (old / "PG_VERSION").unlink()
    (old / "base/5/99999").write_bytes(b"not in the backup")
    (old / "pg_stray").mkdir()
    (old / "pg_stray" / "x").write_text("x")
    written: list[int] = []
    result = FileWriter(storage, "main", manifest.summary, old, jobs=2, progress=written.append,
                        delta=True).write(manifest, {})
    assert tree(old) == tree(clean)
    assert result.removed == 2
    # Only what differed was written: one block, one file, PG_VERSION and pg_control.
    assert result.written_bytes == (BLOCK + len(files["base/5/16384"]) + len(files["PG_VERSION"])
                                    + len(files["global/pg_control"]))
    assert sum(written) == sum(len(d) for d in files.values())  # progress covers every byte


def test_delta_refuses_a_directory_that_is_not_a_data_directory(tmp_path: Path) -> None:
    from engine.errors import RestoreError
    from engine.restore.files import prepare_directory

    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(RestoreError, match="does not look like a PostgreSQL data directory"):
        prepare_directory(home, force=False, delta=True)
    assert (home / "thesis.tex").exists()
    (home / "PG_VERSION").write_text("15\n")
    prepare_directory(home, force=False, delta=True)  # an old data directory is fine
