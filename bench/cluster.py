"""The PostgreSQL cluster: create, start and stop it, query it, wait for its archiver,
and set it up with both repositories."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

from bench.environment import OS_USER, Bench, BenchError, log, run
from bench.files import make_dir
from bench.tool_commands import archive_command, lifeboat_cmd, write_tool_configs


def connect(bench: Bench, port: int | None = None) -> psycopg.Connection:
    return psycopg.connect(host=str(bench.paths.sock), port=port or bench.port, user=OS_USER,
                           dbname="postgres", autocommit=True, connect_timeout=10)


def query(conn: psycopg.Connection, sql: str, params: Sequence[object] = ()) -> tuple:
    """The first row of ``sql``; a BenchError if there is none."""
    row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
    if row is None:
        raise BenchError(f"no row from: {sql}")
    return tuple(row)


def server_settings(bench: Bench) -> dict[str, str]:
    command = archive_command(bench).replace("'", "''")
    return {
        "port": str(bench.port),
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{bench.paths.sock}'",
        "shared_buffers": "'512MB'",
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": f"'{command}'",
        "max_wal_size": "'4GB'",
        "min_wal_size": "'1GB'",
        "checkpoint_timeout": "'15min'",
        "checkpoint_completion_target": "0.9",
        "max_wal_senders": "4",
        "lc_messages": "'C'",
        "logging_collector": "off",
        "log_checkpoints": "on",
    }


def create_cluster(bench: Bench) -> None:
    log(f"initdb -k {bench.paths.pgdata}")
    make_dir(bench, bench.paths.sock, 0o755)
    run(bench, [bench.bin("initdb"), "-k", "-D", bench.paths.pgdata, "-U", OS_USER,
                "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"])
    lines = [f"{name} = {value}" for name, value in server_settings(bench).items()]
    with open(bench.paths.pgdata / "postgresql.conf", "a") as conf:
        conf.write("\n# lifeboat bench\n" + "\n".join(lines) + "\n")


def start_server(bench: Bench, pgdata: Path, log_file: Path) -> None:
    bench.started.append(pgdata)
    run(bench, [bench.bin("pg_ctl"), "-D", pgdata, "-l", log_file, "-w", "-t", "120", "start"])


def stop_server(bench: Bench, pgdata: Path) -> None:
    """Stop the server of ``pgdata`` if it runs; never raises (used while cleaning up)."""
    if not (pgdata / "postmaster.pid").exists():
        return
    try:
        run(bench, [bench.bin("pg_ctl"), "-D", pgdata, "-m", "fast", "-w", "-t", "60", "stop"],
            check=False, timeout=90)
        if (pgdata / "postmaster.pid").exists():
            run(bench, [bench.bin("pg_ctl"), "-D", pgdata, "-m", "immediate", "-w", "stop"],
                check=False, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"could not stop the server of {pgdata}: {exc}")


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_archived(bench: Bench, conn: psycopg.Connection, timeout: float = 1800) -> str:
    """Switch WAL and wait until the archiver has archived everything up to there."""
    (target,) = query(conn, "SELECT pg_walfile_name(pg_switch_wal())")
    (failed_before,) = query(conn, "SELECT failed_count FROM pg_stat_archiver")
    deadline = time.monotonic() + timeout
    while True:
        last, failed = query(conn, "SELECT coalesce(last_archived_wal, ''), failed_count "
                                   "FROM pg_stat_archiver")
        if last[:24] >= target:
            return target
        if failed >= failed_before + 3 or time.monotonic() > deadline:
            raise BenchError(f"WAL up to {target} was not archived (last archived: {last or 'none'}, "
                             f"{failed - failed_before} failures); server log:\n"
                             f"{log_tail(bench.paths.pglog)}")
        time.sleep(0.2)


def set_up(bench: Bench) -> str:
    """Cluster and both repositories (the data: bench/dataset.py); returns the server version."""
    paths = bench.paths
    write_tool_configs(bench)
    create_cluster(bench)
    log(f"starting PostgreSQL on port {bench.port}")
    start_server(bench, paths.pgdata, paths.pglog)
    log("pgbackrest stanza-create, lifeboat init")
    for build in bench.pgbackrests:
        run(bench, build.cmd("stanza-create"))
    run(bench, lifeboat_cmd(paths.lb_config, "init"))
    run(bench, lifeboat_cmd(paths.lb_config, "check"))
    for build in bench.pgbackrests:
        run(bench, build.cmd("check"))
    with connect(bench) as conn:
        (version,) = query(conn, "SELECT current_setting('server_version')")
    return str(version)
