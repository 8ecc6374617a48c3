"""Jobs: what can be asked of the agent, validated when asked, and how one is run.

The CLI (``lifeboat enqueue``), the scheduler and later the console call :func:`enqueue`;
the agent's executor starts ``lifeboat run-job ID`` in a child process, which calls
:func:`execute`. Each kind runs the same engine function its CLI command runs.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.catalog.store import CANCELLED, FAILED, SUCCEEDED, Catalog, agent_identity
from engine.errors import JobError, LifeboatError, UsageError

if TYPE_CHECKING:
    from engine.config.schema import Config
    from engine.repository.storage.base import Storage

#: Default priorities: a restore outranks everything, a scheduled job yields to an asked one.
PRIORITY = {"restore": 100, "drill": 60, "backup": 50, "verify": 40, "expire": 30}
SCHEDULED_PENALTY = 10


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    jobs: int | None = Field(default=None, ge=1, le=256)  # set from the schedule's resources


class BackupParams(_Params):
    type: Literal["full", "diff", "incr"] = "full"
    checksum: bool = False
    expire: bool = True


class RestoreParams(_Params):
    pgdata: str
    backup: str | None = None
    target: Literal["latest", "immediate", "time", "xid", "lsn", "name"] = "latest"
    target_value: str | None = None
    target_exclusive: bool = False
    target_action: Literal["promote", "pause", "shutdown"] = "promote"
    target_timeline: str | None = None
    delta: bool = False
    force: bool = False
    archive_mode: Literal["preserve", "off"] = "preserve"
    start: bool = False
    port: int | None = Field(default=None, ge=1, le=65535)


class VerifyParams(_Params):
    backup: str | None = None
    since_last: bool = False


class DrillParams(_Params):
    kind: Literal["full", "partial"] = "full"


class ExpireParams(_Params):
    dry_run: bool = False


PARAMS: dict[str, type[_Params]] = {
    "backup": BackupParams, "restore": RestoreParams, "verify": VerifyParams,
    "drill": DrillParams, "expire": ExpireParams,
}


def validate_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The job's parameters checked and completed with defaults; JobError names what is wrong."""
    model = PARAMS.get(kind)
    if model is None:
        raise UsageError(f"unknown job kind '{kind}' (one of {', '.join(PARAMS)})")
    try:
        checked = model.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or kind}: "
                             f"{'unknown parameter' if e['type'] == 'extra_forbidden' else e['msg']}"
                             for e in exc.errors())
        raise UsageError(f"{kind} job: {problems}") from None
    if isinstance(checked, RestoreParams):
        if not checked.pgdata.startswith("/"):
            raise UsageError("restore job: pgdata must be an absolute path")
        _restore_options(checked)  # the target is checked now, not when the job runs
    return checked.model_dump()


def enqueue(catalog: Catalog, config: Config, kind: str, cluster: str, params: dict[str, Any],
            requested_by: str, priority: int | None = None, max_duration: float | None = None,
            schedule: str | None = None) -> int:
    """Validate and queue a job; returns its id."""
    if cluster not in config.clusters:
        raise UsageError(f"unknown cluster '{cluster}'")
    checked = validate_params(kind, params)
    if priority is None:
        priority = PRIORITY[kind] - (SCHEDULED_PENALTY if schedule else 0)
    job_id = catalog.enqueue(kind, cluster, checked, requested_by, priority, max_duration, schedule)
    catalog.add_event(cluster, "job_queued", f"{kind} job {job_id} queued by {requested_by}",
                      job_id=job_id, data={"params": checked, "priority": priority})
    return job_id


class ProgressReporter:
    """Writes a job's progress to the catalog at most once a second; ``in_bytes``: done
    and total are bytes (backups and restores), recorded as such for the metrics."""

    def __init__(self, catalog: Catalog, job_id: int, in_bytes: bool = False) -> None:
        self.catalog, self.job_id, self.in_bytes, self._last = catalog, job_id, in_bytes, 0.0

    def __call__(self, done: float, total: float, message: str = "") -> None:
        now = time.monotonic()
        if now - self._last < 1.0:
            return
        self._last = now
        percent = 100.0 * done / total if total else 0.0
        self.catalog.set_progress(self.job_id, min(percent, 99.0), message,
                                  (int(done), int(total)) if self.in_bytes else None)


BYTE_PROGRESS_KINDS = ("backup", "restore")


def record_outcome(catalog: Catalog, config: Config, kind: str, cluster: str, job_id: int,
                   result: dict[str, Any] | None = None, error: BaseException | None = None) -> bool:
    """Record how a job ended (its state, an event, and any data loss it found); True when
    it succeeded. The agent's job runner and the CLI's recorded runs both end here."""
    from engine.catalog import data_loss

    if error is not None:
        text = str(error) if isinstance(error, LifeboatError) else (
            f"internal error: {error.__class__.__name__}: {error}")
        state = CANCELLED if isinstance(error, KeyboardInterrupt) else FAILED
        catalog.finish(job_id, state, error=text)
        catalog.add_event(cluster, f"job_{state}", f"{kind} job {job_id} {state}: {error}",
                          severity="error", job_id=job_id)
        data_loss.record(catalog, config, cluster, data_loss.from_error(error), job_id)
        return False
    result = dict(result or {})
    ok = result.pop("_ok", True)
    state = SUCCEEDED if ok else FAILED
    catalog.finish(job_id, state, result, None if ok else result.get("error", "checks failed"))
    catalog.add_event(cluster, f"job_{state}", f"{kind} job {job_id} {state}",
                      severity="info" if ok else "error", job_id=job_id, data=result)
    data_loss.record(catalog, config, cluster, data_loss.from_result(kind, result), job_id)
    return ok


def execute(config: Config, config_path: Path, catalog: Catalog, storage: Storage,
            job_id: int) -> bool:
    """Run job ``job_id`` here and record its outcome; True when it succeeded."""
    job = catalog.job(job_id)
    if job is None:
        raise JobError(f"job {job_id} does not exist in the catalog")
    if job.state != "running":
        raise JobError(f"job {job_id} is {job.state}, not running: only the agent starts jobs")
    report = ProgressReporter(catalog, job_id, job.kind in BYTE_PROGRESS_KINDS)
    runner = RUNNERS[job.kind]
    try:
        result = runner(config, config_path, job.cluster, storage, job.params, report)
    except LifeboatError as exc:
        return record_outcome(catalog, config, job.kind, job.cluster, job_id, error=exc)
    except Exception as exc:
        record_outcome(catalog, config, job.kind, job.cluster, job_id, error=exc)
        raise
    return record_outcome(catalog, config, job.kind, job.cluster, job_id, result)


@dataclass
class RecordedRun:
    """A command run outside the agent (``lifeboat backup`` ...), recorded as a job: set
    ``result`` before the run ends; ``progress(done, total, message)`` in bytes."""

    progress: Callable[[float, float, str], None]
    result: dict[str, Any] = field(default_factory=dict)


@contextmanager
def recorded_run(config: Config, kind: str, cluster: str, params: dict[str, Any],
                 requested_by: str, warn: Callable[[str], None]) -> Iterator[RecordedRun]:
    """Record a CLI run in the catalog: running while the body runs, then its outcome
    (``run.result``, or the error it raised). Metrics and ``lifeboat jobs`` see it as they
    see the agent's jobs. A catalog that cannot be opened does not stop the run: ``warn``
    says so and the run goes on unrecorded."""
    try:
        catalog: Catalog | None = Catalog.open(config)
        job_id: int | None = catalog.start_run(kind, cluster, params, requested_by,
                                               PRIORITY[kind], f"cli@{agent_identity()}", os.getpid())
    except LifeboatError as exc:
        warn(f"this {kind} is not recorded in the catalog: {exc}")
        catalog, job_id = None, None
    run = RecordedRun(ProgressReporter(catalog, job_id, True) if catalog and job_id
                      else lambda done, total, message="": None)
    try:
        yield run
    except BaseException as exc:
        if catalog is not None and job_id is not None:
            with contextlib.suppress(LifeboatError):
                record_outcome(catalog, config, kind, cluster, job_id, error=exc)
        raise
    else:
        if catalog is not None and job_id is not None:
            with contextlib.suppress(LifeboatError):
                record_outcome(catalog, config, kind, cluster, job_id, run.result)
    finally:
        if catalog is not None:
            catalog.close()


Runner = Callable[["Config", Path, str, "Storage", dict[str, Any], ProgressReporter], dict[str, Any]]


def _run_backup(config: Config, path: Path, cluster: str, storage: Storage,
                params: dict[str, Any], report: ProgressReporter) -> dict[str, Any]:
    from engine.backup import physical as backup

    request = backup.BackupRequest(params["type"], params["jobs"], params["checksum"], params["expire"])
    summary = backup.run(config, cluster, storage, path, request,
                         lambda p: report(p.done_bytes, p.total_bytes, p.phase))
    return backup_result(summary, request)


def backup_result(summary: Any, request: Any) -> dict[str, Any]:
    """What a backup job records (the CLI's recorded runs too)."""
    return {"backup": summary.id, "type": summary.type, "size_bytes": summary.size_bytes,
            "stored_bytes": summary.stored_bytes, "corrupt_pages": summary.corrupt_pages,
            "corrupt_files": summary.corrupt_files, "notices": request.notices}


def _restore_options(params: RestoreParams) -> Any:
    from engine.restore import physical as restore
    from engine.restore.recovery import RecoveryTarget

    target = RecoveryTarget(params.target, params.target_value, params.target_exclusive,
                            params.target_action, params.target_timeline)
    return restore.RestoreOptions(
        pgdata=Path(params.pgdata), target=target, backup_id=params.backup, force=params.force,
        delta=params.delta, archive_mode=params.archive_mode, port=params.port,
        start=params.start, jobs=params.jobs)


def _run_restore(config: Config, path: Path, cluster: str, storage: Storage,
                 params: dict[str, Any], report: ProgressReporter) -> dict[str, Any]:
    from engine.restore import physical as restore

    options = _restore_options(RestoreParams.model_validate(params))
    return restore.run(config, cluster, storage, path, options,
                       lambda done, total: report(done, total, "restoring")).to_json()


def _run_verify(config: Config, path: Path, cluster: str, storage: Storage,
                params: dict[str, Any], report: ProgressReporter) -> dict[str, Any]:
    from engine.repository import verify

    result = verify.run(storage, cluster, params["backup"], params["since_last"],
                        params["jobs"] or config.jobs)
    return result.to_json() | {"_ok": result.ok}


def _run_expire(config: Config, path: Path, cluster: str, storage: Storage,
                params: dict[str, Any], report: ProgressReporter) -> dict[str, Any]:
    from engine.repository import expire

    return dict(expire.run(config, cluster, storage, params["dry_run"]).to_json())


def _run_drill(config: Config, path: Path, cluster: str, storage: Storage,
               params: dict[str, Any], report: ProgressReporter) -> dict[str, Any]:
    from engine.drill.record import run_and_record

    result = run_and_record(config, cluster, storage, path, params["kind"],
                            lambda percent, message: report(percent, 100, message))
    return result


RUNNERS: dict[str, Runner] = {
    "backup": _run_backup, "restore": _run_restore, "verify": _run_verify,
    "expire": _run_expire, "drill": _run_drill,
}
