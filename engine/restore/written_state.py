"""What a restore leaves in the data directory so that the next ``--delta`` need not re-read
the files nobody has touched since.

At the end of every restore, once each file is durable, Lifeboat records in
:data:`RECORD` each regular file's identity as it left it (size, mtime and ctime in
nanoseconds, inode, device) and the block list it wrote the file from. A later delta
restore trusts a file whose identity is still exactly that: its blocks are the ones that
list names, so it compares ids instead of reading and hashing the file, and a file whose
list is the new backup's is left as it is. Any write, truncate, chmod, rename over or copy
gives the file a new ctime or inode (the kernel sets ctime to the current time; nothing
can set it back short of changing the clock), so such a file is hashed as before. This is
git's index check, and stronger than pgBackRest's ``--delta --force`` (size and mtime).
``restore --delta --checksum-all`` ignores the record and hashes every file.

Same-tick races: a file changed in the same clock tick as its recorded ctime would keep
that ctime. The record is therefore written only once the file system's clock (the ctime
it gives a probe file) has moved past every recorded ctime, and files the probe does not
show as older are left out. A damaged or foreign record costs speed, never correctness:
anything unexpected in it and the record is ignored.
"""

from __future__ import annotations

import contextlib
import os
import stat as file_stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from engine import durable

RECORD = ".lifeboat-restored"
MAGIC = "lifeboat-restored"
FORMAT = 1
CLOCK_WAIT = 2.0  # seconds to wait for the file system's clock to move on, at most

Signature = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device


class Written(NamedTuple):
    """A file as a restore left it: its identity then, and the block list it came from."""

    signature: Signature
    list_key: bytes


def signature(found: os.stat_result) -> Signature:
    return (found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino, found.st_dev)


def current(path: Path) -> Signature | None:
    """The identity of the regular file at ``path`` now (None: missing or not a file)."""
    try:
        found = os.lstat(path)
    except OSError:
        return None
    return signature(found) if file_stat.S_ISREG(found.st_mode) else None


def take(pgdata: Path) -> dict[str, Written]:
    """The record a previous restore left in ``pgdata``, removed (the restore that reads it
    changes files): path -> :class:`Written`. Empty when there is none or it is not one
    this version wrote."""
    path = pgdata / RECORD
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError):
        return {}
    with contextlib.suppress(OSError):
        path.unlink()
    return _parse(text)


def _parse(text: str) -> dict[str, Written]:
    lines = text.split("\n")
    if lines[0] != f"{MAGIC} {FORMAT}" or lines[-1] != "":
        return {}
    known: dict[str, Written] = {}
    try:
        for line in lines[1:-1]:
            *numbers, list_key, rel = line.split("\t", 6)
            size, mtime, ctime, ino, dev = (int(n) for n in numbers)
            known[rel] = Written((size, mtime, ctime, ino, dev), bytes.fromhex(list_key))
    except ValueError:
        return {}
    return known


def record(pgdata: Path, files: Iterable[tuple[str, bytes]]) -> int:
    """Record ``files`` (path relative to ``pgdata``, block list key), which a restore has
    just made durable, for the next delta restore; returns how many were recorded. The
    restore is complete without it: a record that cannot be written (a full disk) is left
    out, and the next delta restore reads every file."""
    try:
        return _record(pgdata, files)
    except OSError:
        with contextlib.suppress(OSError):
            (pgdata / RECORD).unlink()
        return 0


def _record(pgdata: Path, files: Iterable[tuple[str, bytes]]) -> int:
    entries: list[tuple[str, Signature, bytes]] = []
    for rel, list_key in files:
        if "\t" in rel or "\n" in rel:
            continue  # kept out rather than escaped: such a file is simply hashed next time
        found = current(pgdata / rel)
        if found is not None:
            entries.append((rel, found, list_key))
    now = _clock_after(pgdata, max((s[2] for _, s, _ in entries), default=0))
    lines = [f"{MAGIC} {FORMAT}"]
    lines += [f"{s[0]}\t{s[1]}\t{s[2]}\t{s[3]}\t{s[4]}\t{key.hex()}\t{rel}"
              for rel, s, key in entries if s[2] < now]
    durable.write_atomic(pgdata / RECORD, ("\n".join(lines) + "\n").encode(), 0o600)
    return len(lines) - 1


def _clock_after(pgdata: Path, newest: int) -> int:
    """The file system's time now, as the ctime it gives a probe file, once it is past
    ``newest`` (or :data:`CLOCK_WAIT` has passed)."""
    probe = pgdata / (RECORD + ".clock")
    deadline = time.monotonic() + CLOCK_WAIT
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            while True:
                os.utime(fd)
                now = os.fstat(fd).st_ctime_ns
                if now > newest or time.monotonic() >= deadline:
                    return now
                time.sleep(0.002)
        finally:
            os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)
