"""Locks: one backup, expire or garbage collection at a time per cluster and repository.

A lock is not a storage operation: it is its own small interface, :class:`LockSpace`,
chosen from what the repository's storage can do (:func:`lock_space`). On a repository
that is a local or mounted directory it is an ``flock`` on a file there, so two hosts
sharing the mount exclude each other as well as two processes on one host. On object
storage it is a lease (:class:`LeaseLocks`): an object naming the holder, with an expiry,
renewed while held and taken over only once it has expired. A second run is refused with a
message naming the holder; a lock whose holder died (or whose lease expired) is taken over,
and that is said.

While a lock is held, :func:`cluster_lock` hands out the storage guarded by it: every write
and delete first checks that the lock is still held, so a holder that lost its lease (the
store unreachable for longer than the lease lasts, or the lease taken over) stops with
:class:`LockLostError` rather than write beside the next holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from engine import durable
from engine.errors import LifeboatError, LockBusyError, LockLostError, NotFoundError, StorageError, path_error
from engine.repository import layout
from engine.repository.storage.base import ObjectWriter, Storage

LOCK_FILE_MODE = 0o640
LEASE_TTL = 60.0  # seconds a lease holds without being renewed
LEASE_RENEW = 20.0  # how often a held lease is renewed
LEASE_MARGIN = 0.25  # a holder that could not renew stops this share of the TTL before expiry


class Lock(Protocol):
    """A held lock; :meth:`release` gives it up (so does the holder's death)."""

    previous: str | None
    """What an earlier holder that died without releasing left behind, if anything."""

    why_free: str
    """Why that earlier holder's lock could be taken (for the notice)."""

    def check(self) -> None:
        """Raise :class:`LockLostError` when the lock is no longer held."""

    def guard(self, storage: Storage) -> Storage:
        """``storage``, its writes checking first that the lock is still held."""

    def release(self) -> None: ...


class LockSpace(Protocol):
    """Where a repository's locks live. ``acquire`` takes the exclusive lock ``name``
    without waiting, recording ``holder`` (a line of text for messages), or raises
    :class:`LockBusyError` naming the current holder. A lock whose holder died is free.
    ``holder`` says who holds ``name`` (None: free), without taking it."""

    def acquire(self, name: str, holder: str) -> Lock: ...

    def holder(self, name: str) -> str | None: ...


class FileLock:
    """An flock on a file: the kernel releases it when the holder exits, even on SIGKILL.

    The file is never removed (removing a lock file races with a process opening it);
    releasing empties it, so text left in it means the last holder died holding it.
    """

    why_free = "which is no longer running"

    def __init__(self, fd: int, previous: str | None) -> None:
        self._fd = fd
        self.previous = previous

    def check(self) -> None:
        """The kernel holds an flock until its holder closes it or dies: never lost."""

    def guard(self, storage: Storage) -> Storage:
        return storage

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

    def holder(self, name: str) -> str | None:
        return file_lock_holder(os.path.join(self.root, *name.split("/")))


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


class LockedStorage:
    """A storage whose writes and deletes first check that a lock is still held (reads
    pass straight through): what :func:`cluster_lock` hands out for a lease."""

    def __init__(self, storage: Storage, check: Callable[[], None]) -> None:
        self._storage = storage
        self._check = check
        self.capabilities = storage.capabilities

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self._check()
        self._storage.put(key, data)

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        self._check()
        return self._storage.put_if_absent(key, data)

    def put_stream_if_absent(self, key: str, chunks: Iterable[bytes]) -> bool:
        self._check()

        def checked() -> Iterator[bytes]:
            yield from chunks
            self._check()  # the object becomes visible only after its last chunk

        return self._storage.put_stream_if_absent(key, checked())

    def open_writer(self, key: str) -> ObjectWriter:
        self._check()
        return _CheckedWriter(self._storage.open_writer(key), self._check)

    def delete(self, key: str) -> None:
        self._check()
        self._storage.delete(key)

    def remove_abandoned(self, prefix: str, older_than: float) -> int:
        self._check()
        return self._storage.remove_abandoned(prefix, older_than)

    def describe(self) -> str:
        return self._storage.describe()


class _CheckedWriter:
    """A writer whose commit (the moment its object becomes visible) checks the lock."""

    def __init__(self, writer: ObjectWriter, check: Callable[[], None]) -> None:
        self._writer = writer
        self._check = check

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self._writer.write(data)

    def tell(self) -> int:
        return self._writer.tell()

    def commit(self) -> Any:
        try:
            self._check()
        except LockLostError:
            self._writer.abort()
            raise
        return self._writer.commit()

    def abort(self) -> None:
        self._writer.abort()


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Lease:
    """What a lease object says: who holds it, until when, whether it was given up."""

    def __init__(self, holder: str, token: str, expires_at: float, released: bool) -> None:
        self.holder = holder
        self.token = token
        self.expires_at = expires_at
        self.released = released

    @classmethod
    def read(cls, storage: Storage, key: str, ttl: float) -> _Lease | None:
        """The lease at ``key`` (None when it is gone). One that cannot be parsed (not
        Lifeboat's, or damaged) holds until its object is ``ttl`` seconds old."""
        try:
            raw = storage.get(key)
        except NotFoundError:
            return None
        try:
            doc = json.loads(raw)
            return cls(str(doc["holder"]), str(doc["token"]), float(doc["expires_at"]),
                       bool(doc.get("released", False)))
        except (ValueError, KeyError, TypeError):
            try:
                written = storage.mtime(key)
            except NotFoundError:
                return None
            return cls(f"an unreadable lease ({key})", "", written + ttl, False)

    @staticmethod
    def document(holder: str, token: str, expires_at: float, released: bool = False) -> bytes:
        return json.dumps({"holder": holder, "token": token, "expires_at": round(expires_at, 3),
                           "expires": _iso(expires_at), "released": released}).encode()

    def live(self, now: float) -> bool:
        return not self.released and now < self.expires_at


class LeaseLock:
    """A lease held: renewed by a daemon thread every ``renew_every`` seconds.

    The holder counts its lease as lost once it could not renew it for ``ttl`` less a
    margin (``LEASE_MARGIN`` of it) since the last renewal began, by its own monotonic
    clock: other hosts take over only after the expiry the lease records (by their clocks,
    which must agree to within that margin), so the holder has stopped writing by then. A
    renewal that ends after that point does not revive the lease, and one that finds a
    newer generation (taken over) loses it too. :meth:`check` raises LockLostError then.
    """

    def __init__(self, space: LeaseLocks, name: str, generation: int, token: str, holder: str,
                 started: float, expires_at: float, previous: str | None) -> None:
        self._space = space
        self._name = name
        self.generation = generation
        self.key = layout.lease_key(name, generation)
        self._token = token
        self._holder = holder
        self.previous = previous
        self.why_free = ""
        self.expires_at = expires_at
        self._valid_until = started + space.ttl * (1 - LEASE_MARGIN)
        self._lost: str | None = None
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                        name=f"lifeboat-lease-{name}")
        self._thread.start()

    def _lose(self, why: str) -> None:
        if self._lost is None:
            self._lost = (f"lost the lock {self.key} in {self._space.storage.describe()}: {why}; "
                          "stopped rather than go on without it")

    def check(self) -> None:
        if self._lost is None and time.monotonic() > self._valid_until:
            cause = f" (last error: {self._last_error})" if self._last_error else ""
            self._lose(f"its lease could not be renewed in time{cause}, and another host may take "
                       f"it over after {_iso(self.expires_at)}")
        if self._lost is not None:
            raise LockLostError(self._lost)

    def guard(self, storage: Storage) -> Storage:
        return LockedStorage(storage, self.check)  # type: ignore[return-value]

    def renew(self) -> None:
        """Extend the lease by ``ttl`` from now (the thread calls it; so may tests)."""
        self.check()
        space = self._space
        started = time.monotonic()
        expires_at = time.time() + space.ttl
        space.storage.put(self.key, _Lease.document(self._holder, self._token, expires_at))
        newest = space.generations(self._name)
        if time.monotonic() > self._valid_until:
            self.check()  # renewed too late: others may have seen it expired meanwhile
        if newest and newest[-1] != self.generation:
            lease = _Lease.read(space.storage, layout.lease_key(self._name, newest[-1]), space.ttl)
            self._lose(f"it was taken over by {lease.holder if lease else 'another process'}")
            self.check()
        self._valid_until = started + space.ttl * (1 - LEASE_MARGIN)
        self.expires_at = expires_at
        self._last_error = None

    def _renew_loop(self) -> None:
        while not self._stop.wait(self._space.renew_every):
            try:
                self.renew()
            except LockLostError:
                return
            except Exception as exc:  # the store unreachable: tried again, check() decides
                self._last_error = str(exc) or exc.__class__.__name__

    def release(self) -> None:
        """Stop renewing and mark the lease given up (a released lease is free at once). The
        newest lease is never deleted (generations only grow); a lost one is left as it is."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=self._space.ttl)
        if self._lost is not None:
            return
        with contextlib.suppress(LifeboatError):
            newest = self._space.generations(self._name)
            if newest and newest[-1] == self.generation:
                self._space.storage.put(self.key, _Lease.document(
                    self._holder, self._token, time.time(), released=True))


class LeaseLocks:
    """Locks as leases on object storage, where no process can hold a file open.

    A lock ``name`` is a series of lease objects, ``<name>.lease/<generation>``
    (:func:`engine.repository.layout.lease_key`); the newest generation is the lease in
    force. Each holds the holder's text, a unique token and its expiry. To take the lock, a
    process reads the newest lease: a live one refuses (LockBusyError naming the holder and
    its expiry); a released or expired one is superseded by creating the next generation
    with ``put_if_absent``, which only one of several racing takers can do. So the lock
    needs no conditional replace (If-Match), only the conditional create the driver already
    relies on. The taker then lists again: finding a newer generation than its own (it
    re-created one a cleanup had removed) it withdraws. Older generations are deleted by
    the holder; the newest never is, so generation numbers only grow.
    """

    def __init__(self, storage: Storage, ttl: float | None = None,
                 renew_every: float | None = None) -> None:
        self.storage = storage
        self.ttl = LEASE_TTL if ttl is None else ttl
        self.renew_every = (LEASE_RENEW * self.ttl / LEASE_TTL if renew_every is None
                            else renew_every)

    def generations(self, name: str) -> list[int]:
        """The generations of ``name``'s leases there are, in order."""
        keys = self.storage.list(layout.lease_prefix(name))
        return sorted(g for g in map(layout.lease_generation, keys) if g is not None)

    def _newest(self, name: str) -> tuple[int, _Lease | None]:
        for _ in range(5):
            generations = self.generations(name)
            if not generations:
                return 0, None
            lease = _Lease.read(self.storage, layout.lease_key(name, generations[-1]), self.ttl)
            if lease is not None:
                return generations[-1], lease
        raise StorageError(f"{self.storage.describe()}: the leases of {name} keep changing; try again")

    def holder(self, name: str) -> str | None:
        _, lease = self._newest(name)
        if lease is None or not lease.live(time.time()):
            return None
        return f"{lease.holder}, whose lease runs until {_iso(lease.expires_at)}"

    def acquire(self, name: str, holder: str) -> LeaseLock:
        for _ in range(5):
            newest, lease = self._newest(name)
            if lease is not None and lease.live(time.time()):
                raise LockBusyError(
                    f"held by {lease.holder}, whose lease runs until {_iso(lease.expires_at)} "
                    f"(renewed every {self.renew_every:g}s while it runs; taken over only once it "
                    "has expired)")
            generation = newest + 1
            key = layout.lease_key(name, generation)
            token = secrets.token_hex(16)
            started = time.monotonic()
            expires_at = time.time() + self.ttl
            if not self.storage.put_if_absent(key, _Lease.document(holder, token, expires_at)):
                continue  # another process took this generation first: look again
            generations = self.generations(name)
            if generations[-1] != generation:  # a cleanup had removed it, below a newer one
                with contextlib.suppress(LifeboatError):
                    self.storage.delete(key)
                continue
            for old in generations[:-1]:
                with contextlib.suppress(LifeboatError):
                    self.storage.delete(layout.lease_key(name, old))
            previous = None if lease is None or lease.released else lease.holder
            taken = LeaseLock(self, name, generation, token, holder, started, expires_at, previous)
            if lease is not None:
                taken.why_free = (f"whose lease expired at {_iso(lease.expires_at)} without being "
                                  "renewed (it died, or lost the store)")
            return taken
        raise LockBusyError(f"contended: other processes took {name} at the same time")


def cluster_lock_holder(storage: Storage, cluster: str) -> str | None:
    """Who holds ``cluster``'s lock in the repository (see :func:`holder_text`), or None
    when it is free. StorageError when the lock cannot be read."""
    return lock_space(storage).holder(layout.lock_key(cluster))


def lock_space(storage: Storage) -> LockSpace:
    """The locks of the repository ``storage`` is, from what the storage can do: flocks in
    a directory, else leases (which need an atomic ``put_if_absent``)."""
    root = storage.capabilities.local_path
    if root is not None:
        return FileLocks(root)
    if not storage.capabilities.atomic_create:
        raise StorageError(f"{storage.describe()}: this storage is opened without conditional "
                           "writes (conditional_writes=false), so its lease lock could not keep "
                           "two backups or expires of a cluster apart; use a store that has them "
                           "(AWS S3, MinIO, Ceph RGW) and remove conditional_writes=false")
    return LeaseLocks(storage)


def holder_text(command: str) -> str:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    return f"{command} (pid {os.getpid()} on host {socket.gethostname()}, since {started})"


@contextmanager
def cluster_lock(storage: Storage, cluster: str, command: str,
                 notice: list[str] | None = None) -> Iterator[Storage]:
    """Hold the cluster's lock in the repository ``storage`` for ``command``; append a
    notice when a dead holder's lock was taken over. Yields the storage to write through
    while it is held: on a lease, its writes stop with LockLostError once the lease is lost."""
    try:
        lock = lock_space(storage).acquire(layout.lock_key(cluster), holder_text(command))
    except LockBusyError as exc:
        raise LockBusyError(f"cluster '{cluster}' is busy: its lock is {exc} "
                            f"(try again when it ends)") from None
    if lock.previous and notice is not None:
        notice.append(f"took over the lock of cluster '{cluster}' left by {lock.previous}, "
                      f"{lock.why_free}")
    try:
        yield lock.guard(storage)
    finally:
        lock.release()
