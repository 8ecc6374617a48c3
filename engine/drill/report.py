"""The drill report in Markdown: an executive summary, the detailed log of every check,
tables and probes, the trend over past drills, and how the comparison was made
consistent. Kept with the drill in the catalog as compliance evidence."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.drill.model import DrillResult, ProbeTiming, percent


def when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def headline(result: DrillResult) -> str:
    verdict = "PASSED" if result.passed else "FAILED"
    failed = result.failed_checks()
    tail = f"; failed: {', '.join(c.name for c in failed[:5])}" if failed else ""
    rto = f", RTO {duration(result.rto_seconds)}" if result.rto_seconds is not None else ""
    return f"{result.kind} restore drill of cluster '{result.cluster}' {verdict}{rto}{tail}"


def _share(value: float | None) -> str:
    return "-" if value is None else percent(value)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.2f} ms"


def summary(result: DrillResult) -> list[str]:
    rto = result.rto_seconds
    objective = result.rto_objective
    met = "-" if rto is None else ("met" if rto <= objective else "MISSED")
    failed = result.failed_checks()
    lines = [
        f"**Result: {'PASSED' if result.passed else 'FAILED'}**", "",
        "| | |", "|---|---|",
        f"| Cluster | {cell(result.cluster)} |",
        f"| Kind | {result.kind} |",
        f"| Started / finished | {when(result.started_at)} / {when(result.finished_at)} |",
        f"| Measured RTO | {duration(rto)} (objective {duration(objective)}: {met}) |",
        f"| Restore / validation | {duration(result.restore_seconds)} / "
        f"{duration(result.validation_seconds)} |",
        f"| Backup restored | {cell(result.backup_id or '-')} |",
        f"| Recovery point | {cell(result.restore_point or '-')} at LSN {result.restore_point_lsn or '-'} |",
        f"| Writers blocked for the reference | "
        f"{'-' if result.writers_blocked_ms is None else f'{result.writers_blocked_ms:.0f} ms'} |",
        f"| Accuracy | {_share(result.accuracy)} (threshold "
        f"{_share(result.thresholds.get('accuracy'))}) |",
        f"| Completeness | {_share(result.completeness)} (threshold "
        f"{_share(result.thresholds.get('completeness'))}) |",
        f"| Checks | {len(result.checks) - len(failed)} passed, {len(failed)} failed |",
        f"| Scratch cluster | {cell(result.scratch or '-')}: "
        f"{'removed' if result.scratch_removed else 'NOT removed' if result.scratch else '-'} |",
        "",
    ]
    if failed:
        lines.append("Failed checks:")
        lines += [f"- **{cell(c.name)}**: {cell(c.detail)}" for c in failed]
    else:
        lines.append("Failed checks: none.")
    lines += [f"- Note: {cell(note)}" for note in result.notes]
    return lines


def log(result: DrillResult) -> list[str]:
    lines = ["| # | Check | Result | Time | Detail |", "|---|---|---|---|---|"]
    for number, check in enumerate(result.checks, 1):
        lines.append(f"| {number} | {cell(check.name)} | {'pass' if check.passed else '**FAIL**'} | "
                     f"{check.seconds:.2f} s | {cell(check.detail)} |")
    return lines


def tables(result: DrillResult) -> list[str]:
    if not result.tables:
        return ["No tables were compared."]
    lines = ["| Table | Rows at the restore point | Rows restored | Checksum |", "|---|---|---|---|"]
    for t in result.tables:
        checksum = f"error: {cell(t.error)}" if t.error else (
            "match" if t.restored_checksum == t.expected_checksum else "**DIFFERS**")
        restored = "-" if t.restored_rows is None else t.restored_rows
        lines.append(f"| {cell(t.table)} | {t.expected_rows} | {restored} | {checksum} |")
    return lines


def probes(result: DrillResult) -> list[str]:
    if not result.probes:
        return ["No probes are configured."]
    lines = ["| Probe | Database | Source median | Restored median | Source runs/s | Restored runs/s |",
             "|---|---|---|---|---|---|"]
    for p in result.probes:
        s = p.summary()
        rate = [("-" if s[k] is None else f"{s[k]:.1f}")
                for k in ("baseline_throughput", "restored_throughput")]
        lines.append(f"| {cell(p.name)} | {cell(p.database)} | {_ms(s['baseline_median'])} | "
                     f"{_ms(s['restored_median'])} | {rate[0]} | {rate[1]} |"
                     + (f" {cell(p.error)}" if p.error else ""))
    return lines


def trend(result: DrillResult, history: list[dict[str, Any]]) -> list[str]:
    """One row per past drill (oldest first), then this one."""
    names = [p.name for p in result.probes]
    rows = [*history, result.to_json() | {"id": "this drill"}]
    header = ["Drill", "Started", "Kind", "Result", "RTO", "Restore", "Validation", "Accuracy",
              "Completeness", "Failed checks", *[f"{n} (source / restored)" for n in names]]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        failed = [c["name"] for c in row.get("checks", []) if not c.get("passed")]
        probe_cells = []
        for name in names:
            found = next((p for p in row.get("probes", []) if p.get("name") == name), None)
            if found is None:
                probe_cells.append("-")
                continue
            base = found.get("baseline_median", ProbeTiming.median_of(found.get("baseline") or []))
            restored = found.get("restored_median", ProbeTiming.median_of(found.get("restored") or []))
            probe_cells.append(f"{_ms(base)} / {_ms(restored)}")
        values = [row.get("id", "-"), when(row.get("started_at")), row.get("kind", "-"),
                  "pass" if row.get("passed") else "FAIL", duration(row.get("rto_seconds")),
                  duration(row.get("restore_seconds")), duration(row.get("validation_seconds")),
                  _share(row.get("accuracy")), _share(row.get("completeness")),
                  ", ".join(failed) or "none", *probe_cells]
        lines.append("| " + " | ".join(cell(v) for v in values) + " |")
    return lines


METHOD = (
    "The reference values were read on the source in a snapshot taken while every compared table "
    "was locked in SHARE mode (no writer could hold uncommitted changes), exported, and imported "
    "by a reader session before the locks were released; the restore point was created while the "
    "locks were held. Recovery to that named restore point therefore replays exactly the "
    "transactions the snapshot sees. Row counts and order-independent checksums (sum of 64-bit "
    "MD5 prefixes of each row's text) were computed in that snapshot on the source and on the "
    "restored copy, which ran isolated (no archiving, no logical replication workers, loopback "
    "only) and was removed afterwards.")


def render(result: DrillResult, history: list[dict[str, Any]]) -> str:
    """The whole report. ``history``: past drills' ``to_json()`` dicts, oldest first."""
    lines = [f"# Restore drill report: cluster {cell(result.cluster)}, {result.kind} drill", "",
             f"{when(result.started_at)}", "", "## Executive summary", "", *summary(result), "",
             "## Detailed log", "", *log(result), "", "## Tables compared", "", *tables(result), "",
             "## Probes", "", *probes(result), "", f"## Trend ({len(history) + 1} drills)", "",
             *trend(result, history), "", "## Method", "", METHOD, ""]
    return "\n".join(lines)
