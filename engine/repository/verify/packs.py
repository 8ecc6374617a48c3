"""One pack, read once from start to end: its index and footer against the footer's
SHA-256, each frame against its SHA-256 in the index, and the frames block lists use
against the SHA-256 the lists record, opened (authenticated, in an encrypted repository),
decompressed, with the claimed blocks re-hashed.

A pack whose index or footer is damaged is still read for the frames the lists use, at
the places the lists give. Neighbouring frames are read together, up to
:data:`READ_BYTES` at a time (one such buffer per thread).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from engine.errors import ChecksumError, FormatError, LifeboatError, NotFoundError
from engine.memory import release_free_memory
from engine.repository import layout
from engine.repository.codec import decompress
from engine.repository.encryption import RepositoryKeys, keys_of
from engine.repository.packs import PackFrame, parse_tail
from engine.repository.storage import Storage
from engine.repository.verify.lists import Claim, raw_size
from engine.repository.verify.report import NOT_NEEDED, Problem

READ_BYTES = 4 * 1024 * 1024
TAIL_BYTES = 64 * 1024  # the end of a pack read first: its index and footer, usually whole


@dataclass
class PackResult:
    frames: int = 0
    blocks: int = 0
    bytes: int = 0  # raw bytes of the blocks re-hashed
    read: int = 0  # bytes read from the pack
    problems: list[Problem] = field(default_factory=list)  # of the pack as a whole
    frame_problems: list[tuple[int, Problem]] = field(default_factory=list)  # offset, problem
    gone: bool = False  # removed while verify ran (expired)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.frame_problems and not self.gone

    def damaged(self, offset: int, problem: Problem) -> None:
        self.frame_problems.append((offset, problem))


def check_pack(storage: Storage, cluster: str, pack: str, claims: dict[int, Claim], owners: list[str],
               frame_limit: int) -> PackResult:
    key = layout.pack_key(cluster, pack)
    result = PackResult()
    keys = keys_of(storage)
    try:
        frames = _index(storage, key, result)
    except NotFoundError:
        result.gone = True
        return result
    except LifeboatError as exc:
        result.problems.append(Problem("pack", pack, str(exc), key))
        return result
    if frames is None:  # index damaged: the frames the lists give
        frames = [PackFrame(offset, c.stored, c.digest) for offset, c in sorted(claims.items())]
        indexed = False
    else:
        indexed = True
        places = {f.offset: f.stored for f in frames}
        for offset, claim in sorted(claims.items()):
            if places.get(offset) != claim.stored:
                result.damaged(offset, Problem(
                    "block", f"{owners[claim.owner]} block {claim.runs[0][0]}",
                    f"pack {pack} holds no frame of {claim.stored} bytes at offset {offset} (its "
                    "intact index and the block list disagree)", key))
    i = 0
    while i < len(frames):
        j = i + 1
        start = frames[i].offset
        while j < len(frames) and frames[j].offset == frames[j - 1].offset + frames[j - 1].stored \
                and frames[j].offset + frames[j].stored - start <= READ_BYTES:
            j += 1
        length = frames[j - 1].offset + frames[j - 1].stored - start
        try:
            data = memoryview(storage.read_range(key, start, length))
        except NotFoundError:
            result.gone = True
            return result
        except LifeboatError as exc:
            for frame in frames[i:j]:
                result.damaged(frame.offset, Problem("pack", pack, f"the frame at offset {frame.offset} "
                                                     f"cannot be read: {exc}", key))
            i = j
            continue
        result.read += length
        for frame in frames[i:j]:
            stored = data[frame.offset - start:frame.offset - start + frame.stored]
            _check_frame(pack, key, frame, stored, claims.get(frame.offset), owners, frame_limit,
                         indexed, result, keys)
        del data  # before the next read: one range in memory per thread
        release_free_memory()  # which glibc would keep (engine.memory)
        i = j
    return result


def _index(storage: Storage, key: str, result: PackResult) -> list[PackFrame] | None:
    """The pack's frames from its index; None (and a problem) when the index or footer
    is damaged."""
    size = storage.size(key)
    want = min(size, TAIL_BYTES)
    try:
        end = storage.read_range(key, size - want, want)
        parsed = parse_tail(end, size, key)
        if isinstance(parsed, int):
            end = storage.read_range(key, size - parsed, parsed)
            parsed = parse_tail(end, size, key)
        assert not isinstance(parsed, int)
        return parsed
    except (ChecksumError, FormatError) as exc:
        result.problems.append(Problem("pack", key.rsplit("/", 1)[-1], str(exc), key,
                                       f"{NOT_NEEDED} (the pack's index: restore finds frames through "
                                       "the block lists, and the frames they use are checked against "
                                       "them)"))
        return None


def _check_frame(pack: str, key: str, frame: PackFrame, stored: memoryview, claim: Claim | None,
                 owners: list[str], frame_limit: int, indexed: bool, result: PackResult,
                 keys: RepositoryKeys | None) -> None:
    result.frames += 1
    digest = hashlib.sha256(stored).digest()
    where = f"pack {pack} offset {frame.offset}"
    if indexed and digest != frame.digest:
        if claim is None:
            result.damaged(frame.offset, Problem("pack", pack, f"the frame at offset {frame.offset} "
                                                 f"({frame.stored} bytes) fails its SHA-256: damaged", key))
        else:
            result.damaged(frame.offset, Problem("block", f"{owners[claim.owner]} block {claim.runs[0][0]}",
                                                 f"{where}: checksum mismatch, the stored data is damaged",
                                                 key))
        return
    if claim is None or claim.stored != frame.stored:
        return
    what = f"{owners[claim.owner]} block {claim.runs[0][0]}"
    if digest != claim.digest:
        detail = ("the block list records another SHA-256 for this frame than the pack's index "
                  "(the list and the pack disagree)" if indexed else
                  "checksum mismatch, the stored data is damaged")
        result.damaged(frame.offset, Problem("block", what, f"{where}: {detail}", key))
        return
    try:
        if keys is not None:
            stored = memoryview(keys.open(stored, f"{key}@{frame.offset}".encode(), f"{where} ({what})"))
        content = memoryview(decompress(claim.codec, stored, None, what, limit=frame_limit))
    except ChecksumError as exc:
        result.damaged(frame.offset, Problem("block", what, str(exc), key))
        return
    name_key = None if keys is None else keys.name_key
    ids = hashlib.sha256()
    for first, count, skip in claim.runs:  # each run's ids in one call (into C)
        raw = (count - 1) * claim.block_size + raw_size(claim, first + count - 1)
        result.blocks += count
        result.bytes += raw
        ids.update(layout.block_ids(content[skip:skip + raw], claim.block_size, name_key))
    if ids.digest() != claim.ids:
        last = claim.runs[-1][0] + claim.runs[-1][1] - 1
        result.damaged(frame.offset, Problem(
            "block", what, f"{where}: a block of {claim.runs[0][0]}..{last} decompressed from the "
            "frame fails its SHA-256 (the list and the frame disagree)", key))

