"""The scheduler: turns cron schedules (with time zones) into queued jobs.

Cron semantics: when both day-of-month and day-of-week are restricted, both must match
(``0 3 1-7 * 0`` is the first Sunday at 03:00, the seed's monthly drill), unlike classic
cron's "either". A schedule seen for the first time starts from now; fires missed while
the agent was down are caught up with one job, and an event says how many were missed.
A fire whose previous job is still pending or running is skipped, with an event.
While a restore into a cluster's own data directory (in place) is queued or running, that
cluster's schedules are held: what falls due is fired once when the restore has ended.
Before a full drill, stakeholders are notified once, ``notify_before`` ahead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from engine import jobs
from engine.agent.executor import worker_count
from engine.catalog.store import ACTIVE_STATES, Catalog
from engine.config.schema import Config
from engine.config.units import format_duration

NOTICE_RETRY = 300.0  # a notice a channel could not take yet is sent again after this

#: notify(cluster, schedule entry, when) -> outcome per channel, e.g. {"slack": "ok"}
Notify = Callable[[str, "Entry", datetime], dict[str, str]]


@dataclass(frozen=True)
class Entry:
    cluster: str
    name: str
    kind: str
    cron: str
    timezone: str
    params: dict[str, Any] = field(default_factory=dict)
    max_duration: float | None = None
    priority: int | None = None
    notify_before: float | None = None


def entries(config: Config) -> list[Entry]:
    """Every schedule of every cluster: its ``schedules`` and its drills."""
    found = []
    for cluster, settings in config.clusters.items():
        for name, schedule in settings.schedules.items():
            params: dict[str, Any] = {}
            if schedule.kind == "backup":
                params["type"] = schedule.type or "full"
            elif schedule.kind == "drill":
                params["kind"] = schedule.type or "full"
            workers = worker_count(schedule.resources)
            if workers is not None and schedule.kind in ("backup", "verify"):
                params["jobs"] = workers
            found.append(Entry(cluster, name, schedule.kind, schedule.cron, schedule.timezone,
                               params, schedule.max_duration, schedule.priority))
        drills = settings.drills
        if drills.enabled:
            found.append(Entry(cluster, "drill-full", "drill", drills.full, drills.timezone,
                               {"kind": "full"}, drills.full_max_duration,
                               notify_before=drills.notify_before))
            found.append(Entry(cluster, "drill-partial", "drill", drills.partial, drills.timezone,
                               {"kind": "partial"}, drills.partial_max_duration))
    return found


def fires_between(cron: str, timezone: str, after: float, until: float, limit: int = 1000
                  ) -> list[float]:
    """Fire times in (after, until], at most ``limit`` of them (the newest kept)."""
    it = croniter(cron, datetime.fromtimestamp(after, ZoneInfo(timezone)), day_or=False)
    fires: list[float] = []
    while True:
        moment = it.get_next(float)
        if moment > until:
            return fires
        fires.append(moment)
        if len(fires) > limit:
            fires.pop(0)


def next_fire(cron: str, timezone: str, after: float) -> float:
    return float(croniter(cron, datetime.fromtimestamp(after, ZoneInfo(timezone)),
                          day_or=False).get_next(float))


class Scheduler:
    def __init__(self, config: Config, catalog: Catalog, notify: Notify | None = None) -> None:
        self.config, self.catalog, self.notify = config, catalog, notify
        self.entries = entries(config)
        self._notice_retry: dict[tuple[str, str, float], float] = {}  # -> retry no sooner than
        self._held: dict[tuple[str, str], int] = {}  # (cluster, schedule) -> the holding job

    def tick(self, now: float | None = None) -> list[int]:
        """Queue what is due; returns the ids of the jobs queued."""
        from engine.restore.inplace import held_clusters

        now = time.time() if now is None else now
        queued = []
        held = held_clusters(self.catalog, self.config)
        for entry in self.entries:
            last = self.catalog.schedule_last(entry.cluster, entry.name)
            if last is None:
                self.catalog.set_schedule_last(entry.cluster, entry.name, now)
            else:
                due = fires_between(entry.cron, entry.timezone, last, now)
                if due and entry.cluster in held:
                    self._hold(entry, held[entry.cluster])
                    continue
                if due:
                    self.catalog.set_schedule_last(entry.cluster, entry.name, due[-1])
                    job_id = self._fire(entry, due, self._held.pop((entry.cluster, entry.name), None))
                    if job_id is not None:
                        queued.append(job_id)
            if entry.notify_before is not None:
                self._maybe_notify(entry, now)
        return queued

    def _hold(self, entry: Entry, job_id: int) -> None:
        """Leave a due schedule unfired (its last fire time stays) while ``job_id`` restores
        its cluster in place; one event per hold."""
        if self._held.get((entry.cluster, entry.name)) == job_id:
            return
        self._held[(entry.cluster, entry.name)] = job_id
        self.catalog.add_event(entry.cluster, "schedule_held",
                               f"schedule {entry.name}: held while restore job {job_id} restores the "
                               "cluster in place; it runs when the restore has ended", job_id=job_id)

    def _fire(self, entry: Entry, due: list[float], held_by: int | None = None) -> int | None:
        if held_by is not None:
            self.catalog.add_event(entry.cluster, "schedule_released",
                                   f"schedule {entry.name}: restore job {held_by} has ended; running "
                                   f"it once now ({len(due)} fire(s) fell due meanwhile)", job_id=held_by)
        elif len(due) > 1:
            self.catalog.add_event(entry.cluster, "schedule_missed",
                                   f"schedule {entry.name} missed {len(due) - 1} run(s) while the "
                                   "agent was not running; running it once now", severity="warning")
        active = [j for j in self.catalog.jobs(cluster=entry.cluster, states=ACTIVE_STATES)
                  if j.schedule == entry.name]
        if active:
            self.catalog.add_event(entry.cluster, "schedule_skipped",
                                   f"schedule {entry.name}: skipped, job {active[0].id} from its "
                                   f"previous run is still {active[0].state}", severity="warning")
            return None
        return jobs.enqueue(self.catalog, self.config, entry.kind, entry.cluster, dict(entry.params),
                            f"schedule:{entry.name}", entry.priority, entry.max_duration,
                            schedule=entry.name)

    def _maybe_notify(self, entry: Entry, now: float) -> None:
        assert entry.notify_before is not None
        upcoming = next_fire(entry.cron, entry.timezone, now)
        if upcoming - now > entry.notify_before:
            return
        key = (entry.cluster, entry.name, upcoming)
        if now < self._notice_retry.get(key, 0.0):
            return
        if not self.catalog.claim_notice(entry.cluster, entry.name, upcoming):
            return
        when = datetime.fromtimestamp(upcoming, ZoneInfo(entry.timezone))
        if self.notify is None:
            outcomes = {}
        else:
            try:
                outcomes = self.notify(entry.cluster, entry, when)
            except Exception as exc:  # a channel's failure must not stop the scheduler
                outcomes = {"error": f"{exc.__class__.__name__}: {exc}"}
        ok = bool(outcomes) and all(v == "ok" for v in outcomes.values())
        sent = ", ".join(f"{k}: {v}" for k, v in outcomes.items()) or "no channel configured"
        if "retryable" in outcomes.values() and upcoming - now > NOTICE_RETRY:
            # a channel said "try again": the notice is sent again later, to every channel
            self.catalog.release_notice(entry.cluster, entry.name, upcoming)
            self._notice_retry[key] = now + NOTICE_RETRY
            sent += f"; will retry in {format_duration(NOTICE_RETRY)}"
        self.catalog.add_event(entry.cluster, "drill_notice",
                               f"{entry.name} at {when.isoformat()} announced "
                               f"{format_duration(upcoming - now)} ahead ({sent})",
                               severity="info" if ok else "warning",
                               data={"occurrence": upcoming, "outcomes": outcomes})
