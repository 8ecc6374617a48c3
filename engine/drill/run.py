"""One restore drill, start to end, and its record in the catalog.

A drill always ends with a :class:`DrillResult`: a step that cannot be done (no backup,
a lock that cannot be had, a restore that fails) is a failed check named after the step,
and the scratch cluster is stopped and removed whatever happened. Measured RTO is the
wall time from the start of the restore until the restored cluster is validated; the
reference point and the source's probe baseline are taken before, outside it.
"""

from __future__ import annotations

import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.config.schema import Config
from engine.directories import check_writable
from engine.drill import auth, checks, crud, model, probes, reference, scratch, state
from engine.drill.model import Check, DrillResult
from engine.drill.reference import Reference, Scope
from engine.errors import DrillError, LifeboatError, UsageError, path_error
from engine.repository.storage import Storage
from engine.restore import physical as restore
from engine.restore.recovery import RecoveryTarget, choose_backup
from engine.vocabulary import DRILL_KINDS

KINDS = DRILL_KINDS

Progress = Callable[[float, str], None]  # (percent done, what is happening)


def point_name(kind: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"lifeboat-drill-{kind}-{stamp}-{secrets.token_hex(2)}"


@contextmanager
def _sigterm_as_error() -> Iterator[None]:
    """SIGTERM (the agent stopping a drill past its max_duration) ends the drill as a failure
    and still removes the scratch cluster, which pg_ctl started in a session of its own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the cleanup finish
        raise DrillError("the drill was stopped (SIGTERM), e.g. for running past its max_duration")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(config: Config, cluster: str, storage: Storage, config_path: Path, kind: str,
        progress: Progress | None = None,
        before_validation: Callable[[scratch.Scratch], None] | None = None) -> DrillResult:
    """Run a ``kind`` drill of ``cluster`` now. ``progress(percent, message)`` hears of each
    step; ``before_validation`` (tests) sees the restored, running scratch cluster before
    any check."""
    if kind not in KINDS:
        raise UsageError(f"a drill is 'full' or 'partial', not '{kind}'")
    with _sigterm_as_error():
        return _run(config, cluster, storage, config_path, kind, progress, before_validation)


def _run(config: Config, cluster: str, storage: Storage, config_path: Path, kind: str,
         progress: Progress | None,
         before_validation: Callable[[scratch.Scratch], None] | None) -> DrillResult:
    settings = config.clusters[cluster]
    drills = settings.drills
    say = progress or (lambda _percent, _message: None)
    result = DrillResult(cluster, kind, time.time(), rto_objective=settings.rto_objective,
                         thresholds={"accuracy": drills.accuracy, "completeness": drills.completeness,
                                     "tolerance": drills.tolerance})
    name = point_name(kind, result.started_at)
    place: scratch.Scratch | None = None
    step = "scope"
    try:
        say(1, f"{kind} drill of cluster '{cluster}': finding the tables to compare")
        check_writable(drills.scratch_dir, "drill scratch clusters")  # before any work
        scope = reference.resolve_scope(config, cluster, kind)
        result.notes += scope.notes
        step = "backup"
        backups = restore.list_backups(storage, cluster)
        if not backups:
            raise DrillError(f"the repository holds no backup of cluster '{cluster}' to restore")
        backup = choose_backup(backups, RecoveryTarget())
        result.backup_id = backup.id
        step = "reference"
        say(3, f"creating restore point {name} and reading {scope.count} tables at it")
        ref = reference.take(config, cluster, storage, scope, name)
        result.restore_point, result.restore_point_lsn = name, ref.point.lsn
        result.writers_blocked_ms = round(ref.writers_blocked_ms, 1)
        result.checks.append(Check(
            "reference", True, f"restore point {name} at LSN {ref.point.lsn} (WAL {ref.point.wal}, "
            f"archived); {scope.count} tables in {len(scope.databases)} databases read in its snapshot; "
            f"writers blocked {ref.writers_blocked_ms:.0f} ms (attempt {ref.attempts})"))
        step = "probe baseline"
        timings = probes.baseline(config, cluster)
        step = "restore"
        place = scratch.create(config, cluster, name)
        result.scratch = str(place.directory)
        say(10, f"restoring backup {backup.id} into {place.pgdata} (port {place.port}) to {name}")
        started = time.monotonic()
        timeout = drills.full_max_duration if kind == "full" else drills.partial_max_duration
        _restored, reached = scratch.restore_into(config, cluster, storage, config_path, place, backup.id,
                                                  name, timeout)
        result.restore_seconds = round(time.monotonic() - started, 3)
        result.timing = dict(place.timing)
        result.reached_lsn = reached.lsn
        stopped_at_point = reached.state == "promoted" and name in (reached.stop_message or "")
        stop = reached.stop_message or "no stop message"
        detail = (f"backup {backup.id} restored and recovered in {result.restore_seconds:.1f}s: {stop}; "
                  f"promoted on timeline {reached.timeline}") if stopped_at_point else (
            f"recovery ended as '{reached.state}' at {reached.lsn}, not at restore point {name}: {stop}")
        result.checks.append(Check("restore", stopped_at_point, detail, result.restore_seconds))
        if stopped_at_point:
            if before_validation is not None:
                before_validation(place)
            step = "validation"
            say(50, "validating the restored cluster")
            validated = time.monotonic()
            _validate(config, cluster, place, ref, scope, result, timings)
            result.validation_seconds = round(time.monotonic() - validated, 3)
            result.rto_seconds = round(result.restore_seconds + result.validation_seconds, 3)
            result.checks.append(model.rto_check(result.rto_seconds, result.rto_objective))
    except LifeboatError as exc:
        result.checks.append(Check(step, False, str(exc)))
    except OSError as exc:
        result.checks.append(Check(step, False, str(path_error(exc))))
    finally:
        if place is not None:
            say(95, f"removing {place.directory}")
            problem = scratch.remove(place)
            result.scratch_removed = problem is None
            if problem:
                result.checks.append(Check("cleanup", False, problem))
        result.finished_at = time.time()
        result.decide()
    return result


def _guarded(name: str, work: Callable[[], Any]) -> list[Check]:
    """The checks ``work`` returns, timed; a validation that cannot run is a failed check."""
    started = time.monotonic()
    try:
        found = work()
    except LifeboatError as exc:
        found = Check(name, False, str(exc))
    found = found if isinstance(found, list) else [found]
    elapsed = round(time.monotonic() - started, 3)
    for check in found:
        check.seconds = check.seconds or round(elapsed / len(found), 3)
    return found


def _validate(config: Config, cluster: str, place: scratch.Scratch, ref: Reference, scope: Scope,
              result: DrillResult, timings: list[model.ProbeTiming]) -> None:
    settings = config.clusters[cluster]
    drills = settings.drills
    user, default = settings.user, settings.database
    full = result.kind == "full"
    add = result.checks.extend

    def compare() -> list[Check]:
        result.tables = checks.compare_tables(place, user, ref, scope)
        result.accuracy = model.accuracy(result.tables)
        result.completeness = model.completeness(result.tables)
        return model.data_checks(result.tables, drills.accuracy, drills.completeness)

    add(_guarded("data", compare))
    add(_guarded("amcheck", lambda: checks.amcheck(place, user, scope, full)))
    for database in scope.databases:
        tables = scope.tables[database]
        add(_guarded(f"constraints {database}",
                     lambda d=database, t=tables: checks.constraints(place, user, d, None if full else t)))
    add(_guarded("roles", lambda: checks.roles(place, user, default, ref)))
    add(_guarded("authentication rules", lambda: checks.hba(place, user, default, ref)))
    for database in scope.databases:
        tables = scope.tables[database]
        add(_guarded(f"privileges {database}",
                     lambda d=database, t=tables: checks.acls(place, user, d, t, ref)))
    add(_guarded("logins", lambda: auth.logins(place, user, default, ref)))
    add(_guarded("authorization", lambda: auth.authorization(place, user, ref, scope)))
    if not full:
        for database, tables in scope.tables.items():
            for table in tables:
                where = state.qualified(database, table)
                add(_guarded(f"crud {where}", lambda d=database, t=table: crud.crud(place, user, d, t)))
                add(_guarded(f"indexes {where}", lambda d=database, t=table: crud.indexes(place, user, d, t)))
    if timings:
        probes.on_restored(lambda database: checks.connect(place, user, database),
                           drills.probes, timings)
        result.probes = timings
        for timing in timings:
            add(model.probe_checks(timing, drills.tolerance))
