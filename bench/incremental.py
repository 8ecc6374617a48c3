"""Incremental backups on the same data with Lifeboat and each pgBackRest, then delta restores.

Per run, after the full backups and restores (bench/run.py):

1. nothing changed: quiesce, an incremental with each tool back-to-back;
2. ``pgbench -c 4 -j 2 -T N``, quiesce, an incremental with each tool;
3. append ~54 MiB to ``grow`` + 1000 single-row UPDATEs of ``hot``, quiesce, again each;
4. the newest incremental restored with ``--delta`` into the directory each tool restored
   before, then into an empty directory with each tool; Lifeboat's delta result is
   compared byte for byte with its clean restore.

Run 1 starts with Lifeboat, each later run with the next tool.
"""

from __future__ import annotations

import json
import shutil

from bench.backup_restore import restore, restore_command, take_backup, warm_page_cache
from bench.dataset import Dataset, append_and_update, quiesce, run_pgbench
from bench.environment import CLUSTER, Bench, BenchError, log, run
from bench.files import tree_bytes, tree_differences
from bench.results import SCENARIOS, BackupResult, MiB, RestoreResult, Results
from bench.timing import measured
from bench.tool_commands import lifeboat_cmd


def lifeboat_backups(bench: Bench) -> dict[str, dict]:
    """``lifeboat info --output json``: this cluster's backups by id."""
    done = run(bench, lifeboat_cmd(bench.paths.lb_config, "info", "--output", "json"))
    clusters = json.loads(done.stdout)["clusters"]
    return {b["id"]: b for c in clusters if c["name"] == CLUSTER for b in c["backups"]}


def check_lifeboat_incr(bench: Bench, taken: BackupResult, base: str | None, notes: list[str]) -> None:
    """Cross-check what ``info`` says about an incremental with what the harness measured."""
    info = lifeboat_backups(bench).get(taken.label)
    if info is None:
        notes.append(f"`lifeboat info --output json` does not list backup {taken.label}")
        return
    manifest = tree_bytes(taken.location)
    lists = int(info.get("list_bytes") or 0)
    expected = int(info.get("stored_bytes") or 0) + lists + manifest
    if abs(expected - taken.stored_bytes) > 4096:
        notes.append(f"backup {taken.label}: packs + lists + manifest on disk grew by "
                     f"{taken.stored_bytes:,} B, but info's stored_bytes {info.get('stored_bytes'):,} "
                     f"+ list_bytes {lists:,} + manifest {manifest:,} = {expected:,} B")
    if info.get("type") != "incr":
        notes.append(f"backup {taken.label} (`backup --type incr`) has type {info.get('type')!r}")
    if base is not None and info.get("base") != base:
        notes.append(f"incremental {taken.label} has base {info.get('base')!r}, expected {base!r} "
                     "(the newest backup before it)")
    log(f"  lifeboat info: stored {int(info.get('stored_bytes') or 0) / MiB:.1f} MiB + block lists "
        f"{lists / MiB:.2f} MiB + manifest {manifest / MiB:.2f} MiB; "
        f"reused {int(info.get('reused_bytes') or 0) / MiB:.1f} MiB "
        f"of {int(info.get('size_bytes') or 0) / MiB:.1f} MiB")


def incremental_pair(bench: Bench, results: Results, scenario: str, order: tuple[str, ...],
                     run_no: int, newest: dict[str, str]) -> dict[str, BackupResult]:
    """Quiesce, then an incremental with each tool in ``order``; ``newest`` = each tool's
    newest backup label before (updated)."""
    quiesce(bench)
    taken: dict[str, BackupResult] = {}
    for tool in order:
        log(f"run {run_no}/{bench.runs}: {tool} incremental {SCENARIOS[scenario]}")
        taken[tool] = take_backup(bench, tool, run_no, "incr")
        log(f"  {taken[tool].label}: {taken[tool].seconds:.2f}s (CPU {taken[tool].cpu_seconds:.2f}s), "
            f"{taken[tool].stored_bytes / MiB:.1f} MiB, max RSS {taken[tool].max_rss_kib // 1024} MiB")
        if tool == "lifeboat":
            check_lifeboat_incr(bench, taken[tool], newest.get(tool), results.notes)
        newest[tool] = taken[tool].label
        results.incrementals[scenario][tool].append(taken[tool])
    return taken


def delta_restore(bench: Bench, backup: BackupResult, warm_bytes: int) -> RestoreResult:
    """``restore --delta`` of ``backup`` over the copy in ``restore/<tool>``."""
    target = bench.paths.restore / backup.tool
    if not (target / "global" / "pg_control").exists():
        raise BenchError(f"no earlier {backup.tool} restore in {target} to update with --delta")
    warm_page_cache(bench, warm_bytes)
    result = measured(bench, restore_command(bench, backup, target, delta=True))
    if not (target / "global" / "pg_control").exists():
        raise BenchError(f"{backup.tool} delta restore left no global/pg_control in {target}")
    return RestoreResult(backup.tool, result.seconds, result.max_rss_kib, tree_bytes(target),
                         result.cpu_seconds)


def compare_delta(bench: Bench, results: Results) -> None:
    """Lifeboat's delta-restored directory against its clean restore of the same backup."""
    delta, clean = bench.paths.restore / "lifeboat", bench.paths.restore / "lifeboat-clean"
    diffs = tree_differences(delta, clean)
    if diffs:
        shown = "; ".join(diffs[:10]) + (f"; ... {len(diffs) - 10} more" if len(diffs) > 10 else "")
        results.delta_checks.append(f"{len(diffs)} differences: {shown}")
        results.notes.append(f"`lifeboat restore --delta` left a directory that differs from a clean "
                             f"restore of the same backup: {shown}")
        log(f"  lifeboat delta restore differs from the clean restore: {shown}")
    else:
        results.delta_checks.append("identical (every file, byte for byte)")
        log("  lifeboat delta restore is identical to the clean restore")
    shutil.rmtree(clean)


def restore_phase(bench: Bench, results: Results, newest: dict[str, BackupResult],
                  order: tuple[str, ...], run_no: int, warm_bytes: int) -> None:
    """Delta restores of the newest incrementals, then clean restores of them, both timed."""
    for tool in order:
        log(f"run {run_no}/{bench.runs}: {tool} delta restore of {newest[tool].label}")
        done = delta_restore(bench, newest[tool], warm_bytes)
        results.delta_restores[tool].append(done)
        log(f"  {done.seconds:.2f}s, max RSS {done.max_rss_kib // 1024} MiB")
    for tool in order:
        log(f"run {run_no}/{bench.runs}: {tool} restore of {newest[tool].label} into an empty directory")
        done = restore(bench, newest[tool], warm_bytes, name=f"{tool}-clean", keep=tool == "lifeboat")
        results.incr_restores[tool].append(done)
        log(f"  {done.seconds:.2f}s, max RSS {done.max_rss_kib // 1024} MiB")
    compare_delta(bench, results)


def incremental_benchmark(bench: Bench, results: Results, data: Dataset, warm_bytes: int) -> None:
    """The three scenarios and the restores, ``bench.runs`` times."""
    tools = results.block_tools
    newest = {tool: results.backups[tool][-1].label for tool in tools}
    for run_no in range(1, bench.runs + 1):
        shift = (run_no - 1) % len(tools)
        order = tools[shift:] + tools[:shift]
        incremental_pair(bench, results, "nochange", order, run_no, newest)
        run_pgbench(bench, data)
        incremental_pair(bench, results, "pgbench", order, run_no, newest)
        append_and_update(bench, data, seed=run_no)
        taken = incremental_pair(bench, results, "append", order, run_no, newest)
        restore_phase(bench, results, taken, order, run_no, warm_bytes)
