#!/usr/bin/env python3
"""Lifeboat against pgBackRest and pg_basebackup on one pgbench database.

Run as root with the project's virtualenv (see bench/README.md)::

    /work/main/.venv/bin/python bench/run.py [--scale 100] [--runs 1] \\
        [--workdir /var/tmp/lifeboat-bench] [--out bench/results/latest.md] [--keep]

One throw-away PostgreSQL cluster archives every WAL segment into both a Lifeboat
repository and a pgBackRest repository. Full backups, restores into empty
directories and per-segment WAL pushes are timed; the result is a Markdown table
on stdout and in ``--out``. Every command that touches PostgreSQL's files runs as
the OS user ``postgres`` (a direct setuid in the child, no ``runuser``).
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import psycopg
from report import (
    TOOLS,
    BackupResult,
    MiB,
    PushResult,
    RestoreResult,
    Results,
    render,
    write_report,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
LIFEBOAT = Path(sys.executable).parent / "lifeboat"
PGBACKREST = shutil.which("pgbackrest") or "/usr/bin/pgbackrest"
GNU_TIME = Path("/usr/bin/time")
OS_USER = "postgres"
CLUSTER = "bench"
MARKER = ".lifeboat-bench"
WAL_SEGMENTS = 12
# Fallback when /usr/bin/time is missing: run the command, record the children's max RSS.
RSS_WRAPPER = ("import resource, subprocess, sys\n"
               "code = subprocess.call(sys.argv[2:])\n"
               "with open(sys.argv[1], 'w') as out:\n"
               "    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
               "sys.exit(code)\n")

_T0 = time.monotonic()


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


def log(message: str) -> None:
    """Progress, to stderr, with the time since the start."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setting


@dataclass(frozen=True)
class OsUser:
    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def lookup(cls, name: str) -> OsUser:
        entry = pwd.getpwnam(name)
        return cls(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


@dataclass(frozen=True)
class Paths:
    """Everything lives under one work directory owned by postgres."""

    root: Path
    pgdata: Path
    sock: Path
    pglog: Path
    rss: Path
    lb_repo: Path
    lb_config: Path
    lb_cache: Path
    pbr_root: Path
    pbr_repo: Path
    pbr_config: Path
    basebackup: Path
    restore: Path
    verify: Path
    segments: Path
    push_lb_repo: Path
    push_lb_config: Path
    push_pbr_repo: Path
    push_pbr_config: Path

    @classmethod
    def under(cls, root: Path) -> Paths:
        lifeboat, pgbackrest, wal = root / "lifeboat", root / "pgbackrest", root / "wal"
        return cls(
            root=root, pgdata=root / "pgdata", sock=root / "sock", pglog=root / "postgresql.log",
            rss=root / "rss.txt", lb_repo=lifeboat / "repo", lb_config=lifeboat / "lifeboat.toml",
            lb_cache=lifeboat / "cache", pbr_root=pgbackrest, pbr_repo=pgbackrest / "repo",
            pbr_config=pgbackrest / "pgbackrest.conf", basebackup=root / "basebackup",
            restore=root / "restore", verify=root / "verify", segments=wal / "segments",
            push_lb_repo=wal / "lifeboat-repo", push_lb_config=wal / "lifeboat.toml",
            push_pbr_repo=wal / "pgbackrest-repo", push_pbr_config=wal / "pgbackrest.conf",
        )


@dataclass
class Bench:
    """What every step needs: where things are, who runs them, which ports."""

    paths: Paths
    user: OsUser
    pg_bin: Path
    scale: int
    runs: int
    port: int
    verify_port: int
    started: list[Path] = field(default_factory=list)

    def bin(self, name: str) -> str:
        return str(self.pg_bin / name)


def free_port(avoid: Sequence[int] = ()) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in avoid and 1024 < port < 65000:
            return port
    raise BenchError("no free TCP port found")


def find_pg_bin() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin that has initdb."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise BenchError("no PostgreSQL server binaries under /usr/lib/postgresql")
    return found[-1].parent


# --------------------------------------------------------------------------- processes


def _child_env(bench: Bench) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PG", "LIFEBOAT", "XDG_"))}
    env.update(HOME=bench.user.home, USER=bench.user.name, LOGNAME=bench.user.name,
               LC_ALL="C.UTF-8", LANG="C.UTF-8", LIFEBOAT_CACHE_DIR=str(bench.paths.lb_cache),
               PATH=f"{bench.pg_bin}:/usr/local/bin:/usr/bin:/bin")
    return env


def _as_user(bench: Bench) -> dict[str, object]:
    """subprocess keyword arguments that make the child run as the postgres OS user."""
    if os.geteuid() == bench.user.uid:
        return {}
    return {"user": bench.user.uid, "group": bench.user.gid,
            "extra_groups": os.getgrouplist(bench.user.name, bench.user.gid)}


def run(bench: Bench, command: Sequence[str | Path], *, check: bool = True,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as postgres in the work directory, output captured."""
    argv = [str(part) for part in command]
    done = subprocess.run(argv, cwd=bench.paths.root, env=_child_env(bench), capture_output=True,
                          text=True, timeout=timeout, check=False, **_as_user(bench))  # type: ignore[call-overload]
    if check and done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip())[-3000:]
        raise BenchError(f"command failed (exit {done.returncode}): {shlex.join(argv)}\n{output}")
    return done


@dataclass(frozen=True)
class Measured:
    """One timed command: wall-clock seconds and the peak RSS of its biggest process."""

    seconds: float
    max_rss_kib: int


def measured(bench: Bench, command: Sequence[str | Path]) -> Measured:
    """Run ``command`` as postgres after a sync; time it and record its max RSS."""
    rss_file = bench.paths.rss
    rss_file.unlink(missing_ok=True)
    if GNU_TIME.exists():
        wrapped: list[str | Path] = [GNU_TIME, "-f", "%M", "-o", rss_file, *command]
    else:
        wrapped = [sys.executable, "-c", RSS_WRAPPER, rss_file, *command]
    os.sync()
    started = time.perf_counter()
    run(bench, wrapped)
    seconds = time.perf_counter() - started
    return Measured(seconds, _read_rss(rss_file))


def _read_rss(path: Path) -> int:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return int(lines[-1].strip())


def chown_tree(path: Path, user: OsUser) -> None:
    os.chown(path, user.uid, user.gid)
    for directory, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(directory, name), user.uid, user.gid)


def make_dir(bench: Bench, path: Path, mode: int = 0o700) -> Path:
    """An empty directory owned by postgres (parents too, below the work directory)."""
    for parent in reversed(path.relative_to(bench.paths.root).parents):
        directory = bench.paths.root / parent
        if not directory.exists():
            directory.mkdir(mode=0o750)
            os.chown(directory, bench.user.uid, bench.user.gid)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(mode=mode)
    os.chown(path, bench.user.uid, bench.user.gid)
    return path


def write_file(bench: Bench, path: Path, text: str) -> Path:
    path.write_text(text)
    os.chown(path, bench.user.uid, bench.user.gid)
    return path


def tree_bytes(path: Path) -> int:
    """Apparent size of every regular file under ``path`` (or of ``path`` itself)."""
    if path.is_file():
        return path.stat().st_size
    return sum(os.lstat(os.path.join(d, n)).st_size
               for d, _dirs, files in os.walk(path) for n in files)


def file_sizes(path: Path) -> dict[str, int]:
    if not path.is_dir():
        return {}
    return {os.path.join(d, n): os.lstat(os.path.join(d, n)).st_size
            for d, _dirs, files in os.walk(path) for n in files}


# --------------------------------------------------------------------------- server


def connect(bench: Bench, port: int | None = None) -> psycopg.Connection:
    return psycopg.connect(host=str(bench.paths.sock), port=port or bench.port, user=OS_USER,
                           dbname="postgres", autocommit=True, connect_timeout=10)


def query(conn: psycopg.Connection, sql: str, params: Sequence[object] = ()) -> tuple:
    row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
    if row is None:
        raise BenchError(f"no row from: {sql}")
    return tuple(row)


def archive_command(bench: Bench) -> str:
    lifeboat = shlex.join([str(LIFEBOAT), "--config", str(bench.paths.lb_config),
                           "--cluster", CLUSTER, "wal-push"])
    pgbackrest = shlex.join([PGBACKREST, f"--config={bench.paths.pbr_config}",
                             f"--stanza={CLUSTER}", "archive-push"])
    return f"{lifeboat} %p && {pgbackrest} %p"


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


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


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


# --------------------------------------------------------------------------- tools setup


def lifeboat_config(repo: Path, bench: Bench) -> str:
    return (f'[repository]\npath = "{repo}"\n\n[compression]\nalgorithm = "zstd"\nlevel = 3\n\n'
            f'[clusters.{CLUSTER}]\npgdata = "{bench.paths.pgdata}"\nhost = "{bench.paths.sock}"\n'
            f"port = {bench.port}\n")


def pgbackrest_config(repo: Path, bench: Bench) -> str:
    root = bench.paths.pbr_root
    return (f"[global]\nrepo1-path={repo}\nrepo1-retention-full=9999\nprocess-max=2\n"
            f"compress-type=zst\ncompress-level=3\nstart-fast=y\nlog-path={root}/log\n"
            f"lock-path={root}/lock\nlog-level-console=warn\nlog-level-file=info\n\n"
            f"[{CLUSTER}]\npg1-path={bench.paths.pgdata}\npg1-port={bench.port}\n"
            f"pg1-socket-path={bench.paths.sock}\n")


def lifeboat_cmd(config: Path, *args: str | Path) -> list[str | Path]:
    return [LIFEBOAT, "--config", config, "--cluster", CLUSTER, *args]


def pgbackrest_cmd(config: Path, *args: str | Path) -> list[str | Path]:
    return [PGBACKREST, f"--config={config}", f"--stanza={CLUSTER}", *args]


def write_tool_configs(bench: Bench) -> None:
    paths = bench.paths
    for directory in (paths.lb_repo, paths.lb_cache, paths.pbr_repo,
                      paths.pbr_root / "log", paths.pbr_root / "lock"):
        make_dir(bench, directory, 0o750)
    write_file(bench, paths.lb_config, lifeboat_config(paths.lb_repo, bench))
    write_file(bench, paths.pbr_config, pgbackrest_config(paths.pbr_repo, bench))


def set_up(bench: Bench) -> str:
    """Cluster, both repositories and the pgbench data; returns the server version."""
    paths = bench.paths
    write_tool_configs(bench)
    create_cluster(bench)
    log(f"starting PostgreSQL on port {bench.port}")
    start_server(bench, paths.pgdata, paths.pglog)
    log("pgbackrest stanza-create, lifeboat init")
    run(bench, pgbackrest_cmd(paths.pbr_config, "stanza-create"))
    run(bench, lifeboat_cmd(paths.lb_config, "init"))
    run(bench, lifeboat_cmd(paths.lb_config, "check"))
    run(bench, pgbackrest_cmd(paths.pbr_config, "check"))
    log(f"pgbench -i -s {bench.scale}")
    started = time.perf_counter()
    run(bench, [bench.bin("pgbench"), "-i", "-q", "-s", str(bench.scale), "-h", paths.sock,
                "-p", str(bench.port), "-U", OS_USER, "postgres"])
    log(f"pgbench -i took {time.perf_counter() - started:.1f}s; waiting for the archiver")
    with connect(bench) as conn:
        wait_archived(bench, conn)
        conn.execute("CHECKPOINT")
        (version,) = query(conn, "SELECT current_setting('server_version')")
    return str(version)


# --------------------------------------------------------------------------- backups


def backup_lifeboat(bench: Bench, run_no: int) -> BackupResult:
    cluster_dir = bench.paths.lb_repo / "clusters" / CLUSTER
    before = {**file_sizes(cluster_dir / "packs"), **file_sizes(cluster_dir / "backups")}
    result = measured(bench, lifeboat_cmd(bench.paths.lb_config, "backup"))
    after = {**file_sizes(cluster_dir / "packs"), **file_sizes(cluster_dir / "backups")}
    new = {path: size for path, size in after.items() if path not in before}
    manifests = [Path(p) for p in new if p.endswith(".manifest")]
    if len(manifests) != 1:
        raise BenchError(f"lifeboat backup wrote {len(manifests)} manifests, expected 1")
    label = manifests[0].name.removesuffix(".manifest")
    return BackupResult("lifeboat", label, result.seconds, sum(new.values()), result.max_rss_kib,
                        manifests[0])


def backup_pgbackrest(bench: Bench, run_no: int) -> BackupResult:
    sets = bench.paths.pbr_repo / "backup" / CLUSTER
    before = set(os.listdir(sets)) if sets.is_dir() else set()
    result = measured(bench, pgbackrest_cmd(bench.paths.pbr_config, "--type=full", "backup"))
    new = sorted(n for n in os.listdir(sets) if n not in before and re.fullmatch(r"\d{8}-\d{6}F", n))
    if len(new) != 1:
        raise BenchError(f"pgbackrest backup made {len(new)} new backup sets, expected 1")
    location = sets / new[0]
    return BackupResult("pgbackrest", new[0], result.seconds, tree_bytes(location), result.max_rss_kib,
                        location)


def backup_basebackup(bench: Bench, run_no: int) -> BackupResult:
    target = make_dir(bench, bench.paths.basebackup / f"run{run_no}", 0o750)
    result = measured(bench, [bench.bin("pg_basebackup"), "-h", bench.paths.sock, "-p", str(bench.port),
                              "-U", OS_USER, "-w", "-D", target, "-Ft", "-Z", "client-zstd:3",
                              "-X", "fetch", "-c", "fast"])
    return BackupResult("basebackup", target.name, result.seconds, tree_bytes(target), result.max_rss_kib,
                        target)


BACKUPS = {"lifeboat": backup_lifeboat, "pgbackrest": backup_pgbackrest, "basebackup": backup_basebackup}


# --------------------------------------------------------------------------- restores


def restore_command(bench: Bench, backup: BackupResult, target: Path) -> list[str | Path]:
    if backup.tool == "lifeboat":
        return lifeboat_cmd(bench.paths.lb_config, "restore", "--pgdata", target,
                            "--backup", backup.label)
    if backup.tool == "pgbackrest":
        return pgbackrest_cmd(bench.paths.pbr_config, f"--set={backup.label}",
                              f"--pg1-path={target}", "restore")
    archive = backup.location / "base.tar.zst"
    script = f"tar --zstd -xf {shlex.quote(str(archive))} -C {shlex.quote(str(target))} " \
             f"&& sync -f {shlex.quote(str(target))}"
    return ["/bin/sh", "-c", script]


def warm_page_cache(bench: Bench, nbytes: int) -> None:
    """Write and delete a scratch file of ``nbytes`` (untimed).

    On the development VM the first large write after a few idle seconds costs
    1.5 s more kernel time per 1.5 GB than the next one (page-cache allocation in
    the guest), which would penalise whichever restore happens to come first.
    """
    scratch = bench.paths.root / "scratch"
    chunk = bytes(1 << 20)
    with open(scratch, "wb") as handle:
        for _ in range(nbytes >> 20):
            handle.write(chunk)
    scratch.unlink()


def restore(bench: Bench, backup: BackupResult, warm_bytes: int) -> RestoreResult:
    """Restore ``backup`` into a new empty directory (no server start), then remove it."""
    target = make_dir(bench, bench.paths.restore / backup.tool)
    warm_page_cache(bench, warm_bytes)
    result = measured(bench, restore_command(bench, backup, target))
    if not (target / "global" / "pg_control").exists():
        raise BenchError(f"{backup.tool} restore left no global/pg_control in {target}")
    restored = tree_bytes(target)
    shutil.rmtree(target)
    return RestoreResult(backup.tool, result.seconds, result.max_rss_kib, restored)


def verify_lifeboat_restore(bench: Bench) -> int:
    """Restore Lifeboat's newest backup, start it, count pgbench_accounts, stop it."""
    target = make_dir(bench, bench.paths.verify)
    log(f"verifying: lifeboat restore --start into {target} (port {bench.verify_port})")
    bench.started.append(target)
    run(bench, lifeboat_cmd(bench.paths.lb_config, "restore", "--pgdata", target, "--start",
                            "--port", str(bench.verify_port), "--archive-mode", "off", "--force"))
    try:
        with connect(bench, bench.verify_port) as conn:
            (count,) = query(conn, "SELECT count(*) FROM pgbench_accounts")
    finally:
        stop_server(bench, target)
    expected = bench.scale * 100000
    if count != expected:
        raise BenchError(f"restored copy has {count} rows in pgbench_accounts, expected {expected}")
    log(f"restored copy has {count} rows in pgbench_accounts: ok")
    shutil.rmtree(target)
    return int(count)


# --------------------------------------------------------------------------- WAL push


def segment_name(timeline: int, segno: int, segment_size: int) -> str:
    per = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per:08X}{segno % per:08X}"


def current_segno(conn: psycopg.Connection, segment_size: int) -> int:
    (position,) = query(conn, "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
    return int(position) // segment_size


def generate_segments(bench: Bench, count: int) -> list[str]:
    """Write at least ``count`` complete WAL segments of pgbench_accounts updates."""
    with connect(bench) as conn:
        (size,) = query(conn, "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'")
        (timeline,) = query(conn, "SELECT timeline_id FROM pg_control_checkpoint()")
        first = current_segno(conn, size) + 1
        rows, chunk, aid = bench.scale * 100000, 20000, 1
        while current_segno(conn, size) < first + count:
            conn.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 "
                         "WHERE aid >= %s AND aid < %s", (aid, aid + chunk))
            aid = 1 if aid + chunk > rows else aid + chunk
        wait_archived(bench, conn)
    return [segment_name(int(timeline), segno, int(size)) for segno in range(first, first + count)]


def fetch_segments(bench: Bench, names: list[str]) -> list[Path]:
    """Reconstruct the segments from Lifeboat's archive (wal-get), outside the server."""
    directory = make_dir(bench, bench.paths.segments, 0o750)
    paths = []
    for name in names:
        run(bench, lifeboat_cmd(bench.paths.lb_config, "wal-get", name, directory / name))
        paths.append(directory / name)
    return paths


def fresh_archives(bench: Bench) -> None:
    """An empty Lifeboat repository (with the cluster's identity) and a new pgBackRest stanza."""
    paths = bench.paths
    source = paths.lb_repo / "clusters" / CLUSTER / "cluster.json"
    cluster_dir = make_dir(bench, paths.push_lb_repo / "clusters" / CLUSTER, 0o750)
    for src, dest in ((source, cluster_dir / "cluster.json"),
                      (paths.lb_repo / "lifeboat.repo", paths.push_lb_repo / "lifeboat.repo")):
        if src.exists():
            shutil.copy2(src, dest)
            os.chown(dest, bench.user.uid, bench.user.gid)
    write_file(bench, paths.push_lb_config, lifeboat_config(paths.push_lb_repo, bench))
    make_dir(bench, paths.push_pbr_repo, 0o750)
    write_file(bench, paths.push_pbr_config, pgbackrest_config(paths.push_pbr_repo, bench))
    run(bench, pgbackrest_cmd(paths.push_pbr_config, "stanza-create"))


def timed_call(bench: Bench, command: Sequence[str | Path]) -> float:
    """Milliseconds for one command, started directly as postgres (fork + setuid + exec)."""
    argv = [str(part) for part in command]
    env, user = _child_env(bench), _as_user(bench)
    started = time.perf_counter_ns()
    done = subprocess.run(argv, cwd=bench.paths.root, env=env, capture_output=True, check=False,
                          **user)  # type: ignore[call-overload]
    elapsed = (time.perf_counter_ns() - started) / 1e6
    if done.returncode != 0:
        raise BenchError(f"command failed (exit {done.returncode}): {shlex.join(argv)}\n"
                         f"{done.stderr.decode(errors='replace').strip()[-2000:]}")
    return elapsed


def push_segments(bench: Bench, segments: list[Path]) -> PushResult:
    """Push each segment into the fresh archives, alternating which tool goes first."""
    paths = bench.paths
    for segment in segments:  # page cache warm for both tools
        segment.read_bytes()
    # The first wal-push of a new configuration validates it in full and caches the result;
    # in steady state (PostgreSQL's archiver) the cache is warm, so warm it here, untimed.
    run(bench, lifeboat_cmd(paths.push_lb_config, "wal-get", "000000010000000000000001",
                            paths.root / "warm-up"), check=False)
    result = PushResult()
    for index, segment in enumerate(segments):
        lifeboat = lifeboat_cmd(paths.push_lb_config, "wal-push", segment)
        pgbackrest = pgbackrest_cmd(paths.push_pbr_config, "archive-push", segment)
        order = [("lifeboat", lifeboat), ("pgbackrest", pgbackrest)]
        for tool, command in order if index % 2 == 0 else reversed(order):
            getattr(result, f"{tool}_ms").append(timed_call(bench, command))
    lb_wal = paths.push_lb_repo / "clusters" / CLUSTER / "wal"
    pbr_wal = paths.push_pbr_repo / "archive" / CLUSTER
    result.lifeboat_bytes = tree_bytes(lb_wal)
    result.pgbackrest_bytes = sum(size for path, size in file_sizes(pbr_wal).items()
                                  if re.search(r"/[0-9A-F]{24}-[0-9a-f]{40}", path))
    pushed = [sum(1 for p in lb_wal.rglob("0*") if p.is_file()),
              sum(1 for p in pbr_wal.rglob("0*-*") if p.is_file())]
    if pushed != [len(segments)] * 2:
        raise BenchError(f"expected {len(segments)} segments in each fresh archive, found {pushed}")
    return result


def wal_push_benchmark(bench: Bench) -> PushResult:
    log(f"generating {WAL_SEGMENTS} WAL segments")
    names = generate_segments(bench, WAL_SEGMENTS)
    segments = fetch_segments(bench, names)
    fresh_archives(bench)
    log(f"timing wal-push / archive-push of {names[0]}..{names[-1]}")
    return push_segments(bench, segments)


# --------------------------------------------------------------------------- main


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


def benchmark(bench: Bench) -> Results:
    results = Results(bench.scale, bench.runs, load_start=os.getloadavg()[0])
    results.versions = tool_versions(bench, set_up(bench))
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
            done = restore(bench, taken[tool], warm_bytes)
            results.restores[tool].append(done)
            log(f"  {done.seconds:.2f}s, {done.restored_bytes / MiB:.1f} MiB written, "
                f"max RSS {done.max_rss_kib // 1024} MiB")
        shutil.rmtree(taken["basebackup"].location)
    results.verified_rows = verify_lifeboat_restore(bench)
    results.push = wal_push_benchmark(bench)
    return results


def prepare_workdir(root: Path, user: OsUser) -> None:
    """A new work directory; an old one is reused only if this script made it."""
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise BenchError(f"{root} exists and was not made by this benchmark: choose another "
                             "--workdir or remove it")
        log(f"removing the previous run's {root}")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True, mode=0o750)
    (root / MARKER).write_text("made by bench/run.py; removed at the end unless --keep\n")
    chown_tree(root, user)


def stop_stale(bench: Bench) -> None:
    """Stop servers a previous, killed run may have left in the same work directory."""
    for pgdata in (bench.paths.pgdata, bench.paths.verify):
        if (pgdata / "postmaster.pid").exists():
            log(f"stopping a server left running in {pgdata}")
            stop_server(bench, pgdata)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=100, help="pgbench scale (default 100)")
    parser.add_argument("--runs", type=int, default=1, help="backup/restore runs; medians (default 1)")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/lifeboat-bench"))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "latest.md")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.scale < 1 or args.runs < 1:
        parser.error("--scale and --runs must be at least 1")
    if not args.workdir.is_absolute():
        args.workdir = args.workdir.absolute()
    return args


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    user = OsUser.lookup(OS_USER)
    if os.geteuid() not in (0, user.uid):
        print("run.py must run as root (or as postgres)", file=sys.stderr)
        return 2
    if not LIFEBOAT.exists():
        print(f"{LIFEBOAT} not found: run with the virtualenv's python", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    ports: list[int] = []
    for _ in range(2):
        ports.append(free_port(ports))
    bench = Bench(Paths.under(args.workdir), user, find_pg_bin(), args.scale, args.runs, *ports)
    try:
        if args.workdir.exists():
            stop_stale(bench)
        prepare_workdir(args.workdir, user)
        with cleanup(bench, args.keep):
            results = benchmark(bench)
            results.total_seconds = time.monotonic() - _T0
            report = render(results, WAL_SEGMENTS)
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


if __name__ == "__main__":
    sys.exit(main())
