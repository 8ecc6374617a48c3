"""Configuration sections of the agent: catalog, schedules, resources, WAL archiving
modes, streaming, recovery classes, drills and notification channels.

Kept apart from :mod:`engine.config.schema` (the file's root and the repository) so each
file holds one job; :class:`engine.config.schema.Config` composes them.
"""

from __future__ import annotations

import re
from datetime import time as clock_time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from engine.config.units import parse_duration
from engine.vocabulary import BACKUP_TYPES, DRILL_KINDS, BackupType, DrillKind, ScheduleKind

Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]

#: The seed's disaster_recovery block: (RPO, RTO) in seconds per recovery class.
CLASS_OBJECTIVES: dict[str, tuple[float, float]] = {
    "critical": (300.0, 3600.0),
    "analytical": (3600.0, 4 * 3600.0),
    "archived": (86400.0, 86400.0),
}

FIRST_SUNDAY_3AM = "0 3 1-7 * 0"  # day-of-month AND day-of-week: see engine.schedule
SUNDAY_1AM = "0 1 * * 0"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _percent(value: object) -> float:
    """``"50%"`` or ``50`` -> 0.5."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a percentage such as '50%'")
    number = float(str(value).strip().removesuffix("%"))
    if not 0 < number <= 100:
        raise ValueError("must be more than 0% and at most 100%")
    return number / 100.0


Fraction = Annotated[float, BeforeValidator(_percent)]


def check_cron(value: str) -> str:
    from croniter import croniter

    if not croniter.is_valid(value):
        raise ValueError(f"'{value}' is not a cron expression (e.g. '0 2 * * *')")
    return value


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{value}' (e.g. 'UTC', 'Europe/Paris')") from None
    return value


_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def parse_window(value: str) -> tuple[clock_time, clock_time]:
    """``"01:00-06:00"`` (may wrap midnight: ``"22:00-04:00"``)."""
    match = _WINDOW.match(value.strip())
    if not match:
        raise ValueError(f"'{value}' is not a window (use 'HH:MM-HH:MM', e.g. '01:00-06:00')")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
        raise ValueError(f"'{value}' is not a window of the day")
    return clock_time(h1, m1), clock_time(h2, m2)


class CatalogConfig(_Section):
    """Where jobs, events, objectives and drill results are recorded."""

    path: Path = Path("/var/lib/lifeboat/catalog.sqlite3")  # SQLite, the default
    dsn: str | None = None  # postgresql://...: a PostgreSQL catalog instead

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @field_validator("dsn")
    @classmethod
    def _postgres_dsn(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URI")
        return value


class AgentConfig(_Section):
    """The long-running ``lifeboat agent``."""

    max_concurrent_jobs: int = Field(default=2, ge=1, le=64)
    poll_interval: Duration = 1.0
    objectives_interval: Duration = 15.0
    state_dir: Path = Path("/var/lib/lifeboat/agent")  # job logs, spool of async WAL


class ResourcesConfig(_Section):
    """The seed's ``resources`` block. Enforced: the worker count (``parallel_jobs``, else
    ``cpu_limit`` x cores), the process's nice value (``cpu_limit`` under 100% -> nice 10)
    and its I/O class (``io_priority`` low -> ionice idle, high -> best-effort 0)."""

    parallel_jobs: int | None = Field(default=None, ge=1, le=256)
    io_priority: Literal["low", "normal", "high"] = "normal"
    cpu_limit: Fraction | None = None


class ScheduleConfig(_Section):
    """One scheduled job: ``[clusters.NAME.schedules.SCHEDULE]``."""

    kind: ScheduleKind = "backup"
    type: BackupType | DrillKind | None = None
    cron: Annotated[str, BeforeValidator(check_cron)]
    timezone: Annotated[str, BeforeValidator(check_timezone)] = "UTC"
    max_duration: Duration | None = None
    priority: int | None = Field(default=None, ge=0, le=1000)
    window: str | None = None  # off-peak hours, in the schedule's time zone
    max_load: float | None = Field(default=None, gt=0)  # 1-minute load average of the host
    max_active_sessions: int | None = Field(default=None, ge=0)  # active sessions on the server
    resources: ResourcesConfig = ResourcesConfig()

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_window(value)
        return value

    @model_validator(mode="after")
    def _type_fits_kind(self) -> ScheduleConfig:
        allowed = {"backup": BACKUP_TYPES, "drill": DRILL_KINDS}.get(self.kind)
        if allowed is None and self.type is not None:
            raise ValueError(f"'type' does not apply to {self.kind} schedules")
        if allowed is not None and self.type is not None and self.type not in allowed:
            raise ValueError(f"type of a {self.kind} schedule must be one of {', '.join(allowed)}")
        return self


class ArchiveConfig(_Section):
    """How ``wal-push`` archives: ``sync`` pushes in the command; ``async`` returns as soon
    as the agent has durably stored the segment, the agent pushing ``.ready`` segments
    ahead in parallel (the command pushes itself when the agent has not)."""

    mode: Literal["sync", "async"] = "sync"
    spool: Path = Path("/var/spool/lifeboat")  # acknowledgements of segments pushed ahead
    push_jobs: int = Field(default=4, ge=1, le=64)


class StreamingConfig(_Section):
    """``pg_receivewal`` run and supervised by the agent, with a replication slot."""

    enabled: bool = False
    directory: Path | None = None  # default: <agent.state_dir>/stream/<cluster>
    slot: str = Field(default="lifeboat", pattern=r"^[a-z0-9_]{1,63}$")
    synchronous: bool | Literal["auto"] = "auto"  # auto: when the RPO objective is 0
    application_name: str = Field(default="lifeboat_receiver", pattern=r"^[A-Za-z0-9_]{1,63}$")


class ObjectivesConfig(_Section):
    """Overrides of the class's objectives."""

    rpo: Duration | None = None
    rto: Duration | None = None


class ProbeConfig(_Section):
    """A query a drill times on the source and on the restored cluster."""

    name: str
    sql: str
    database: str | None = None
    runs: int = Field(default=5, ge=1, le=1000)


class DrillConfig(_Section):
    """Restore drills (the seed's testing_validation_framework)."""

    enabled: bool = True  # schedule drills in the agent
    full: Annotated[str, BeforeValidator(check_cron)] = FIRST_SUNDAY_3AM
    partial: Annotated[str, BeforeValidator(check_cron)] = SUNDAY_1AM
    timezone: Annotated[str, BeforeValidator(check_timezone)] = "UTC"
    full_max_duration: Duration = 4 * 3600.0
    partial_max_duration: Duration = 3600.0
    notify_before: Duration = 48 * 3600.0
    scratch_dir: Path = Path("/var/tmp/lifeboat-drills")
    databases: list[str] | None = None  # default: every database that accepts connections
    critical_tables: list[str] = Field(default_factory=list)  # "db.schema.table" or "schema.table"
    probes: list[ProbeConfig] = Field(default_factory=list)
    tolerance: Fraction = 0.05  # probe timing vs the source's baseline
    accuracy: Fraction = 1.0  # share of tables whose checksum must match
    completeness: Fraction = 0.9999  # share of rows that must be present


class NotificationsConfig(_Section):
    """Channels for notices (drill announcements); alert routing comes later."""

    slack_webhook_url: str | None = None
    webhook_url: str | None = None  # a JSON POST to any HTTP endpoint
    stakeholders: list[str] = Field(
        default_factory=lambda: ["ops_team", "data_team", "service_owners"])

    @field_validator("slack_webhook_url", "webhook_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class ExporterConfig(_Section):
    """The Prometheus exporter on ``/metrics`` (served by the agent and ``lifeboat exporter``)."""

    enabled: bool = True  # serve /metrics from the agent
    address: str = "127.0.0.1"
    port: int = Field(default=9887, ge=1, le=65535)
    refresh_interval: Duration = 5.0  # scrapes read state refreshed this often
    repository_interval: Duration = 60.0  # repository sizes (a walk of the repository)
    success_rate_window: Duration = 7 * 86400.0
    query_timeout: Duration = 2.0  # each database query of a refresh

    @field_validator("refresh_interval", "repository_interval", "query_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0")
        return value
