"""What a benchmark run measured: one record per timed command, gathered per tool."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.dataset import Dataset

MiB = 1024 * 1024
# incremental scenarios, in the order each round runs them
SCENARIOS = {"nochange": "with nothing changed", "pgbench": "after pgbench", "append": "append-mostly"}
MAINTENANCE = ("verify", "expire")  # timed once per invocation, at the end


@dataclass(frozen=True)
class BackupResult:
    tool: str
    label: str  # Lifeboat backup id, pgBackRest set label, pg_basebackup directory name
    seconds: float
    stored_bytes: int
    max_rss_kib: int
    location: Path
    output: str = ""  # Lifeboat's summary line
    cpu_seconds: float = 0.0  # user + system
    phases: str = ""  # where the wall clock went (bench/phases.py)


@dataclass(frozen=True)
class RestoreResult:
    tool: str
    seconds: float
    max_rss_kib: int
    restored_bytes: int
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class CommandResult:
    """A timed maintenance command (verify, expire)."""

    tool: str
    seconds: float
    max_rss_kib: int
    output: str = ""
    cpu_seconds: float = 0.0


@dataclass
class PushResult:
    ms: dict[str, list[float]] = field(default_factory=dict)  # tool -> ms per segment
    cpu_ms: dict[str, list[float]] = field(default_factory=dict)  # tool -> CPU ms per segment
    bytes: dict[str, int] = field(default_factory=dict)  # tool -> archive bytes


def by_tool(tools: tuple[str, ...]) -> dict[str, list]:
    return {tool: [] for tool in tools}


@dataclass
class Results:
    scale: int
    runs: int
    load_start: float
    tools: tuple[str, ...]  # lifeboat, the pgBackRest builds' keys, basebackup
    titles: dict[str, str]  # tool -> how the report names it
    anchor: str  # the pgBackRest build the targets compare with
    anchor_block: bool = False  # it runs with block incremental + bundling
    cold: bool = False
    backups: dict[str, list[BackupResult]] = field(default_factory=dict)
    restores: dict[str, list[RestoreResult]] = field(default_factory=dict)
    incrementals: dict[str, dict[str, list[BackupResult]]] = field(default_factory=dict)
    delta_restores: dict[str, list[RestoreResult]] = field(default_factory=dict)
    incr_restores: dict[str, list[RestoreResult]] = field(default_factory=dict)  # empty dir
    maintenance: dict[str, dict[str, list[CommandResult]]] = field(default_factory=dict)
    delta_checks: list[str] = field(default_factory=list)  # Lifeboat's delta vs clean, per run
    notes: list[str] = field(default_factory=list)  # anything odd the harness noticed
    dataset: Dataset | None = None
    push: PushResult | None = None
    verified: dict[str, int] = field(default_factory=dict)
    versions: list[str] = field(default_factory=list)
    database_bytes: int = 0
    total_seconds: float = 0.0
    pgbench_seconds: int = 0
    append_mb: int = 0
    loads: list[float] = field(default_factory=list)  # 1-min load average at each timed command

    def __post_init__(self) -> None:
        for table in (self.backups, self.restores, self.delta_restores, self.incr_restores):
            table.update(by_tool(self.tools))
        self.incrementals = {scenario: by_tool(self.tools) for scenario in SCENARIOS}
        self.maintenance = {name: by_tool(self.tools) for name in MAINTENANCE}

    @property
    def pgbackrests(self) -> tuple[str, ...]:
        return tuple(t for t in self.tools if t.startswith("pgbackrest"))

    @property
    def block_tools(self) -> tuple[str, ...]:
        """The tools that take incremental backups (all but pg_basebackup)."""
        return ("lifeboat", *self.pgbackrests)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def peak(values: list[float]) -> float | None:
    return max(values, default=None)
