"""When a scheduled job may run: off-peak windows and load-based throttling.

Each check returns None when the job may go on, else a :class:`Blocker`: the cause
(``window``, ``load``, ``sessions``), which decides when a new event is recorded, and a
message with the measured value next to its threshold.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from engine.config.schema import ClusterConfig
from engine.config.sections import ScheduleConfig, parse_window


class Blocker(NamedTuple):
    cause: str
    message: str


def in_window(window: str, timezone: str, now: float) -> bool:
    """Whether ``now`` falls in the daily window (which may wrap midnight)."""
    start, end = parse_window(window)
    moment = datetime.fromtimestamp(now, ZoneInfo(timezone)).time().replace(tzinfo=None)
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end


def host_load() -> float:
    """The host's 1-minute load average."""
    return os.getloadavg()[0]


def active_sessions(cluster: ClusterConfig) -> int | None:
    """Client sessions running a query on the cluster now; None when it cannot be asked.

    Lifeboat's own sessions do not count: a backup waiting in pg_backup_stop would
    otherwise pause itself, then resume when its own query ends, and pause again.
    """
    import psycopg

    from engine.errors import PostgresError
    from engine.postgres import connection as postgres

    try:
        with postgres.connect(postgres.endpoint_of(cluster), "the cluster", timeout=3.0) as conn:
            return int(postgres.value(
                conn, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
                "AND application_name NOT LIKE %s", (postgres.APPLICATION_NAME + "%",)))
    except (PostgresError, psycopg.OperationalError):  # down or unreachable: not a load
        return None


def start_blocker(schedule: ScheduleConfig, cluster: ClusterConfig, now: float) -> Blocker | None:
    """Why a scheduled job must not start yet (outside its window, or busy), else None."""
    if schedule.window and not in_window(schedule.window, schedule.timezone, now):
        return Blocker("window", f"waiting for the off-peak window {schedule.window} "
                                 f"({schedule.timezone})")
    return load_blocker(schedule, cluster)


def load_blocker(schedule: ScheduleConfig, cluster: ClusterConfig) -> Blocker | None:
    """Why a scheduled job must wait or pause because the host or server is busy."""
    if schedule.max_load is not None:
        load = host_load()
        if load > schedule.max_load:
            return Blocker("load", f"host load {load:.2f} is above max_load {schedule.max_load:g}")
    if schedule.max_active_sessions is not None:
        sessions = active_sessions(cluster)
        if sessions is not None and sessions > schedule.max_active_sessions:
            return Blocker("sessions", f"{sessions} active sessions on the server, above "
                                       f"max_active_sessions {schedule.max_active_sessions}")
    return None
