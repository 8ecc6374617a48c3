"""The executor: runs queued jobs, at most ``max_concurrent_jobs`` at once, highest
priority first, each in its own process (``lifeboat run-job ID``).

A child process per job gives what threads cannot: a nice value and an I/O class of
its own, and a hard stop when ``max_duration`` is exceeded (the process group is killed;
a killed backup leaves nothing that looks valid). Jobs left ``running`` by an agent that
died are marked failed with that reason when the next agent starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.agent import conditions
from engine.catalog.store import CANCELLED, FAILED, RUNNING, Catalog, Job, agent_identity
from engine.config.schema import Config
from engine.config.sections import ResourcesConfig, ScheduleConfig
from engine.config.units import format_duration
from engine.postgres.server import process_alive
from engine.restore.inplace import held_clusters

KILL_GRACE = 20.0  # SIGTERM lets a job clean up (a drill removes its scratch cluster)


@dataclass
class RunningJob:
    job: Job
    process: subprocess.Popen[bytes]
    started: float  # monotonic
    log: Path
    paused: str | None = None  # why it is stopped (SIGSTOP) for load, if it is
    killed_at: float | None = None


def resource_prefix(resources: ResourcesConfig) -> list[str]:
    """``nice``/``ionice`` in front of the job's command, as the resources ask."""
    prefix: list[str] = []
    if resources.io_priority == "low":
        prefix += ["ionice", "-c", "3"]
    elif resources.io_priority == "high":
        prefix += ["ionice", "-c", "2", "-n", "0"]
    if resources.cpu_limit is not None and resources.cpu_limit < 1.0:
        prefix += ["nice", "-n", "10"]
    return prefix


def worker_count(resources: ResourcesConfig, cores: int | None = None) -> int | None:
    """Workers a job may use: ``parallel_jobs``, else ``cpu_limit`` of the cores."""
    if resources.parallel_jobs is not None:
        return resources.parallel_jobs
    if resources.cpu_limit is not None:
        return max(1, int((cores or os.cpu_count() or 1) * resources.cpu_limit))
    return None


class Executor:
    """Claims and supervises jobs; :meth:`tick` does one round of work."""

    def __init__(self, config: Config, catalog: Catalog, command: list[str], log_dir: Path,
                 now: Callable[[], float] = time.time) -> None:
        self.config, self.catalog, self.command, self.log_dir = config, catalog, command, log_dir
        self.agent = agent_identity()
        self.running: dict[int, RunningJob] = {}
        self._waiting_reason: dict[int, str] = {}
        self._held: dict[str, int] = {}  # cluster -> the in-place restore job holding it
        self._now = now

    # start-up and shut-down -------------------------------------------------------------

    def recover_interrupted(self) -> list[int]:
        """Mark jobs that an earlier agent left running as failed, and stop their processes."""
        failed = []
        for job in self.catalog.jobs(states=(RUNNING,), limit=10_000):
            if (job.agent or "").startswith("cli@"):  # a command run outside the agent
                if _cli_run_alive(job):
                    continue
                reason = f"interrupted: the command ({job.agent[4:]}) ended without recording it"
            else:
                if job.pid:
                    _kill_group(job.pid, signal.SIGKILL)
                reason = (f"interrupted: the agent ({job.agent}) stopped while the job ran; "
                          "it was not completed")
            if self.catalog.finish(job.id, FAILED, error=reason):
                self.catalog.add_event(job.cluster, "job_interrupted", f"{job.kind} job {job.id} "
                                       f"{reason}", severity="error", job_id=job.id)
                failed.append(job.id)
        return failed

    def stop(self, reason: str = "the agent is stopping") -> None:
        for entry in self.running.values():
            if self.catalog.finish(entry.job.id, CANCELLED, error=f"cancelled: {reason}"):
                self.catalog.add_event(entry.job.cluster, "job_cancelled",
                                       f"{entry.job.kind} job {entry.job.id} cancelled: {reason}",
                                       severity="warning", job_id=entry.job.id)
            _kill_group(entry.process.pid, signal.SIGCONT)
            _kill_group(entry.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE
        for entry in self.running.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                entry.process.wait(max(0.1, deadline - time.monotonic()))
            _kill_group(entry.process.pid, signal.SIGKILL)
            entry.process.wait()
        self.running.clear()

    # the loop ---------------------------------------------------------------------------

    def tick(self) -> None:
        self._reap()
        self._enforce_limits()
        self._start_pending()

    def _reap(self) -> None:
        for job_id, entry in list(self.running.items()):
            code = entry.process.poll()
            if code is None:
                continue
            del self.running[job_id]
            job = self.catalog.job(job_id)
            if job is not None and job.state == RUNNING:
                reason = (f"the job's process exited with code {code} without recording a "
                          f"result (log: {entry.log})")
                self.catalog.finish(job_id, FAILED, error=reason)
                self.catalog.add_event(job.cluster, "job_failed", f"{job.kind} job {job_id}: "
                                       f"{reason}", severity="error", job_id=job_id)

    def _enforce_limits(self) -> None:
        for entry in self.running.values():
            job = entry.job
            elapsed = time.monotonic() - entry.started
            if entry.killed_at is not None:
                if time.monotonic() - entry.killed_at > KILL_GRACE:
                    _kill_group(entry.process.pid, signal.SIGKILL)
                continue
            current = self.catalog.job(job.id)
            if current is not None and current.state == CANCELLED:
                self._kill(entry)  # cancelled through the catalog (lifeboat jobs cancel)
                continue
            if job.max_duration is not None and elapsed > job.max_duration:
                reason = (f"exceeded max_duration {format_duration(job.max_duration)} "
                          f"(ran {format_duration(elapsed)}); the job was stopped")
                if self.catalog.finish(job.id, CANCELLED, error=f"cancelled: {reason}"):
                    self.catalog.add_event(job.cluster, "job_overran", f"{job.kind} job {job.id} "
                                           f"{reason}", severity="warning", job_id=job.id)
                    self._kill(entry)
                continue
            self._throttle(entry)

    def _kill(self, entry: RunningJob) -> None:
        _kill_group(entry.process.pid, signal.SIGCONT)
        _kill_group(entry.process.pid, signal.SIGTERM)
        entry.killed_at = time.monotonic()

    def _throttle(self, entry: RunningJob) -> None:
        """Pause (SIGSTOP) a scheduled job while the host or server is over its thresholds."""
        schedule = self._schedule_of(entry.job)
        if schedule is None or (schedule.max_load is None and schedule.max_active_sessions is None):
            return
        blocker = conditions.load_blocker(schedule, self.config.clusters[entry.job.cluster])
        if blocker and not entry.paused:
            _kill_group(entry.process.pid, signal.SIGSTOP)
            entry.paused = blocker.message
            self.catalog.add_event(entry.job.cluster, "job_paused", f"{entry.job.kind} job "
                                   f"{entry.job.id} paused: {blocker.message}", severity="warning",
                                   job_id=entry.job.id)
        elif not blocker and entry.paused:
            _kill_group(entry.process.pid, signal.SIGCONT)
            entry.paused = None
            self.catalog.add_event(entry.job.cluster, "job_resumed", f"{entry.job.kind} job "
                                   f"{entry.job.id} resumed: load back under its thresholds",
                                   job_id=entry.job.id)

    def _start_pending(self) -> None:
        free = self.config.agent.max_concurrent_jobs - len(self.running)
        if free <= 0:
            return
        self._held = held_clusters(self.catalog, self.config)
        for job in self.catalog.pending():
            if free <= 0:
                break
            if job.cluster not in self.config.clusters:
                self.catalog.finish(job.id, FAILED, error=f"cluster '{job.cluster}' is no longer "
                                    "in the configuration")
                continue
            blocker = self._blocker(job)
            if blocker:
                if self._waiting_reason.get(job.id) != blocker.cause:  # one event per cause
                    self._waiting_reason[job.id] = blocker.cause
                    self.catalog.add_event(job.cluster, "job_waiting", f"{job.kind} job {job.id} "
                                           f"{blocker.message}", job_id=job.id)
                self.catalog.set_waiting(job.id, blocker.message)
                continue
            if self._start(job):
                free -= 1

    def _blocker(self, job: Job) -> conditions.Blocker | None:
        holder = self._held.get(job.cluster)
        if job.schedule is not None and holder is not None:
            return conditions.Blocker("in_place_restore", f"held: restore job {holder} restores cluster "
                                      f"'{job.cluster}' in place")
        if holder == job.id:
            busy = [j for j in self.running.values() if j.job.cluster == job.cluster]
            if busy:
                return conditions.Blocker("cluster_busy", f"waiting: {busy[0].job.kind} job "
                                          f"{busy[0].job.id} of cluster '{job.cluster}' must end before "
                                          "a restore in place")
        schedule = self._schedule_of(job)
        if schedule is None:
            return None
        return conditions.start_blocker(schedule, self.config.clusters[job.cluster], self._now())

    def _schedule_of(self, job: Job) -> ScheduleConfig | None:
        if job.schedule is None or job.cluster not in self.config.clusters:
            return None
        return self.config.clusters[job.cluster].schedules.get(job.schedule)

    def _start(self, job: Job) -> bool:
        if not self.catalog.mark_running(job.id, self.agent, None):
            return False
        self._waiting_reason.pop(job.id, None)
        schedule = self._schedule_of(job)
        prefix = resource_prefix(schedule.resources) if schedule else []
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"job-{job.id}.log"
        try:
            with open(log, "ab") as out:
                process = subprocess.Popen([*prefix, *self.command, "run-job", str(job.id)],
                                           stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                           start_new_session=True)
        except OSError as exc:
            self.catalog.finish(job.id, FAILED, error=f"cannot start the job's process: {exc}")
            return False
        self.catalog.set_pid(job.id, process.pid)
        self.running[job.id] = RunningJob(job, process, time.monotonic(), log)
        applied = " ".join(prefix) or "none"
        self.catalog.add_event(job.cluster, "job_started", f"{job.kind} job {job.id} started "
                               f"(pid {process.pid}, resource limits: {applied})", job_id=job.id,
                               data={"pid": process.pid, "limits": prefix})
        return True


def _cli_run_alive(job: Job) -> bool:
    """Whether the CLI process that recorded ``job`` (``cli@host:pid``) still runs here;
    a run on another host is assumed alive."""
    host = (job.agent or "")[4:].rpartition(":")[0]
    if host != os.uname().nodename:
        return True
    return bool(job.pid) and process_alive(job.pid)


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
