"""The targets Lifeboat is held to, against the newest pgBackRest with block incremental and
bundling (issue 17, and the target column of /work/shared/PEERS.md), and the report's table
of them: ratio to the anchor build measured in the same run, target, met or not."""

from __future__ import annotations

from dataclasses import dataclass

from bench.rows import Row, fmt


@dataclass(frozen=True)
class Target:
    key: str  # the row of the measurements (bench/rows.py)
    limit: float  # Lifeboat / anchor at most this; or, with ``mib``, Lifeboat's value in MiB
    source: str
    mib: bool = False

    @property
    def cpu_key(self) -> str | None:
        """The row of the same work's CPU time, for a time target."""
        for suffix, cpu in (("_time", "_cpu"), ("_ms", "_cpu_ms")):
            if self.key.endswith(suffix):
                return self.key.removesuffix(suffix) + cpu
        return None


TARGETS = (
    Target("full_time", 0.75, "issue 17"),
    Target("full_bytes", 1.00, "PEERS.md"),
    Target("restore_time", 0.70, "issue 17"),
    Target("incr_pgbench_bytes", 0.85, "issue 17 (keep)"),
    Target("incr_pgbench_time", 0.70, "issue 17 (keep)"),
    Target("incr_append_bytes", 0.90, "issue 17"),
    Target("incr_append_time", 0.90, "issue 17"),
    Target("delta_time", 0.90, "issue 17"),
    Target("incr_restore_time", 0.70, "PEERS.md"),
    Target("push_ms", 1.00, "issue 17"),
    Target("full_rss", 128, "issue 17", mib=True),
    Target("incr_rss", 128, "issue 17", mib=True),
)


def _met(target: Target, row: Row, anchor: str) -> tuple[str, str]:
    """(ratio text, met) for one target."""
    ratio = row.ratio(anchor)
    ratio_text = "—" if ratio is None else f"{ratio:.2f}x"
    if target.mib:
        value = row.values.get("lifeboat")
        ok = None if value is None else value <= target.limit
    else:
        ok = None if ratio is None else ratio <= target.limit
    return ratio_text, "—" if ok is None else ("yes" if ok else "**no**")


def targets_section(rows: dict[str, Row], anchor: str, title: str, block: bool) -> list[str]:
    """The Markdown section: one line per target this run measured."""
    lines = [
        f"## Targets against {title}",
        "",
        "Issue 17's targets (and PEERS.md's for full-backup bytes and the restore of the newest",
        "incremental), as Lifeboat / this pgBackRest within this run; memory targets are Lifeboat's",
        "own peak RSS and hold at every size. \"CPU\" is the ratio of CPU times (user + system) of",
        "the same commands: it says what the wall-clock ratio would be without waits, and it moves",
        "far less than wall clocks when other work shares the machine.",
    ]
    if not block:
        lines += ["", f"**Note:** the targets are set against pgBackRest 2.59.1 with block incremental "
                      f"and bundling; this run's {title} is not that, so they say little here."]
    lines += ["", f"| Work | Lifeboat | {title} | Lifeboat / it | CPU | Target | Source | Met |",
              "|---|---:|---:|---:|---:|---|---|---|"]
    for target in TARGETS:
        row = rows.get(target.key)
        if row is None:
            continue
        ratio, met = _met(target, row, anchor)
        limit = f"<= {target.limit:g} MiB" if target.mib else f"<= {target.limit:.2f}x"
        cpu_row = rows.get(target.cpu_key or "")
        cpu = cpu_row.ratio(anchor) if cpu_row is not None else None
        cells = [row.work, fmt(row.values.get("lifeboat"), row.unit),
                 fmt(row.values.get(anchor), row.unit), ratio, "—" if cpu is None else f"{cpu:.2f}x",
                 limit, target.source, met]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
