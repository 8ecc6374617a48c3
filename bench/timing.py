"""Timing commands run as postgres: wall clock, CPU time and peak memory of a backup or
restore, and spawn-to-exit milliseconds (and CPU milliseconds) of one WAL push.

CPU time (user + system, of the command and every process it waited for) is recorded
beside the wall clock because the machine may be shared: other work stretches wall clocks
far more than it changes the CPU a command needs."""

from __future__ import annotations

import os
import resource
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
# Fallback when /usr/bin/time is missing: run the command, record the children's usage.
RSS_WRAPPER = ("import resource, subprocess, sys\n"
               "code = subprocess.call(sys.argv[2:])\n"
               "use = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
               "with open(sys.argv[1], 'w') as out:\n"
               "    out.write(f'{use.ru_maxrss} {use.ru_utime} {use.ru_stime}')\n"
               "sys.exit(code)\n")


@dataclass(frozen=True)
class Measured:
    """One timed command: wall-clock seconds, the peak RSS of its biggest process, CPU seconds."""

    seconds: float
    max_rss_kib: int
    output: str = ""  # the command's stdout
    cpu_seconds: float = 0.0  # user + system
    started_at: float = 0.0  # time.time() when the command was launched


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
        wrapped: list[str | Path] = [GNU_TIME, "-f", "%M %U %S", "-o", rss_file, *command]
    else:
        wrapped = [sys.executable, "-c", RSS_WRAPPER, rss_file, *command]
    os.sync()
    if bench.cold:
        drop_caches()
    bench.loads.append(os.getloadavg()[0])
    started_at = time.time()
    started = time.perf_counter()
    done = run(bench, wrapped)
    seconds = time.perf_counter() - started
    rss, cpu = _read_usage(rss_file)
    return Measured(seconds, rss, done.stdout, cpu, started_at)


def _read_usage(path: Path) -> tuple[int, float]:
    """Max RSS (KiB) and user + system seconds from the last line of GNU time's output."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rss, user, system = lines[-1].split()
    return int(rss), float(user) + float(system)


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def timed_call(bench: Bench, command: Sequence[str | Path]) -> tuple[float, float]:
    """Milliseconds from spawn to exit of one command, started directly as postgres (fork +
    setuid + exec), and its CPU milliseconds (the harness waits for nothing else meanwhile)."""
    argv = [str(part) for part in command]
    env, user = child_env(bench), as_postgres(bench)
    cpu_before = _children_cpu()
    started = time.perf_counter_ns()
    done = subprocess.run(argv, cwd=bench.paths.root, env=env, capture_output=True, check=False,
                          **user)  # type: ignore[call-overload]
    elapsed = (time.perf_counter_ns() - started) / 1e6
    cpu = (_children_cpu() - cpu_before) * 1000
    if done.returncode != 0:
        raise BenchError(f"command failed (exit {done.returncode}): {shlex.join(argv)}\n"
                         f"{done.stderr.decode(errors='replace').strip()[-2000:]}")
    return elapsed, cpu
