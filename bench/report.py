"""The Markdown report of a run (no I/O beyond reading /proc and writing the file)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from bench.method import method_text
from bench.results import SCENARIOS, BackupResult, MiB, RestoreResult, Results
from bench.rows import Row, build_rows, fmt
from bench.targets import targets_section


def markdown_table(rows: list[Row], results: Results) -> str:
    tools = results.tools
    ratio_tools = results.pgbackrests
    head = ["Work", *(results.titles[t] for t in tools),
            *(f"Lifeboat / {results.titles[t].removeprefix('pgBackRest ')}" for t in ratio_tools)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in rows:
        ratios = [row.ratio(t) for t in ratio_tools]
        cells = [row.work, *(fmt(row.values.get(t), row.unit) for t in tools),
                 *("—" if r is None else f"{r:.2f}x" for r in ratios)]
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
    during = ""
    if results.loads:
        loads = sorted(results.loads)
        during = (f"; at the {len(loads)} timed commands: median {loads[len(loads) // 2]:.2f}, "
                  f"max {loads[-1]:.2f}")
    return (f"- Load average (1 min): {results.load_start:.2f} at the start, "
            f"{os.getloadavg()[0]:.2f} at the end{during} (on 2 CPUs, anything much above 2 means "
            "other work competed with the tools: compare CPU times, and ratios within the run)")


def _backups_text(backups: list[BackupResult]) -> str:
    return ", ".join(f"{b.label} {b.seconds:.2f} s / {b.cpu_seconds:.2f} s / {b.stored_bytes / MiB:.1f} MiB "
                     f"/ {b.max_rss_kib / 1024:.0f} MiB" for b in backups) or "—"


def _restores_text(restores: list[RestoreResult]) -> str:
    return ", ".join(f"{r.seconds:.2f} s / {r.cpu_seconds:.2f} s / {r.max_rss_kib / 1024:.0f} MiB"
                     for r in restores) or "—"


def raw_values(results: Results) -> list[str]:
    lines = []
    for tool in results.tools:
        lines.append(f"- {results.titles[tool]}: full backups (time / CPU / bytes / RSS) "
                     f"{_backups_text(results.backups[tool])}; restores (time / CPU / RSS) "
                     f"{_restores_text(results.restores[tool])}")
    for scenario, title in SCENARIOS.items():
        for tool in results.block_tools:
            lines.append(f"- incremental {title}, {results.titles[tool]} (set / time / CPU / bytes / RSS): "
                         f"{_backups_text(results.incrementals[scenario][tool])}")
    lines += [f"- Lifeboat said: `{b.output}`" for scenario in SCENARIOS
              for b in results.incrementals[scenario]["lifeboat"] if b.output]
    lines += [f"- phases of {results.titles[tool]}'s full backup {b.label} ({b.seconds:.2f} s): {b.phases}"
              for tool in results.block_tools for b in results.backups[tool] if b.phases]
    lines += [f"- phases of {results.titles[tool]}'s {b.label} ({title}, {b.seconds:.2f} s): {b.phases}"
              for scenario, title in SCENARIOS.items() for tool in results.block_tools
              for b in results.incrementals[scenario][tool] if b.phases]
    for tool in results.block_tools:
        lines.append(f"- {results.titles[tool]}: delta restores (time / CPU / RSS) "
                     f"{_restores_text(results.delta_restores[tool])}; restores of the incremental "
                     f"into an empty directory {_restores_text(results.incr_restores[tool])}")
    for name, found in results.maintenance.items():
        for tool, done in found.items():
            lines += [f"- {name}, {results.titles[tool]} (time / CPU / RSS): {d.seconds:.2f} s / "
                      f"{d.cpu_seconds:.2f} s / {d.max_rss_kib / 1024:.0f} MiB"
                      + (f" (`{d.output}`)" if d.output else "") for d in done]
    lines += [f"- Lifeboat delta restore vs clean restore, run {n}: {check}"
              for n, check in enumerate(results.delta_checks, 1)]
    data = results.dataset
    if data is not None:
        lines.append(f"- pgbench tps per run: {', '.join(f'{v:,.0f}' for v in data.pgbench_tps)}; "
                     f"appended to grow per run: "
                     f"{', '.join(f'{v / MiB:.1f} MiB' for v in data.appended_bytes)}")
    if results.push is not None:
        for tool, values in results.push.ms.items():
            cpu = results.push.cpu_ms.get(tool, [])
            lines.append(f"- {results.titles[tool]} push per segment (ms wall / CPU): "
                         + ", ".join(f"{v:.0f}/{c:.0f}" for v, c in zip(values, cpu, strict=False)))
    return lines


def data_line(results: Results) -> str:
    data = results.dataset
    grow = "" if data is None else (f" + `grow` {data.grow_bytes / MiB:,.0f} MiB "
                                    f"({data.loaded_rows:,} rows at load) + `hot` {data.hot_rows:,} rows")
    return (f"- Data: pgbench scale {results.scale}{grow} (databases "
            f"{results.database_bytes / MiB:,.0f} MiB); runs: {results.runs} (median)")


def cache_line(results: Results) -> str:
    if results.cold:
        return ("- Page cache: **cold** (`sync` and `echo 3 > /proc/sys/vm/drop_caches` before each "
                "timed backup, restore, verify and expire; WAL pushes warm)")
    return "- Page cache: warm (the data fits in memory; `sync` before each timed command)"


def render(results: Results, segments: int) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = build_rows(results)
    anchor = results.anchor
    lines = [
        "# Lifeboat benchmark",
        "",
        f"- Date: {now}; whole run {results.total_seconds / 60:.1f} min",
        data_line(results),
        f"- Machine: {machine()}",
        f"- Versions: {'; '.join(results.versions)}",
        cache_line(results),
        load_line(results),
        "",
        *targets_section(rows, anchor, results.titles[anchor], results.anchor_block),
        "",
        "## Every measurement",
        "",
        markdown_table(list(rows.values()), results),
        "",
        *(["Noticed during the run:", *(f"- {note}" for note in results.notes), ""]
          if results.notes else []),
        method_text(results, segments),
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
