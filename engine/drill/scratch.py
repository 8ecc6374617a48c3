"""The scratch cluster a drill restores into, isolated from everything else, and its removal.

The backup restores whole (a physical backup cannot do less) into
``<drills.scratch_dir>/<drill name>/``, tablespaces beside it, never at their original
locations. Before it starts, settings are added so the copy cannot act as the source:
no WAL archiving (archive_mode off), no logical replication workers (an enabled
subscription would otherwise consume its publisher's slot), no synchronous standby to
wait for, a socket in its own directory and TCP on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engine import durable
from engine.config.schema import Config
from engine.postgres import server
from engine.postgres.connection import Endpoint
from engine.repository.storage import Storage
from engine.restore import physical as restore
from engine.restore.recovery import RecoveryTarget
from engine.wal.names import parse_lsn

MARKER = "# lifeboat drill: the scratch copy must not act as the source"
PREFIX = "lifeboat-drill-"  # every scratch directory's name starts so (drill.run.point_name)


SOCKET_PATH_MAX = 107  # bytes of a Unix socket path (sun_path) on Linux


@dataclass
class Scratch:
    directory: Path
    port: int
    bin_dir: Path | None = None
    timing: dict[str, float] = field(default_factory=dict)  # restore and replay, for the RTO estimate
    socket_dir: Path | None = None  # a short directory of its own when ``directory`` is too long

    @property
    def sockets(self) -> Path:
        return self.socket_dir or self.directory

    @property
    def pgdata(self) -> Path:
        return self.directory / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    def endpoint(self, user: str, database: str, tcp: bool = False) -> Endpoint:
        host = "127.0.0.1" if tcp else str(self.sockets)
        return Endpoint(host, self.port, user, database)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create(config: Config, cluster: str, name: str) -> Scratch:
    parent = config.clusters[cluster].drills.scratch_dir
    parent.mkdir(parents=True, exist_ok=True)
    directory = parent / name
    directory.mkdir(mode=0o700)
    scratch = Scratch(directory, free_port())
    if len(str(directory / f".s.PGSQL.{scratch.port}.lock")) > SOCKET_PATH_MAX:
        import tempfile  # the server could not create its socket there

        scratch.socket_dir = Path(tempfile.mkdtemp(prefix="lifeboat-drill-"))
    return scratch


def settings(scratch: Scratch) -> dict[str, str]:
    return {"listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{scratch.sockets}'",
            "max_logical_replication_workers": "0",
            "synchronous_standby_names": "''",
            "cluster_name": "'lifeboat-drill'"}


def restore_into(config: Config, cluster: str, storage: Storage, config_path: Path,
                 scratch: Scratch, backup: str | None, point: str | None, timeout: float | None,
                 progress: Callable[[int, int], None] | None = None,
                 target: RecoveryTarget | None = None,
                 phase: Callable[[str], None] | None = None,
                 ) -> tuple[restore.RestoreResult, server.ReachedPoint]:
    """Restore ``backup`` (None: the one the restore picks for the target), recover to
    restore point ``point`` (or to ``target``, which then must promote), promote; the
    server runs. ``phase(name)`` hears of each phase (files, start, WAL replay)."""
    target = target or RecoveryTarget("name", point, action="promote")
    if target.action != "promote":
        raise ValueError("a scratch cluster's recovery must promote")
    summary = restore.choose(storage, cluster, restore.RestoreOptions(scratch.pgdata, target=target,
                                                                      backup_id=backup))
    say = phase or (lambda _name: None)
    options = restore.RestoreOptions(
        pgdata=scratch.pgdata, target=target,
        backup_id=summary.id, archive_mode="off", port=scratch.port, timeout=timeout,
        tablespace_map={int(t["oid"]): scratch.directory / f"tablespace-{t['oid']}"
                        for t in summary.tablespaces})
    copy_started = time.monotonic()
    result = restore.run(config, cluster, storage, config_path, options, progress, say)
    copied = time.monotonic()
    auto = scratch.pgdata / "postgresql.auto.conf"
    lines = [auto.read_text().rstrip("\n"), MARKER,
             *(f"{name} = {value}" for name, value in settings(scratch).items())]
    durable.write_atomic(auto, ("\n".join(lines) + "\n").encode(), 0o600)
    scratch.bin_dir = server.bin_dir_for(summary.pg_version, config.clusters[cluster].bin_dir)
    say(restore.PHASE_START)
    server.start(scratch.pgdata, scratch.bin_dir, scratch.log_file, scratch.port)
    say(restore.PHASE_REPLAY)
    reached = server.wait_for_recovery(scratch.pgdata, scratch.log_file, "promote", timeout)
    replayed = time.monotonic()
    wal_bytes = max(0, parse_lsn(reached.lsn) - parse_lsn(summary.start_lsn)) if reached.lsn else 0
    scratch.timing = {"restore_bytes": result.bytes, "restore_seconds": round(copied - copy_started, 3),
                      "wal_bytes": wal_bytes, "replay_seconds": round(replayed - copied, 3)}
    return result, reached


def remove(scratch: Scratch) -> str | None:
    """Stop the scratch server (immediately: nothing in it is kept) and delete the directory.
    Returns what went wrong, or None."""
    problem = None
    pid = server.read_pid_file(scratch.pgdata)
    if pid is not None and server.process_alive(pid.pid):
        if scratch.bin_dir is not None:
            subprocess.run([str(scratch.bin_dir / "pg_ctl"), "-D", str(scratch.pgdata), "-m",
                            "immediate", "-w", "-t", "60", "stop"], capture_output=True, text=True)
        if server.process_alive(pid.pid):
            os.kill(pid.pid, signal.SIGQUIT)  # what pg_ctl's immediate mode sends
            for _ in range(100):
                if not server.process_alive(pid.pid):
                    break
                time.sleep(0.1)
            else:
                problem = f"the scratch server (pid {pid.pid}) did not stop"
    shutil.rmtree(scratch.directory, ignore_errors=True)
    if scratch.socket_dir is not None:
        shutil.rmtree(scratch.socket_dir, ignore_errors=True)
    if scratch.directory.exists():
        problem = (problem + "; " if problem else "") + f"{scratch.directory} could not be removed"
    return problem


def _newest_mtime(directory: Path) -> float:
    """The newest modification time of the directory, its entries and its data directory's
    (a running server touches its log and its pid file)."""
    newest = directory.stat().st_mtime
    for sub in (directory, directory / "pgdata"):
        try:
            with os.scandir(sub) as entries:
                for entry in entries:
                    try:
                        newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
                    except FileNotFoundError:
                        continue
        except (FileNotFoundError, NotADirectoryError):
            continue
    return newest


def directory_bytes(directory: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


def abandoned(parent: Path, older_than: float, now: float | None = None) -> list[tuple[Path, int, float]]:
    """Scratch directories under ``parent`` untouched for ``older_than`` seconds:
    (directory, bytes, age). The caller makes sure no drill that could own them runs."""
    now = time.time() if now is None else now
    found = []
    try:
        entries = sorted(parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    for directory in entries:
        if not directory.name.startswith(PREFIX) or directory.is_symlink() or not directory.is_dir():
            continue
        try:
            age = now - _newest_mtime(directory)
        except FileNotFoundError:
            continue
        if age >= older_than:
            found.append((directory, directory_bytes(directory), age))
    return found
