"""What one backup writes and refers to: packs of compressed frames, and block lists.

A pack is sealed when committed: its index (each frame's length and SHA-256) and a
checksummed footer follow the frames (:mod:`engine.repository.packs`). In an encrypted
repository each frame is sealed on its own (AES-256-GCM, its pack and offset as associated
data) before it is appended, so frames are still read by range; its SHA-256 is then that
of the sealed frame, as stored. Block lists are sealed too, under their HMAC ids.
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.repository import layout
from engine.repository.blocklist import list_id
from engine.repository.encryption import keys_of
from engine.repository.packs import PackIndex
from engine.repository.storage import ObjectWriter, Storage


@dataclass
class OpenPack:
    index: int
    id: str
    writer: ObjectWriter
    frames: PackIndex = field(default_factory=PackIndex)

    def append(self, frames: Sequence[bytes], digests: Sequence[bytes]) -> int:
        """Append stored frames (with the SHA-256 of each); the offset of the first."""
        position = self.writer.write(b"".join(frames))
        for frame, digest in zip(frames, digests, strict=True):
            self.frames.add(len(frame), digest)
        return position


#: Where stored frames went: (pack id, offset, stored length, SHA-256 of the stored bytes).
Placed = tuple[str, int, int, bytes]


class PackSet:
    """The packs one backup refers to (those it writes, and those of other backups whose
    frames it reuses), numbered in the order first referred to; and the block lists it
    stores. A pack being written is used by one thread at a time.
    """

    def __init__(self, storage: Storage, cluster: str, pack_size: int) -> None:
        self._storage = storage
        self._cluster = cluster
        self._pack_size = pack_size
        self._lock = threading.Lock()
        self._idle: queue.SimpleQueue[OpenPack] = queue.SimpleQueue()
        self._open: list[OpenPack] = []
        self._index: dict[str, int] = {}
        self._written: list[str] = []
        self._lists_written: list[str] = []
        self.ids: list[str] = []
        self.stored_bytes = 0
        self.list_bytes = 0
        self._keys = keys_of(storage)
        self.name_key = None if self._keys is None else self._keys.name_key  # of block ids

    @property
    def lists_written(self) -> int:
        return len(self._lists_written)

    def borrow(self) -> OpenPack:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        pack_id = secrets.token_hex(16)
        writer = self._storage.open_writer(layout.pack_key(self._cluster, pack_id))
        with self._lock:
            pack = OpenPack(len(self.ids), pack_id, writer)
            self._index[pack_id] = pack.index
            self.ids.append(pack_id)
            self._written.append(pack_id)
            self._open.append(pack)
        return pack

    def adopt(self, pack_id: str) -> int:
        """The number under which this backup refers to a pack (one it wrote or another's)."""
        with self._lock:
            index = self._index.get(pack_id)
            if index is None:
                index = self._index[pack_id] = len(self.ids)
                self.ids.append(pack_id)
            return index

    def store(self, frames: Sequence[bytes]) -> list[Placed]:
        """Append compressed frames, in order, to a pack borrowed for the moment (each
        sealed first, in an encrypted repository): where each went."""
        if self._keys is None:  # hashed before borrowing: the pack is held for less
            digests = [layout.frame_checksum(f) for f in frames]
        pack = self.borrow()
        try:
            if self._keys is not None:  # sealed where they will be: now that is known
                frames = self._sealed(frames, pack)
                digests = [layout.frame_checksum(f) for f in frames]
            position = pack.append(frames, digests)
        finally:
            self.give_back(pack)
        placed = []
        for frame, digest in zip(frames, digests, strict=True):
            placed.append((pack.id, position, len(frame), digest))
            position += len(frame)
        return placed

    def _sealed(self, frames: Sequence[bytes], pack: OpenPack) -> list[bytes]:
        """Each frame sealed with its pack and offset as associated data."""
        assert self._keys is not None
        where, at = layout.pack_key(self._cluster, pack.id), pack.writer.tell()
        sealed = []
        for frame in frames:
            sealed.append(self._keys.seal(frame, f"{where}@{at}".encode()))
            at += len(sealed[-1])
        return sealed

    def give_back(self, pack: OpenPack) -> None:
        if pack.writer.tell() >= self._pack_size:
            self._commit(pack)
        else:
            self._idle.put(pack)

    def _commit(self, pack: OpenPack) -> None:
        pack.writer.write(pack.frames.tail())
        pack.writer.commit()
        with self._lock:
            self._open.remove(pack)
            self.stored_bytes += pack.writer.tell()

    def put_list(self, data: bytes) -> bytes:
        """Store a block list unless the repository holds it already (durably); its id."""
        ident = list_id(data, self.name_key)
        hex_id = ident.hex()
        key = layout.list_key(self._cluster, hex_id)
        if self._keys is not None:
            data = self._keys.seal(data, key.encode())
        if self._storage.put_if_absent(key, data):
            self._lists_written.append(hex_id)
            self.list_bytes += len(data)
        return ident

    def finish(self) -> list[str]:
        """Commit every open pack (durably); the ids of all packs referred to."""
        for pack in list(self._open):
            self._commit(pack)
        return list(self.ids)

    def discard(self) -> None:
        """Remove what this backup wrote (it failed before its manifest); never what it found."""
        for pack in list(self._open):
            pack.writer.abort()
        self._open.clear()
        for pack_id in self._written:
            with contextlib.suppress(Exception):
                self._storage.delete(layout.pack_key(self._cluster, pack_id))
        for hex_id in self._lists_written:
            with contextlib.suppress(Exception):
                self._storage.delete(layout.list_key(self._cluster, hex_id))
