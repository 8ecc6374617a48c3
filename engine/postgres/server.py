"""Starting a restored cluster and following its recovery to the end.

The server is started with pg_ctl, logging to one file in English (lc_messages=C,
logging_collector=off for this start), so its log can be read; its postmaster.pid
says where it listens. Recovery has ended when the server is out of
recovery (promote), paused at the target (pause), or stopped at the target
(shutdown). A server that stops for any other reason is a failed restore, reported
with the lines of its log that say why.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import PostgresError, RecoveryShortfallError, RestoreError

_LOG_LEVEL = re.compile(r"\b(LOG|FATAL|PANIC|ERROR|WARNING|DETAIL|HINT):\s+(.*)$")


def bin_dir_for(pg_version: int, configured: Path | None = None) -> Path:
    """Where pg_ctl of this major version lives (config, Debian's layout, or PATH)."""
    if configured is not None:
        return configured
    debian = Path(f"/usr/lib/postgresql/{pg_version // 10000}/bin")
    if (debian / "pg_ctl").exists():
        return debian
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise RestoreError(f"pg_ctl for PostgreSQL {pg_version // 10000} not found: set bin_dir "
                       "in the cluster's configuration")


def start(pgdata: Path, bin_dir: Path, log_file: Path, port: int | None = None) -> None:
    """Start the server in the background (recovery may take long; see wait_for_recovery)."""
    options = "-c lc_messages=C -c logging_collector=off" + (f" -p {port}" if port else "")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("")
    command = [str(bin_dir / "pg_ctl"), "-D", str(pgdata), "-l", str(log_file), "-W",
               "-o", options, "start"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RestoreError(f"pg_ctl could not start {pgdata}: "
                           f"{(done.stderr or done.stdout).strip()} ({shlex.join(command)})")


@dataclass(frozen=True)
class PidFile:
    pid: int
    port: int
    socket_dir: str
    listen: str
    status: str


def read_pid_file(pgdata: Path) -> PidFile | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().split("\n")
    except FileNotFoundError:
        return None
    if len(lines) < 8 or not lines[0].strip().isdigit():
        return PidFile(int(lines[0]), 0, "", "", "") if lines[0].strip().isdigit() else None
    return PidFile(int(lines[0]), int(lines[3] or 0), lines[4].strip(), lines[5].strip(),
                   lines[7].strip())


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class ReachedPoint:
    """Where recovery ended."""

    state: str  # "promoted", "paused" or "shut down"
    lsn: str | None
    time: str | None
    timeline: int | None
    stop_message: str | None
    port: int | None


def log_messages(log_file: Path, levels: tuple[str, ...]) -> list[str]:
    try:
        text = log_file.read_text(errors="replace")
    except FileNotFoundError:
        return []
    found = []
    for line in text.splitlines():
        match = _LOG_LEVEL.search(line)
        if match and match.group(1) in levels:
            found.append(f"{match.group(1)}: {match.group(2)}")
        elif line.startswith("lifeboat"):
            found.append(line)
    return found


def _stop_message(log_file: Path) -> str | None:
    for message in reversed(log_messages(log_file, ("LOG",))):
        if "recovery stopping" in message or "recovery has paused" in message:
            return message.removeprefix("LOG: ")
    return None


_ARCHIVE_FATAL = re.compile(r'could not restore file "([0-9A-F]{24})" from archive')


def _failure(log_file: Path) -> RestoreError:
    lines = [m for m in log_messages(log_file, ("FATAL", "PANIC", "ERROR", "DETAIL", "HINT"))]
    detail = "\n  ".join(lines[-12:]) if lines else f"(no error in {log_file})"
    message = f"the restored server stopped during recovery:\n  {detail}\n  (server log: {log_file})"
    if any(_ARCHIVE_FATAL.search(line) for line in lines):
        # wal-get refused a missing or damaged segment: recovery stopped short of it
        return RecoveryShortfallError(message, cause="wal_gap")
    return RestoreError(message)


def _shutdown_point(log_file: Path) -> ReachedPoint:
    message = _stop_message(log_file)
    lsn = None
    for line in reversed(log_messages(log_file, ("LOG",))):
        found = re.search(r"redo done at ([0-9A-F]+/[0-9A-F]+)", line)
        if found:
            lsn = found.group(1)
            break
    return ReachedPoint("shut down", lsn, None, None, message, None)


def wait_for_recovery(pgdata: Path, log_file: Path, action: str,
                      timeout: float | None = None,
                      on_wait: Callable[[str | None], None] | None = None) -> ReachedPoint:
    """Follow recovery until it ends as ``action`` says; raise if the server dies instead."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen_pid: int | None = None
    while True:
        pid = read_pid_file(pgdata)
        if pid is not None:
            seen_pid = pid.pid
        if pid is None or not process_alive(pid.pid):
            if seen_pid is not None or pid is not None or _log_says_stopped(log_file):
                if action == "shutdown" and _log_has(log_file, "shutdown at recovery target"):
                    return _shutdown_point(log_file)
                raise _failure(log_file)
        elif pid.port and pid.status in ("ready", "standby"):
            point = _probe(pid, action, log_file)
            if point is not None:
                return point
        if on_wait is not None:
            on_wait(pid.status if pid else None)
        if deadline is not None and time.monotonic() > deadline:
            raise RestoreError(f"recovery did not end within {timeout:g}s (server log: {log_file})")
        time.sleep(0.2)


def _log_has(log_file: Path, text: str) -> bool:
    try:
        return text in log_file.read_text(errors="replace")
    except FileNotFoundError:
        return False


def _log_says_stopped(log_file: Path) -> bool:
    return _log_has(log_file, "database system is shut down") or _log_has(log_file, "FATAL")


def _probe(pid: PidFile, action: str, log_file: Path) -> ReachedPoint | None:
    from engine.postgres import connection as postgres  # psycopg: only when a server is started

    host = pid.socket_dir or (pid.listen if pid.listen not in ("", "*") else "127.0.0.1")
    try:
        with postgres.connect(postgres.Endpoint(host, pid.port), "restored", 3) as conn:
            in_recovery, paused = postgres.row(
                conn, "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() "
                "THEN pg_get_wal_replay_pause_state() END")
            if in_recovery and not (action == "pause" and paused == "paused"):
                return None
            lsn, at = postgres.row(
                conn, "SELECT pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()")
            if in_recovery:
                timeline = postgres.value(conn, "SELECT timeline_id FROM pg_control_checkpoint()")
                state = "paused"
            else:
                name = postgres.value(conn, "SELECT pg_walfile_name(pg_current_wal_lsn())")
                timeline, state = int(name[:8], 16), "promoted"
    except PostgresError:
        return None
    return ReachedPoint(state, lsn, at.isoformat() if at else None, int(timeline),
                        _stop_message(log_file), pid.port)
