"""The drill's reference: a restore point on the source and, at exactly that point, the
values the restored cluster must show.

How the two are made consistent. Recovery to a named restore point replays every
transaction whose commit record precedes the point's WAL record, and none after it.
The values must come from a snapshot that sees exactly those transactions, for the
tables compared. So, for each database in scope:

1. a *locker* session opens a REPEATABLE READ transaction, sets a short lock_timeout and
   takes ``LOCK TABLE ... IN SHARE MODE`` on the tables (before any query, so the
   snapshot is not yet taken). SHARE conflicts with every writer's ROW EXCLUSIVE: when
   it is granted, no transaction holds uncommitted changes to those tables, and a
   writer releases its lock only after its commit is both in WAL and visible;
2. it exports its snapshot (``pg_export_snapshot()``, the transaction's first query):
   every change to those tables committed before it is visible, none is pending;
3. with all lockers holding their locks, the first creates the restore point. No write
   to the tables can commit between the snapshot and the point's WAL record;
4. a *reader* session per database, connected beforehand, imports the snapshot
   (``SET TRANSACTION SNAPSHOT``) and the lockers commit at once. Writers were blocked
   only from the first LOCK request to that commit (recorded, usually milliseconds);
5. the readers compute row counts, checksums, privileges and roles at leisure, seeing
   exactly the state that recovery to the restore point ends at;
6. ``pg_switch_wal()`` closes the segment holding the point, and the drill waits until
   it is archived (as ``lifeboat check`` does), then records the point in the repository.

A lock that cannot be had within :data:`LOCK_TIMEOUT` (a long writer, a deadlock) is
released at once and retried after a pause, :data:`LOCK_ATTEMPTS` times in all. Roles,
authentication rules and database privileges are cluster-wide or catalog data read in
the first reader's snapshot (catalog writes take no table lock: a GRANT or ALTER ROLE
committed in the milliseconds of the window could differ; such a difference is reported,
never hidden).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from engine.config.schema import Config
from engine.drill import state
from engine.drill.state import Table
from engine.errors import DrillError
from engine.postgres import cluster_setup
from engine.postgres import connection as postgres
from engine.repository.storage import Storage
from engine.restore import points
from engine.restore.points import RestorePoint
from engine.wal.names import format_lsn

LOCK_TIMEOUT = 2.0
LOCK_ATTEMPTS = 5
_RETRYABLE = (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected, pg_errors.QueryCanceled,
              pg_errors.UndefinedTable)


@dataclass
class Scope:
    """The tables a drill compares, by database (the cluster's default database first: it
    is always read, for roles, even when it holds nothing to compare), and the databases
    whose constraints, privileges and pages are validated."""

    tables: dict[str, list[Table]]
    databases: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(t) for t in self.tables.values())


@dataclass
class Reference:
    point: RestorePoint
    tables: dict[str, tuple[int, str]]  # database.schema.table -> (rows, checksum)
    roles: dict[str, dict[str, Any]] | None  # None: could not be read (see unreadable)
    hba: list[str] | None
    acls: dict[str, dict[str, str]]  # database -> object -> acl
    privileges: dict[str, list[str]]  # role|database.schema.table -> privileges held
    logins: list[tuple[str, bool]]  # (role, superuser)
    writers_blocked_ms: float
    attempts: int
    unreadable: dict[str, str] = field(default_factory=dict)  # what -> why (e.g. not a superuser)


def parse_critical(entry: str, default_database: str) -> tuple[str, Table]:
    parts = entry.split(".")
    if len(parts) == 2:
        parts.insert(0, default_database)
    if len(parts) != 3 or not all(parts):
        raise DrillError(f"critical table '{entry}': use 'schema.table' or 'database.schema.table'")
    return parts[0], (parts[1], parts[2])


def _connect(config: Config, cluster: str, database: str) -> Any:
    settings = config.clusters[cluster]
    endpoint = replace(postgres.endpoint_of(settings), database=database)
    return postgres.connect(endpoint, cluster, settings.connect_timeout)


def resolve_scope(config: Config, cluster: str, kind: str) -> Scope:
    """Full: every permanent user table of the configured databases (default: all that
    accept connections). Partial: the configured critical tables, which must exist."""
    settings = config.clusters[cluster]
    default = settings.database
    if kind == "partial":
        if not settings.drills.critical_tables:
            raise DrillError(f"a partial drill of cluster '{cluster}' needs critical_tables in "
                             f"[clusters.{cluster}.drills]")
        wanted: dict[str, list[Table]] = {default: []}
        for entry in settings.drills.critical_tables:
            database, table = parse_critical(entry, default)
            wanted.setdefault(database, []).append(table)
        missing = []
        for database, tables in wanted.items():
            with _connect(config, cluster, database) as conn:
                found = set(state.existing(conn, tables))
            missing += [state.qualified(database, t) for t in tables if t not in found]
        if missing:
            raise DrillError(f"critical tables not found on the source: {', '.join(missing)}")
        return Scope(wanted, [db for db, tables in wanted.items() if tables])
    with _connect(config, cluster, default) as conn:
        names = settings.drills.databases or state.databases(conn)
    scope = Scope({name: [] for name in [default, *[n for n in names if n != default]]}, list(names))
    for database in scope.databases:
        with _connect(config, cluster, database) as conn:
            scope.tables[database] = state.user_tables(conn)
            unlogged = state.unlogged_tables(conn)
        if unlogged:
            shown = ", ".join(state.qualified(database, t) for t in unlogged[:10])
            scope.notes.append(f"unlogged tables are empty after any restore and were not compared: "
                               f"{shown}" + (" ..." if len(unlogged) > 10 else ""))
    return scope


def take(config: Config, cluster: str, storage: Storage, scope: Scope, name: str) -> Reference:
    """Create restore point ``name`` and read the reference values at it (see the module)."""
    failure = ""
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            reference = _attempt(config, cluster, scope, name, attempt)
            break
        except _Retry as exc:
            failure = str(exc)
            time.sleep(min(0.5 * 2 ** attempt, 10.0))
    else:
        raise DrillError(f"cluster '{cluster}': could not lock the tables to compare within "
                         f"{LOCK_TIMEOUT:g}s in {LOCK_ATTEMPTS} attempts ({failure})")
    settings = config.clusters[cluster]
    with postgres.connect_cluster(settings, cluster) as conn:
        before = postgres.archiver_status(conn)
        closed = postgres.switch_wal(conn)
        cluster_setup.wait_for_segments(conn, storage, cluster, sorted({reference.point.wal, closed}),
                                        settings.archive_timeout, before)
    points.save(storage, cluster, reference.point)
    return reference


class _Retry(Exception):
    pass


def _attempt(config: Config, cluster: str, scope: Scope, name: str, attempt: int) -> Reference:
    databases = list(scope.tables)
    with ExitStack() as stack:
        readers = {db: stack.enter_context(_connect(config, cluster, db)) for db in databases}
        lockers = {db: stack.enter_context(_connect(config, cluster, db)) for db in databases}
        for conn in readers.values():
            state.pin_settings(conn)
        for conn in [*readers.values(), *lockers.values()]:
            conn.autocommit = False
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        blocked_from = time.monotonic()
        snapshots = {}
        try:
            for db, conn in lockers.items():
                conn.execute(f"SET LOCAL lock_timeout = {int(LOCK_TIMEOUT * 1000)}")
                if scope.tables[db]:
                    conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
                        sql.SQL(", ").join(state.relation(t) for t in scope.tables[db])))
                snapshots[db] = postgres.value(conn, "SELECT pg_export_snapshot()")
        except _RETRYABLE as exc:
            for conn in lockers.values():
                conn.rollback()
            raise _Retry(f"{db}: {str(exc).strip().splitlines()[0]}") from None
        lsn, wal, at = postgres.create_restore_point(lockers[databases[0]], name)
        for db, conn in readers.items():
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshots[db])))
        for conn in lockers.values():
            conn.commit()
        blocked_ms = (time.monotonic() - blocked_from) * 1000
        point = RestorePoint(name, format_lsn(lsn), wal, at.isoformat())
        return _read(readers, scope, point, blocked_ms, attempt)


def _optional(conn: psycopg.Connection, read: Callable[[psycopg.Connection], Any],
              what: str, unreadable: dict[str, str]) -> Any:
    """``read(conn)``, or None (noted in ``unreadable``) when the source refuses it: pg_authid
    and pg_hba_file_rules need a superuser, and the rest of the drill need not."""
    conn.execute("SAVEPOINT lifeboat_optional")
    try:
        found = read(conn)
    except psycopg.Error as exc:
        conn.execute("ROLLBACK TO SAVEPOINT lifeboat_optional")
        unreadable[what] = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        return None
    conn.execute("RELEASE SAVEPOINT lifeboat_optional")
    return found


def _read(readers: dict[str, psycopg.Connection], scope: Scope, point: RestorePoint,
          blocked_ms: float, attempt: int) -> Reference:
    first = readers[next(iter(readers))]
    unreadable: dict[str, str] = {}
    roles = _optional(first, state.roles, "roles", unreadable)
    hba = _optional(first, state.hba_rules, "authentication rules", unreadable)
    logins = state.login_roles(first)
    ordinary = [role for role, superuser in logins if not superuser]
    tables: dict[str, tuple[int, str]] = {}
    acls: dict[str, dict[str, str]] = {}
    privileges: dict[str, list[str]] = {}
    for db, conn in readers.items():
        for table in scope.tables[db]:
            tables[state.qualified(db, table)] = state.table_state(conn, table)
        acls[db] = state.acls(conn, db, scope.tables[db])
        privileges |= state.privileges(conn, db, scope.tables[db], ordinary)
    reference = Reference(point, tables, roles, hba, acls, privileges, logins, blocked_ms, attempt,
                          unreadable)
    for conn in readers.values():
        conn.rollback()
    return reference
