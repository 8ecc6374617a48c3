"""Compression of blocks and WAL: zstd (default), lz4, or none.

Each thread keeps its own (de)compressor, since zstandard's objects are not
thread-safe; both libraries release the GIL, so threads run in parallel.

At levels 1-3 zstd has two parameter sets here: its own level, and one tuned on
PostgreSQL pages and WAL (:data:`TUNED`: the fast strategy with small hash tables, whose
recent matches suit pages of tuples and WAL records). Measured on pgbench and
append-only tables and their WAL, the tuned set stores 2-6% less than zstd's level 3
for a third less CPU (half on WAL); on general text it stores about 9% more. WAL uses
the tuned set; a backup tries both on each file's first frame and keeps the smaller
(:meth:`Codec.compress_smaller`). Decompression does not depend on either.

Heap pages can also be stored split (:data:`SPLIT`, ``engine/repository/_heapsplit.c``):
each tuple's data after its first few bytes moved after the rest of the pages, then
compressed with zstd; decompression joins them back. Tuple headers and leading fixed-width
columns then neighbour each other, and so do the tuples' variable data, which zstd codes
better: on an append-only table of hex text, 13% fewer bytes, and faster both ways (fewer,
longer literals). A backup tries it on the first frame of relation files, with a few
numbers of leading data bytes kept in place, and uses it for the file only when it saves
at least :data:`SPLIT_GAIN` of the raw size: on data zstd already shrinks to a few percent
the split would save little and cost the CPU of moving every tuple twice.
"""

from __future__ import annotations

from _thread import _local as thread_local  # threading's own; importing threading costs a WAL push ~1 ms

from engine.errors import ChecksumError
from engine.repository import zstd_backend

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from typing import Literal

    Algorithm = Literal["zstd", "lz4", "none"]

RAW = 0
ZSTD = 1
LZ4 = 2
SPLIT = 3  # heap pages split (tuple data after the rest), then zstd: not a configurable algorithm
NAMES = {RAW: "none", ZSTD: "zstd", LZ4: "lz4"}
IDS = {name: ident for ident, name in NAMES.items()}
PROBE_MIN = 64 * 1024  # smaller data is compressed without probing first
SPLIT_HEAD = 5  # bytes the split adds in front of the pages
#: Leading bytes of each tuple's data kept with its header (fixed-width columns), tried.
SPLIT_SKIPS = (0, 4, 8, 12, 16)
SPLIT_GAIN = 0.01  # the split must save this fraction of the raw size to be used
SPLIT_MIN_MATCH = 6  # split pages: their tuple data rarely repeats in matches shorter than this
#: zstd parameters tuned on PostgreSQL data, by level (higher: smaller and slower).
TUNED: dict[int, dict[str, int]] = {
    3: {"hash_log": 13, "min_match": 5},
    2: {"hash_log": 12, "min_match": 6},
    1: {"hash_log": 13, "min_match": 5, "target_length": 2},
}


class Choice:
    """How a file's frames are compressed, chosen on its first: zstd's tuned parameters or
    its own level, and the heap split's number of leading data bytes kept (None: no split).
    (Not a NamedTuple: typing is not imported on the WAL path.)"""

    __slots__ = ("split", "tuned")

    def __init__(self, tuned: bool, split: int | None = None) -> None:
        self.tuned = tuned
        self.split = split

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Choice) and (self.tuned, self.split) == (other.tuned, other.split)

    def __hash__(self) -> int:
        return hash((self.tuned, self.split))

    def __repr__(self) -> str:
        return f"Choice(tuned={self.tuned}, split={self.split})"


class Codec:
    """Compress with one algorithm and level; decompress anything this module wrote."""

    def __init__(self, algorithm: Algorithm = "zstd", level: int = 3) -> None:
        self.algorithm = algorithm
        self.codec_id = IDS[algorithm]
        self.level = level
        self._local = thread_local()

    def _zstd_compressor(self, level: int, tuned: bool = False, split: bool = False):
        compressors = getattr(self._local, "zc", None)
        if compressors is None:
            compressors = self._local.zc = {}
        tuned = tuned and level in TUNED
        split = split and tuned
        comp = compressors.get((level, tuned, split))
        if comp is None:
            comp = compressors[(level, tuned, split)] = _zstd_compressor(level, tuned, split=split)
        return comp

    def set_level(self, level: int) -> None:
        """Use ``level`` from now on (threads pick it up with their next frame)."""
        self.level = level

    def looks_incompressible(self, data: bytes | bytearray | memoryview) -> bool:
        """Three 4 KiB samples compressed at level 1 that do not shrink by 5% mean compressed
        or random data: storing it raw spares the CPU of compressing all of it in vain."""
        size = len(data)
        if size < PROBE_MIN:
            return False
        view = memoryview(data)
        middle = size // 2
        sample = b"".join((view[:4096], view[middle:middle + 4096], view[size - 4096:]))
        return len(self._zstd_compressor(1).compress(sample)) > 0.95 * len(sample)

    def compress(self, data: bytes | bytearray | memoryview, probe: bool = True,
                 tuned: bool = True, split: int | None = None) -> tuple[int, bytes]:
        """``(codec id, stored bytes)``; data that does not shrink is kept raw. ``probe``
        first checks samples (see :meth:`looks_incompressible`); a caller that knows the
        data compresses (the rest of a file that did) passes False. ``tuned``: zstd's
        parameters tuned on PostgreSQL data (see :data:`TUNED`), else zstd's own level.
        ``split``: split heap pages first, keeping that many bytes of each tuple's data
        with its header (zstd only)."""
        if self.codec_id == ZSTD:
            if probe and self.looks_incompressible(data):
                return RAW, bytes(data)
            if split is not None:
                return self._compress_split(data, split, tuned)
            out = self._zstd_compressor(self.level, tuned).compress(data)
        elif self.codec_id == LZ4:
            import lz4.block

            out = lz4.block.compress(data, mode="default" if self.level < 3 else "high_compression",
                                     compression=self.level, store_size=True)
        else:
            return RAW, bytes(data)
        if len(out) >= len(data):
            return RAW, bytes(data)
        return self.codec_id, out

    def _compress_split(self, data: bytes | bytearray | memoryview, skip: int,
                        tuned: bool) -> tuple[int, bytes]:
        """The heap split of ``data``, compressed (see :func:`_split_checked`), else
        ``data`` compressed as it is."""
        pages = _split_checked(data, skip)
        if pages is None:
            return self.compress(data, probe=False, tuned=tuned)
        out = self._zstd_compressor(self.level, tuned, split=True).compress(pages)
        if len(out) >= len(data):
            return RAW, bytes(data)
        return SPLIT, out

    def compress_smaller(self, data: bytes | bytearray | memoryview, heap: bool = False
                         ) -> tuple[int, bytes, Choice | None]:
        """:meth:`compress` both ways (tuned and zstd's own level) and, for ``heap`` data
        (a relation's pages), split with each of :data:`SPLIT_SKIPS`; keep the smallest,
        a split only when it saves :data:`SPLIT_GAIN` of the raw size over the better of the
        other two: ``(codec id, stored bytes, the choice)``; None for the last when only one
        way applies (another codec or level, or data stored raw). The splits are not tried
        when they cannot save that much, nor after one that moved nothing (no heap pages)."""
        if self.codec_id != ZSTD or self.level not in TUNED:
            return (*self.compress(data), None)
        if self.looks_incompressible(data):
            return RAW, bytes(data), None
        tuned = self._zstd_compressor(self.level, True).compress(data)
        plain = self._zstd_compressor(self.level, False).compress(data)
        best, choice = (tuned, Choice(True)) if len(tuned) <= len(plain) else (plain, Choice(False))
        codec_id = ZSTD
        limit = len(best) - SPLIT_GAIN * len(data)
        for skip in SPLIT_SKIPS if heap and limit > 0 else ():
            pages = _split_checked(data, skip)
            if pages is None or int.from_bytes(pages[1:SPLIT_HEAD], "little") == len(data):
                break  # nothing moved: no heap tuples to split (or a fault: never stored)
            out = self._zstd_compressor(self.level, True, split=True).compress(pages)
            if len(out) <= limit:
                codec_id, best, choice, limit = SPLIT, out, Choice(True, skip), len(out)
        if len(best) >= len(data):
            return RAW, bytes(data), None
        return codec_id, best, choice


def _split_checked(data: bytes | bytearray | memoryview, skip: int) -> bytes | None:
    """The heap split of ``data`` (``engine/repository/_heapsplit.c``), checked to join back
    to ``data`` (it moves bytes around: a fault there must never reach the repository);
    None when it does not."""
    from engine.repository import _heapsplit

    pages = _heapsplit.split(data, skip)
    return pages if _heapsplit.joins_back(pages, data) else None


def _zstd_compressor(level: int, tuned: bool, split: bool = False):
    """A compressor in the calling thread: no worker threads, even for a whole WAL segment.
    zstd's workers copy their input into buffers of their own, which a process that pushes
    one segment must first fault in: measured on 16 MiB segments in fresh processes, two
    workers cost ~10 ms more CPU than one thread and gave no wall clock back. ``split``: for
    split heap pages, the tuned set with matches of at least :data:`SPLIT_MIN_MATCH` bytes
    (on their runs of tuple data, smaller and faster)."""
    zstandard = zstd_backend.module()
    if not tuned or level not in TUNED:
        return zstandard.ZstdCompressor(level=level, write_checksum=False)
    tuned_set = TUNED[level] | ({"min_match": SPLIT_MIN_MATCH} if split else {})
    params = zstandard.ZstdCompressionParameters(
        window_log=19, chain_log=16, search_log=1, strategy=zstandard.STRATEGY_FAST, **tuned_set)
    return zstandard.ZstdCompressor(compression_params=params)


_decoders = thread_local()


def decompress(codec_id: int, data: bytes | bytearray | memoryview, raw_size: int | None,
               what: str = "block", limit: int = 64 * 1024 * 1024) -> bytes:
    """Inverse of :meth:`Codec.compress`; data that does not decode is a ChecksumError.

    ``raw_size`` is the expected size when known; otherwise the size recorded in the
    compressed data is used, refused above ``limit`` (a damaged header must not make
    us allocate gigabytes).
    """
    try:
        if codec_id == RAW:
            out = bytes(data)
        elif codec_id in (ZSTD, SPLIT):
            extra = SPLIT_HEAD if codec_id == SPLIT else 0
            out = _zstd_decompress(data, (raw_size if raw_size is not None else limit) + extra, what)
            if codec_id == SPLIT:
                from engine.repository._heapsplit import join

                out = join(out)
        elif codec_id == LZ4:
            import lz4.block

            if len(data) < 4 or int.from_bytes(bytes(data[:4]), "little") > limit:
                raise ChecksumError(f"{what}: compressed frame has a damaged size")
            out = lz4.block.decompress(data)
        else:
            raise ChecksumError(f"{what}: unknown compression id {codec_id}")
    except ChecksumError:
        raise
    except Exception as exc:  # zstd/lz4 raise their own error types on damaged input
        raise ChecksumError(f"{what}: compressed data is damaged ({exc})") from None
    if raw_size is not None and len(out) != raw_size:
        raise ChecksumError(f"{what}: decompressed to {len(out)} bytes, expected {raw_size}")
    return out


def _zstd_decompress(data: bytes | bytearray | memoryview, bound: int, what: str) -> bytes:
    """One zstd frame, refused when it declares more than ``bound`` bytes."""
    dec = getattr(_decoders, "zd", None)
    if dec is None:
        zstandard = zstd_backend.module()
        dec = zstandard.ZstdDecompressor()
        _decoders.zd = dec
        _decoders.content_size = zstandard.frame_content_size
    declared = _decoders.content_size(data)
    if declared > bound:
        raise ChecksumError(f"{what}: compressed frame declares {declared} bytes")
    return dec.decompress(data) if declared >= 0 else dec.decompress(data, max_output_size=bound)
