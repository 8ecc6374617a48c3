#!/usr/bin/env python3
"""Lifeboat against pgBackRest and pg_basebackup on one pgbench database.

Run as root with the project's virtualenv (see bench/README.md)::

    .venv/bin/python bench/run.py [--scale 100] [--grow-mb 1600] [--runs 1] \\
        [--pgbench-seconds 30] [--append-mb 54] [--pgbackrest PATH ...] [--pgbackrest-block] \\
        [--cold] [--workdir /var/tmp/lifeboat-bench] [--out bench/results/latest.md] [--keep]

One throw-away PostgreSQL cluster (pgbench tables + an append-only table `grow` + a
10k-row table `hot`, PEERS.md's workload) archives every WAL segment into a Lifeboat
repository and a repository of each pgBackRest build. Full backups, restores into empty
directories, incrementals with nothing changed, after pgbench and after appends, delta
restores, verify, expire and per-segment WAL pushes are timed; the result is a Markdown
report on stdout and in ``--out``. Every command
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

from bench.backup_restore import restore, take_backup, verify_lifeboat_restore
from bench.cluster import connect, query, set_up
from bench.dataset import Dataset, load_data
from bench.environment import (
    LIFEBOAT,
    PGBACKREST,
    REPO_ROOT,
    STARTED_AT,
    Bench,
    BenchError,
    Paths,
    available_memory,
    find_pg_bin,
    free_port,
    log,
    run,
)
from bench.harness import execute, preflight
from bench.incremental import incremental_benchmark
from bench.maintenance import maintenance_benchmark
from bench.pgbackrest import anchor, builds
from bench.report import render
from bench.results import MiB, Results
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
    lifeboat = run(bench, [LIFEBOAT, "version"]).stdout.strip()
    return [f"PostgreSQL {pg_version}", *(f"{b.label} (`{b.path}`)" for b in bench.pgbackrests),
            f"{lifeboat} ({source_state()})"]


def new_results(bench: Bench) -> Results:
    tools = ("lifeboat", *(b.key for b in bench.pgbackrests), "basebackup")
    titles = {"lifeboat": "Lifeboat", "basebackup": "pg_basebackup",
              **{b.key: b.label for b in bench.pgbackrests}}
    first = anchor(bench.pgbackrests)
    return Results(bench.scale, bench.runs, load_start=os.getloadavg()[0], tools=tools, titles=titles,
                   anchor=first.key, anchor_block=first.block, cold=bench.cold,
                   pgbench_seconds=bench.pgbench_seconds, append_mb=bench.append_mb)


def expected_checks(bench: Bench, data: Dataset) -> dict[str, int]:
    """What Lifeboat's restored copy of the newest backup must hold (bench/backup_restore.py)."""
    return {"pgbench_accounts rows": bench.scale * 100000, "grow rows": data.grow_rows,
            "hot rows": data.hot_rows, "hot updates": data.hot_updates}


def benchmark(bench: Bench) -> Results:
    results = new_results(bench)
    results.versions = tool_versions(bench, set_up(bench))
    results.dataset = data = load_data(bench)
    with connect(bench) as conn:
        (size,) = query(conn, "SELECT sum(pg_database_size(oid)) FROM pg_database")
        results.database_bytes = int(size)
    warm_bytes = min(results.database_bytes + 64 * MiB, available_memory() // 2)
    tools = results.tools
    for run_no in range(1, bench.runs + 1):
        shift = (run_no - 1) % len(tools)
        order = tools[shift:] + tools[:shift]  # each tool goes first in turn
        taken = {}
        for tool in order:
            log(f"run {run_no}/{bench.runs}: {tool} backup")
            taken[tool] = take_backup(bench, tool, run_no)
            results.backups[tool].append(taken[tool])
            log(f"  {taken[tool].seconds:.2f}s (CPU {taken[tool].cpu_seconds:.2f}s), "
                f"{taken[tool].stored_bytes / MiB:.1f} MiB, "
                f"max RSS {taken[tool].max_rss_kib // 1024} MiB")
        for tool in order:
            log(f"run {run_no}/{bench.runs}: {tool} restore")
            # the last run's Lifeboat and pgBackRest copies stay for the delta restores
            keep = run_no == bench.runs and tool in results.block_tools
            done = restore(bench, taken[tool], warm_bytes, keep=keep)
            results.restores[tool].append(done)
            log(f"  {done.seconds:.2f}s (CPU {done.cpu_seconds:.2f}s), "
                f"{done.restored_bytes / MiB:.1f} MiB written, max RSS {done.max_rss_kib // 1024} MiB")
        shutil.rmtree(taken["basebackup"].location)
    incremental_benchmark(bench, results, data, warm_bytes)
    results.verified = verify_lifeboat_restore(bench, expected_checks(bench, data))
    maintenance_benchmark(bench, results)
    results.push = wal_push_benchmark(bench)
    results.loads = bench.loads
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
    parser.add_argument("--pgbackrest", action="append", metavar="PATH",
                        help=f"a pgBackRest binary to compare with (default {PGBACKREST}, Debian's); "
                             "give it again to compare several builds in one run")
    parser.add_argument("--pgbackrest-block", action="store_true",
                        help="block incremental + bundling (repo1-block=y, repo1-bundle=y) for every "
                             "pgBackRest build that has it (2.46 and later)")
    parser.add_argument("--cold", action="store_true",
                        help="sync and drop the page cache before each timed backup, restore, verify "
                             "and expire (needs root)")
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
    args.pgbackrest = args.pgbackrest or [PGBACKREST]
    if len(set(args.pgbackrest)) != len(args.pgbackrest):
        parser.error("--pgbackrest names the same binary twice")
    if args.cold and os.geteuid() != 0:
        parser.error("--cold drops the page cache: run as root")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--archive-lag" in argv:  # the separate archive-lag benchmark, with its own options
        from bench.archive_lag import main as archive_lag_main

        argv.remove("--archive-lag")
        return archive_lag_main(argv)
    args = parse_args(argv)
    user = preflight("run.py", args.pgbackrest)
    if isinstance(user, int):
        return user
    try:
        compared = builds(args.pgbackrest, args.pgbackrest_block, args.workdir)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    ports: list[int] = []
    for _ in range(2):
        ports.append(free_port(ports))
    bench = Bench(Paths.under(args.workdir), user, find_pg_bin(), args.scale, args.runs, *ports,
                  grow_mb=args.grow_mb, append_mb=args.append_mb, pgbench_seconds=args.pgbench_seconds,
                  pgbackrests=compared, cold=args.cold)

    def measure(bench: Bench) -> str:
        results = benchmark(bench)
        results.total_seconds = time.monotonic() - STARTED_AT
        return render(results, WAL_SEGMENTS)

    return execute(bench, args, measure)


if __name__ == "__main__":
    sys.exit(main())
