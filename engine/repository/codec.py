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
NAMES = {RAW: "none", ZSTD: "zstd", LZ4: "lz4"}
IDS = {name: ident for ident, name in NAMES.items()}
PROBE_MIN = 64 * 1024  # smaller data is compressed without probing first
#: zstd parameters tuned on PostgreSQL data, by level (higher: smaller and slower).
TUNED: dict[int, dict[str, int]] = {
    3: {"hash_log": 13, "min_match": 5},
    2: {"hash_log": 12, "min_match": 6},
    1: {"hash_log": 13, "min_match": 5, "target_length": 2},
}


class Codec:
    """Compress with one algorithm and level; decompress anything this module wrote."""

    def __init__(self, algorithm: Algorithm = "zstd", level: int = 3) -> None:
        self.algorithm = algorithm
        self.codec_id = IDS[algorithm]
        self.level = level
        self._local = thread_local()

    def _zstd_compressor(self, level: int, tuned: bool = False):
        compressors = getattr(self._local, "zc", None)
        if compressors is None:
            compressors = self._local.zc = {}
        tuned = tuned and level in TUNED
        comp = compressors.get((level, tuned))
        if comp is None:
            comp = compressors[(level, tuned)] = _zstd_compressor(level, tuned)
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
                 tuned: bool = True) -> tuple[int, bytes]:
        """``(codec id, stored bytes)``; data that does not shrink is kept raw. ``probe``
        first checks samples (see :meth:`looks_incompressible`); a caller that knows the
        data compresses (the rest of a file that did) passes False. ``tuned``: zstd's
        parameters tuned on PostgreSQL data (see :data:`TUNED`), else zstd's own level."""
        if self.codec_id == ZSTD:
            if probe and self.looks_incompressible(data):
                return RAW, bytes(data)
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

    def compress_smaller(self, data: bytes | bytearray | memoryview
                         ) -> tuple[int, bytes, bool | None]:
        """:meth:`compress` both ways (tuned and zstd's own level) and keep the smaller:
        ``(codec id, stored bytes, whether the tuned set won)``; None for the last when
        only one way applies (another codec or level, or data stored raw)."""
        if self.codec_id != ZSTD or self.level not in TUNED:
            return (*self.compress(data), None)
        if self.looks_incompressible(data):
            return RAW, bytes(data), None
        tuned = self._zstd_compressor(self.level, True).compress(data)
        plain = self._zstd_compressor(self.level, False).compress(data)
        out, won = (tuned, True) if len(tuned) <= len(plain) else (plain, False)
        if len(out) >= len(data):
            return RAW, bytes(data), None
        return ZSTD, out, won


def _zstd_compressor(level: int, tuned: bool):
    """A compressor in the calling thread: no worker threads, even for a whole WAL segment.
    zstd's workers copy their input into buffers of their own, which a process that pushes
    one segment must first fault in: measured on 16 MiB segments in fresh processes, two
    workers cost ~10 ms more CPU than one thread and gave no wall clock back."""
    zstandard = zstd_backend.module()
    if not tuned or level not in TUNED:
        return zstandard.ZstdCompressor(level=level, write_checksum=False)
    params = zstandard.ZstdCompressionParameters(
        window_log=19, chain_log=16, search_log=1, strategy=zstandard.STRATEGY_FAST, **TUNED[level])
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
        elif codec_id == ZSTD:
            dec = getattr(_decoders, "zd", None)
            if dec is None:
                zstandard = zstd_backend.module()
                dec = zstandard.ZstdDecompressor()
                _decoders.zd = dec
                _decoders.content_size = zstandard.frame_content_size
            bound = raw_size if raw_size is not None else limit
            declared = _decoders.content_size(data)
            if declared > bound:
                raise ChecksumError(f"{what}: compressed frame declares {declared} bytes")
            out = dec.decompress(data) if declared >= 0 else \
                dec.decompress(data, max_output_size=bound)
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
