"""A bandwidth limit on writes into a storage: one token bucket, and a storage wrapper that
takes its tokens before every byte it writes.

:class:`TokenBucket` is the one implementation of the limit (``[repository.copies.R]
bandwidth_limit``): each write takes as many tokens as it has bytes; a write that takes more
than the bucket holds runs the bucket into debt and waits until the debt is paid back at the
limit's rate. So N bytes take at least ``(N - burst) / rate`` seconds, whatever the sizes of
the writes, and a bucket that starts empty (as a copy's does) allows no burst at all. Threads
share a bucket (the copy rounds and WAL shipping to one region share its limit).

:class:`ThrottledStorage` puts a bucket in front of a storage's write path (``put``,
``put_if_absent``, ``put_stream_if_absent``, ``open_writer``), in slices of at most
:data:`SLICE` bytes so writes are paced smoothly, and counts what it wrote and the time the
writes took (waiting for tokens included): :meth:`ThrottledStorage.take_measurement` gives
the bytes per second achieved. Reads pass through untouched.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

SLICE = 1024 * 1024  # bytes paced at a time


class TokenBucket:
    """``rate`` bytes per second, at most ``burst`` saved up while idle (default: none)."""

    def __init__(self, rate: float, burst: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("a bandwidth limit must be more than 0 bytes per second")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock, self._sleep = clock, sleep
        self._tokens = 0.0
        self._at = clock()
        self._lock = threading.Lock()

    def take(self, n: int) -> float:
        """Take ``n`` tokens, waiting while the bucket is in debt; the seconds waited."""
        if n <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


class Meter:
    """Bytes written and the seconds the writes took (thread-safe)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.seconds = 0.0
        self.total_bytes = 0  # since the meter was made (a counter)
        self._lock = threading.Lock()

    def add(self, n: int, seconds: float) -> None:
        with self._lock:
            self.bytes += n
            self.seconds += seconds
            self.total_bytes += n

    def take(self) -> tuple[int, float]:
        """The bytes and seconds since the previous call."""
        with self._lock:
            taken = (self.bytes, self.seconds)
            self.bytes, self.seconds = 0, 0.0
            return taken


def _slices(data: bytes | bytearray | memoryview) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), SLICE):
        yield view[start:start + SLICE]


class _Writer:
    """An :class:`~engine.repository.storage.base.ObjectWriter` whose writes are paced."""

    def __init__(self, owner: ThrottledStorage, inner: Any) -> None:
        self._owner, self._inner = owner, inner

    def write(self, data: bytes | bytearray | memoryview) -> int:
        offset = self._inner.tell()
        for piece in _slices(data):
            self._owner._pace(len(piece), lambda p=piece: self._inner.write(p))
        return offset

    def tell(self) -> int:
        return int(self._inner.tell())

    def commit(self) -> Any:
        return self._inner.commit()

    def abort(self) -> None:
        self._inner.abort()


class ThrottledStorage:
    """``inner`` with its writes limited by ``bucket`` (None: only measured)."""

    def __init__(self, inner: Any, bucket: TokenBucket | None, meter: Meter | None = None) -> None:
        self.inner = inner
        self.bucket = bucket
        self.meter = meter or Meter()
        self.capabilities = inner.capabilities

    def __getattr__(self, name: str) -> Any:  # reads, listings, deletes: as they are
        return getattr(self.inner, name)

    def describe(self) -> str:
        return str(self.inner.describe())

    def _pace(self, n: int, write: Callable[[], object]) -> None:
        started = time.monotonic()
        if self.bucket is not None:
            self.bucket.take(n)
        write()
        self.meter.add(n, time.monotonic() - started)

    def _paced(self, chunks: Iterable[bytes | bytearray | memoryview]) -> Iterator[bytes]:
        """The chunks in slices, each yielded once its tokens are taken. The time the inner
        storage spends writing a slice (between two pulls) counts as the slice's."""
        for chunk in chunks:
            for piece in _slices(chunk):
                started = time.monotonic()
                if self.bucket is not None:
                    self.bucket.take(len(piece))
                yield bytes(piece)
                self.meter.add(len(piece), time.monotonic() - started)

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self._pace(len(data), lambda: self.inner.put(key, data))

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> bool:
        created: list[bool] = []
        self._pace(len(data), lambda: created.append(bool(self.inner.put_if_absent(key, data))))
        return created[0]

    def put_stream_if_absent(self, key: str, chunks: Iterable[bytes]) -> bool:
        return bool(self.inner.put_stream_if_absent(key, self._paced(chunks)))

    def open_writer(self, key: str) -> _Writer:
        return _Writer(self, self.inner.open_writer(key))
