"""Heap pages stored split (tuple data after the rest of the pages): exact for any input,
chosen per file only where it pays, refused when damaged."""

from __future__ import annotations

import hashlib
import random
import struct
import time
from pathlib import Path

import pytest
from engine.repository._heapsplit import join, joins_back, split

from engine.backup import direct_read
from engine.backup.blockcopy import BaseFiles, BlockCopier, PackSet
from engine.errors import ChecksumError
from engine.postgres import pgdata
from engine.repository import codec as codec_module
from engine.repository import layout
from engine.repository.blocklist import BlockList
from engine.repository.codec import SPLIT, SPLIT_SKIPS, ZSTD, Choice, Codec, decompress
from engine.repository.manifest import ManifestWriter, read_manifest
from engine.repository.storage.posix import PosixStorage
from tests.unit.helpers import summary
from tests.unit.test_codec import heap_pages

PAGE = 8192


def payload(row_id: int) -> bytes:
    return b"".join(hashlib.md5(b"%c%d" % (c, row_id)).hexdigest().encode() for c in b"abcd")


def hex_pages(count: int, first_id: int = 1) -> bytes:
    """Pages of an append-only table (id bigint, payload text): 128 hex characters of
    md5 digests per row, as the benchmark's `grow` (half compressible, never repeated)."""
    out = bytearray()
    row_id = first_id
    for _ in range(count):
        page = bytearray(PAGE)
        upper, pointers = PAGE, []
        while True:
            text = payload(row_id)
            data = struct.pack("<qI", row_id, len(text) + 4 << 2) + text
            row = struct.pack("<IIIHHHHHB", 731, 0, 0, 0, 0, len(pointers) + 1, 2, 0x0802, 24) + b"\0"
            row += data
            length = len(row)
            row += b"\0" * (-len(row) % 8)
            if upper - len(row) < 24 + 4 * (len(pointers) + 1):
                break
            upper -= len(row)
            page[upper:upper + len(row)] = row
            pointers.append(upper | 1 << 15 | length << 17)
            row_id += 1
        page[:24] = struct.pack("<IIHHHHHHI", 0, 1 << 20, 0, 0, 24 + 4 * len(pointers), upper,
                                PAGE, PAGE | 4, 0)
        for i, pointer in enumerate(pointers):
            page[24 + 4 * i:28 + 4 * i] = struct.pack("<I", pointer)
        out += page
    return bytes(out)


def odd_inputs() -> list[bytes]:
    rnd = random.Random(7)
    pages = bytearray(hex_pages(3))
    overlapping = bytearray(pages[:PAGE])
    overlapping[24:28] = overlapping[28:32]  # two line pointers to one tuple
    outside = bytearray(pages[:PAGE])
    outside[24:28] = struct.pack("<I", 8000 | 1 << 15 | 400 << 17)  # past the page's end
    big_hoff = bytearray(pages[:PAGE])
    lp = struct.unpack_from("<I", big_hoff, 24)[0]
    big_hoff[(lp & 0x7fff) + 22] = 255  # t_hoff past the tuple: nothing of it moves
    bad_lower = bytearray(pages[:PAGE])
    bad_lower[12:14] = struct.pack("<H", 9000)
    return [b"", b"x", bytes(PAGE), bytes(pages), bytes(pages[:PAGE + 100]), bytes(overlapping),
            bytes(outside), bytes(big_hoff), bytes(bad_lower), heap_pages(3),
            rnd.randbytes(3 * PAGE), bytes(pages[:PAGE]) + rnd.randbytes(PAGE)]


@pytest.mark.parametrize("skip", [0, 8, 12, 255])
@pytest.mark.parametrize("data", odd_inputs(), ids=lambda d: f"{len(d)}B-{hashlib.sha256(d).hexdigest()[:6]}")
def test_join_gives_back_exactly_what_split_was_given(data: bytes, skip: int) -> None:
    pages = split(data, skip)
    assert len(pages) == len(data) + 5
    assert join(pages) == data


@pytest.mark.parametrize("data", odd_inputs()[2:], ids=lambda d: f"{len(d)}B")
def test_joins_back_compares_the_joined_pages_with_the_original(data: bytes) -> None:
    pages = split(data, 8)
    assert joins_back(pages, data)
    for at in (0, len(data) // 2, len(data) - 1):
        other = bytearray(data)
        other[at] ^= 1
        assert not joins_back(pages, bytes(other))
    assert not joins_back(pages, data[:-1]) and not joins_back(pages[:4], data)


def test_split_moves_the_tuples_data_after_the_rest() -> None:
    data = hex_pages(2)
    pages = split(data, 12)  # the id (8 bytes) and the text's length (4) stay
    first = int.from_bytes(pages[1:5], "little")
    assert pages[0] == 12
    rows = [(struct.unpack_from("<H", data, page + 12)[0] - 24) // 4 for page in (0, PAGE)]
    # each page's rows in the order of their place on the page (the last inserted first)
    expected = [payload(i) for i in reversed(range(1, rows[0] + 1))]
    expected += [payload(i) for i in reversed(range(rows[0] + 1, rows[0] + rows[1] + 1))]
    assert pages[5 + first:] == b"".join(expected)
    assert len(pages[5:5 + first]) == len(data) - 128 * sum(rows)


@pytest.mark.parametrize("cut", ["header", "first stream", "second stream"])
def test_damaged_split_data_is_refused(cut: str) -> None:
    pages = bytearray(split(hex_pages(2), 8))
    if cut == "header":
        pages[1:5] = (len(pages)).to_bytes(4, "little")
    elif cut == "first stream":
        pages[1:5] = (int.from_bytes(pages[1:5], "little") - 1).to_bytes(4, "little")
    else:
        pages[1:5] = (int.from_bytes(pages[1:5], "little") + 300).to_bytes(4, "little")
    with pytest.raises(ValueError):
        join(bytes(pages))


def test_hex_heavy_heap_pages_are_stored_split_and_read_back() -> None:
    codec = Codec("zstd", 3)
    data = hex_pages(64)
    plain = codec.compress(data, probe=False, tuned=True)[1]
    codec_id, stored, choice = codec.compress_smaller(data, heap=True)
    assert codec_id == SPLIT and choice is not None and choice.tuned and choice.split in SPLIT_SKIPS
    assert len(stored) < 0.95 * len(plain)
    assert decompress(SPLIT, stored, len(data)) == data
    assert decompress(SPLIT, stored, None, limit=len(data)) == data  # a frame of the limit's size
    # only relation files are tried
    assert codec.compress_smaller(data)[0] == ZSTD


def test_the_split_is_not_used_where_it_saves_little() -> None:
    data = heap_pages(64)  # pgbench_accounts-like: zstd alone stores a few percent
    assert Codec("zstd", 3).compress_smaller(data, heap=True)[0] == ZSTD


def test_a_split_that_would_not_join_back_is_never_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.repository._heapsplit as heapsplit

    monkeypatch.setattr(heapsplit, "joins_back", lambda pages, data: False)
    codec = Codec("zstd", 3)
    data = hex_pages(16)
    codec_id, stored = codec.compress(data, probe=False, split=8)
    assert codec_id == ZSTD and decompress(ZSTD, stored, len(data)) == data
    assert codec.compress_smaller(data, heap=True)[0] == ZSTD


def test_damaged_split_frames_are_a_checksum_error() -> None:
    codec = Codec("zstd", 3)
    data = hex_pages(8)
    stored = codec.compress(data, probe=False, split=8)[1]
    pages = bytearray(split(data, 8))
    pages[1] ^= 1
    forged = codec_module._zstd_compressor(3, True).compress(bytes(pages))
    with pytest.raises(ChecksumError, match="damaged"):
        decompress(SPLIT, forged, len(data))
    with pytest.raises(ChecksumError, match="declares"):
        decompress(SPLIT, stored, None, limit=len(data) - PAGE)


def test_a_backup_splits_every_frame_of_a_file_whose_first_frame_chose_it(tmp_path: Path) -> None:
    source = tmp_path / "pgdata"
    (source / "base" / "5").mkdir(parents=True)
    data = hex_pages(192)
    (source / "base" / "5" / "16384").write_bytes(data)
    (source / "base" / "5" / "16385").write_bytes(heap_pages(64))
    codec = Codec("zstd", 3)
    frame = 128 * 1024
    choice = codec.compress_smaller(data[:frame], heap=True)[2]
    assert choice is not None and choice.split is not None
    copier = BlockCopier(PackSet(PosixStorage(tmp_path / "repo"), "main", 1 << 20), codec,
                         16 * 1024, frame, jobs=2)
    entries = {e.path: e for e in copier.copy(pgdata.walk(source, 15)) if e.kind == "file"}
    split_bytes = sum(len(codec.compress(data[i:i + frame], probe=False, split=choice.split)[1])
                      for i in range(0, len(data), frame))
    plain_bytes = sum(len(codec.compress(heap_pages(64)[i:i + frame], probe=False)[1])
                      for i in range(0, 64 * PAGE, frame))
    assert copier.stats.kinds["relation"][1] == split_bytes + plain_bytes
    assert Choice(True, choice.split) == choice
    assert entries["base/5/16384"].size == len(data)


def test_a_first_frame_of_a_few_pages_does_not_decide_against_the_split(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An incremental's first new frame of a file may be one changed page: the split is
    tried on its first frame large enough to judge by."""
    # one copy thread (reads through the cache), so the one-block frame is compressed first
    monkeypatch.setattr(direct_read, "_direct_works", False)
    block = 16 * 1024
    source = tmp_path / "pgdata"
    (source / "base" / "5").mkdir(parents=True)
    relation = source / "base" / "5" / "16384"
    old = hex_pages(600)  # 300 blocks: two chunks of 256 blocks
    relation.write_bytes(old)
    storage = PosixStorage(tmp_path / "repo")
    codec = Codec("zstd", 3)

    def back_up(backup_id: str, base: BaseFiles | None) -> BlockList:
        packs = PackSet(storage, "main", 1 << 20)
        copier = BlockCopier(packs, codec, block, 128 * 1024, jobs=1, base=base)
        writer = ManifestWriter()
        for entry in copier.copy(pgdata.walk(source, 15)):
            writer.add(entry)
        storage.put(layout.manifest_key("main", backup_id), b"".join(writer.finish(summary(
            backup_id, packs=packs.finish(), block_size=block, frame_size=128 * 1024))))
        manifest = read_manifest(storage, "main", backup_id)
        return manifest.block_list(next(e for e in manifest.entries() if e.path == "base/5/16384"))

    back_up("20261125-010000F", None)
    changed = bytearray(old)
    changed[5 * block + 100] ^= 1  # one block of the first chunk: a frame of one block
    relation.write_bytes(bytes(changed) + hex_pages(80, first_id=10**6))
    base = BaseFiles(read_manifest(storage, "main", "20261125-010000F"), time.time() + 3600, False)
    blocks = back_up("20261125-020000I", base)
    assert blocks.place(5)[0].codec == ZSTD  # judged alone, the one block is not split
    assert {blocks.place(n)[0].codec for n in range(300, 340)} == {SPLIT}
