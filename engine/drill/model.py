"""What a drill produces, and the pure decisions that turn measurements into pass or fail.

Every validation is a :class:`Check` (name, passed, detail). Data comparisons are kept
per table (:class:`TableComparison`) and judged together against the thresholds:
accuracy is the share of compared tables whose row count and checksum both match,
completeness the share of expected rows present (a table's surplus rows do not make
up for another's missing ones). Probe timings are judged against the source's baseline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from statistics import median
from typing import Any

#: Timing differences below this are connection and scheduler noise, not a slower cluster.
NOISE_FLOOR = 0.002
_EPSILON = 1e-9  # 99.99% parsed from text is 0.9998999..., computed shares are exact-ish


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    seconds: float = 0.0


@dataclass
class TableComparison:
    """One table's row count and checksum, on the source at the restore point and restored."""

    table: str  # database.schema.table
    expected_rows: int
    expected_checksum: str
    restored_rows: int | None = None
    restored_checksum: str | None = None
    error: str | None = None

    @property
    def matches(self) -> bool:
        return (self.error is None and self.restored_rows == self.expected_rows
                and self.restored_checksum == self.expected_checksum)

    def describe(self) -> str:
        if self.error is not None:
            return f"{self.table}: {self.error}"
        checksum = "checksum matches" if self.restored_checksum == self.expected_checksum \
            else "checksum differs"
        return f"{self.table}: {self.restored_rows} of {self.expected_rows} rows, {checksum}"


@dataclass
class ProbeTiming:
    """One probe's timed runs (seconds each) on the source (baseline) and restored."""

    name: str
    database: str
    baseline: list[float] = field(default_factory=list)
    restored: list[float] = field(default_factory=list)
    error: str | None = None

    @staticmethod
    def median_of(runs: list[float]) -> float | None:
        return median(runs) if runs else None

    @staticmethod
    def throughput_of(runs: list[float]) -> float | None:
        """Runs per second over the timed runs."""
        total = sum(runs)
        return len(runs) / total if runs and total > 0 else None

    def summary(self) -> dict[str, float | None]:
        return {"baseline_median": self.median_of(self.baseline),
                "restored_median": self.median_of(self.restored),
                "baseline_throughput": self.throughput_of(self.baseline),
                "restored_throughput": self.throughput_of(self.restored)}


def accuracy(tables: list[TableComparison]) -> float:
    return sum(t.matches for t in tables) / len(tables) if tables else 1.0


def completeness(tables: list[TableComparison]) -> float:
    expected = sum(t.expected_rows for t in tables)
    if expected == 0:
        return 1.0
    present = sum(min(t.restored_rows or 0, t.expected_rows) for t in tables)
    return present / expected


def percent(share: float) -> str:
    text = f"{share * 100:.4f}".rstrip("0").rstrip(".")
    return f"{text}%"


def data_checks(tables: list[TableComparison], accuracy_threshold: float,
                completeness_threshold: float) -> list[Check]:
    """The accuracy and completeness checks over every compared table."""
    share = accuracy(tables)
    wrong = [t for t in tables if not t.matches]
    named = "; ".join(t.describe() for t in wrong[:10]) + (
        f"; and {len(wrong) - 10} more" if len(wrong) > 10 else "")
    detail = (f"{len(tables) - len(wrong)} of {len(tables)} tables match the source's row count "
              f"and checksum ({percent(share)}, threshold {percent(accuracy_threshold)})")
    checks = [Check("accuracy", share + _EPSILON >= accuracy_threshold,
                    detail + (f": {named}" if wrong else ""))]
    present = completeness(tables)
    expected = sum(t.expected_rows for t in tables)
    rows = sum(min(t.restored_rows or 0, t.expected_rows) for t in tables)
    checks.append(Check("completeness", present + _EPSILON >= completeness_threshold,
                        f"{rows} of {expected} rows present ({percent(present)}, threshold "
                        f"{percent(completeness_threshold)})"))
    return checks


def _within(restored: float, baseline: float, factor: float) -> bool:
    return restored <= baseline * factor + NOISE_FLOOR


def probe_checks(probe: ProbeTiming, tolerance: float) -> list[Check]:
    """Response time (median) and throughput of a probe against its source baseline.

    Only slower counts against the restored cluster: being faster than the busy source
    is no failure of a restore. Differences under :data:`NOISE_FLOOR` per run are noise.
    """
    label = f"probe {probe.name}"
    if probe.error is not None or not probe.baseline or not probe.restored:
        reason = probe.error or "no timed runs"
        return [Check(f"{label} response time", False, reason),
                Check(f"{label} throughput", False, reason)]
    base_median, restored_median = median(probe.baseline), median(probe.restored)
    deviation = (restored_median - base_median) / base_median if base_median > 0 else 0.0
    checks = [Check(f"{label} response time",
                    _within(restored_median, base_median, 1 + tolerance),
                    f"median {restored_median * 1000:.2f} ms restored vs {base_median * 1000:.2f} ms "
                    f"on the source ({deviation:+.1%}, tolerance +{tolerance:.0%})")]
    base_mean = sum(probe.baseline) / len(probe.baseline)
    restored_mean = sum(probe.restored) / len(probe.restored)
    base_rate = ProbeTiming.throughput_of(probe.baseline) or 0.0
    restored_rate = ProbeTiming.throughput_of(probe.restored) or 0.0
    change = (restored_rate - base_rate) / base_rate if base_rate > 0 else 0.0
    # Throughput may drop by ``tolerance``: runs/s >= base * (1 - tolerance), i.e. the mean
    # time per run may grow by 1 / (1 - tolerance).
    factor = 1 / (1 - tolerance) if tolerance < 1 else float("inf")
    checks.append(Check(f"{label} throughput", _within(restored_mean, base_mean, factor),
                        f"{restored_rate:.1f} runs/s restored vs {base_rate:.1f} runs/s on the "
                        f"source ({change:+.1%}, tolerance -{tolerance:.0%})"))
    return checks


def rto_check(rto_seconds: float, objective: float) -> Check:
    return Check("rto objective", rto_seconds <= objective,
                 f"restored and validated in {rto_seconds:.1f}s; the objective is {objective:g}s")


@dataclass
class DrillResult:
    """The outcome of one drill: its verdict, timings and every check (to_json for the catalog)."""

    cluster: str
    kind: str
    started_at: float
    finished_at: float = 0.0
    passed: bool = False
    restore_point: str | None = None
    restore_point_lsn: str | None = None
    backup_id: str | None = None
    reached_lsn: str | None = None
    restore_seconds: float | None = None
    validation_seconds: float | None = None
    rto_seconds: float | None = None
    rto_objective: float = 0.0
    thresholds: dict[str, float] = field(default_factory=dict)
    accuracy: float | None = None
    completeness: float | None = None
    writers_blocked_ms: float | None = None
    timing: dict[str, float] = field(default_factory=dict)  # restore_bytes/seconds, wal_bytes, replay_seconds
    checks: list[Check] = field(default_factory=list)
    tables: list[TableComparison] = field(default_factory=list)
    probes: list[ProbeTiming] = field(default_factory=list)
    scratch: str | None = None
    scratch_removed: bool = False
    notes: list[str] = field(default_factory=list)

    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def decide(self) -> bool:
        """Passed when there were checks and none failed."""
        self.passed = bool(self.checks) and not self.failed_checks()
        return self.passed

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["probes"] = [asdict(p) | p.summary() for p in self.probes]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DrillResult:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["checks"] = [Check(**c) for c in data.get("checks", [])]
        values["tables"] = [TableComparison(**t) for t in data.get("tables", [])]
        probe_names = {f.name for f in fields(ProbeTiming)}
        values["probes"] = [ProbeTiming(**{k: v for k, v in p.items() if k in probe_names})
                            for p in data.get("probes", [])]
        return cls(**values)
