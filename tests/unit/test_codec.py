"""Block ids computed in one C call, and zstd's two parameter sets: the one tuned on
PostgreSQL data and zstd's own level, the smaller kept per file."""

from __future__ import annotations

import hashlib
import os
import random
import struct
from pathlib import Path

import pytest

from engine.backup.blockcopy import BlockCopier, PackSet
from engine.postgres import pgdata
from engine.repository import layout
from engine.repository.codec import ZSTD, Choice, Codec, decompress
from engine.repository.storage.posix import PosixStorage

BLOCK = 16 * 1024


def heap_pages(count: int, seed: int = 1) -> bytes:
    """Pages laid out as PostgreSQL lays out a pgbench_accounts heap: header, line
    pointers, tuples of (aid, bid, abalance, 84 blanks) from the end."""
    rnd = random.Random(seed)
    out = bytearray()
    aid = 1
    for _ in range(count):
        page = bytearray(8192)
        upper, pointers = 8192, []
        while True:
            data = struct.pack("<iii", aid, aid // 100000 + 1,
                               rnd.choice([0, 0, 0, rnd.randint(-5000, 5000)])) + b" " * 84
            row = struct.pack("<IIIHHHBB", rnd.randint(700, 800), 0, 0, 0, 2, 0x0902, 24, 0) + data
            row += b"\0" * (-len(row) % 8)
            if upper - len(row) < 24 + 4 * (len(pointers) + 1):
                break
            upper -= len(row)
            page[upper:upper + len(row)] = row
            pointers.append(upper | 1 << 15 | len(row) << 17)
            aid += 1
        page[:24] = struct.pack("<IIHHHHHHI", 0, rnd.randint(1, 1 << 30), 0, 0,
                                24 + 4 * len(pointers), upper, 8192, 8196, 0)
        for i, pointer in enumerate(pointers):
            page[24 + 4 * i:28 + 4 * i] = struct.pack("<I", pointer)
        out += page
    return bytes(out)


def prose(size: int) -> bytes:
    """General text: Python's own sources."""
    sources = sorted(Path(os.__file__).parent.glob("*.py"))
    return b"".join(p.read_bytes() for p in sources[:60])[:size]


@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, 5 * BLOCK + 100])
def test_block_ids_are_the_sha256_prefix_of_each_block(size: int) -> None:
    data = os.urandom(size)
    expected = b"".join(layout.block_id(data[i:i + BLOCK]) for i in range(0, size, BLOCK))
    assert layout.block_ids(data, BLOCK) == expected
    assert layout.block_ids(memoryview(bytearray(data)), BLOCK) == expected
    if size:
        assert expected[:16] == hashlib.sha256(data[:BLOCK]).digest()[:16]


def test_differing_runs_name_each_run_of_changed_blocks() -> None:
    ids = [bytes([i]) * 16 for i in range(10)]
    other = list(ids)
    for changed in (0, 3, 4, 5, 9):
        other[changed] = b"\xff" * 16
    assert layout.differing_runs(b"".join(ids), b"".join(other)) == [(0, 1), (3, 3), (9, 1)]
    assert layout.differing_runs(b"".join(ids), b"".join(ids)) == []
    # a shorter one (the file on disk ends early): the positions it lacks differ
    assert layout.differing_runs(b"".join(ids[:7]), b"".join(ids)) == [(7, 3)]
    assert layout.differing_runs(b"", b"".join(ids[:2])) == [(0, 2)]


@pytest.mark.parametrize(("data", "tuned_wins"), [(heap_pages(64), True), (prose(512 * 1024), False)],
                         ids=["heap pages", "text"])
def test_the_smaller_of_both_parameter_sets_is_kept(data: bytes, tuned_wins: bool) -> None:
    codec = Codec("zstd", 3)
    tuned = codec.compress(data, probe=False, tuned=True)[1]
    plain = codec.compress(data, probe=False, tuned=False)[1]
    assert (len(tuned) < len(plain)) is tuned_wins  # each set wins on its kind of data
    codec_id, stored, choice = codec.compress_smaller(data)
    assert codec_id == ZSTD and choice == Choice(tuned_wins)
    assert stored == (tuned if tuned_wins else plain)
    assert decompress(ZSTD, stored, len(data)) == data


def test_wal_is_compressed_with_the_tuned_set_in_one_thread() -> None:
    import zstandard

    from engine.wal import archive

    codec = Codec("zstd", 3)
    segment = heap_pages(2048)  # 16 MiB
    obj = archive.encode(segment, codec, large=True)
    codec_id, stored = archive.HEADER.unpack_from(obj)[1], obj[archive.HEADER.size:]
    assert len(stored) < len(codec.compress(segment, probe=False, tuned=False)[1])
    assert decompress(codec_id, stored, len(segment)) == segment
    # one thread: zstd's workers would cut the segment into jobs and give other bytes
    tuned = dict(window_log=19, chain_log=16, search_log=1, strategy=zstandard.STRATEGY_FAST,
                 hash_log=13, min_match=5)
    alone = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters(**tuned))
    workers = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters(
        **tuned, threads=2, job_size=4 << 20))
    assert bytes(stored) == alone.compress(segment) != workers.compress(segment)


def test_levels_above_the_tuned_ones_are_zstds_own() -> None:
    codec = Codec("zstd", 9)
    data = heap_pages(16)
    assert codec.compress_smaller(data)[2] is None
    assert codec.compress(data, tuned=True) == codec.compress(data, tuned=False)


def test_a_backup_keeps_each_files_choice_for_its_later_frames(tmp_path: Path) -> None:
    source = tmp_path / "pgdata"
    (source / "base" / "5").mkdir(parents=True)
    (source / "base" / "5" / "16384").write_bytes(heap_pages(256))
    (source / "notes.txt").write_bytes(prose(2 * 1024 * 1024))
    codec = Codec("zstd", 3)
    frame = 128 * 1024

    def stored_with(path: str, tuned: bool) -> int:
        data = (source / path).read_bytes()
        return sum(len(codec.compress(data[i:i + frame], probe=False, tuned=tuned)[1])
                   for i in range(0, len(data), frame))

    copier = BlockCopier(PackSet(PosixStorage(tmp_path / "repo"), "main", 1 << 20), codec,
                         BLOCK, frame, jobs=2)
    files = [e.path for e in copier.copy(pgdata.walk(source, 15)) if e.kind == "file"]
    assert sorted(files) == ["base/5/16384", "notes.txt"]
    # every frame of each file stored the way its first frame chose, the smaller way
    relation, other = copier.stats.kinds["relation"][1], copier.stats.kinds["other"][1]
    assert relation == stored_with("base/5/16384", True) < stored_with("base/5/16384", False)
    assert other == stored_with("notes.txt", False) < stored_with("notes.txt", True)


def test_the_wal_path_loads_zstds_compiled_backend_alone() -> None:
    """Without zstandard's package (its __init__ imports typing and platform), and the same
    classes once something imports the package; a backend policy set means the package."""
    import subprocess
    import sys

    probe = ("import sys; from engine.repository import zstd_backend; z = zstd_backend.module(); "
             "print(z.__name__, 'zstandard' in sys.modules, 'typing' in sys.modules); "
             "import zstandard; print(zstandard.ZstdCompressor is z.ZstdCompressor)")
    env = {"PATH": "/usr/bin:/bin"}
    alone = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                           check=True).stdout.split()
    assert alone == ["zstandard.backend_c", "False", "False", "True"]
    policy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            env={**env, "PYTHON_ZSTANDARD_IMPORT_POLICY": "cext"}).stdout.split()
    assert policy == ["zstandard", "True", "True", "True"]
