"""Reading blocks back from packs: each stored frame is checked against its SHA-256,
then decompressed once, whatever number of its blocks are wanted."""

from __future__ import annotations

from collections.abc import Iterator

from engine import layout
from engine.codec import RAW, decompress
from engine.errors import ChecksumError, RestoreError, StorageError
from engine.manifest import BlockRef
from engine.storage import Storage


class FrameReader:
    def __init__(self, storage: Storage, cluster: str, packs: list[str], frame_limit: int) -> None:
        self._storage = storage
        self._pack_keys = [layout.pack_key(cluster, p) for p in packs]
        self._frame_limit = frame_limit

    def blocks(self, path: str, numbered: list[tuple[int, BlockRef]]
               ) -> Iterator[tuple[int, memoryview]]:
        """``(block number, content)`` for each ``(block number, ref)`` of the file ``path``
        (named in errors). Neighbouring frames are read with one request."""
        refs = [ref for _, ref in numbered]
        start = 0
        while start < len(refs):
            end = start + 1
            while end < len(refs) and refs[end].pack == refs[start].pack and refs[end].offset in (
                    refs[end - 1].offset, refs[end - 1].offset + refs[end - 1].stored):
                end += 1
            base = refs[start].offset
            key = self._pack_keys[refs[start].pack]
            try:
                data = memoryview(self._storage.read_range(
                    key, base, refs[end - 1].offset + refs[end - 1].stored - base))
            except StorageError as exc:
                raise RestoreError(f"cannot read blocks of {path}: {exc}") from None
            frame_at, frame = -1, memoryview(b"")
            for index in range(start, end):
                ref = refs[index]
                if ref.offset != frame_at:
                    stored = data[ref.offset - base:ref.offset - base + ref.stored]
                    if layout.frame_checksum(stored) != ref.frame_digest:
                        raise _damaged(path, numbered, index, stored, key)
                    what = f"{path} block {numbered[index][0]} (pack {key.rsplit('/', 1)[-1]})"
                    frame = memoryview(decompress(ref.codec, stored, None, what,
                                                  limit=self._frame_limit))
                    frame_at = ref.offset
                block = frame[ref.skip:ref.skip + ref.raw]
                if len(block) != ref.raw:
                    raise ChecksumError(f"{path} block {numbered[index][0]}: the stored frame is "
                                        "shorter than the manifest says; refusing to restore it")
                yield numbered[index][0], block
            start = end


def _damaged(path: str, numbered: list[tuple[int, BlockRef]], index: int,
             stored: memoryview, key: str) -> ChecksumError:
    """Name what is damaged in a frame that failed its checksum: the very block when the
    frame is stored raw, else the blocks the frame holds."""
    head = numbered[index][1]
    frame = [(n, r) for n, r in numbered[index:] if r.offset == head.offset and r.pack == head.pack]
    culprit = f"blocks {frame[0][0]}..{frame[-1][0]}" if len(frame) > 1 else f"block {frame[0][0]}"
    if head.codec == RAW:
        for number, ref in frame:
            if layout.block_id(stored[ref.skip:ref.skip + ref.raw]) != ref.digest:
                culprit = f"block {number}"
                break
    return ChecksumError(f"{path} {culprit} (pack {key.rsplit('/', 1)[-1]}): checksum "
                         "mismatch, the stored data is damaged; refusing to restore it")
