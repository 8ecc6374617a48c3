"""Seeing work overlap: a storage that counts how many of its calls are in progress at once.

Parallel work is proved by its effect on the storage it uses, not by a hook in the
product: each counted call waits (up to ``patience`` seconds, once per test) until ``want``
calls are in progress together. Work that can overlap reaches ``want`` however the threads
are scheduled on a loaded machine; serial work shows a peak of 1 (after one wait).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Overlap:
    """The peak number of calls in progress at the same moment."""

    def __init__(self, want: int, patience: float = 5.0) -> None:
        self.want = want
        self.patience = patience
        self.peak = 0
        self.calls = 0
        self._active = 0
        self._gave_up = False
        self._cond = threading.Condition()

    @contextmanager
    def inside(self) -> Iterator[None]:
        with self._cond:
            self._active += 1
            self.calls += 1
            self.peak = max(self.peak, self._active)
            self._cond.notify_all()
            if not self._gave_up and not self._cond.wait_for(lambda: self.peak >= self.want,
                                                             self.patience):
                self._gave_up = True  # serial: do not wait on every call
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1


class _CountedWriter:
    def __init__(self, inner: Any, overlap: Overlap) -> None:
        self._inner = inner
        self._overlap = overlap

    def write(self, data: bytes | bytearray | memoryview) -> int:
        with self._overlap.inside():
            return int(self._inner.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class OverlapStorage:
    """Any Storage, with the calls named in ``counted`` counted by ``overlap`` (``write``
    counts the writes into objects from ``open_writer``, i.e. packs)."""

    def __init__(self, inner: Any, overlap: Overlap, counted: tuple[str, ...],
                 before: Callable[[str], None] | None = None) -> None:
        self._inner = inner
        self._overlap = overlap
        self._counted = counted
        self._before = before

    def open_writer(self, key: str) -> Any:
        writer = self._inner.open_writer(key)
        return _CountedWriter(writer, self._overlap) if "write" in self._counted else writer

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name not in self._counted:
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            if self._before is not None:
                self._before(name)
            with self._overlap.inside():
                return method(*args, **kwargs)

        return counted
