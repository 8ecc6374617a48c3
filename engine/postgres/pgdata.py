"""Walking a data directory the way PostgreSQL's documentation says a backup should.

Excluded (PostgreSQL's "Making a Base Backup Using the Low Level API" and
pg_basebackup's rules): the contents of pg_wal, pg_replslot, pg_dynshmem,
pg_notify, pg_serial, pg_snapshots, pg_stat_tmp and pg_subtrans (the directories
themselves are kept); postmaster.pid, postmaster.opts, backup_label,
tablespace_map, backup_manifest and temporary config files; the lock files of Unix
sockets kept in the data directory (``.s.PGSQL.<port>.lock``: copied, a restored server
on the same host takes the live one's PID for its own and refuses to start); pg_internal.init;
temporary files and directories (pgsql_tmp*); temporary relations (t<N>_<relfilenode>);
and every fork of an unlogged relation except its init fork.

Tablespaces are followed through pg_tblspc: the link is recorded, and only this
server's version directory (PG_<major>_*) inside the location is backed up.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

EXCLUDED_DIR_CONTENTS = frozenset({
    "pg_wal", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial",
    "pg_snapshots", "pg_stat_tmp", "pg_subtrans",
})
EXCLUDED_TOP_FILES = frozenset({
    "postmaster.pid", "postmaster.opts", "backup_label", "tablespace_map",
    "backup_manifest", "postgresql.auto.conf.tmp", "current_logfiles.tmp",
    "backup_label.old",
    ".lifeboat-restored",  # engine.restore.written_state.RECORD: what a restore wrote here
})
_SOCKET_LOCK = re.compile(r"^\.s\.PGSQL\.\d+\.lock$")
_TEMP_RELATION = re.compile(r"^t\d+_\d+(_[a-z]+)?(\.\d+)?$")
_RELATION_FILE = re.compile(r"^(\d+)(_[a-z]+)?(\.\d+)?$")
_DATABASE_DIR = re.compile(r"^(base/\d+|pg_tblspc/\d+/[^/]+/\d+)$")
_RELATION_PATH = re.compile(
    r"(^|/)(global|base/\d+|pg_tblspc/\d+/[^/]+/\d+)/\d+(?P<fork>_fsm|_vm|_init)?(\.(?P<segment>\d+))?$")
_TRANSACTION_DIRS = frozenset({"pg_xact", "pg_multixact", "pg_commit_ts", "pg_subtrans"})


def relation_segment(path: str) -> int | None:
    """The segment number of a relation file (``base/5/16384.2`` -> 2); None otherwise."""
    match = _RELATION_PATH.search(path)
    return None if match is None else int(match.group("segment") or 0)


def file_kind(path: str) -> str:
    """What a file holds, for compression statistics: relation, fsm, vm, init (forks of
    tables and indexes), transaction_status, log or other (configuration, maps ...)."""
    match = _RELATION_PATH.search(path)
    if match is not None:
        return (match.group("fork") or "_relation")[1:]
    top = path.split("/", 1)[0]
    if top in _TRANSACTION_DIRS:
        return "transaction_status"
    return "log" if top == "log" else "other"


@dataclass(frozen=True)
class Entry:
    """One item of the data directory, with its '/'-separated path relative to PGDATA."""

    path: str
    kind: str  # "file", "dir" or "link"
    mode: int
    size: int
    mtime: float
    source: Path
    target: str | None = None


def _excluded_file(rel: str, name: str) -> bool:
    if "/" not in rel and (name in EXCLUDED_TOP_FILES or _SOCKET_LOCK.match(name)):
        return True
    return name.startswith("pg_internal.init") or name.startswith("pgsql_tmp")


def _unlogged(names: list[str]) -> set[str]:
    """Relfilenodes in one database directory that have an init fork (unlogged)."""
    return {name[:-5] for name in names if name.endswith("_init") and name[:-5].isdigit()}


def _skip_relation(name: str, unlogged: set[str]) -> bool:
    if _TEMP_RELATION.match(name):
        return True
    match = _RELATION_FILE.match(name)
    return bool(match and match.group(1) in unlogged and match.group(2) != "_init")


def walk(pgdata: Path, major: int) -> Iterator[Entry]:
    """Every entry to back up, directories before their contents, in sorted path order."""
    yield from _walk_dir(Path(pgdata), "", major)


def _entry(path: Path, rel: str, st: os.stat_result, kind: str, target: str | None = None) -> Entry:
    return Entry(rel, kind, stat.S_IMODE(st.st_mode), st.st_size if kind == "file" else 0,
                 st.st_mtime, path, target)


def _walk_dir(directory: Path, rel: str, major: int) -> Iterator[Entry]:
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    in_database = bool(_DATABASE_DIR.match(rel))
    unlogged = _unlogged(names) if in_database else set()
    for name in names:
        child_rel = f"{rel}/{name}" if rel else name
        path = directory / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue  # removed while we walked (a dropped table): nothing to back up
        if stat.S_ISLNK(st.st_mode):
            yield from _walk_link(path, child_rel, rel, major)
        elif stat.S_ISDIR(st.st_mode):
            if name.startswith("pgsql_tmp"):
                continue
            yield _entry(path, child_rel, st, "dir")
            if not rel and name in EXCLUDED_DIR_CONTENTS:
                continue
            yield from _walk_dir(path, child_rel, major)
        elif stat.S_ISREG(st.st_mode):
            if _excluded_file(rel, name) or (in_database and _skip_relation(name, unlogged)):
                continue
            yield _entry(path, child_rel, st, "file")


def _walk_link(path: Path, rel: str, parent_rel: str, major: int) -> Iterator[Entry]:
    target = os.readlink(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if parent_rel == "pg_tblspc":
        yield Entry(rel, "link", 0o777, 0, st.st_mtime, path, target)
        version_prefix = f"PG_{major}_"
        for name in sorted(os.listdir(path)):
            if name.startswith(version_prefix):
                version_dir = path / name
                yield _entry(version_dir, f"{rel}/{name}", os.stat(version_dir), "dir")
                yield from _walk_dir(version_dir, f"{rel}/{name}", major)
    elif stat.S_ISDIR(st.st_mode):
        # pg_wal (or another directory) moved elsewhere with a link: kept as a directory.
        yield _entry(path, rel, st, "dir")
        if rel not in EXCLUDED_DIR_CONTENTS:
            yield from _walk_dir(path, rel, major)
    else:
        yield _entry(path, rel, st, "file")
