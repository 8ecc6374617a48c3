#!/usr/bin/env python3
"""Lifeboat against pgBackRest and pg_basebackup on one pgbench database.

Run as root with the project's virtualenv (see bench/README.md)::

    /work/main/.venv/bin/python bench/run.py [--scale 100] [--grow-mb 1600] [--runs 1] \\
        [--pgbench-seconds 30] [--append-mb 54] [--workdir /var/tmp/lifeboat-bench] \\
        [--out bench/results/latest.md] [--keep]

One throw-away PostgreSQL cluster (pgbench tables + an append-only table `grow` + a
10k-row table `hot`, PEERS.md's workload) archives every WAL segment into both a Lifeboat
repository and a pgBackRest repository. Full backups, restores into empty directories,
incrementals after pgbench and after appends, delta restores and per-segment WAL pushes
are timed; the result is a Markdown table on stdout and in ``--out``. Every command
that touches PostgreSQL's files runs as the OS user ``postgres`` (a direct setuid in the
child, no ``runuser``). Progress goes to stderr. This module parses the arguments, runs
the steps in order and cleans up; the steps live in the other modules of ``bench``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

if not __package__:  # run as a script (python bench/run.py): make the package `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.backup_restore import BACKUPS, restore, verify_lifeboat_restore
from bench.cluster import connect, query, set_up
from bench.dataset import Dataset, load_data
from bench.environment import (
    LIFEBOAT,
    PGBACKREST,
    REPO_ROOT,
    STARTED_AT,
    Bench,
    Paths,
    available_memory,
    find_pg_bin,
    free_port,
    log,
    run,
)
from bench.harness import execute, preflight
from bench.incremental import INCR_TOOLS, incremental_benchmark
from bench.report import TOOLS, MiB, Results, render
from bench.wal_push import WAL_SEGMENTS, wal_push_benchmark

MARKER = ".lifeboat-bench"


def source_state() -> str:
    """The commit Lifeboat was run from, and whether its code differed from it."""
    git = ["git", "-C", str(REPO_ROOT)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        changed = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--",
                                  ".", ":(exclude)bench"], capture_output=True, text=True)
    except OSError:
        return "not a git checkout"
    if head.returncode != 0:
        return "not a git checkout"
    files = [line[3:] for line in changed.stdout.splitlines()]
    return f"git {head.stdout.strip()}" + (f" + uncommitted changes in {', '.join(files)}" if files else "")


def tool_versions(bench: Bench, pg_version: str) -> list[str]:
    pgbackrest = run(bench, [PGBACKREST, "version"]).stdout.strip()
    lifeboat = run(bench, [LIFEBOAT, "version"]).stdout.strip()
    return [f"PostgreSQL {pg_version}", pgbackrest, f"{lifeboat} ({source_state()})"]


def expected_checks(bench: Bench, data: Dataset) -> dict[str, int]:
    """What Lifeboat's restored copy of the newest backup must hold (bench/backup_restore.py)."""
    return {"pgbench_accounts rows": bench.scale * 100000, "grow rows": data.grow_rows,
            "hot rows": data.hot_rows, "hot updates": data.hot_updates}


def benchmark(bench: Bench) -> Results:
    results = Results(bench.scale, bench.runs, load_start=os.getloadavg()[0],
                      pgbench_seconds=bench.pgbench_seconds, append_mb=bench.append_mb)
    results.versions = tool_versions(bench, set_up(bench))
    results.dataset = data = load_data(bench)
    with connect(bench) as conn:
        (size,) = query(conn, "SELECT sum(pg_database_size(oid)) FROM pg_database")
        results.database_bytes = int(size)
    warm_bytes = min(results.database_bytes + 64 * MiB, available_memory() // 2)
    for run_no in range(1, bench.runs + 1):
        shift = (run_no - 1) % len(TOOLS)
        order = TOOLS[shift:] + TOOLS[:shift]  # each tool goes first in turn
        taken = {}
        for tool in order:
            log(f"run {run_no}/{bench.runs}: {tool} backup")
            taken[tool] = BACKUPS[tool](bench, run_no)
            results.backups[tool].append(taken[tool])
            log(f"  {taken[tool].seconds:.2f}s, {taken[tool].stored_bytes / MiB:.1f} MiB, "
                f"max RSS {taken[tool].max_rss_kib // 1024} MiB")
        for tool in order:
            log(f"run {run_no}/{bench.runs}: {tool} restore")
            # the last run's Lifeboat and pgBackRest copies stay for the delta restores
            keep = run_no == bench.runs and tool in INCR_TOOLS
            done = restore(bench, taken[tool], warm_bytes, keep=keep)
            results.restores[tool].append(done)
            log(f"  {done.seconds:.2f}s, {done.restored_bytes / MiB:.1f} MiB written, "
                f"max RSS {done.max_rss_kib // 1024} MiB")
        shutil.rmtree(taken["basebackup"].location)
    incremental_benchmark(bench, results, data, warm_bytes)
    results.verified = verify_lifeboat_restore(bench, expected_checks(bench, data))
    results.push = wal_push_benchmark(bench)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=100, help="pgbench scale (default 100)")
    parser.add_argument("--grow-mb", type=int, default=1600,
                        help="MiB of the append-only table grow (default 1600; 0: none)")
    parser.add_argument("--runs", type=int, default=1, help="backup/restore runs; medians (default 1)")
    parser.add_argument("--pgbench-seconds", type=int, default=30,
                        help="pgbench -T before the first incremental of each run (default 30)")
    parser.add_argument("--append-mb", type=int, default=54,
                        help="MiB appended to grow before the second incremental (default 54)")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/lifeboat-bench"))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "latest.md")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--archive-lag", action="store_true",
                        help="run the WAL archive lag benchmark instead (bench/archive_lag.py; "
                             "see python -m bench.archive_lag --help for its options)")
    args = parser.parse_args(argv)
    if args.scale < 1 or args.runs < 1 or args.pgbench_seconds < 1:
        parser.error("--scale, --runs and --pgbench-seconds must be at least 1")
    if args.grow_mb < 0 or args.append_mb < 0:
        parser.error("--grow-mb and --append-mb must not be negative")
    if not args.workdir.is_absolute():
        args.workdir = args.workdir.absolute()
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--archive-lag" in argv:  # the separate archive-lag benchmark, with its own options
        from bench.archive_lag import main as archive_lag_main

        argv.remove("--archive-lag")
        return archive_lag_main(argv)
    args = parse_args(argv)
    user = preflight("run.py")
    if isinstance(user, int):
        return user
    ports: list[int] = []
    for _ in range(2):
        ports.append(free_port(ports))
    bench = Bench(Paths.under(args.workdir), user, find_pg_bin(), args.scale, args.runs, *ports,
                  grow_mb=args.grow_mb, append_mb=args.append_mb, pgbench_seconds=args.pgbench_seconds)

    def measure(bench: Bench) -> str:
        results = benchmark(bench)
        results.total_seconds = time.monotonic() - STARTED_AT
        return render(results, WAL_SEGMENTS)

    return execute(bench, args, measure)


if __name__ == "__main__":
    sys.exit(main())
