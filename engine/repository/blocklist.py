"""Block lists: where each block of one file is stored, as one self-contained object.

A list names its packs by id (not by their place in one backup's pack list), so the
same list is valid in every backup that holds the file unchanged. Lists are stored
under the SHA-256 of their bytes (content-addressed, written put-if-absent; in an
encrypted repository under their HMAC-SHA256, and sealed), so two
backups that hold a file with the same blocks share one object, and a manifest refers
to an unchanged file with a few bytes whatever its size. Lists of small files
(:data:`INLINE_MAX` bytes at most) are kept inline in their manifest entry instead, so a
full backup writes one object per large file, not one per file.

Layout (little-endian)::

    header  magic "LBLIST", format u16, block size u32, file size u64,
            packs u32, frames u32, runs u32, base list id (32, zeroes: none), shared u32
    packs   16 bytes each: the ids of the packs the frames are in
    frames  pack u32, offset u64, stored u32, codec u8, SHA-256 of the stored frame (32)
    runs    frame u32, count u32, skip u32: the next ``count`` blocks of the file are
            consecutive blocks of that frame, the first at ``skip`` in its decompressed data
    ids     16 bytes per block, in file order: the first 128 bits of its SHA-256; but for
            the first ``shared`` blocks, whose ids are those of the base list's first blocks

Every block but the file's last is ``block size`` bytes, so raw sizes are not stored.
Everything is kept as bytes and small arrays, never as one Python object per block.

A stored list may take its first ids from a base list (its id in the header): a file
that grew (an append-only table's last segment) would otherwise store again the ids of
every block it had, 2 MiB per GiB, in each backup. The base is always a list without a
base of its own, so reading a list reads two objects at most, and a manifest entry names
the base beside the list (expire, copies and verify keep and check both without reading
the list). Only ids are shared: frames and runs are small, and stay whole in each list.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import sys
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

from engine.errors import ChecksumError
from engine.repository import formats
from engine.repository.encryption import RepositoryKeys, keys_of
from engine.repository.layout import BLOCK_ID_BYTES, differing_runs, list_key
from engine.repository.storage import Storage

MAGIC = b"LBLIST"
HEADER = struct.Struct("<6sHIQIII32sI")
FRAME = struct.Struct("<IQIB32s")
RUN = struct.Struct("<III")
PACK_ID_BYTES = 16
INLINE_MAX = 512  # lists up to this size live in the manifest entry
BASE_MIN_BLOCKS = 4096  # a list takes ids from a base only when it shares this many (64 KiB)
NO_BASE = bytes(32)
_ID = BLOCK_ID_BYTES
assert array("I").itemsize == 4


class Frame(NamedTuple):
    """A compressed frame: ``stored`` bytes at ``offset`` in pack ``pack`` (its id)."""

    pack: str
    offset: int
    stored: int
    codec: int
    digest: bytes  # SHA-256 of the stored bytes


@dataclass(frozen=True, slots=True)
class BlockRef:
    """One block of a file, or ``blocks`` consecutive ones stored one after the other in
    one frame: their ids (concatenated) and where they are stored.

    The blocks are the ``raw`` bytes at ``skip`` in the decompressed frame at ``offset`` in
    pack ``pack``, whose ``stored`` bytes have the SHA-256 ``frame_digest``. Checking the
    stored frame proves the blocks as well as re-hashing them would (decompression is exact).
    """

    digest: bytes
    pack: str
    offset: int
    stored: int
    raw: int
    codec: int
    skip: int
    frame_digest: bytes
    blocks: int = 1


def _uint32(data: bytes | memoryview) -> array:
    values = array("I")
    values.frombytes(data)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def list_id(data: bytes, name_key: bytes | None = None) -> bytes:
    """The identity (and key) of a stored list: the SHA-256 of its bytes, or, in an
    encrypted repository, their HMAC-SHA256 under its ``name_key``."""
    if name_key is not None:
        return hmac.new(name_key, data, hashlib.sha256).digest()
    return hashlib.sha256(data).digest()


def read_stored(storage: Storage, key: str, expected: bytes, what: str) -> bytes:
    """The bytes of the stored list ``key``, checked against its id ``expected``.
    NotFoundError when missing, ChecksumError when damaged."""
    return check_stored(storage.get(key), key, expected, keys_of(storage), what)


def load_stored(storage: Storage, cluster: str, ident: bytes, what: str) -> BlockList:
    """The stored list ``ident`` of ``cluster``, with the base it names read and checked too
    (for a reader that has the list's id but no manifest entry naming the base).
    NotFoundError when either is missing, ChecksumError when either is damaged."""
    key = list_key(cluster, ident.hex())
    data = read_stored(storage, key, ident, what)
    base_id = BlockList.base_of(data)
    base = None
    if base_id is not None:
        base_key = list_key(cluster, base_id.hex())
        base_what = f"block list {base_key} (base of {key})"
        base = BlockList(read_stored(storage, base_key, base_id, base_what), base_what)
    return BlockList(data, what, base)


def check_stored(stored: bytes, key: str, expected: bytes, keys: RepositoryKeys | None,
                 what: str) -> bytes:
    """The list in ``stored`` (the object ``key``), checked against its id ``expected``:
    opened first with the repository's ``keys``. ChecksumError when damaged."""
    data = stored if keys is None else keys.open(stored, key.encode(), what)
    if list_id(data, None if keys is None else keys.name_key) != expected:
        raise ChecksumError(f"{what}: checksum mismatch, the stored list is damaged")
    return data


class BlockList:
    """A parsed block list; ``what`` names it in errors (its key, or the manifest entry)."""

    __slots__ = ("_base_list", "_run_count", "_run_frame", "_run_skip", "_run_start", "base",
                 "block_size", "count", "frames", "ids", "packs", "size")

    def __init__(self, data: bytes, what: str, base: BlockList | None = None) -> None:
        """``base``: the list named in the header as base (read and checked by the caller),
        required when there is one."""
        if data[:len(MAGIC)] != MAGIC or len(data) < HEADER.size:
            raise ChecksumError(f"{what}: not a Lifeboat block list (damaged header)")
        _, fmt, block_size, size, n_packs, n_frames, n_runs, base_id, shared = HEADER.unpack_from(data)
        formats.check(f"block list {what}", fmt, formats.BLOCK_LIST)
        self.block_size, self.size = block_size, size
        self.count = -(-size // block_size) if block_size else -1
        self.base = None if base_id == NO_BASE else base_id
        at = HEADER.size
        ends = at + n_packs * PACK_ID_BYTES + n_frames * FRAME.size + n_runs * RUN.size
        if block_size <= 0 or self.count <= 0 or shared > self.count or \
                len(data) != ends + (self.count - shared) * _ID or (self.base is None and shared):
            raise ChecksumError(f"{what}: damaged block list (its sizes do not add up)")
        prefix = b""
        if self.base is not None:
            if base is None:
                raise ChecksumError(f"{what}: takes ids from list {self.base.hex()}, which the "
                                    "manifest does not name (damaged or inconsistent)")
            if base.base is not None or base.count < shared or base.block_size != block_size:
                raise ChecksumError(f"{what}: its base list does not fit it (damaged)")
            prefix = base.ids[:shared * _ID]
        view = memoryview(data)
        self.packs = [view[i:i + PACK_ID_BYTES].hex() for i in range(at, at + n_packs * PACK_ID_BYTES,
                                                                       PACK_ID_BYTES)]
        at += n_packs * PACK_ID_BYTES
        try:
            self.frames = [Frame(self.packs[p], offset, stored, codec, digest) for p, offset, stored,
                           codec, digest in FRAME.iter_unpack(view[at:at + n_frames * FRAME.size])]
        except IndexError:
            raise ChecksumError(f"{what}: damaged block list (a frame names pack {n_packs} or "
                                "above)") from None
        at += n_frames * FRAME.size
        runs = _uint32(view[at:at + n_runs * RUN.size])
        self._run_frame, self._run_count, self._run_skip = runs[0::3], runs[1::3], runs[2::3]
        self._run_start = [0, *accumulate(self._run_count)]
        if self._run_start[-1] != self.count or (n_runs and max(self._run_frame) >= n_frames):
            raise ChecksumError(f"{what}: damaged block list (its runs do not match its blocks)")
        self.ids = prefix + bytes(view[ends:]) if prefix else bytes(view[ends:])
        self._base_list = base if self.base is not None else None

    @property
    def root(self) -> BlockList:
        """The list a later list of this file may take ids from: this one, or its base."""
        return self._base_list if self._base_list is not None else self

    @staticmethod
    def base_of(data: bytes) -> bytes | None:
        """The id of the base list the list ``data`` takes its first ids from, if any (None
        too when ``data`` is no list: reading it says why)."""
        if len(data) < HEADER.size or data[:len(MAGIC)] != MAGIC:
            return None
        base_id = HEADER.unpack_from(data)[7]
        return None if base_id == NO_BASE else base_id

    def raw(self, number: int) -> int:
        return min(self.block_size, self.size - number * self.block_size)

    def block_id(self, number: int) -> bytes:
        return self.ids[number * _ID:(number + 1) * _ID]

    def segments(self, first: int = 0, end: int | None = None) -> Iterator[tuple[Frame, int, int, int]]:
        """``(frame, first block, count, skip of the first)`` for blocks ``first``..``end``, in
        file order: consecutive blocks of the file that are consecutive in one frame."""
        end = self.count if end is None else min(end, self.count)
        run = bisect_right(self._run_start, first) - 1
        number = first
        while number < end:
            start = self._run_start[run]
            stop = min(end, start + self._run_count[run])
            yield (self.frames[self._run_frame[run]], number, stop - number,
                   self._run_skip[run] + (number - start) * self.block_size)
            number = stop
            run += 1

    def place(self, number: int) -> tuple[Frame, int]:
        """The frame holding block ``number`` and its skip in it."""
        run = bisect_right(self._run_start, number) - 1
        return (self.frames[self._run_frame[run]],
                self._run_skip[run] + (number - self._run_start[run]) * self.block_size)

    def runs(self, first: int, count: int) -> list[tuple[int, BlockRef]]:
        """``(first block number, ref)`` for ``count`` blocks from ``first``, one ref per run of
        blocks consecutive in the file and in one frame (what a clean restore writes): the
        work per block stays in C."""
        size = self.block_size
        return [(number, BlockRef(self.ids[number * _ID:(number + n) * _ID], frame.pack,
                                  frame.offset, frame.stored,
                                  min(n * size, self.size - number * size), frame.codec, skip,
                                  frame.digest, n))
                for frame, number, n, skip in self.segments(first, first + count)]

    def refs(self, first: int, count: int) -> list[tuple[int, BlockRef]]:
        """``(block number, ref)`` for ``count`` blocks from ``first`` (a restore batch)."""
        out: list[tuple[int, BlockRef]] = []
        size = self.block_size
        for frame, number, n, skip in self.segments(first, first + count):
            for k in range(number, number + n):
                out.append((k, BlockRef(self.ids[k * _ID:(k + 1) * _ID], frame.pack, frame.offset,
                                        frame.stored, min(size, self.size - k * size), frame.codec,
                                        skip, frame.digest)))
                skip += size
        return out


class ListBuilder:
    """Builds the list of one file from its runs, in file order."""

    def __init__(self, block_size: int) -> None:
        self._block_size = block_size
        self._frames: dict[Frame, int] = {}
        self._packs: dict[str, int] = {}
        self._runs = array("I")
        self._ids: list[bytes] = []
        self._next_skip = -1

    def add(self, frame: Frame, count: int, skip: int) -> None:
        """The next ``count`` blocks of the file are consecutive in ``frame`` from ``skip``."""
        index = self._frames.get(frame)
        if index is None:
            index = self._frames[frame] = len(self._frames)
            self._packs.setdefault(frame.pack, len(self._packs))
        runs = self._runs
        if runs and runs[-3] == index and skip == self._next_skip:
            runs[-2] += count
        else:
            runs.extend((index, count, skip))
        self._next_skip = skip + count * self._block_size

    def add_ids(self, ids: bytes) -> None:
        self._ids.append(ids)

    @property
    def pack_ids(self) -> list[str]:
        return list(self._packs)

    def finish(self, size: int, base: tuple[bytes, bytes] | None = None) -> bytes:
        """The list object of a file of ``size`` bytes. ``base``: the id and the ids of a
        list (one without a base) to take the first ids from, when they are the same for at
        least :data:`BASE_MIN_BLOCKS` blocks; not when they are all the same (the file did not
        change: its list is then that very list, already stored)."""
        ids = b"".join(self._ids)
        base_id, shared = NO_BASE, 0
        if base is not None:
            shared = _shared_prefix(base[1], ids)
            if shared >= BASE_MIN_BLOCKS and not len(ids) == len(base[1]) == shared * _ID:
                base_id = base[0]
            else:
                shared = 0
        runs = array("I", self._runs)
        if sys.byteorder == "big":
            runs.byteswap()
        packs = self._packs
        try:
            pack_bytes = b"".join(bytes.fromhex(p) for p in packs)
        except ValueError:
            raise ValueError(f"pack ids must be {PACK_ID_BYTES * 2} hex digits: {list(packs)}") from None
        if len(pack_bytes) != PACK_ID_BYTES * len(packs):
            raise ValueError(f"pack ids must be {PACK_ID_BYTES * 2} hex digits: {list(packs)}")
        return b"".join((
            HEADER.pack(MAGIC, formats.BLOCK_LIST, self._block_size, size, len(packs),
                        len(self._frames), len(self._runs) // 3, base_id, shared),
            pack_bytes,
            b"".join(FRAME.pack(packs[f.pack], f.offset, f.stored, f.codec, f.digest)
                     for f in self._frames),
            runs.tobytes(),
            memoryview(ids)[shared * _ID:],
        ))


def _shared_prefix(ids: bytes, other: bytes) -> int:
    """How many ids two concatenations of ids share from their start."""
    n = min(len(ids), len(other)) // _ID * _ID
    runs = differing_runs(memoryview(ids)[:n], memoryview(other)[:n])
    return runs[0][0] if runs else n // _ID
