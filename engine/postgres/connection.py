"""Talking to a PostgreSQL server: connections and the few calls Lifeboat makes.

psycopg is imported here only, so commands that never connect (wal-push, wal-get,
info) do not pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from engine.config.schema import ClusterConfig
from engine.errors import PostgresError
from engine.wal.names import parse_lsn


@dataclass(frozen=True)
class Endpoint:
    """Where a server listens: host (address or socket directory) and port."""

    host: str
    port: int
    user: str = "postgres"
    database: str = "postgres"

    def describe(self) -> str:
        return f"{self.host}:{self.port}" if not self.host.startswith("/") else (
            f"socket {self.host} port {self.port}")


def endpoint_of(cluster: ClusterConfig) -> Endpoint:
    return Endpoint(cluster.host, cluster.port, cluster.user, cluster.database)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


APPLICATION_NAME = "lifeboat"  # how sessions show in pg_stat_activity (load checks skip them)


@contextmanager
def connect(endpoint: Endpoint, name: str, timeout: float = 10.0,
            statement_timeout: float | None = None) -> Iterator[psycopg.Connection]:
    """An autocommit connection; a clear PostgresError when the server cannot be reached.
    ``statement_timeout`` (seconds) bounds each statement (the exporter's queries)."""
    options = "" if statement_timeout is None else f"-c statement_timeout={int(statement_timeout * 1000)}"
    try:
        conn = psycopg.connect(
            host=endpoint.host, port=endpoint.port, user=endpoint.user,
            dbname=endpoint.database, connect_timeout=max(1, int(timeout)),
            autocommit=True, application_name=APPLICATION_NAME, options=options,
        )
    except psycopg.Error as exc:
        raise PostgresError(
            f"cannot connect to cluster '{name}' at {endpoint.describe()}: {_first_line(exc)}"
        ) from None
    try:
        yield conn
    except psycopg.Error as exc:
        raise PostgresError(f"cluster '{name}': {_first_line(exc)}") from None
    finally:
        conn.close()


def connect_cluster(settings: ClusterConfig, name: str) -> Any:
    """A connection to the configured cluster ``name`` (see :func:`connect`)."""
    return connect(endpoint_of(settings), name, settings.connect_timeout)


def value(conn: psycopg.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def row(conn: psycopg.Connection, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    result = conn.execute(sql, params).fetchone()
    if result is None:
        raise PostgresError(f"no result for {sql}")
    return tuple(result)


def settings(conn: psycopg.Connection, *names: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),)
    ).fetchall()
    return {name: setting for name, setting in rows}


@dataclass(frozen=True)
class Identity:
    system_identifier: int
    version_num: int
    wal_segment_size: int
    page_size: int
    data_directory: str
    in_recovery: bool


def identity(conn: psycopg.Connection) -> Identity:
    sysid = value(conn, "SELECT system_identifier FROM pg_control_system()")
    found = settings(conn, "server_version_num", "wal_segment_size", "block_size",
                     "data_directory")
    return Identity(
        system_identifier=int(sysid),
        version_num=int(found["server_version_num"]),
        wal_segment_size=int(found["wal_segment_size"]),
        page_size=int(found["block_size"]),
        data_directory=found["data_directory"],
        in_recovery=bool(value(conn, "SELECT pg_is_in_recovery()")),
    )


@dataclass(frozen=True)
class BackupStart:
    lsn: int
    timeline: int
    wal_name: str


@dataclass(frozen=True)
class BackupStop:
    lsn: int
    backup_label: str
    tablespace_map: str
    stopped_at: datetime
    next_xid: int


def backup_start(conn: psycopg.Connection, label: str) -> BackupStart:
    """Non-exclusive ``pg_backup_start`` with an immediate checkpoint; the session must stay open."""
    lsn_text, wal_name = row(
        conn, "SELECT lsn::text, pg_walfile_name(lsn) FROM pg_backup_start(%s, true) AS lsn",
        (label,),
    )
    return BackupStart(parse_lsn(lsn_text), int(wal_name[:8], 16), wal_name)


def backup_stop(conn: psycopg.Connection) -> BackupStop:
    """``pg_backup_stop`` without waiting for the archiver (Lifeboat checks its own archive)."""
    lsn_text, label, spcmap = row(
        conn, "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"
    )
    stopped_at, next_xid = row(
        conn, "SELECT clock_timestamp(), pg_snapshot_xmax(pg_current_snapshot())::text"
    )
    return BackupStop(parse_lsn(lsn_text), label, spcmap or "", stopped_at, int(next_xid))


@dataclass(frozen=True)
class Tablespace:
    oid: int
    name: str
    location: str


def tablespaces(conn: psycopg.Connection) -> list[Tablespace]:
    rows = conn.execute(
        "SELECT oid, spcname, pg_tablespace_location(oid) FROM pg_tablespace "
        "WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid"
    ).fetchall()
    return [Tablespace(int(oid), name, location) for oid, name, location in rows]


def switch_wal(conn: psycopg.Connection) -> str:
    """Force a switch to a new segment; returns the name of the segment that was closed.

    A restore point is written first so the switch always closes a segment, even on
    an idle server (pg_switch_wal does nothing when nothing was written).
    """
    conn.execute("SELECT pg_create_restore_point('lifeboat archive check')")
    return str(value(conn, "SELECT pg_walfile_name(pg_switch_wal())"))


def create_restore_point(conn: psycopg.Connection, name: str) -> tuple[int, str, datetime]:
    lsn_text, wal_name, at = row(
        conn,
        "SELECT lsn::text, pg_walfile_name(lsn), clock_timestamp() "
        "FROM pg_create_restore_point(%s) AS lsn",
        (name,),
    )
    return parse_lsn(lsn_text), wal_name, at


@dataclass(frozen=True)
class ArchiverStatus:
    archived_count: int
    last_archived_wal: str | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_time: datetime | None


def archiver_status(conn: psycopg.Connection) -> ArchiverStatus:
    archived, last_ok, failed, last_failed, failed_at = row(
        conn,
        "SELECT archived_count, last_archived_wal, failed_count, last_failed_wal, "
        "last_failed_time FROM pg_stat_archiver",
    )
    return ArchiverStatus(int(archived), last_ok, int(failed), last_failed, failed_at)
