"""The pack format: frames, then an index of them, then a footer that seals the index.

Layout (little-endian)::

    frames  the stored (compressed) frames, back to back from offset 0
    index   per frame, in pack order: stored length u32, SHA-256 of its bytes (32)
    footer  magic "LBPACK", format u16, frames u32, frame bytes u64,
            SHA-256 of the index and the footer's first 20 bytes (32)

Every byte is covered by a checksum recorded when the pack was written: each frame by
its SHA-256 in the index (the one its block lists record too), the index and footer by
the footer's SHA-256. So a pack that no backup references any more (a killed backup's,
or frames of an expired backup in a pack still kept) can still be proven intact, and
damage is pinned to one frame. The writer already has each frame's SHA-256 (block lists
need it), so sealing a pack costs no second pass over its bytes; verify hashes each
byte once, checking the frame against the index and against the lists that use it.

Restore reads frames by offset, through the block lists; it never needs the index.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from engine.errors import ChecksumError
from engine.repository import formats

MAGIC = b"LBPACK"
ENTRY = struct.Struct("<I32s")  # stored length, SHA-256 of the stored bytes
FOOTER = struct.Struct("<6sHIQ32s")  # magic, format, frames, frame bytes, SHA-256
_SEALED = FOOTER.size - 32  # footer bytes the checksum covers


class PackIndex:
    """The index of a pack being written: each frame's length and SHA-256, in order."""

    __slots__ = ("_entries", "frames", "size")

    def __init__(self) -> None:
        self._entries = bytearray()
        self.frames = 0
        self.size = 0

    def add(self, stored: int, digest: bytes) -> None:
        self._entries += ENTRY.pack(stored, digest)
        self.frames += 1
        self.size += stored

    def tail(self) -> bytes:
        """The index and footer, to append after the frames when the pack is committed."""
        head = FOOTER.pack(MAGIC, formats.PACK, self.frames, self.size, bytes(32))[:_SEALED]
        digest = hashlib.sha256(self._entries)
        digest.update(head)
        return bytes(self._entries) + head + digest.digest()


@dataclass(frozen=True)
class PackFrame:
    offset: int
    stored: int
    digest: bytes


def tail_size(frames: int) -> int:
    return frames * ENTRY.size + FOOTER.size


def parse_tail(end: bytes, size: int, what: str) -> list[PackFrame] | int:
    """The frames of a pack of ``size`` bytes from ``end`` (its last bytes): the list, or
    the number of bytes of the pack's end needed when ``end`` holds too few.
    FormatError for another format, ChecksumError when the index or footer is damaged."""
    if size < FOOTER.size or len(end) < FOOTER.size:
        raise ChecksumError(f"{what}: too short for a pack ({size} bytes): its footer is missing")
    magic, fmt, count, body, digest = FOOTER.unpack_from(end, len(end) - FOOTER.size)
    if magic != MAGIC:
        raise ChecksumError(f"{what}: the pack's footer is damaged (no pack magic)")
    formats.check(f"pack {what}", fmt, formats.PACK)
    need = tail_size(count)
    if body + need != size:
        raise ChecksumError(f"{what}: the pack's footer is damaged (it counts {count} frames of "
                            f"{body} bytes, but the pack holds {size} bytes)")
    if len(end) < need:
        return need
    start = len(end) - need
    check = hashlib.sha256(memoryview(end)[start:len(end) - 32])
    if check.digest() != digest:
        raise ChecksumError(f"{what}: the pack's index fails its checksum (damaged)")
    frames, offset = [], 0
    for stored, frame_digest in ENTRY.iter_unpack(memoryview(end)[start:start + count * ENTRY.size]):
        frames.append(PackFrame(offset, stored, frame_digest))
        offset += stored
    if offset != body:
        raise ChecksumError(f"{what}: the pack's index is inconsistent (its frames hold {offset} "
                            f"bytes, its footer says {body})")
    return frames
