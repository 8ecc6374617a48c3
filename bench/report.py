"""Results of a benchmark run and their Markdown report (no I/O beyond reading /proc)."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench.method import METHOD
from bench.peers import Measured, peers_section

if TYPE_CHECKING:
    from bench.dataset import Dataset

TOOLS = ("lifeboat", "pgbackrest", "basebackup")
SCENARIOS = {"pgbench": "after pgbench", "append": "append-mostly"}
MiB = 1024 * 1024


@dataclass(frozen=True)
class BackupResult:
    tool: str
    label: str  # Lifeboat backup id, pgBackRest set label, pg_basebackup directory name
    seconds: float
    stored_bytes: int
    max_rss_kib: int
    location: Path
    output: str = ""  # Lifeboat's summary line


@dataclass(frozen=True)
class RestoreResult:
    tool: str
    seconds: float
    max_rss_kib: int
    restored_bytes: int


@dataclass
class PushResult:
    lifeboat_ms: list[float] = field(default_factory=list)
    pgbackrest_ms: list[float] = field(default_factory=list)
    lifeboat_bytes: int = 0
    pgbackrest_bytes: int = 0


def _by_tool() -> dict:
    return {tool: [] for tool in TOOLS}


@dataclass
class Results:
    scale: int
    runs: int
    load_start: float
    backups: dict[str, list[BackupResult]] = field(default_factory=_by_tool)
    restores: dict[str, list[RestoreResult]] = field(default_factory=_by_tool)
    # scenario (SCENARIOS) -> tool -> the incrementals of each run
    incrementals: dict[str, dict[str, list[BackupResult]]] = field(
        default_factory=lambda: {scenario: _by_tool() for scenario in SCENARIOS})
    delta_restores: dict[str, list[RestoreResult]] = field(default_factory=_by_tool)
    incr_restores: dict[str, list[RestoreResult]] = field(default_factory=_by_tool)  # empty dir
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


Values = tuple[float | None, float | None, float | None]  # Lifeboat, pgBackRest, pg_basebackup


@dataclass(frozen=True)
class Row:
    """One line of the table; ``limit`` bounds the ratio, ``absolute`` Lifeboat's own value."""

    work: str
    values: Values
    unit: str
    target: str
    limit: float | None = None
    absolute: float | None = None

    def ratio(self) -> float | None:
        lifeboat, pgbackrest, _ = self.values
        if lifeboat is None or not pgbackrest:
            return None
        return lifeboat / pgbackrest

    def met(self) -> str:
        lifeboat, ratio = self.values[0], self.ratio()
        if self.absolute is not None and lifeboat is not None:
            ok = lifeboat < self.absolute
        elif self.limit is not None and ratio is not None:
            ok = ratio <= self.limit
        else:
            return ""
        return "yes" if ok else "**no**"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def peak(values: list[float]) -> float | None:
    return max(values, default=None)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.0f} ms"
    return f"{value:,.1f} {unit}"


def _per_tool(items: dict[str, list[BackupResult]] | dict[str, list[RestoreResult]], attr: str,
              pick: Callable[[list[float]], float | None] = median, scale: float = 1.0) -> Values:
    lifeboat, pgbackrest, basebackup = (
        pick([getattr(item, attr) * scale for item in items.get(tool, [])]) for tool in TOOLS)
    return lifeboat, pgbackrest, basebackup


def build_rows(results: Results) -> list[Row]:
    backups, restores = results.backups, results.restores
    rows = [
        Row("Full backup, wall clock", _per_tool(backups, "seconds", median), "s",
            "<= 0.8x", limit=0.8),
        Row("Repository bytes of one full backup", _per_tool(backups, "stored_bytes", median, 1 / MiB),
            "MiB", "<= 1.05x", limit=1.05),
        Row("Peak memory (max RSS), backup", _per_tool(backups, "max_rss_kib", peak, 1 / 1024),
            "MiB", "< 300 MiB", absolute=300),
        Row("Restore into an empty directory, wall clock", _per_tool(restores, "seconds", median),
            "s", "<= 1.0x", limit=1.0),
        Row("Peak memory (max RSS), restore", _per_tool(restores, "max_rss_kib", peak, 1 / 1024),
            "MiB", "—"),
        *incremental_rows(results),
    ]
    if results.push is not None:
        push = results.push
        rows.append(Row("WAL push, median per 16 MiB segment",
                        (median(push.lifeboat_ms), median(push.pgbackrest_ms), None), "ms",
                        "<= 1.2x", limit=1.2))
        rows.append(Row(f"WAL archive bytes for {len(push.lifeboat_ms)} segments",
                        (push.lifeboat_bytes / MiB, push.pgbackrest_bytes / MiB, None), "MiB", "—"))
    return rows


def incremental_rows(results: Results) -> list[Row]:
    """Issue 3's rows: incrementals after pgbench and append-mostly, delta restore, memory."""
    pgbench, append = results.incrementals["pgbench"], results.incrementals["append"]
    if not any(pgbench.values()):
        return []
    both = {tool: pgbench[tool] + append[tool] for tool in TOOLS}
    delta = _per_tool(results.delta_restores, "seconds")
    clean = _per_tool(results.incr_restores, "seconds")
    versus = f" (Lifeboat: {delta[0] / clean[0]:.2f}x its clean restore)" if delta[0] and clean[0] else ""
    return [
        Row("Incremental after pgbench, repository bytes",
            _per_tool(pgbench, "stored_bytes", scale=1 / MiB), "MiB", "<= 1.0x", limit=1.0),
        Row("Incremental after pgbench, wall clock", _per_tool(pgbench, "seconds"), "s", "<= 1.0x",
            limit=1.0),
        Row("Incremental append-mostly, repository bytes",
            _per_tool(append, "stored_bytes", scale=1 / MiB), "MiB", "<= 0.25x", limit=0.25),
        Row("Incremental append-mostly, wall clock", _per_tool(append, "seconds"), "s", "report"),
        Row("Delta restore of the newest incremental over the earlier restore, wall clock", delta, "s",
            "report" + versus),
        Row("Restore of the newest incremental into an empty directory, wall clock", clean, "s",
            "report"),
        Row("Peak memory (max RSS), incremental backup", _per_tool(both, "max_rss_kib", peak, 1 / 1024),
            "MiB", "< 300 MiB", absolute=300),
    ]


def peer_figures(results: Results) -> Measured:
    """Lifeboat's and pgBackRest 2.45's medians for the figures PEERS.md gives."""
    figures: Measured = {}
    sources = {"full": results.backups, **results.incrementals}
    for name, backups in sources.items():
        lifeboat, pgbackrest, _ = _per_tool(backups, "seconds")
        figures[f"{name}_time"] = (lifeboat, pgbackrest)
        lifeboat, pgbackrest, _ = _per_tool(backups, "stored_bytes", scale=1 / MiB)
        figures[f"{name}_bytes"] = (lifeboat, pgbackrest)
    lifeboat, pgbackrest, _ = _per_tool(results.incr_restores, "seconds")
    figures["restore_time"] = (lifeboat, pgbackrest)
    return figures


def markdown_table(rows: list[Row]) -> str:
    lines = ["| Work | Lifeboat | pgBackRest | pg_basebackup | Lifeboat / pgBackRest | Target | Met |",
             "|---|---:|---:|---:|---:|---|---|"]
    for row in rows:
        ratio = row.ratio()
        cells = [row.work, *(_fmt(v, row.unit) for v in row.values),
                 "—" if ratio is None else f"{ratio:.2f}x", row.target, row.met()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> str:
    """CPUs, memory and kernel of this machine, in one line."""
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    kib = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:")), 0)
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
               "unknown CPU")
    uname = os.uname()
    return (f"{os.cpu_count()} CPUs (nproc; {cpu}), {kib / 1024 / 1024:.1f} GiB RAM, "
            f"{uname.sysname} {uname.release}")


def load_line(results: Results) -> str:
    return (f"- Load average (1 min): {results.load_start:.2f} at the start, "
            f"{os.getloadavg()[0]:.2f} at the end (other work on the machine adds noise)")


def _backups_text(backups: list[BackupResult]) -> str:
    return ", ".join(f"{b.label} {b.seconds:.2f} s / {b.stored_bytes / MiB:.1f} MiB / "
                     f"{b.max_rss_kib / 1024:.0f} MiB" for b in backups)


def _restores_text(restores: list[RestoreResult]) -> str:
    return ", ".join(f"{r.seconds:.2f} s / {r.max_rss_kib / 1024:.0f} MiB" for r in restores)


def raw_values(results: Results) -> list[str]:
    lines = []
    for tool in TOOLS:
        lines.append(f"- {tool}: full backups (time / bytes / RSS) "
                     f"{_backups_text(results.backups[tool])}; restores (time / RSS) "
                     f"{_restores_text(results.restores[tool])}")
    for scenario, title in SCENARIOS.items():
        for tool in TOOLS[:2]:
            lines.append(f"- incremental {title}, {tool} (set / time / bytes / RSS): "
                         f"{_backups_text(results.incrementals[scenario][tool])}")
    lines += [f"- Lifeboat said: `{b.output}`" for scenario in SCENARIOS
              for b in results.incrementals[scenario]["lifeboat"] if b.output]
    for tool in TOOLS[:2]:
        lines.append(f"- {tool}: delta restores (time / RSS) {_restores_text(results.delta_restores[tool])}; "
                     f"restores of the incremental into an empty directory "
                     f"{_restores_text(results.incr_restores[tool])}")
    lines += [f"- Lifeboat delta restore vs clean restore, run {n}: {check}"
              for n, check in enumerate(results.delta_checks, 1)]
    data = results.dataset
    if data is not None:
        lines.append(f"- pgbench tps per run: {', '.join(f'{v:,.0f}' for v in data.pgbench_tps)}; "
                     f"appended to grow per run: "
                     f"{', '.join(f'{v / MiB:.1f} MiB' for v in data.appended_bytes)}")
    if results.push is not None:
        for tool in ("lifeboat", "pgbackrest"):
            values = getattr(results.push, f"{tool}_ms")
            lines.append(f"- {tool} push per segment (ms): " + ", ".join(f"{v:.0f}" for v in values))
    return lines


def data_line(results: Results) -> str:
    data = results.dataset
    grow = "" if data is None else (f" + `grow` {data.grow_bytes / MiB:,.0f} MiB "
                                    f"({data.loaded_rows:,} rows at load) + `hot` {data.hot_rows:,} rows")
    return (f"- Data: pgbench scale {results.scale}{grow} (databases "
            f"{results.database_bytes / MiB:,.0f} MiB); runs: {results.runs} (median)")


def render(results: Results, segments: int) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    checks = ", ".join(f"{name} {value:,}" for name, value in results.verified.items()) or "(no check)"
    grow_mib = results.dataset.grow_bytes / MiB if results.dataset else 0.0
    lines = [
        "# Lifeboat benchmark",
        "",
        f"- Date: {now}; whole run {results.total_seconds / 60:.1f} min",
        data_line(results),
        f"- Machine: {machine()}",
        f"- Versions: {'; '.join(results.versions)}",
        load_line(results),
        "",
        markdown_table(build_rows(results)),
        "",
        *peers_section(peer_figures(results)),
        "",
        *(["Noticed during the run:", *(f"- {note}" for note in results.notes), ""]
          if results.notes else []),
        METHOD.format(segments=segments, checks=checks, scale=results.scale, grow_mib=grow_mib,
                      pgbench_seconds=results.pgbench_seconds, append_mb=results.append_mb),
        "Raw values:",
        *raw_values(results),
        "",
    ]
    return "\n".join(lines)


def write_report(text: str, out: Path) -> None:
    """Write ``text`` to ``out`` through a temporary file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
