"""Locks: one backup, expire or garbage collection at a time per cluster and repository.

A lock is not a storage operation: it is its own small interface, :class:`LockSpace`,
chosen from what the repository's storage can do (:func:`lock_space`). On a repository
that is a local or mounted directory it is an ``flock`` on a file there, so two hosts
sharing the mount exclude each other as well as two processes on one host. Object storage
will have a lease object with an expiry instead. A second run is refused with a message
naming the holder; a lock whose holder died is taken over, and that is said.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Protocol

from engine import durable
from engine.errors import LockBusyError, StorageError, path_error
from engine.repository import layout
from engine.repository.storage.base import Storage

LOCK_FILE_MODE = 0o640


class Lock(Protocol):
    """A held lock; :meth:`release` gives it up (so does the holder's death)."""

    previous: str | None
    """What an earlier holder that died without releasing left behind, if anything."""

    def release(self) -> None: ...


class LockSpace(Protocol):
    """Where a repository's locks live. ``acquire`` takes the exclusive lock ``name``
    without waiting, recording ``holder`` (a line of text for messages), or raises
    :class:`LockBusyError` naming the current holder. A lock whose holder died is free."""

    def acquire(self, name: str, holder: str) -> Lock: ...


class FileLock:
    """An flock on a file: the kernel releases it when the holder exits, even on SIGKILL.

    The file is never removed (removing a lock file races with a process opening it);
    releasing empties it, so text left in it means the last holder died holding it.
    """

    def __init__(self, fd: int, previous: str | None) -> None:
        self._fd = fd
        self.previous = previous

    def release(self) -> None:
        if self._fd < 0:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = -1


class FileLocks:
    """Locks as flocked files under a directory (the repository's own, for posix)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def acquire(self, name: str, holder: str) -> FileLock:
        path = os.path.join(self.root, *name.split("/"))
        try:
            durable.make_dirs(os.path.dirname(path))
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, LOCK_FILE_MODE)
        except OSError as exc:
            raise StorageError(str(path_error(exc, "open the lock", path))) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            current = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            os.close(fd)
            raise LockBusyError(f"held by {current or 'another process'}") from None
        previous = os.pread(fd, 4096, 0).decode(errors="replace").strip() or None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(), 0)
        except OSError as exc:
            os.close(fd)  # the flock goes with it
            raise StorageError(str(path_error(exc, "write the lock", path))) from None
        return FileLock(fd, previous)


def file_lock_holder(path: str) -> str | None:
    """Who holds the flock on ``path`` (the text it wrote, or 'another process'), or None
    when it is free. Takes a shared lock for an instant to find out, never waits, and
    writes nothing: a dead holder's text is left for the next taker to report."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(str(path_error(exc, "open the lock", path))) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def cluster_lock_holder(storage: Storage, cluster: str) -> str | None:
    """Who holds ``cluster``'s lock in the repository (see :func:`holder_text`), or None
    when it is free. StorageError when the storage has no locks or the lock cannot be read."""
    root = storage.capabilities.local_path
    if root is None:
        raise StorageError(f"{storage.describe()}: this storage has no lock implementation yet")
    return file_lock_holder(os.path.join(root, *layout.lock_key(cluster).split("/")))


def lock_space(storage: Storage) -> LockSpace:
    """The locks of the repository ``storage`` is, from what the storage can do."""
    root = storage.capabilities.local_path
    if root is None:
        raise StorageError(f"{storage.describe()}: this storage has no lock implementation "
                           "yet, so backups and expire cannot exclude each other there")
    return FileLocks(root)


def holder_text(command: str) -> str:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    return f"{command} (pid {os.getpid()} on host {socket.gethostname()}, since {started})"


@contextmanager
def cluster_lock(storage: Storage, cluster: str, command: str,
                 notice: list[str] | None = None) -> Iterator[None]:
    """Hold the cluster's lock in the repository ``storage`` for ``command``; append a
    notice when a dead holder's lock was taken over."""
    try:
        lock = lock_space(storage).acquire(layout.lock_key(cluster), holder_text(command))
    except LockBusyError as exc:
        raise LockBusyError(f"cluster '{cluster}' is busy: its lock is {exc} "
                            f"(try again when it ends)") from None
    if lock.previous and notice is not None:
        notice.append(f"took over the lock of cluster '{cluster}' left by {lock.previous}, "
                      "which is no longer running")
    try:
        yield
    finally:
        lock.release()
