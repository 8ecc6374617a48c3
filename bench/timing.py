"""Timing commands run as postgres: wall clock and peak memory of a backup or restore,
and spawn-to-exit milliseconds of one WAL push."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.environment import Bench, BenchError, as_postgres, child_env, run

GNU_TIME = Path("/usr/bin/time")
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
# Fallback when /usr/bin/time is missing: run the command, record the children's max RSS.
RSS_WRAPPER = ("import resource, subprocess, sys\n"
               "code = subprocess.call(sys.argv[2:])\n"
               "with open(sys.argv[1], 'w') as out:\n"
               "    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
               "sys.exit(code)\n")


@dataclass(frozen=True)
class Measured:
    """One timed command: wall-clock seconds and the peak RSS of its biggest process."""

    seconds: float
    max_rss_kib: int
    output: str = ""  # the command's stdout


def drop_caches() -> None:
    """Empty the page cache (and dentries and inodes): the next reads come from the disk."""
    os.sync()
    try:
        DROP_CACHES.write_text("3\n")
    except OSError as exc:
        raise BenchError(f"cannot drop the page cache ({DROP_CACHES}: {exc}); --cold needs root") from None


def measured(bench: Bench, command: Sequence[str | Path]) -> Measured:
    """Run ``command`` as postgres after a sync (and, with ``bench.cold``, after dropping the
    page cache); time it and record its max RSS."""
    rss_file = bench.paths.rss
    rss_file.unlink(missing_ok=True)
    if GNU_TIME.exists():
        wrapped: list[str | Path] = [GNU_TIME, "-f", "%M", "-o", rss_file, *command]
    else:
        wrapped = [sys.executable, "-c", RSS_WRAPPER, rss_file, *command]
    os.sync()
    if bench.cold:
        drop_caches()
    started = time.perf_counter()
    done = run(bench, wrapped)
    seconds = time.perf_counter() - started
    return Measured(seconds, _read_rss(rss_file), done.stdout)


def _read_rss(path: Path) -> int:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return int(lines[-1].strip())


def timed_call(bench: Bench, command: Sequence[str | Path]) -> float:
    """Milliseconds for one command, started directly as postgres (fork + setuid + exec)."""
    argv = [str(part) for part in command]
    env, user = child_env(bench), as_postgres(bench)
    started = time.perf_counter_ns()
    done = subprocess.run(argv, cwd=bench.paths.root, env=env, capture_output=True, check=False,
                          **user)  # type: ignore[call-overload]
    elapsed = (time.perf_counter_ns() - started) / 1e6
    if done.returncode != 0:
        raise BenchError(f"command failed (exit {done.returncode}): {shlex.join(argv)}\n"
                         f"{done.stderr.decode(errors='replace').strip()[-2000:]}")
    return elapsed
