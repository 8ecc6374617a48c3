"""Two storages that are made of others: what tiers are built on.

- :class:`TieredView`: every tier of a repository read as one storage, hottest first. An
  object is read from the first storage that holds it and can serve it (an archived object
  that is not restored, or a storage that fails, passes to the next), so a restore, a plan
  and ``wal-get`` find a backup, its packs and its WAL in whichever tier holds them. It is
  read-only: writes go to one storage, chosen by the tiering job.
- :class:`ClassedStorage`: an S3 storage whose data (packs, block lists, WAL segments) is
  written in a storage class (``?storage_class=GLACIER``) while the small documents a listing
  or a plan reads (manifests, ``cluster.json``, timeline histories, restore points) stay in
  the bucket's default class, readable at once: the same bucket and prefix, two handles.

This module is on the WAL path (``wal-get`` reads through a view): it imports nothing heavy,
and a view opens a tier's storage only when the storages before it lack an object.
"""

from __future__ import annotations

import threading

from engine.errors import ArchivedObjectError, NotFoundError, StorageError
from engine.repository.storage.capabilities import Capabilities

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import BinaryIO

    from engine.repository.storage.base import ObjectWriter, Storage

#: Top-level folders of a cluster whose objects are data, written in the storage class.
DATA_FOLDERS = ("packs", "lists", "wal")


def is_data_key(key: str) -> bool:
    """A pack, a block list or an archived WAL file (not a timeline history): bulky objects
    read only to restore, which an archive class may hold."""
    parts = key.split("/")
    return (len(parts) >= 4 and parts[0] == "clusters" and parts[2] in DATA_FOLDERS
            and parts[3] != "history")


class ClassedStorage:
    """Writes data objects through ``data`` (a storage class), everything else and every read
    through ``meta`` (the default class); both name the same bucket and prefix."""

    def __init__(self, data: Storage, meta: Storage) -> None:
        self.data, self.meta = data, meta
        self.capabilities = meta.capabilities

    def _for(self, key: str) -> Storage:
        return self.data if is_data_key(key) else self.meta

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self._for(key).put(key, data)

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        return self._for(key).put_if_absent(key, data)

    def put_stream_if_absent(self, key: str, chunks: Iterable[bytes]) -> bool:
        return self._for(key).put_stream_if_absent(key, chunks)

    def open_writer(self, key: str) -> ObjectWriter:
        return self._for(key).open_writer(key)

    def archive_state(self, key: str) -> str:
        return self.meta.archive_state(key)  # type: ignore[attr-defined,no-any-return]

    def request_restore(self, key: str, days: int, retrieval: str) -> None:
        self.meta.request_restore(key, days, retrieval)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:  # reads, listing, delete: the same objects
        return getattr(self.meta, name)

    def describe(self) -> str:
        return self.data.describe()


class TieredView:
    """Read-only: ``storages`` (or the openers of storages, called on first need), hottest
    first, seen as one. ``names`` say which tier each is, for messages."""

    def __init__(self, storages: list[Storage | Callable[[], Storage]], names: list[str] | None = None
                 ) -> None:
        self._sources = list(storages)
        self._opened: dict[int, Storage] = {}
        self.names = names or [f"storage {i + 1}" for i in range(len(storages))]
        self._holder: dict[str, int] = {}  # key -> the storage that last served it
        self._lock = threading.Lock()
        self.capabilities = Capabilities(local_path=None, atomic_create=False)

    def __len__(self) -> int:
        return len(self._sources)

    def storage(self, index: int) -> Storage:
        with self._lock:
            opened = self._opened.get(index)
            if opened is None:
                source = self._sources[index]
                opened = source() if callable(source) else source
                self._opened[index] = opened  # type: ignore[assignment]
            return opened  # type: ignore[return-value]

    def describe(self) -> str:
        return " + ".join(f"{name} ({self.storage(i).describe()})" for i, name in enumerate(self.names))

    def _first(self, key: str, call: Callable[[Storage], object]) -> object:
        """``call`` on the first storage that holds ``key`` and serves it."""
        first = self._holder.get(key, 0)
        order = [first, *(i for i in range(len(self._sources)) if i != first)]
        failure: StorageError | None = None
        for index in order:
            try:
                result = call(self.storage(index))
            except NotFoundError:
                continue
            except ArchivedObjectError as exc:  # archived there: a hotter copy may be elsewhere
                failure = failure if isinstance(failure, ArchivedObjectError) else exc
                continue
            except StorageError as exc:
                failure = failure or exc
                continue
            self._holder[key] = index
            return result
        if failure is not None:
            raise failure
        raise NotFoundError(f"{key}: in none of the tiers ({', '.join(self.names)})")

    def holder(self, key: str) -> int | None:
        """Index of the first storage holding ``key`` (whether or not it can be read now)."""
        for index in range(len(self._sources)):
            try:
                if self.storage(index).exists(key):
                    return index
            except StorageError:
                continue
        return None

    def get(self, key: str) -> bytes:
        return self._first(key, lambda s: s.get(key))  # type: ignore[return-value]

    def open_stream(self, key: str) -> BinaryIO:
        return self._first(key, lambda s: s.open_stream(key))  # type: ignore[return-value]

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self._first(key, lambda s: s.read_range(key, offset, length))  # type: ignore[return-value]

    def size(self, key: str) -> int:
        return self._first(key, lambda s: s.size(key))  # type: ignore[return-value]

    def mtime(self, key: str) -> float:
        return self._first(key, lambda s: s.mtime(key))  # type: ignore[return-value]

    def exists(self, key: str) -> bool:
        return self.holder(key) is not None

    def list(self, prefix: str, recursive: bool = True) -> list[str]:
        """The union of every storage's listing (a storage that cannot be listed is passed
        over, unless none can)."""
        found: set[str] = set()
        failures: list[StorageError] = []
        for index in range(len(self._sources)):
            try:
                found.update(self.storage(index).list(prefix, recursive))
            except StorageError as exc:
                failures.append(exc)
        if failures and len(failures) == len(self._sources):
            raise failures[0]
        return sorted(found)

    def usage(self, prefix: str) -> int:
        return sum(self.storage(i).usage(prefix) for i in range(len(self._sources)))

    def _read_only(self, *_args: object, **_kwargs: object) -> None:
        raise StorageError("the tiers seen together are read-only: write to one tier's storage")

    put = put_if_absent = put_stream_if_absent = open_writer = delete = remove_abandoned = _read_only

    def close(self) -> None:
        for storage in self._opened.values():
            close = getattr(storage, "close", None)
            if close is not None:
                close()
