"""The storage protocol every repository driver implements."""

from __future__ import annotations

from collections.abc import Iterable
from typing import BinaryIO, Protocol

from engine.repository.storage.capabilities import Capabilities

__all__ = ["Capabilities", "ObjectWriter", "Storage"]


class ObjectWriter(Protocol):
    """An object being written in pieces (a pack). Invisible until :meth:`commit`."""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; return the offset at which it starts."""

    def tell(self) -> int:
        """Bytes written so far."""

    def commit(self) -> None:
        """Make the object durable and visible under its key, atomically."""

    def abort(self) -> None:
        """Drop the object; nothing becomes visible."""


class Storage(Protocol):
    """The contract every driver keeps.

    - ``put`` and ``put_if_absent`` are atomic (a reader sees the whole object or
      nothing) and durable when they return (fsync on posix, a completed PUT on S3).
    - ``put_if_absent`` writes nothing and returns False when the key exists; two
      concurrent callers cannot both succeed.
    - ``get`` and ``read_range`` raise :class:`engine.errors.NotFoundError` for a
      missing key and :class:`engine.errors.StorageError` for any other failure.
    - ``list`` returns the keys under ``prefix`` in sorted order; with
      ``recursive=False`` it returns immediate children, sub-prefixes ending in '/'.
    - ``delete`` of a missing key is not an error.
    - ``usage`` is the bytes of the objects under ``prefix`` (0 when there are none); it
      may count writes in flight, as a storage bill would.
    - ``put_stream_if_absent`` is ``put_if_absent`` for content given as chunks (a
      manifest of a large database), never held whole in memory.
    - ``open_stream`` reads an object sequentially (NotFoundError when missing).
    - ``mtime`` is when an object was written (seconds since the epoch).
    - ``remove_abandoned`` removes the remains of writes that never completed (a process
      killed while writing a pack) older than ``older_than`` seconds under ``prefix``,
      returning how many it removed.
    - ``capabilities`` says what this driver can do beyond the contract (see
      :class:`Capabilities`); locks are not storage operations (:mod:`engine.repository.locks`).
    """

    capabilities: Capabilities

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None: ...

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool: ...

    def put_stream_if_absent(self, key: str, chunks: Iterable[bytes]) -> bool: ...

    def get(self, key: str) -> bytes: ...

    def open_stream(self, key: str) -> BinaryIO: ...

    def read_range(self, key: str, offset: int, length: int) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def list(self, prefix: str, recursive: bool = True) -> list[str]: ...

    def usage(self, prefix: str) -> int: ...  # bytes stored under ``prefix`` (0: nothing)

    def delete(self, key: str) -> None: ...

    def mtime(self, key: str) -> float: ...

    def remove_abandoned(self, prefix: str, older_than: float) -> int: ...

    def open_writer(self, key: str) -> ObjectWriter: ...

    def describe(self) -> str:
        """Where this storage is, for messages."""
