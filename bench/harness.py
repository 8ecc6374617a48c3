"""What every benchmark entry point does around its measurements: check it may run,
prepare and clean the work directory, stop its servers, turn signals and errors into
exit codes, and write the report."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from bench.cluster import stop_server
from bench.environment import LIFEBOAT, OS_USER, Bench, BenchError, OsUser, log
from bench.files import chown_tree
from bench.prerequisites import SetupError, ensure_programs
from bench.report import write_report

MARKER = ".lifeboat-bench"


def preflight(name: str, pgbackrests: list[str]) -> OsUser | int:
    """The OS user postgres when the benchmark can run (with the pgBackRest binaries
    ``pgbackrests``); else the exit code, said why."""
    user = OsUser.lookup(OS_USER)
    if os.geteuid() not in (0, user.uid):
        print(f"{name} must run as root (or as postgres)", file=sys.stderr)
        return 2
    if not LIFEBOAT.exists():
        print(f"{LIFEBOAT} not found: run with the virtualenv's python", file=sys.stderr)
        return 2
    try:
        ensure_programs(pgbackrests)
    except SetupError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    return user


def execute(bench: Bench, args: argparse.Namespace, measure: Callable[[Bench], str]) -> int:
    """Run ``measure`` in a fresh work directory, always stopping its servers; write the report."""
    try:
        if args.workdir.exists():
            stop_stale(bench)
        prepare_workdir(args.workdir, bench.user)
        with cleanup(bench, args.keep):
            report = measure(bench)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    write_report(report, args.out)
    print(report)
    log(f"report written to {args.out}")
    return 0


def prepare_workdir(root: Path, user: OsUser) -> None:
    """A new work directory; an old one is reused only if a benchmark made it."""
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise BenchError(f"{root} exists and was not made by this benchmark: choose another "
                             "--workdir or remove it")
        log(f"removing the previous run's {root}")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True, mode=0o750)
    (root / MARKER).write_text("made by bench/; removed at the end unless --keep\n")
    chown_tree(root, user)


def stop_stale(bench: Bench) -> None:
    """Stop servers a previous, killed run may have left in the same work directory."""
    for pgdata in (bench.paths.pgdata, bench.paths.verify):
        if (pgdata / "postmaster.pid").exists():
            log(f"stopping a server left running in {pgdata}")
            stop_server(bench, pgdata)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def cleanup(bench: Bench, keep: bool) -> Iterator[None]:
    """Stop every server started, and remove the work directory unless ``keep``."""
    try:
        yield
    finally:
        for pgdata in reversed(bench.started):
            stop_server(bench, pgdata)
        if keep:
            log(f"kept {bench.paths.root}")
        else:
            shutil.rmtree(bench.paths.root, ignore_errors=True)
