#!/usr/bin/env python3
"""WAL archive lag under pgbench: Lifeboat sync, Lifeboat async (agent), pgBackRest async.

Run as root with the project's virtualenv (see bench/README.md)::

    /work/main/.venv/bin/python -m bench.archive_lag [--scale 100] [--seconds 120] \\
        [--push-jobs 2] [--workdir /var/tmp/lifeboat-archive-lag] \\
        [--out bench/results/archive-lag.md] [--keep]

One cluster (``pgbench -i -s SCALE``) runs ``pgbench -c 8 -j 2 -T SECONDS`` three times,
each with another archive_command. Every 0.5 s the harness counts the ``.ready`` files in
``pg_wal/archive_status`` and the age of the oldest (the archive lag), until the backlog
has drained after pgbench ends. The report is a Markdown table with max and p95 lag, max
backlog, WAL generated, and the ratio of Lifeboat to pgBackRest.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

if not __package__:  # run as a script: make the package `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import connect, log_tail, query, set_up
from bench.environment import (
    CLUSTER,
    LIFEBOAT,
    OS_USER,
    PGBACKREST,
    REPO_ROOT,
    Bench,
    BenchError,
    Paths,
    as_postgres,
    child_env,
    find_pg_bin,
    free_port,
    log,
    run,
)
from bench.files import make_dir, write_file
from bench.harness import execute, preflight
from bench.pgbackrest import builds
from bench.report import machine
from bench.run import tool_versions
from bench.tool_commands import lifeboat_config
from engine.wal.async_archive import archive_backlog

TOOLS = ("lifeboat-sync", "lifeboat-async", "pgbackrest-async")
TITLES = {"lifeboat-sync": "Lifeboat sync", "lifeboat-async": "Lifeboat async",
          "pgbackrest-async": "pgBackRest async"}
TARGET_LAG = 10.0  # seconds: Lifeboat async's max lag must stay under this
SAMPLE_EVERY = 0.5
MB = 1_000_000


@dataclass
class LagResult:
    tool: str
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # (t, backlog, lag)
    wal_bytes: int = 0
    tps: float = 0.0
    drain_seconds: float | None = None  # after pgbench ended; None: did not drain in time
    failures: int = 0
    expected_segments: int = 0
    archived_segments: int = 0
    pusher: str = ""  # what pushed ahead (async modes)
    agent_failures: int | None = None  # the agent's archive_push_failed events (Lifeboat async)

    @property
    def max_lag(self) -> float:
        return max((lag for _, _, lag in self.samples), default=0.0)

    @property
    def p95_lag(self) -> float:
        lags = sorted(lag for _, _, lag in self.samples)
        return lags[min(len(lags) - 1, int(0.95 * len(lags)))] if lags else 0.0

    @property
    def max_backlog(self) -> int:
        return max((count for _, count, _ in self.samples), default=0)


def segno(name: str) -> int:
    return int(name[8:16], 16) * 0x100 + int(name[16:24], 16)  # 16 MB segments


def pg_value(bench: Bench, sql: str) -> object:
    with connect(bench) as conn:
        return query(conn, sql)[0]


def set_archive_command(bench: Bench, command: str) -> None:
    with connect(bench) as conn:
        conn.execute(f"ALTER SYSTEM SET archive_command = '{command.replace(chr(39), chr(39) * 2)}'")
        conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        while query(conn, "SELECT current_setting('archive_command')")[0] != command:
            if time.monotonic() > deadline:
                raise BenchError("the server did not pick up the new archive_command")
            time.sleep(0.05)


def wait_drained(bench: Bench, timeout: float, on_sample: Callable[[], None] | None = None) -> float | None:
    """Seconds until no ``.ready`` file is left (None on timeout), checked every 50 ms and
    sampled every 0.5 s meanwhile."""
    started = next_sample = time.monotonic()
    while archive_backlog(bench.paths.pgdata)[0]:
        now = time.monotonic()
        if now - started > timeout:
            return None
        if on_sample and now >= next_sample:
            on_sample()
            next_sample = now + SAMPLE_EVERY
        time.sleep(0.05)
    return time.monotonic() - started


# -- the three archive_commands and their helpers -----------------------------------------

def lifeboat_async_config(bench: Bench, push_jobs: int) -> Path:
    root = bench.paths.root / "lifeboat-async"
    for directory in (root, root / "spool", root / "agent"):
        make_dir(bench, directory, 0o750)
    text = (lifeboat_config(bench.paths.lb_repo, bench)
            + f'\n[clusters.{CLUSTER}.archive]\nmode = "async"\nspool = "{root}/spool"\n'
              f"push_jobs = {push_jobs}\n"
            + f'\n[catalog]\npath = "{root}/agent/catalog.sqlite3"\n\n[agent]\nstate_dir = "{root}/agent"\n')
    return write_file(bench, root / "lifeboat.toml", text)


def pgbackrest_async_config(bench: Bench) -> Path:
    build = bench.pgbackrests[0]
    spool = make_dir(bench, build.root / "spool", 0o750)
    text = build.config_text(build.repo, bench, extra=f"archive-async=y\nspool-path={spool}\n")
    return write_file(bench, build.root / "pgbackrest-async.conf", text)


def lifeboat_push(config: Path) -> str:
    return shlex.join([str(LIFEBOAT), "--config", str(config), "--cluster", CLUSTER, "wal-push"]) + " %p"


@contextmanager
def lifeboat_agent(bench: Bench, config: Path, result: LagResult) -> Iterator[None]:
    """``lifeboat agent`` as postgres: it pushes the async cluster's ``.ready`` files ahead."""
    log_path = bench.paths.root / "lifeboat-async" / "agent.log"
    result.pusher = "`lifeboat agent`"
    with open(log_path, "w") as out:
        process = subprocess.Popen([str(LIFEBOAT), "agent", "--config", str(config)],
                                   cwd=bench.paths.root, env=child_env(bench), stdout=out,
                                   stderr=subprocess.STDOUT, **as_postgres(bench))  # type: ignore[call-overload]
    try:
        time.sleep(1.0)
        if process.poll() is not None:
            raise BenchError(f"the Lifeboat async archiver exited {process.returncode}:\n"
                             f"{log_tail(log_path)}")
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    events = run(bench, [LIFEBOAT, "--config", config, "--cluster", CLUSTER, "events", "--kind",
                         "archive_push_failed", "--output", "json"])
    result.agent_failures = len(json.loads(events.stdout)["events"])


@contextmanager
def no_helper(_bench: Bench, _config: Path, result: LagResult) -> Iterator[None]:
    result.pusher = "pgBackRest's own async process (archive-async=y, process-max=2)" \
        if result.tool == "pgbackrest-async" else "archive_command itself"
    yield


# -- one measured run -----------------------------------------------------------------------

Helper = Callable[[Bench, Path, LagResult], AbstractContextManager[None]]


def measure(bench: Bench, tool: str, command: str, helper: Helper, config: Path,
            args: argparse.Namespace) -> LagResult:
    """One pgbench run with ``command`` as archive_command, ``helper`` running beside it."""
    result = LagResult(tool)
    set_archive_command(bench, command)
    with helper(bench, config, result):
        if wait_drained(bench, 600) is None:
            raise BenchError(f"{tool}: the archive did not catch up before the run")
        with connect(bench) as conn:
            conn.execute("CHECKPOINT")
            failed_before = int(query(conn, "SELECT failed_count FROM pg_stat_archiver")[0])
            start_lsn, first = query(conn, "SELECT pg_current_wal_lsn()::text, "
                                           "pg_walfile_name(pg_current_wal_lsn() + 1)")
        log(f"{TITLES[tool]}: pgbench -c {args.clients} -j {args.threads} -T {args.seconds}")
        started = time.monotonic()

        def sample() -> None:
            count, lag = archive_backlog(bench.paths.pgdata)
            result.samples.append((time.monotonic() - started, count, lag))

        pgbench = subprocess.Popen(
            [bench.bin("pgbench"), "-c", str(args.clients), "-j", str(args.threads), "-T",
             str(args.seconds), "-h", str(bench.paths.sock), "-p", str(bench.port), "-U", OS_USER,
             "postgres"], cwd=bench.paths.root, env=child_env(bench), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, **as_postgres(bench))  # type: ignore[call-overload]
        try:
            while pgbench.poll() is None:
                if time.monotonic() - started > args.seconds + 300:
                    raise BenchError(f"pgbench ran {args.seconds + 300} s without ending")
                sample()
                time.sleep(SAMPLE_EVERY)
        finally:
            if pgbench.poll() is None:
                pgbench.kill()
            out, err = pgbench.communicate(timeout=60)
        if pgbench.returncode != 0:
            raise BenchError(f"pgbench failed (exit {pgbench.returncode}):\n{err[-2000:]}")
        result.tps = next((float(line.split()[2]) for line in out.splitlines()
                           if line.startswith("tps =")), 0.0)
        with connect(bench) as conn:
            wal, last = query(conn, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn), "
                                    "pg_walfile_name(pg_switch_wal())", (start_lsn,))
        result.wal_bytes = int(wal)
        result.drain_seconds = wait_drained(bench, max(300.0, 3.0 * args.seconds), sample)
        sample()
        result.failures = int(pg_value(bench, "SELECT failed_count FROM pg_stat_archiver")) - failed_before
    result.expected_segments = segno(last) - segno(first) + 1
    result.archived_segments = count_archived(bench, tool, segno(first), segno(last))
    log(f"  max lag {result.max_lag:.1f} s, p95 {result.p95_lag:.1f} s, max backlog "
        f"{result.max_backlog}, {result.wal_bytes / MB:,.0f} MB WAL, {result.tps:,.0f} tps, "
        f"{result.failures} archive failures")
    return result


def count_archived(bench: Bench, tool: str, first: int, last: int) -> int:
    """Segments first..last in the tool's repository (each counted once)."""
    if tool.startswith("lifeboat"):
        root = bench.paths.lb_repo / "clusters" / CLUSTER / "wal"
    else:
        root = bench.pgbackrests[0].repo / "archive" / CLUSTER
    hex_digits = set("0123456789ABCDEF")
    names = {name[:24] for _dir, _subdirs, files in os.walk(root) for name in files
             if name[24:25] in ("", "-") and len(name) >= 24 and set(name[:24]) <= hex_digits}
    return sum(1 for name in names if first <= segno(name) <= last)


# -- report ---------------------------------------------------------------------------------

def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "—"


def render(results: dict[str, LagResult], args: argparse.Namespace, versions: list[str],
           load: tuple[float, float], total: float) -> str:
    lb, lb_sync, pbr = results["lifeboat-async"], results["lifeboat-sync"], results["pgbackrest-async"]
    rows: list[tuple[str, Callable[[LagResult], float | None], str]] = [
        ("Archive lag, max (age of the oldest .ready)", lambda r: r.max_lag, "{:.1f} s"),
        ("Archive lag, p95 of 0.5 s samples", lambda r: r.p95_lag, "{:.1f} s"),
        ("Backlog, max .ready files", lambda r: r.max_backlog, "{:.0f}"),
        ("Drain after pgbench ended", lambda r: r.drain_seconds, "{:.1f} s"),
        ("WAL generated", lambda r: r.wal_bytes / MB, "{:,.0f} MB"),
        ("pgbench throughput", lambda r: r.tps, "{:,.0f} tps"),
    ]
    lines = [
        "# WAL archive lag under pgbench",
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}; whole run {total / 60:.1f} min",
        f"- Load: `pgbench -i -s {args.scale}`, then `pgbench -c {args.clients} -j {args.threads} "
        f"-T {args.seconds}` once per archive_command below (each after a CHECKPOINT, with an "
        "empty archive queue)",
        f"- Machine: {machine()}",
        f"- Versions: {'; '.join(versions)}",
        f"- Load average (1 min): {load[0]:.2f} at the start, {load[1]:.2f} at the end",
        "",
        "| Measure | Lifeboat sync | Lifeboat async | pgBackRest async | Lifeboat async / pgBackRest "
        "| Lifeboat sync / pgBackRest |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for title, value, fmt in rows:
        cells = [fmt.format(v) if (v := value(results[t])) is not None else "did not drain"
                 for t in TOOLS]
        lines.append(f"| {title} | {' | '.join(cells)} | {ratio(value(lb), value(pbr))} "
                     f"| {ratio(value(lb_sync), value(pbr))} |")
    failures = " | ".join(str(results[t].failures) for t in TOOLS)
    lines.append(f"| archive_command failures (pg_stat_archiver) | {failures} | | |")
    lines.append(f"| Agent push failures (archive_push_failed events) | — | {lb.agent_failures} | — | | |")
    lines.append("| Segments in the repository / completed | " + " | ".join(
        f"{results[t].archived_segments} / {results[t].expected_segments}" for t in TOOLS) + " | | |")
    met = lb.max_lag < TARGET_LAG and lb.drain_seconds is not None
    lines += [
        "",
        f"Target: Lifeboat async max lag < {TARGET_LAG:.0f} s: **{'met' if met else 'not met'}** "
        f"({lb.max_lag:.1f} s).",
        "",
        "## How it was measured",
        "",
        "- archive_command per run: Lifeboat sync `lifeboat --config <sync.toml> --cluster bench "
        "wal-push %p`; Lifeboat async the same with `[clusters.bench.archive] mode = \"async\"`, "
        f"`push_jobs = {args.push_jobs}`, pushed ahead by {lb.pusher}; pgBackRest async "
        "`pgbackrest --stanza=bench archive-push %p` with `archive-async=y`, `spool-path`, "
        "`process-max=2`, `compress-type=zst`, `compress-level=3`. Lifeboat compresses with zstd "
        "level 3 too.",
        "- Lag: every 0.5 s from pgbench's start until the queue is empty after it ends (a "
        "`pg_switch_wal()` closes the last segment), the harness lists "
        "`pg_wal/archive_status`: the number of `.ready` files and the age of the oldest one's "
        "mtime (PostgreSQL creates it when the segment is complete, so its age is how long that "
        "segment has been waiting). p95 is over those samples.",
        "- WAL generated: `pg_wal_lsn_diff` from pgbench's start to its end. Segments: the "
        "segments completed during the run, and how many of them are in the tool's repository.",
        "- One cluster, one run per tool in the order of the table; the data grows a little "
        "between runs (pgbench_history), and the machine may be shared (load average above).",
        "",
    ]
    return "\n".join(lines)


# -- entry point -----------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.archive_lag",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=100, help="pgbench -i -s (default 100)")
    parser.add_argument("--seconds", type=int, default=120, help="pgbench -T per tool (default 120)")
    parser.add_argument("--clients", type=int, default=8, help="pgbench -c (default 8)")
    parser.add_argument("--threads", type=int, default=2, help="pgbench -j (default 2)")
    parser.add_argument("--push-jobs", type=int, default=2,
                        help="Lifeboat async push_jobs (default 2, as pgBackRest's process-max)")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/lifeboat-archive-lag"))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "archive-lag.md")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if min(args.scale, args.seconds, args.clients, args.threads, args.push_jobs) < 1:
        parser.error("--scale, --seconds, --clients, --threads and --push-jobs must be at least 1")
    args.workdir = args.workdir.absolute()
    return args


def benchmark(bench: Bench, args: argparse.Namespace) -> str:
    load_start, started = os.getloadavg()[0], time.monotonic()
    versions = tool_versions(bench, set_up(bench))
    sync_command = lifeboat_push(bench.paths.lb_config)
    set_archive_command(bench, "true")  # the initial load is not what is measured
    log(f"pgbench -i -s {args.scale}")
    run(bench, [bench.bin("pgbench"), "-i", "-q", "-s", str(args.scale), "-h", bench.paths.sock,
                "-p", str(bench.port), "-U", OS_USER, "postgres"])
    pbr_config = pgbackrest_async_config(bench)
    async_config = lifeboat_async_config(bench, args.push_jobs)
    pbr_command = shlex.join([PGBACKREST, f"--config={pbr_config}", f"--stanza={CLUSTER}",
                              "archive-push"]) + " %p"
    plan = {"lifeboat-sync": (sync_command, no_helper, bench.paths.lb_config),
            "lifeboat-async": (lifeboat_push(async_config), lifeboat_agent, async_config),
            "pgbackrest-async": (pbr_command, no_helper, pbr_config)}
    results = {tool: measure(bench, tool, *plan[tool], args) for tool in TOOLS}
    return render(results, args, versions, (load_start, os.getloadavg()[0]),
                  time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    user = preflight("archive_lag", [PGBACKREST])
    if isinstance(user, int):
        return user
    port = free_port()
    bench = Bench(Paths.under(args.workdir), user, find_pg_bin(), args.scale, 1, port,
                  free_port([port]), pgbackrests=builds([PGBACKREST], False, args.workdir))
    return execute(bench, args, lambda bench: benchmark(bench, args))


if __name__ == "__main__":
    sys.exit(main())
