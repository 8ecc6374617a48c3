"""Jobs: the one request path, from parameters to the engine and back to the catalog.

Every kind of work (backup, restore, verify, drill, expire) is asked for with the same
parameters wherever it comes from: a direct command (``lifeboat restore ...``), a queued
job (``lifeboat enqueue restore ...``, the scheduler, the console). This module is the one
place that validates them (:func:`validate_params`), turns them into the engine's options
and runs them (:func:`perform`), and records what ran (:func:`record_outcome`). The agent's
executor starts ``lifeboat run-job ID`` in a child process, which calls :func:`execute`;
a direct command calls :func:`perform` inside :func:`recorded_run`. So a direct restore
and an enqueued one cannot disagree about what they mean, and the catalog holds exactly
the parameters that ran.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.catalog.store import ACTIVE_STATES, CANCELLED, FAILED, SUCCEEDED, Catalog, Job, agent_identity
from engine.errors import JobError, LifeboatError, RestoreError, UsageError, path_error
from engine.vocabulary import ArchiveMode, BackupType, DrillKind, JobKind, TargetAction, TargetKind

if TYPE_CHECKING:
    from engine.config.schema import Config
    from engine.context import Context

#: Default priorities: a restore outranks everything, a scheduled job yields to an asked one.
PRIORITY: dict[str, int] = {"restore": 100, "preview": 70, "drill": 60, "backup": 50, "verify": 40,
                            "expire": 30}
SCHEDULED_PENALTY = 10
#: Kinds whose progress is counted in bytes (exported as lifeboat_job_progress_bytes).
BYTE_PROGRESS_KINDS = ("backup", "restore", "preview")

#: ``progress(done, total, phase)``: how a running job reports.
Progress = Callable[[float, float, str], None]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    jobs: int | None = Field(default=None, ge=1, le=256)  # parallel workers (default: config)


#: A copy's region ([repository.copies.REGION]) to work on instead of the primary repository.
Region = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,63}$")


class BackupParams(_Params):
    type: BackupType = "full"
    checksum: bool = False  # read and hash every file, trusting no size or mtime
    expire: bool = True  # apply retention afterwards, when the configuration has rules


class RestoreParams(_Params):
    pgdata: str
    backup: str | None = None
    target: TargetKind = "latest"
    target_value: str | None = None
    target_exclusive: bool = False
    target_action: TargetAction = "promote"
    target_timeline: str | None = None
    tablespace_map: dict[int, str] = Field(default_factory=dict)  # OID -> absolute directory
    delta: bool = False
    checksum: bool = False  # with delta: hash every file, also those unchanged since a restore
    force: bool = False
    archive_mode: ArchiveMode = "preserve"
    standby: bool = False
    start: bool = False
    port: int | None = Field(default=None, ge=1, le=65535)
    timeout: float | None = Field(default=None, gt=0)  # seconds to wait for recovery
    # in place (pgdata is the cluster's own data directory): the job stops the running server
    # first (fast shutdown); without it, a running server is a reason the restore cannot run
    stop_server: bool = False
    validate_restored: bool = True  # after a started restore: row counts, pg_amcheck (restore.validate)
    region: str | None = Region  # restore from the copy in this region (its WAL too)


#: A qualified table name: ``schema.table`` or ``db.schema.table``, each part an identifier
#: (unquoted: folded to lower case, as PostgreSQL does; or in double quotes, kept as written).
_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_$]{0,62}|"(?:[^"]|""){1,63}")'
TABLE_PATTERN = rf"^{_IDENT}\.{_IDENT}(?:\.{_IDENT})?$"
PREVIEW_MAX_ROWS = 200


class PreviewParams(_Params):
    """Restore to a point into a scratch cluster and read ``table`` there: the target fields
    of :class:`RestoreParams` (the scratch copy always promotes at the target), the table and
    how many rows to show."""

    table: str = Field(pattern=TABLE_PATTERN)
    rows: int = Field(default=20, ge=1, le=PREVIEW_MAX_ROWS)
    backup: str | None = None
    target: TargetKind = "latest"
    target_value: str | None = None
    target_exclusive: bool = False
    target_timeline: str | None = None
    timeout: float | None = Field(default=None, gt=0)  # seconds to wait for recovery


class VerifyParams(_Params):
    backup: str | None = None
    since_last: bool = False
    region: str | None = Region  # verify the copy in this region


class DrillParams(_Params):
    kind: DrillKind = "full"


class ExpireParams(_Params):
    dry_run: bool = False
    region: str | None = Region  # apply the copy's retention to the copy in this region


PARAMS: dict[JobKind, type[_Params]] = {
    "backup": BackupParams, "restore": RestoreParams, "verify": VerifyParams,
    "drill": DrillParams, "expire": ExpireParams, "preview": PreviewParams,
}


def _checked(kind: str, params: dict[str, Any]) -> _Params:
    model = PARAMS.get(kind)  # type: ignore[call-overload]
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
        restore_options(checked)  # the target and paths are checked now, not when the job runs
    if isinstance(checked, PreviewParams):
        preview_target(checked)
    return checked


def restore_params(params: dict[str, Any]) -> RestoreParams:
    """The RestoreParams of ``params``, their types checked (UsageError) but not their sense:
    what a restore plan reports as its problems."""
    try:
        return RestoreParams.model_validate(params)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'restore'}: {e['msg']}"
                             for e in exc.errors())
        raise UsageError(f"restore: {problems}") from None


def validate_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The job's parameters checked and completed with defaults, as the catalog stores them;
    UsageError names what is wrong."""
    return _checked(kind, params).model_dump(mode="json")


# parameters -> the engine's options -------------------------------------------------------

def backup_request(params: BackupParams) -> Any:
    from engine.backup.physical import BackupRequest

    return BackupRequest(params.type, params.jobs, params.checksum, params.expire)


def restore_options(params: RestoreParams) -> Any:
    """The RestoreOptions these parameters ask for (UsageError when they cannot make sense)."""
    from engine.restore.physical import RestoreOptions
    from engine.restore.recovery import RecoveryTarget

    if not params.pgdata.startswith("/"):
        raise UsageError("restore: pgdata must be an absolute path")
    bad = [d for d in params.tablespace_map.values() if not d.startswith("/")]
    if bad:
        raise UsageError(f"restore: tablespace directory '{bad[0]}' must be an absolute path")
    if params.checksum and not params.delta:
        raise UsageError("restore: checksum applies to a delta restore (add delta)")
    target = RecoveryTarget(params.target, params.target_value, params.target_exclusive,
                            params.target_action, params.target_timeline)
    return RestoreOptions(
        pgdata=Path(params.pgdata), target=target, backup_id=params.backup, force=params.force,
        delta=params.delta, checksum=params.checksum,
        tablespace_map={oid: Path(d) for oid, d in params.tablespace_map.items()},
        archive_mode=params.archive_mode, port=params.port, standby=params.standby,
        start=params.start, jobs=params.jobs, timeout=params.timeout, region=params.region)


def preview_target(params: PreviewParams) -> Any:
    """The RecoveryTarget a preview asks for (UsageError when it cannot make sense)."""
    from engine.restore.recovery import RecoveryTarget

    return RecoveryTarget(params.target, params.target_value, params.target_exclusive, "promote",
                          params.target_timeline)


# running ----------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What a performed job produced: the engine's own result (``value``: a BackupSummary,
    RestoreResult, VerifyReport, ExpireReport or DrillResult) for the CLI to show, what the
    catalog records of it, and whether it succeeded."""

    kind: str
    value: Any
    record: dict[str, Any]
    ok: bool = True
    detail: dict[str, Any] = field(default_factory=dict)  # more for the CLI (expire after backup)


def perform(ctx: Context, kind: str, params: dict[str, Any], progress: Progress | None = None,
            notices: list[str] | None = None) -> Outcome:
    """Run ``kind`` with ``params`` on ``ctx``'s cluster now, in this process. ``notices``
    collects what the operator should read even when the run fails."""
    checked = _checked(kind, params)
    report = progress or (lambda done, total, phase: None)
    notes = notices if notices is not None else []
    try:
        return _PERFORMERS[kind](ctx, checked, report, notes)
    except OSError as exc:
        if exc.filename is None:
            raise
        raise path_error(exc) from None  # a path that cannot be used: named, with what to do


def _backup(ctx: Context, params: BackupParams, report: Progress, notices: list[str]) -> Outcome:
    from engine.backup import physical

    request = backup_request(params)
    request.notices = notices
    summary = physical.run(ctx.config, ctx.require_cluster(), ctx.storage, ctx.config_path, request,
                           lambda p: report(p.done_bytes, p.total_bytes, p.phase))
    record = {"backup": summary.id, "type": summary.type, "size_bytes": summary.size_bytes,
              "stored_bytes": summary.stored_bytes, "corrupt_pages": summary.corrupt_pages,
              "corrupt_files": summary.corrupt_files, "notices": list(notices)}
    expired = request.expired
    if expired is not None:
        record["expired"] = expired.to_json()
    return Outcome("backup", summary, record, detail={"expired": expired})


class _Phases:
    """A restore's progress as bytes written and its phase (writing files, starting the
    server, replaying WAL), so a progress bar can say which."""

    def __init__(self, report: Progress, phase: str = "") -> None:
        self.report, self.phase, self.done, self.total = report, phase, 0.0, 0.0

    def bytes(self, done: float, total: float) -> None:
        self.done, self.total = done, total
        self.report(done, total, self.phase)

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.report(self.done, self.total, phase)


#: The phase after recovery ended: the restored server's row counts and pg_amcheck.
PHASE_VALIDATE = "validating"


def _restore(ctx: Context, params: RestoreParams, report: Progress, notices: list[str]) -> Outcome:
    from engine.restore import inplace, physical

    cluster = ctx.require_cluster()
    options = restore_options(params)
    if params.stop_server:
        if not inplace.is_in_place(ctx.config, cluster, params.pgdata):
            raise UsageError(f"restore: stop_server applies only to a restore into the cluster's own "
                             f"data directory ({ctx.config.clusters[cluster].pgdata}), not {params.pgdata}")
        report(0, 0, "stopping the server")
        stopped = inplace.stop_server(ctx, cluster, params.timeout or inplace.DEFAULT_STOP_TIMEOUT)
        if stopped is not None:
            notices.append(f"the server of cluster '{cluster}' (pid {stopped}) was stopped for the "
                           "restore in place")
    phases = _Phases(report, physical.PHASE_FILES)
    region = ctx.in_region(params.region)  # a region's copy: RegionUnavailableError names it
    source = region.tiered  # every tier of the primary's; a region's copy alone
    copies = ctx.config.repository.copies
    if params.region is None and copies:
        from engine.repository.manifest import list_backup_ids

        if not list_backup_ids(source, cluster):
            raise RestoreError(f"the primary repository ({ctx.storage.describe()}) holds no backup of "
                               f"cluster '{cluster}': if the primary region is lost, restore from a copy "
                               f"with --region REGION (regions: {', '.join(sorted(copies))})")
    if params.region is not None:
        notices.append(f"restoring from the copy in region {params.region} ({source.describe()}); "
                       f"recovery fetches WAL from there too")
    result = physical.run(ctx.config, cluster, source, ctx.config_path, options, phases.bytes,
                          phases.enter, prepare=_thaw(region, cluster, options.target, report))
    out = result.to_json()
    if params.validate_restored and result.reached is not None and result.reached.state == "promoted":
        from engine.postgres.server import bin_dir_for
        from engine.restore import validate

        phases.enter(PHASE_VALIDATE)
        settings = ctx.config.clusters[cluster]
        bin_dir = bin_dir_for(result.backup.pg_version, settings.bin_dir)
        out["validation"] = validate.run(options.pgdata, bin_dir, settings.user, settings.database,
                                         inplace.is_in_place(ctx.config, cluster, params.pgdata))
        if not out["validation"]["passed"]:
            notices.append("WARNING: the restored cluster failed its validation: " + "; ".join(
                f"{c['name']}: {c['detail']}" for c in out["validation"]["checks"] if not c["passed"]))
    return Outcome("restore", result, out)


def _thaw(ctx: Context, cluster: str, target: Any, report: Progress) -> Callable[..., None] | None:
    """What a restore runs before it writes a file: when a tier is in an archive class, the
    restore requests for what the backup and its WAL need from there, and the wait."""
    if not any(t.archive_class for t in ctx.tiers.tiers):
        return None

    def prepare(backup: Any, manifest: Any) -> None:
        from engine.repository.tiers.thaw import restore_keys, thaw

        view = ctx.tiered
        thaw(ctx.tiers, view, cluster, restore_keys(view, cluster, backup, manifest, target), report)  # type: ignore[arg-type]
    return prepare


def _preview(ctx: Context, params: PreviewParams, report: Progress, notices: list[str]) -> Outcome:
    from engine.restore import preview

    result = preview.run(ctx.config, ctx.require_cluster(), ctx.tiered, ctx.config_path,
                         preview_target(params), params.table, params.rows, params.backup,
                         params.timeout, report)
    return Outcome("preview", result, result.to_json())


def _verify(ctx: Context, params: VerifyParams, report: Progress, notices: list[str]) -> Outcome:
    from engine.repository import verify

    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        report(done[0], 0, "verifying")

    result = verify.run(ctx.in_region(params.region).storage, ctx.require_cluster(), params.backup,
                        params.since_last, params.jobs or ctx.config.jobs, advance)
    return Outcome("verify", result, result.to_json(), ok=result.ok)


def _expire(ctx: Context, params: ExpireParams, report: Progress, notices: list[str]) -> Outcome:
    from engine.repository import expire

    if params.region is not None:
        from engine.repository.region import expire_copy

        copy = ctx.in_region(params.region).storage
        try:
            primary = ctx.primary_storage
        except LifeboatError:
            primary = None  # a copy that keeps what the primary keeps then refuses, saying why
        result = expire_copy(ctx.config, ctx.require_cluster(), params.region, primary, copy,
                             params.dry_run)
    else:
        result = expire.run(ctx.config, ctx.require_cluster(), ctx.storage, params.dry_run)
    notices.extend(result.notices)
    return Outcome("expire", result, dict(result.to_json()))


def _drill(ctx: Context, params: DrillParams, report: Progress, notices: list[str]) -> Outcome:
    from engine.drill.record import record, summary
    from engine.drill.run import run

    catalog = ctx.catalog  # opened first: a drill that cannot be recorded does not run
    result = run(ctx.config, ctx.require_cluster(), ctx.storage, ctx.config_path, params.kind,
                 lambda percent, message: report(percent, 100, message))
    drill_id, _text = record(catalog, result, ctx.config)
    return Outcome("drill", result, summary(result, drill_id), ok=result.passed,
                   detail={"drill_id": drill_id})


_PERFORMERS: dict[str, Callable[..., Outcome]] = {
    "backup": _backup, "restore": _restore, "verify": _verify, "expire": _expire, "drill": _drill,
    "preview": _preview,
}


# queueing and recording -------------------------------------------------------------------

def enqueue(catalog: Catalog, config: Config, kind: str, cluster: str, params: dict[str, Any],
            requested_by: str, priority: int | None = None, max_duration: float | None = None,
            schedule: str | None = None) -> int:
    """Validate and queue a job; returns its id."""
    if cluster not in config.clusters:
        raise UsageError(f"unknown cluster '{cluster}'")
    checked = validate_params(kind, params)
    if checked.get("region") is not None:
        from engine.repository.region import settings_of

        settings_of(config, checked["region"])  # an unknown region is refused now, named
    if priority is None:
        priority = PRIORITY[kind] - (SCHEDULED_PENALTY if schedule else 0)
    job_id = catalog.enqueue(kind, cluster, checked, requested_by, priority, max_duration, schedule)
    catalog.add_event(cluster, "job_queued", f"{kind} job {job_id} queued by {requested_by}",
                      job_id=job_id, data={"params": checked, "priority": priority})
    return job_id


def cancel_job(catalog: Catalog, job_id: int, by: str) -> Job:
    """Cancel a queued or running job (the agent stops a running one's process: a restore or
    a preview stops where it is, a scratch cluster is removed); returns the job as it was.
    JobError when it does not exist or had already ended."""
    job = catalog.job(job_id)
    if job is None:
        raise JobError(f"job {job_id} does not exist")
    if not catalog.finish(job.id, CANCELLED, error=f"cancelled by {by}"):
        ended = catalog.job(job_id)
        raise JobError(f"job {job_id} had already ended ({ended.state if ended else job.state})")
    catalog.add_event(job.cluster, "job_cancelled", f"{job.kind} job {job.id} cancelled by {by}",
                      severity="warning", job_id=job.id, data={"by": by, "was": job.state})
    return job


@dataclass(frozen=True)
class Requeue:
    """What :func:`requeue_failed` found and did: ``job_id`` the new job (None: none queued)."""

    kind: str
    cluster: str
    failed: Job | None = None  # the failed job queued again
    active: Job | None = None  # a job of that kind already queued or running: nothing queued
    newest: Job | None = None  # the newest ended job, when it did not fail: nothing to retry
    job_id: int | None = None


def requeue_failed(catalog: Catalog, config: Config, cluster: str, kind: str = "backup",
                   requested_by: str = "lifeboat") -> Requeue:
    """Queue the newest ended ``kind`` job of ``cluster`` again, with the same parameters,
    when it failed, unless one of that kind is already queued or running."""
    active = catalog.jobs(cluster, states=ACTIVE_STATES, kind=kind, limit=1)
    if active:
        return Requeue(kind, cluster, active=active[0])
    ended = catalog.jobs(cluster, states=(SUCCEEDED, FAILED, CANCELLED), kind=kind, limit=1)
    if not ended or ended[0].state != FAILED:
        return Requeue(kind, cluster, newest=ended[0] if ended else None)
    failed = ended[0]
    job_id = enqueue(catalog, config, kind, cluster, dict(failed.params), requested_by,
                     max_duration=failed.max_duration)
    catalog.add_event(cluster, "job_retried", f"{kind} job {failed.id} (failed: "
                      f"{failed.error or 'no error'}) queued again as job {job_id} by {requested_by}",
                      job_id=job_id,
                      data={"retry_of": failed.id})
    return Requeue(kind, cluster, failed=failed, job_id=job_id)


class ProgressReporter:
    """Writes a job's progress to the catalog at most once a second; ``in_bytes``: done
    and total are bytes (backups and restores), recorded as such for the metrics."""

    def __init__(self, catalog: Catalog, job_id: int, in_bytes: bool = False,
                 log: Callable[[str], None] | None = None) -> None:
        self.catalog, self.job_id, self.in_bytes, self._last = catalog, job_id, in_bytes, 0.0
        self._message: str | None = None
        self.log = log  # told each new phase (run-job: the job's log file)

    def __call__(self, done: float, total: float, message: str = "") -> None:
        now = time.monotonic()
        if now - self._last < 1.0 and message == self._message:
            return  # a new phase is written at once
        percent = 100.0 * done / total if total else 0.0
        if self.log is not None and message and message != self._message:
            self.log(f"{message} ({min(percent, 99.0):.0f}%)")
        self._last, self._message = now, message
        self.catalog.set_progress(self.job_id, min(percent, 99.0), message,
                                  (int(done), int(total)) if self.in_bytes else None)


def record_outcome(catalog: Catalog, config: Config, kind: str, cluster: str, job_id: int,
                   result: dict[str, Any] | None = None, error: BaseException | None = None,
                   ok: bool = True) -> bool:
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
    state = SUCCEEDED if ok else FAILED
    catalog.finish(job_id, state, result, None if ok else result.get("error", "checks failed"))
    catalog.add_event(cluster, f"job_{state}", f"{kind} job {job_id} {state}",
                      severity="info" if ok else "error", job_id=job_id, data=result)
    data_loss.record(catalog, config, cluster, data_loss.from_result(kind, result), job_id)
    return ok


def execute(ctx: Context, job_id: int) -> bool:
    """Run queued job ``job_id`` here (``lifeboat run-job``) and record its outcome; True
    when it succeeded."""
    catalog = ctx.catalog
    job = catalog.job(job_id)
    if job is None:
        raise JobError(f"job {job_id} does not exist in the catalog")
    if job.state != "running":
        raise JobError(f"job {job_id} is {job.state}, not running: only the agent starts jobs")
    ctx.cluster = job.cluster
    report = ProgressReporter(catalog, job_id, job.kind in BYTE_PROGRESS_KINDS, log=job_log)
    job_log(f"{job.kind} job {job_id} of {job.cluster} started, asked by {job.requested_by}")
    try:
        outcome = perform(ctx, job.kind, job.params, report)
    except LifeboatError as exc:
        job_log(f"{job.kind} job {job_id} failed: {exc}")
        return record_outcome(catalog, ctx.config, job.kind, job.cluster, job_id, error=exc)
    except Exception as exc:
        job_log(f"{job.kind} job {job_id} failed: {exc.__class__.__name__}: {exc}")
        record_outcome(catalog, ctx.config, job.kind, job.cluster, job_id, error=exc)
        raise
    job_log(f"{job.kind} job {job_id} " + ("succeeded" if outcome.ok else
                                           f"failed: {outcome.record.get('error', 'checks failed')}"))
    return record_outcome(catalog, ctx.config, job.kind, job.cluster, job_id, outcome.record,
                          ok=outcome.ok)


def job_log(line: str) -> None:
    """A timestamped line on standard output: the job's log file when the agent runs it."""
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}", file=sys.stdout, flush=True)


def catalog_hint(config: Config, config_path: Path | None) -> str:
    """What to run so that a SQLite catalog that cannot be opened can be."""
    if config.catalog.dsn is not None:
        return ""
    named = f" --config {config_path}" if config_path is not None else ""
    return (f"; to record runs, run once as root: lifeboat{named} init (it creates Lifeboat's "
            f"directories, owned by {config.os_user}), or set [catalog] path to a file "
            f"{config.os_user} may write")


@dataclass
class RecordedRun:
    """A command run outside the agent (``lifeboat backup`` ...), recorded as a job: set
    ``outcome`` before the run ends; ``progress(done, total, message)``."""

    progress: Progress
    outcome: Outcome | None = None


@contextmanager
def recorded_run(config: Config, kind: str, cluster: str, params: dict[str, Any],
                 requested_by: str, warn: Callable[[str], None],
                 config_path: Path | None = None) -> Iterator[RecordedRun]:
    """Record a CLI run in the catalog: running while the body runs, then its outcome
    (``run.outcome``, or the error it raised). ``params`` are recorded as validated, exactly
    as an enqueued job's. Metrics and ``lifeboat jobs`` see it as they see the agent's jobs.
    A catalog that cannot be opened does not stop the run: ``warn`` says so, and what to do."""
    checked = validate_params(kind, params)
    try:
        catalog: Catalog | None = Catalog.open(config)
        job_id: int | None = catalog.start_run(kind, cluster, checked, requested_by,
                                               PRIORITY[kind], f"cli@{agent_identity()}", os.getpid())
    except LifeboatError as exc:
        warn(f"this {kind} is not recorded in the catalog: {exc}" + catalog_hint(config, config_path))
        catalog, job_id = None, None
    run = RecordedRun(ProgressReporter(catalog, job_id, kind in BYTE_PROGRESS_KINDS)
                      if catalog and job_id else lambda done, total, message="": None)
    try:
        yield run
    except BaseException as exc:
        if catalog is not None and job_id is not None:
            with contextlib.suppress(LifeboatError):
                record_outcome(catalog, config, kind, cluster, job_id, error=exc)
        raise
    else:
        if catalog is not None and job_id is not None:
            outcome = run.outcome
            with contextlib.suppress(LifeboatError):
                record_outcome(catalog, config, kind, cluster, job_id,
                               outcome.record if outcome else {}, ok=outcome.ok if outcome else True)
    finally:
        if catalog is not None:
            catalog.close()
