"""The catalog: jobs, events, drill results, objectives and schedule state.

SQLite by default (``[catalog] path``), PostgreSQL when ``[catalog] dsn`` is set. The
repository's manifests stay the source of truth for which backups exist; the catalog
records what was asked, what ran and what was measured. Times are Unix seconds.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.catalog.alerts import AlertBook
from engine.catalog.audit import AuditLog
from engine.catalog.db import Database, PostgresDatabase, SqliteDatabase

if TYPE_CHECKING:
    from engine.config.schema import Config

QUEUED, WAITING, RUNNING = "queued", "waiting", "running"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
OBJECTIVES_KEPT_SECONDS = 86400.0
ACTIVE_STATES = (QUEUED, WAITING, RUNNING)
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)

_JOB_COLUMNS = ("id, kind, cluster, params, requested_by, priority, state, progress, message, "
                "schedule, max_duration, created_at, started_at, finished_at, agent, pid, error, "
                "result")


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC of a Unix time."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    cluster: str
    params: dict[str, Any]
    requested_by: str
    priority: int
    state: str
    progress: int
    message: str
    schedule: str | None
    max_duration: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    agent: str | None
    pid: int | None
    error: str | None
    result: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Job:
        values = list(row)
        values[3] = json.loads(values[3])
        values[17] = json.loads(values[17]) if values[17] else None
        return cls(*values)

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("created_at", "started_at", "finished_at"):
            data[key] = iso(data[key])
        data["duration_seconds"] = None if self.duration is None else round(self.duration, 3)
        return data


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    cluster: str | None
    kind: str
    severity: str
    message: str
    job_id: int | None
    data: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"at": iso(self.at)}


@dataclass(frozen=True)
class DrillRecord:
    id: int
    cluster: str
    kind: str
    started_at: float
    finished_at: float
    passed: bool
    rto_seconds: float | None  # None: no validated cluster was reached
    result: dict[str, Any]
    report: str


@dataclass(frozen=True)
class ObjectivesRecord:
    at: float
    cluster: str
    rpo_exposure: float | None
    rpo_objective: float
    rto_expected: float | None
    rto_objective: float
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        def met(measured: float | None, objective: float) -> bool | None:
            return None if measured is None else measured <= objective

        return {"measured_at": iso(self.at),
                "rpo_exposure_seconds": self.rpo_exposure, "rpo_objective_seconds": self.rpo_objective,
                "rpo_met": met(self.rpo_exposure, self.rpo_objective),
                "rto_expected_seconds": self.rto_expected, "rto_objective_seconds": self.rto_objective,
                "rto_met": met(self.rto_expected, self.rto_objective), "details": self.details}


class Catalog:
    """The engine's record of work; one instance per process, safe across its threads."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def open(cls, config: Config) -> Catalog:
        if config.catalog.dsn:
            return cls(PostgresDatabase(config.catalog.dsn))
        return cls(SqliteDatabase(config.catalog.path))

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @property
    def audit(self) -> AuditLog:
        """Who asked for what, through the console or the CLI, and how it ended."""
        return AuditLog(self.db)

    @property
    def alerts(self) -> AlertBook:
        """The alert tables: lifecycle, notifications, remediation attempts, silences."""
        return AlertBook(self.db)

    # jobs -----------------------------------------------------------------------------

    def enqueue(self, kind: str, cluster: str, params: dict[str, Any], requested_by: str,
                priority: int, max_duration: float | None = None, schedule: str | None = None
                ) -> int:
        return self.db.insert(
            "INSERT INTO jobs (kind, cluster, params, requested_by, priority, state, schedule, "
            "max_duration, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, cluster, json.dumps(params, sort_keys=True), requested_by, priority, QUEUED,
             schedule, max_duration, time.time()))

    def start_run(self, kind: str, cluster: str, params: dict[str, Any], requested_by: str,
                  priority: int, runner: str, pid: int) -> int:
        """Record a run that starts now outside the agent (a CLI command) as a running job."""
        now = time.time()
        return self.db.insert(
            "INSERT INTO jobs (kind, cluster, params, requested_by, priority, state, created_at, "
            "started_at, agent, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, cluster, json.dumps(params, sort_keys=True), requested_by, priority, RUNNING,
             now, now, runner, pid))

    def job(self, job_id: int) -> Job | None:
        rows = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(rows[0]) if rows else None

    def jobs(self, cluster: str | None = None, states: tuple[str, ...] | None = None,
             limit: int = 100, kind: str | None = None) -> list[Job]:
        where, params = self._filter(cluster=cluster, kind=kind)
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            params.extend(states)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs{clause} ORDER BY id DESC LIMIT ?",
                               (*params, limit))
        return [Job.from_row(r) for r in rows]

    def job_counts(self, since: float) -> list[tuple[str, str, str | None, str | None, str, int, int]]:
        """Ended jobs counted in the database (cheap however long the history): rows of
        (cluster, kind, params' type, schedule, state, count, count finished since ``since``)."""
        kind_of = self.db.json_field("params", "type")
        rows = self.db.execute(
            f"SELECT cluster, kind, {kind_of}, schedule, state, count(*), "
            "sum(CASE WHEN finished_at >= ? THEN 1 ELSE 0 END) FROM jobs "
            f"WHERE state IN ({', '.join('?' * len(FINAL_STATES))}) "
            f"GROUP BY cluster, kind, {kind_of}, schedule, state", (since, *FINAL_STATES))
        return [(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6] or 0)) for r in rows]

    def pending(self) -> list[Job]:
        """Queued and waiting jobs, in the order they should run."""
        rows = self.db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN (?, ?) ORDER BY priority DESC, id",
            (QUEUED, WAITING))
        return [Job.from_row(r) for r in rows]

    def mark_running(self, job_id: int, agent: str, pid: int | None) -> bool:
        """Move a pending job to running; False when another agent took it first."""
        with self.db.transaction() as cursor:
            cursor.execute(self.db.sql(
                "UPDATE jobs SET state = ?, started_at = ?, agent = ?, pid = ?, message = '' "
                "WHERE id = ? AND state IN (?, ?)"),
                (RUNNING, time.time(), agent, pid, job_id, QUEUED, WAITING))
            return cursor.rowcount == 1

    def set_pid(self, job_id: int, pid: int) -> None:
        self.db.execute("UPDATE jobs SET pid = ? WHERE id = ?", (pid, job_id))

    def set_waiting(self, job_id: int, message: str) -> None:
        self.db.execute("UPDATE jobs SET state = ?, message = ? WHERE id = ? AND state IN (?, ?)",
                        (WAITING, message, job_id, QUEUED, WAITING))

    def set_progress(self, job_id: int, percent: float, message: str = "",
                     done_total_bytes: tuple[int, int] | None = None) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(self.db.sql(
                "UPDATE jobs SET progress = ?, message = ? WHERE id = ? AND state = ?"),
                (max(0, min(100, int(percent))), message, job_id, RUNNING))
            if done_total_bytes is not None and cursor.rowcount == 1:
                cursor.execute(self.db.sql("DELETE FROM job_progress WHERE job_id = ?"), (job_id,))
                cursor.execute(self.db.sql(
                    "INSERT INTO job_progress (job_id, done_bytes, total_bytes, at) VALUES (?, ?, ?, ?)"),
                    (job_id, *done_total_bytes, time.time()))

    def byte_progress(self) -> dict[int, tuple[int, int]]:
        """(bytes done, bytes in all) of running jobs that report bytes, by job id."""
        rows = self.db.execute(
            "SELECT p.job_id, p.done_bytes, p.total_bytes FROM job_progress p JOIN jobs j "
            "ON j.id = p.job_id WHERE j.state = ?", (RUNNING,))
        return {int(r[0]): (int(r[1]), int(r[2])) for r in rows}

    def finish(self, job_id: int, state: str, result: dict[str, Any] | None = None,
               error: str | None = None) -> bool:
        """Record a job's end; False when it had already ended (the first word stands)."""
        assert state in FINAL_STATES
        with self.db.transaction() as cursor:
            cursor.execute(self.db.sql(
                "UPDATE jobs SET state = ?, finished_at = ?, error = ?, result = ?, "
                "progress = CASE WHEN ? = 'succeeded' THEN 100 ELSE progress END, message = '' "
                "WHERE id = ? AND state IN (?, ?, ?)"),
                (state, time.time(), error, json.dumps(result) if result is not None else None,
                 state, job_id, *ACTIVE_STATES))
            ended = cursor.rowcount == 1
            cursor.execute(self.db.sql("DELETE FROM job_progress WHERE job_id = ?"), (job_id,))
            return ended

    # events ---------------------------------------------------------------------------

    def add_event(self, cluster: str | None, kind: str, message: str, severity: str = "info",
                  job_id: int | None = None, data: dict[str, Any] | None = None) -> int:
        return self.db.insert(
            "INSERT INTO events (at, cluster, kind, severity, message, job_id, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (time.time(), cluster, kind, severity, message, job_id,
             json.dumps(data) if data is not None else None))

    def events(self, cluster: str | None = None, kind: str | None = None,
               since: float | None = None, job_id: int | None = None, limit: int = 100,
               with_agent: bool = False) -> list[Event]:
        """Newest first. ``with_agent``: a cluster's events and the agent's own (no cluster)."""
        where, params = self._filter(kind=kind, job_id=job_id)
        if cluster is not None:
            where.append("(cluster = ? OR cluster IS NULL)" if with_agent else "cluster = ?")
            params.append(cluster)
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.execute(
            "SELECT id, at, cluster, kind, severity, message, job_id, data FROM events"
            f"{clause} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [Event(*r[:7], json.loads(r[7]) if r[7] else None) for r in rows]

    # drills ---------------------------------------------------------------------------

    def add_drill(self, cluster: str, kind: str, started_at: float, finished_at: float,
                  passed: bool, rto_seconds: float | None, result: dict[str, Any], report: str) -> int:
        return self.db.insert(
            "INSERT INTO drills (cluster, kind, started_at, finished_at, passed, rto_seconds, "
            "result, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (cluster, kind, started_at, finished_at, int(passed), rto_seconds,
             json.dumps(result), report))

    def drills(self, cluster: str, kind: str | None = None, limit: int = 50,
               drill_id: int | None = None) -> list[DrillRecord]:
        """Newest first; ``drill_id`` picks one."""
        where, params = self._filter(cluster=cluster, kind=kind, id=drill_id)
        rows = self.db.execute(
            "SELECT id, cluster, kind, started_at, finished_at, passed, rto_seconds, result, report "
            f"FROM drills WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [DrillRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], json.loads(r[7]), r[8])
                for r in rows]

    # objectives -----------------------------------------------------------------------

    def record_objectives(self, record: ObjectivesRecord) -> None:
        """Store a measurement; the cluster's measurements older than a day go (the agent
        measures every few seconds, and only the newest is read: Prometheus keeps history)."""
        with self.db.transaction() as cursor:
            cursor.execute(self.db.sql(
                "INSERT INTO objectives (at, cluster, rpo_exposure, rpo_objective, rto_expected, "
                "rto_objective, details) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                (record.at, record.cluster, record.rpo_exposure, record.rpo_objective,
                 record.rto_expected, record.rto_objective, json.dumps(record.details)))
            cursor.execute(self.db.sql("DELETE FROM objectives WHERE cluster = ? AND at < ?"),
                           (record.cluster, record.at - OBJECTIVES_KEPT_SECONDS))

    def latest_objectives(self, cluster: str) -> ObjectivesRecord | None:
        rows = self.db.execute(
            "SELECT at, cluster, rpo_exposure, rpo_objective, rto_expected, rto_objective, details "
            "FROM objectives WHERE cluster = ? ORDER BY at DESC LIMIT 1", (cluster,))
        if not rows:
            return None
        return ObjectivesRecord(*rows[0][:6], json.loads(rows[0][6]))

    # copies in other regions ----------------------------------------------------------

    def set_copy_state(self, cluster: str, region: str, part: str, data: dict[str, Any],
                       at: float | None = None) -> None:
        """What the agent last measured of a region's copy (``part``: ``transfer``, the bytes
        copied and the rate achieved; ``shipping``, the WAL shipping delay; ``validation``, the
        last validation's outcome), replacing the part's previous record."""
        with self.db.transaction() as cursor:
            cursor.execute(self.db.sql(
                "DELETE FROM copy_state WHERE cluster = ? AND region = ? AND part = ?"),
                (cluster, region, part))
            cursor.execute(self.db.sql(
                "INSERT INTO copy_state (cluster, region, part, at, data) VALUES (?, ?, ?, ?, ?)"),
                (cluster, region, part, time.time() if at is None else at, json.dumps(data)))

    def copy_states(self) -> dict[tuple[str, str, str], tuple[float, dict[str, Any]]]:
        """(cluster, region, part) -> (when it was recorded, what)."""
        rows = self.db.execute("SELECT cluster, region, part, at, data FROM copy_state")
        return {(r[0], r[1], r[2]): (r[3], json.loads(r[4])) for r in rows}

    # schedules and notices ------------------------------------------------------------

    def schedule_last(self, cluster: str, schedule: str) -> float | None:
        rows = self.db.execute(
            "SELECT last_fire FROM schedule_state WHERE cluster = ? AND schedule = ?",
            (cluster, schedule))
        return rows[0][0] if rows else None

    def set_schedule_last(self, cluster: str, schedule: str, last_fire: float) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(self.db.sql(
                "DELETE FROM schedule_state WHERE cluster = ? AND schedule = ?"), (cluster, schedule))
            cursor.execute(self.db.sql(
                "INSERT INTO schedule_state (cluster, schedule, last_fire) VALUES (?, ?, ?)"),
                (cluster, schedule, last_fire))

    def claim_notice(self, cluster: str, kind: str, occurrence: float) -> bool:
        """True the first time a notice for this occurrence is claimed (so it is sent once)."""
        with self.db.transaction() as cursor:
            cursor.execute(self.db.sql(
                "SELECT 1 FROM notices WHERE cluster = ? AND kind = ? AND occurrence = ?"),
                (cluster, kind, occurrence))
            if cursor.fetchall():
                return False
            cursor.execute(self.db.sql(
                "INSERT INTO notices (cluster, kind, occurrence, sent_at) VALUES (?, ?, ?, ?)"),
                (cluster, kind, occurrence, time.time()))
            return True

    def release_notice(self, cluster: str, kind: str, occurrence: float) -> None:
        """Forget a claimed notice so that it is sent again (its delivery can be retried)."""
        self.db.execute("DELETE FROM notices WHERE cluster = ? AND kind = ? AND occurrence = ?",
                        (cluster, kind, occurrence))

    @staticmethod
    def _filter(**columns: Any) -> tuple[list[str], list[Any]]:
        where = [f"{name} = ?" for name, value in columns.items() if value is not None]
        return where, [value for value in columns.values() if value is not None]


def agent_identity() -> str:
    """``host:pid`` of this process, recorded on the jobs it runs."""
    return f"{os.uname().nodename}:{os.getpid()}"
