"""The catalog's two databases behind one small interface: SQLite (default) and PostgreSQL.

Only what differs lives here: connecting, the placeholder style, the id column and how
a JSON field is read. Statements are written with ``?`` placeholders.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.errors import CatalogError, path_error

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id {id},
    kind TEXT NOT NULL,
    cluster TEXT NOT NULL,
    params TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    schedule TEXT,
    max_duration DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    agent TEXT,
    pid INTEGER,
    error TEXT,
    result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, priority, id);
CREATE TABLE IF NOT EXISTS events (
    id {id},
    at DOUBLE PRECISION NOT NULL,
    cluster TEXT,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    job_id INTEGER,
    data TEXT
);
CREATE INDEX IF NOT EXISTS events_at ON events (cluster, at);
CREATE TABLE IF NOT EXISTS drills (
    id {id},
    cluster TEXT NOT NULL,
    kind TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
    passed INTEGER NOT NULL,
    rto_seconds DOUBLE PRECISION,
    result TEXT NOT NULL,
    report TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS objectives (
    id {id},
    at DOUBLE PRECISION NOT NULL,
    cluster TEXT NOT NULL,
    rpo_exposure DOUBLE PRECISION,
    rpo_objective DOUBLE PRECISION NOT NULL,
    rto_expected DOUBLE PRECISION,
    rto_objective DOUBLE PRECISION NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS objectives_at ON objectives (cluster, at);
CREATE TABLE IF NOT EXISTS schedule_state (
    cluster TEXT NOT NULL,
    schedule TEXT NOT NULL,
    last_fire DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (cluster, schedule)
);
CREATE TABLE IF NOT EXISTS copy_state (
    cluster TEXT NOT NULL,
    region TEXT NOT NULL,
    part TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (cluster, region, part)
);
CREATE TABLE IF NOT EXISTS job_progress (
    job_id INTEGER PRIMARY KEY,
    done_bytes BIGINT NOT NULL,
    total_bytes BIGINT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS notices (
    cluster TEXT NOT NULL,
    kind TEXT NOT NULL,
    occurrence DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (cluster, kind, occurrence)
);
CREATE TABLE IF NOT EXISTS alerts (
    id {id},
    fingerprint TEXT NOT NULL,
    rule TEXT NOT NULL,
    alertname TEXT NOT NULL,
    cluster TEXT,
    severity TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    state TEXT NOT NULL,
    value DOUBLE PRECISION,
    source TEXT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    firing_since DOUBLE PRECISION,
    resolved_at DOUBLE PRECISION,
    acknowledged_by TEXT,
    acknowledged_at DOUBLE PRECISION,
    silenced_until DOUBLE PRECISION,
    silence_reason TEXT,
    last_notified_at DOUBLE PRECISION,
    refs TEXT NOT NULL DEFAULT '{{}}',
    escalated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alerts_fingerprint ON alerts (fingerprint, resolved_at);
CREATE INDEX IF NOT EXISTS alerts_seen ON alerts (last_seen);
CREATE TABLE IF NOT EXISTS alert_notifications (
    id {id},
    alert_id INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_notifications_alert ON alert_notifications (alert_id);
CREATE TABLE IF NOT EXISTS remediation_attempts (
    id {id},
    alert_id INTEGER NOT NULL,
    round INTEGER NOT NULL,
    action TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
    result TEXT NOT NULL,
    output TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS remediation_attempts_alert ON remediation_attempts (alert_id);
CREATE TABLE IF NOT EXISTS audit (
    id {id},
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    role TEXT,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    cluster TEXT,
    params TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TABLE IF NOT EXISTS silences (
    id {id},
    rule TEXT NOT NULL,
    cluster TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    until DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL
);
"""



class Database:
    """A connection shared by the threads of one process (a lock serialises them)."""


    def __init__(self) -> None:
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.transaction() as cursor:
            cursor.execute(self.sql(sql), params)
            return cursor.fetchall() if cursor.description else []

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        """Run an INSERT and return the new row's id."""
        with self.transaction() as cursor:
            cursor.execute(self.sql(sql) + " RETURNING id", params)
            return int(cursor.fetchone()[0])

    def sql(self, text: str) -> str:
        return text

    def json_field(self, column: str, key: str) -> str:
        """SQL for the text of ``key`` in a JSON ``column`` (NULL when absent)."""
        return f"json_extract({column}, '$.{key}')"

    def close(self) -> None:
        raise NotImplementedError


@contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Serialise opening the catalog between processes.

    Two processes that open a new SQLite file at once can deadlock inside SQLite (one
    switching it to WAL, the other creating tables); SQLite then fails one of them with
    "database is locked" at once, without waiting for its busy timeout.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class SqliteDatabase(Database):

    def __init__(self, path: Path) -> None:
        super().__init__()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None,
                                         check_same_thread=False)
            with _directory_lock(path.parent):
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
                self._conn.executescript(SCHEMA.format(id="INTEGER PRIMARY KEY AUTOINCREMENT"))
        except OSError as exc:
            raise CatalogError(f"cannot open the catalog {path}: "
                               f"{path_error(exc, 'use', exc.filename or path)}") from None
        except sqlite3.Error as exc:
            raise CatalogError(f"cannot open the catalog {path}: {exc}") from None
        self.where = str(path)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._lock:
            cursor = self._conn.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")  # writers queue here, not mid-transaction
                yield cursor
                cursor.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise CatalogError(f"catalog {self.where}: {exc}") from None
                raise
            finally:
                cursor.close()

    def close(self) -> None:
        self._conn.close()


class PostgresDatabase(Database):

    def __init__(self, dsn: str) -> None:
        super().__init__()
        import psycopg

        self._psycopg = psycopg
        try:
            self._conn = psycopg.connect(dsn, connect_timeout=10, autocommit=True)
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(7412390)")  # one creator at a time
                for statement in SCHEMA.format(id="BIGSERIAL PRIMARY KEY").split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
        except psycopg.Error as exc:
            raise CatalogError(f"cannot open the catalog database: {_first_line(exc)}") from None
        self.where = self._conn.info.dsn

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._lock:
            try:
                with self._conn.transaction(), self._conn.cursor() as cursor:
                    yield cursor
            except self._psycopg.Error as exc:
                raise CatalogError(f"catalog database: {_first_line(exc)}") from None

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def json_field(self, column: str, key: str) -> str:
        return f"({column}::json ->> '{key}')"

    def close(self) -> None:
        self._conn.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
