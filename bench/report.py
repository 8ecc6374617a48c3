"""Results of a benchmark run and their Markdown report (no I/O beyond reading /proc)."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

TOOLS = ("lifeboat", "pgbackrest", "basebackup")
MiB = 1024 * 1024


@dataclass(frozen=True)
class BackupResult:
    tool: str
    label: str  # Lifeboat backup id, pgBackRest set label, pg_basebackup directory name
    seconds: float
    stored_bytes: int
    max_rss_kib: int
    location: Path


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


@dataclass
class Results:
    scale: int
    runs: int
    load_start: float
    backups: dict[str, list[BackupResult]] = field(default_factory=lambda: {t: [] for t in TOOLS})
    restores: dict[str, list[RestoreResult]] = field(default_factory=lambda: {t: [] for t in TOOLS})
    push: PushResult | None = None
    verified_rows: int = 0
    versions: list[str] = field(default_factory=list)
    database_bytes: int = 0
    total_seconds: float = 0.0


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
              pick: Callable[[list[float]], float | None], scale: float = 1.0) -> Values:
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
    ]
    if results.push is not None:
        push = results.push
        rows.append(Row("WAL push, median per 16 MiB segment",
                        (median(push.lifeboat_ms), median(push.pgbackrest_ms), None), "ms",
                        "<= 1.2x", limit=1.2))
        rows.append(Row(f"WAL archive bytes for {len(push.lifeboat_ms)} segments",
                        (push.lifeboat_bytes / MiB, push.pgbackrest_bytes / MiB, None), "MiB", "—"))
    return rows


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


def raw_values(results: Results) -> list[str]:
    lines = []
    for tool in TOOLS:
        backups = ", ".join(f"{b.seconds:.2f} s / {b.stored_bytes / MiB:.1f} MiB / "
                            f"{b.max_rss_kib / 1024:.0f} MiB" for b in results.backups[tool])
        restores = ", ".join(f"{r.seconds:.2f} s / {r.max_rss_kib / 1024:.0f} MiB"
                             for r in results.restores[tool])
        lines.append(f"- {tool}: backups (time / bytes / RSS) {backups}; "
                     f"restores (time / RSS) {restores}")
    if results.push is not None:
        for tool in ("lifeboat", "pgbackrest"):
            values = getattr(results.push, f"{tool}_ms")
            lines.append(f"- {tool} push per segment (ms): " + ", ".join(f"{v:.0f}" for v in values))
    return lines


METHOD = """\
How it was measured (details in bench/README.md):
- One PostgreSQL cluster (`initdb -k`; wal_level replica, archive_mode on, shared_buffers 512MB,
  max_wal_size 4GB, checkpoint_timeout 15min) archives every segment into both repositories:
  `lifeboat ... wal-push %p && pgbackrest ... archive-push %p`.
- Backups and restores: wall clock of the whole command run as `postgres`, after a `sync`, page
  cache warm; median of the runs. A run takes the three backups, then restores them; run 1
  goes Lifeboat, pgBackRest, pg_basebackup, and each later run starts with the next tool.
  The archive_command pushes to Lifeboat first, so pgBackRest's wait for the backup's last
  segment includes Lifeboat's push of it.
- Lifeboat: `lifeboat backup` (jobs: default = CPUs), zstd level 3; bytes = the new packs plus
  the manifest. Restore: `lifeboat restore --pgdata DIR --backup ID`.
- pgBackRest: `pgbackrest --type=full backup` (process-max=2, compress-type=zst, level 3,
  start-fast=y); bytes = the backup set directory. Restore: `pgbackrest restore --set=ID
  --pg1-path=DIR`.
- pg_basebackup: `pg_basebackup -Ft -Z client-zstd:3 -X fetch -c fast` (client-side zstd, the
  WAL inside base.tar.zst); bytes = the output directory (with backup_manifest).
  Restore: `tar --zstd -xf base.tar.zst -C DIR && sync -f DIR` (tar alone does not fsync).
- Before each timed restore, a scratch file the size of the database is written and deleted
  (untimed): on this VM the first big write after an idle spell costs extra kernel time.
- Repository bytes leave out both WAL archives. Sizes are apparent file sizes.
- Peak memory: max RSS of the largest single process of the command (GNU time `%M`; this
  covers pgBackRest's worker processes, Lifeboat uses threads). pg_basebackup: client only.
- WAL push: {segments} complete 16 MiB segments of pgbench_accounts updates, taken out of
  Lifeboat's archive with `wal-get`, pushed one command per segment into a fresh Lifeboat
  repository (cluster.json copied from the main one) and a fresh pgBackRest stanza. Each
  command is started by the harness directly as `postgres` (fork, setuid, exec; no runuser)
  and timed from spawn to exit; the tools alternate going first. Lifeboat's cache of the
  validated configuration is warmed beforehand, as it is for a running archiver.
- Check: Lifeboat's restored copy, started once (`restore --start --archive-mode off`),
  had {rows:,} rows in pgbench_accounts.
"""


def render(results: Results, segments: int) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Lifeboat benchmark",
        "",
        f"- Date: {now}; whole run {results.total_seconds / 60:.1f} min",
        f"- pgbench scale {results.scale} (databases {results.database_bytes / MiB:,.0f} MiB); "
        f"runs: {results.runs} (median)",
        f"- Machine: {machine()}",
        f"- Versions: {'; '.join(results.versions)}",
        load_line(results),
        "",
        markdown_table(build_rows(results)),
        "",
        METHOD.format(segments=segments, rows=results.verified_rows),
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
