"""Reading blocks back from packs: each stored frame is checked against its SHA-256,
opened (authenticated) in an encrypted repository, then decompressed once per batch,
whatever number of its blocks are wanted."""

from __future__ import annotations

from collections.abc import Iterator

from engine.errors import ChecksumError, RestoreError, StorageError
from engine.repository import layout
from engine.repository.blocklist import BlockRef
from engine.repository.codec import RAW, decompress
from engine.repository.encryption import keys_of
from engine.repository.storage import Storage

READ_BYTES = 8 * 1024 * 1024  # neighbouring frames are read together up to this much

Numbered = list[tuple[int, BlockRef]]
FrameKey = tuple[str, int]  # pack id, offset


class FrameReader:
    def __init__(self, storage: Storage, cluster: str, frame_limit: int, block_size: int) -> None:
        self._storage = storage
        self._cluster = cluster
        self._frame_limit = frame_limit
        self._block_size = block_size
        self._keys = keys_of(storage)

    def blocks(self, path: str, numbered: Numbered) -> Iterator[tuple[int, memoryview]]:
        """``(first block number, content)`` for ``numbered`` (``(block number, ref)`` pairs of
        the file ``path`` in file order; a ref may stand for a run of blocks), in that order;
        blocks that follow each other in the file and in one frame come as one slice.

        A frame is decompressed when first needed and kept only while later blocks of the
        batch still need it, so a frame holding blocks on both sides of a change (an
        incremental backup) is read, checked and decompressed once; frames that will be
        needed and follow each other in the pack are read with one request.
        """
        last_use: dict[FrameKey, int] = {}
        first_index: dict[FrameKey, int] = {}
        order: list[tuple[FrameKey, int]] = []  # frames in order of first use, with stored size
        for index, (_, ref) in enumerate(numbered):
            key = (ref.pack, ref.offset)
            if key not in last_use:
                order.append((key, ref.stored))
                first_index[key] = index
            last_use[key] = index
        first_use = {key: position for position, (key, _) in enumerate(order)}
        fetched: dict[FrameKey, memoryview] = {}
        frames: dict[FrameKey, memoryview] = {}
        run_no = run_from = run_to = next_no = -1
        run_key: FrameKey | None = None
        run_frame = memoryview(b"")
        for index, (number, ref) in enumerate(numbered):
            key = (ref.pack, ref.offset)
            frame = frames.get(key)
            if frame is None:
                if key not in fetched:
                    self._fetch(path, order, first_use[key], fetched)
                frame = frames[key] = self._open_frame(path, key, fetched.pop(key), numbered,
                                                       first_index[key])
            if ref.skip + ref.raw > len(frame):
                raise ChecksumError(f"{path} block {number}: the stored frame is shorter than "
                                    "the manifest says; refusing to restore it")
            if key == run_key and number == next_no and ref.skip == run_to:
                run_to += ref.raw
                next_no += ref.blocks
            else:
                if run_key is not None:
                    yield run_no, run_frame[run_from:run_to]
                run_key, run_frame = key, frame
                run_no, run_from, run_to = number, ref.skip, ref.skip + ref.raw
                next_no = number + ref.blocks
            if last_use[key] == index:
                del frames[key]  # the run being built keeps its own reference
        if run_key is not None:
            yield run_no, run_frame[run_from:run_to]

    def _fetch(self, path: str, order: list[tuple[FrameKey, int]], position: int,
               fetched: dict[FrameKey, memoryview]) -> None:
        """Read the stored frame at ``order[position]`` and the frames needed next that
        follow it in the same pack, with one request."""
        (pack, base), size = order[position]
        end = base + size
        wanted = [(order[position][0], base, size)]
        for (key, stored) in order[position + 1:]:
            if key[0] != pack or key[1] != end or end + stored - base > READ_BYTES:
                break
            wanted.append((key, key[1], stored))
            end += stored
        try:
            where = layout.pack_key(self._cluster, pack)
            data = memoryview(self._storage.read_range(where, base, end - base))
        except StorageError as exc:
            raise RestoreError(f"cannot read blocks of {path}: {exc}") from None
        for key, offset, stored in wanted:
            fetched[key] = data[offset - base:offset - base + stored]

    def _open_frame(self, path: str, key: FrameKey, stored: memoryview, numbered: Numbered,
                    first: int) -> memoryview:
        number, head = numbered[first]
        if layout.frame_checksum(stored) != head.frame_digest:
            raise _damaged(path, [(n, r) for n, r in numbered if (r.pack, r.offset) == key],
                           stored if self._keys is None else None, key[0], self._block_size)
        what = f"{path} block {number} (pack {key[0]})"
        if self._keys is not None:
            where = layout.pack_key(self._cluster, key[0])
            stored = memoryview(self._keys.open(stored, f"{where}@{key[1]}".encode(),
                                                f"{what} offset {key[1]}"))
        return memoryview(decompress(head.codec, stored, None, what, limit=self._frame_limit))


def _damaged(path: str, members: Numbered, stored: memoryview | None, pack: str,
             block_size: int) -> ChecksumError:
    """Name what is damaged in a frame that failed its checksum: the very block when the
    frame is stored raw (and not sealed: ``stored`` given), else the blocks of this file
    the frame holds."""
    blocks = sorted((n + i, ref, i) for n, ref in members for i in range(ref.blocks))
    numbers = [n for n, _, _ in blocks]
    culprit = f"blocks {numbers[0]}..{numbers[-1]}" if len(numbers) > 1 else f"block {numbers[0]}"
    if stored is not None and members[0][1].codec == RAW:
        width = layout.BLOCK_ID_BYTES
        for number, ref, i in blocks:
            at = ref.skip + i * block_size
            end = min(at + block_size, ref.skip + ref.raw)
            if layout.block_id(stored[at:end]) != ref.digest[i * width:(i + 1) * width]:
                culprit = f"block {number}"
                break
    return ChecksumError(f"{path} {culprit} (pack {pack}): checksum "
                         "mismatch, the stored data is damaged; refusing to restore it")
