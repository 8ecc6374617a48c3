"""The rows of the report: one figure per tool (the median of the runs, or the peak for
memory), keyed so that the targets (bench/targets.py) can pick theirs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.results import SCENARIOS, MiB, Results, median, peak

Values = dict[str, float | None]  # tool -> value


@dataclass(frozen=True)
class Row:
    key: str
    work: str
    values: Values
    unit: str  # "s", "ms" or "MiB"

    def ratio(self, other: str) -> float | None:
        """Lifeboat's value over ``other``'s."""
        lifeboat, theirs = self.values.get("lifeboat"), self.values.get(other)
        if lifeboat is None or not theirs:
            return None
        return lifeboat / theirs


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.0f} ms"
    return f"{value:,.1f} {unit}"


def per_tool(items: dict[str, list], attr: str, pick: Callable[[list[float]], float | None] = median,
             scale: float = 1.0) -> Values:
    return {tool: pick([getattr(item, attr) * scale for item in found])
            for tool, found in items.items()}


def _rss(items: dict[str, list]) -> Values:
    return per_tool(items, "max_rss_kib", peak, 1 / 1024)


def build_rows(results: Results) -> dict[str, Row]:
    rows = [
        Row("full_time", "Full backup, wall clock", per_tool(results.backups, "seconds"), "s"),
        Row("full_cpu", "Full backup, CPU time (user + system)", per_tool(results.backups, "cpu_seconds"),
            "s"),
        Row("full_bytes", "Repository bytes of one full backup",
            per_tool(results.backups, "stored_bytes", scale=1 / MiB), "MiB"),
        Row("full_rss", "Peak memory (max RSS), full backup", _rss(results.backups), "MiB"),
        Row("restore_time", "Restore into an empty directory, wall clock",
            per_tool(results.restores, "seconds"), "s"),
        Row("restore_cpu", "Restore into an empty directory, CPU time",
            per_tool(results.restores, "cpu_seconds"), "s"),
        Row("restore_rss", "Peak memory (max RSS), restore", _rss(results.restores), "MiB"),
        *incremental_rows(results),
        *maintenance_rows(results),
    ]
    if results.push is not None:
        push = results.push
        rows.append(Row("push_ms", "WAL push, median per 16 MiB segment",
                        {tool: median(ms) for tool, ms in push.ms.items()}, "ms"))
        rows.append(Row("push_cpu_ms", "WAL push, median CPU time per segment",
                        {tool: median(ms) for tool, ms in push.cpu_ms.items()}, "ms"))
        count = max((len(ms) for ms in push.ms.values()), default=0)
        rows.append(Row("push_bytes", f"WAL archive bytes for {count} segments",
                        {tool: size / MiB for tool, size in push.bytes.items()}, "MiB"))
    return {row.key: row for row in rows}


def incremental_rows(results: Results) -> list[Row]:
    """The three incremental scenarios, delta and clean restores of the newest, memory."""
    incrementals = results.incrementals
    if not any(any(found.values()) for found in incrementals.values()):
        return []
    rows = []
    for scenario, title in SCENARIOS.items():
        rows += [Row(f"incr_{scenario}_bytes", f"Incremental {title}, repository bytes",
                     per_tool(incrementals[scenario], "stored_bytes", scale=1 / MiB), "MiB"),
                 Row(f"incr_{scenario}_time", f"Incremental {title}, wall clock",
                     per_tool(incrementals[scenario], "seconds"), "s"),
                 Row(f"incr_{scenario}_cpu", f"Incremental {title}, CPU time",
                     per_tool(incrementals[scenario], "cpu_seconds"), "s")]
    every = {tool: [b for found in incrementals.values() for b in found[tool]] for tool in results.tools}
    return [
        *rows,
        Row("delta_time", "Delta restore of the newest incremental over an older copy, wall clock",
            per_tool(results.delta_restores, "seconds"), "s"),
        Row("delta_cpu", "Delta restore, CPU time", per_tool(results.delta_restores, "cpu_seconds"), "s"),
        Row("incr_restore_time", "Restore of the newest incremental into an empty directory, wall clock",
            per_tool(results.incr_restores, "seconds"), "s"),
        Row("incr_rss", "Peak memory (max RSS), incremental backup", _rss(every), "MiB"),
        Row("delta_rss", "Peak memory (max RSS), delta restore", _rss(results.delta_restores), "MiB"),
    ]


def maintenance_rows(results: Results) -> list[Row]:
    rows = []
    titles = {"verify": "Verify (every backup and its WAL)", "expire": "Expire (keep the newest full)"}
    for name, found in results.maintenance.items():
        if any(found.values()):
            rows += [Row(f"{name}_time", f"{titles[name]}, wall clock", per_tool(found, "seconds"), "s"),
                     Row(f"{name}_cpu", f"{titles[name]}, CPU time", per_tool(found, "cpu_seconds"), "s"),
                     Row(f"{name}_rss", f"Peak memory (max RSS), {name}", _rss(found), "MiB")]
    return rows
