"""The posix storage driver: a directory tree on a local or mounted file system."""

from __future__ import annotations

import errno
import os
from _thread import allocate_lock  # threading.Lock; importing threading costs a WAL push ~1 ms

from engine import durable
from engine.errors import NotFoundError, StorageError
from engine.repository.storage.capabilities import Capabilities

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import BinaryIO

FILE_MODE = 0o640
DIR_MODE = 0o750


def _fail(exc: OSError, what: str, path: str) -> StorageError:
    """The StorageError for a failed file operation on ``path``, naming it, the cause in
    plain words and what to do (the wording of :func:`engine.errors.path_error`)."""
    if exc.errno == errno.ENOENT:
        return NotFoundError(f"{path}: not in the repository")
    from engine.errors import path_error

    return StorageError(str(path_error(exc, what, path)))


def _unlisted(exc: OSError) -> None:
    """A directory a listing cannot read: an error (a listing that leaves it out would hide
    its objects from verify and garbage collection), unless it was removed meanwhile."""
    if exc.errno != errno.ENOENT:
        raise _fail(exc, "list", str(exc.filename))


class PosixWriter:
    """A pack being written: a temp file renamed into place on commit."""

    def __init__(self, storage: PosixStorage, key: str) -> None:
        self._storage = storage
        self._key = key
        self._path = storage.path_of(key)
        storage.ensure_parent(self._path)
        self._tmp = durable.temp_name(self._path)
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                           FILE_MODE)
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        offset = self._size
        try:
            durable.write_all(self._fd, data)
        except OSError as exc:
            raise _fail(exc, "write", self._path) from None
        self._size += len(data)
        return offset

    def tell(self) -> int:
        return self._size

    def commit(self) -> None:
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.rename(self._tmp, self._path)
            durable.fsync_dir(os.path.dirname(self._path))
        except OSError as exc:
            self.abort()
            raise _fail(exc, "write", self._path) from None

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        try:
            os.unlink(self._tmp)
        except OSError:
            pass


class PosixStorage:
    """Storage on a directory. Durability: fsync of file and directory on every put.

    Paths are plain strings here: this driver is on the WAL path, where importing
    pathlib is a measurable share of a push.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(root)
        self.capabilities = Capabilities(local_path=self.root, atomic_create=True)
        self._fds: dict[str, int] = {}
        self._fd_lock = allocate_lock()
        self._known_dirs: set[str] = set()

    def describe(self) -> str:
        return self.root

    def path_of(self, key: str) -> str:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise StorageError(f"invalid repository key '{key}'")
        return os.path.join(self.root, *parts)

    def ensure_parent(self, path: str) -> None:
        parent = os.path.dirname(path)
        if parent in self._known_dirs:
            return
        try:
            durable.make_dirs(parent, DIR_MODE)
        except OSError as exc:
            raise _fail(exc, "create directory for", str(path)) from None
        self._known_dirs.add(parent)

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        path = self.path_of(key)
        self.ensure_parent(path)
        try:
            durable.write_atomic(path, data, FILE_MODE)
        except OSError as exc:
            raise _fail(exc, "write", os.path.join(self.root, key)) from None

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        path = self.path_of(key)
        self.ensure_parent(path)
        try:
            return durable.write_new(path, data, FILE_MODE)
        except OSError as exc:
            raise _fail(exc, "write", os.path.join(self.root, key)) from None

    def put_stream_if_absent(self, key: str, chunks: Iterable[bytes]) -> bool:
        path = self.path_of(key)
        self.ensure_parent(path)
        tmp = durable.temp_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            try:
                for chunk in chunks:
                    durable.write_all(fd, chunk)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            durable.fsync_dir(os.path.dirname(path))
            return True
        except OSError as exc:
            raise _fail(exc, "write", os.path.join(self.root, key)) from None
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def open_stream(self, key: str) -> BinaryIO:
        try:
            return open(self.path_of(key), "rb")
        except OSError as exc:
            raise _fail(exc, "read", os.path.join(self.root, key)) from None

    def get(self, key: str) -> bytes:
        try:
            with open(self.path_of(key), "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise _fail(exc, "read", os.path.join(self.root, key)) from None

    def _fd(self, key: str) -> int:
        with self._fd_lock:
            fd = self._fds.get(key)
            if fd is None:
                fd = os.open(self.path_of(key), os.O_RDONLY | os.O_CLOEXEC)
                self._fds[key] = fd
            return fd

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            data = os.pread(self._fd(key), length, offset)
        except OSError as exc:
            raise _fail(exc, "read", os.path.join(self.root, key)) from None
        if len(data) != length:
            raise StorageError(
                f"{key}: truncated (wanted {length} bytes at offset {offset}, got {len(data)})"
            )
        return data

    def exists(self, key: str) -> bool:
        return os.path.exists(self.path_of(key))

    def size(self, key: str) -> int:
        try:
            return os.stat(self.path_of(key)).st_size
        except OSError as exc:
            raise _fail(exc, "stat", os.path.join(self.root, key)) from None

    def list(self, prefix: str, recursive: bool = True) -> list[str]:
        base = self.path_of(prefix.rstrip("/"))
        stem = prefix.rstrip("/") + "/"
        if not os.path.isdir(base):
            return []
        found: list[str] = []
        if not recursive:
            with os.scandir(base) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    found.append(stem + entry.name + ("/" if entry.is_dir() else ""))
            return sorted(found)
        for directory, dirs, files in os.walk(base, onerror=_unlisted):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = os.path.relpath(directory, base)
            head = stem if rel == "." else stem + rel.replace(os.sep, "/") + "/"
            found.extend(head + name for name in files if not name.startswith("."))
        return sorted(found)

    def usage(self, prefix: str) -> int:
        total = 0
        for directory, dirs, files in os.walk(self.path_of(prefix.rstrip("/"))):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                try:
                    total += os.stat(os.path.join(directory, name)).st_size
                except FileNotFoundError:  # removed while walking
                    pass
        return total

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        with self._fd_lock:
            fd = self._fds.pop(key, None)
            if fd is not None:
                os.close(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _fail(exc, "delete", os.path.join(self.root, key)) from None
        durable.fsync_dir(os.path.dirname(path))

    def mtime(self, key: str) -> float:
        try:
            return os.stat(self.path_of(key)).st_mtime
        except OSError as exc:
            raise _fail(exc, "stat", os.path.join(self.root, key)) from None

    def remove_abandoned(self, prefix: str, older_than: float) -> int:
        """Temp files (``.name.tmp-*``) left by killed writers."""
        import time

        base = self.path_of(prefix.rstrip("/"))
        cutoff = time.time() - older_than
        removed = 0
        for directory, _dirs, files in os.walk(base):
            for name in files:
                path = os.path.join(directory, name)
                if name.startswith(".") and ".tmp-" in name:
                    try:
                        if os.stat(path).st_mtime < cutoff:
                            os.unlink(path)
                            removed += 1
                    except FileNotFoundError:
                        pass
        return removed

    def open_writer(self, key: str) -> PosixWriter:
        try:
            return PosixWriter(self, key)
        except OSError as exc:
            raise _fail(exc, "write", os.path.join(self.root, key)) from None

    def close(self) -> None:
        with self._fd_lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
