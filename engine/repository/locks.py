"""One backup, expire or garbage collection at a time per cluster and repository.

The lock lives in the repository (through the storage driver), so two hosts sharing a
repository exclude each other as well as two processes on one host. A second run is
refused with a message naming the holder; a lock whose holder died is taken over.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from engine.errors import LockBusyError
from engine.repository import layout
from engine.repository.storage.base import Storage


def holder_text(command: str) -> str:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    return f"{command} (pid {os.getpid()} on host {socket.gethostname()}, since {started})"


@contextmanager
def cluster_lock(storage: Storage, cluster: str, command: str,
                 notice: list[str] | None = None) -> Iterator[None]:
    """Hold the cluster's lock for ``command``; append a notice when a dead holder's lock
    was taken over."""
    try:
        lock = storage.lock(layout.lock_key(cluster), holder_text(command))
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
