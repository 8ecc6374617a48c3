"""Where the benchmark runs: tool paths, the postgres OS user, the work directory's layout,
free ports, and running commands as postgres."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.pgbackrest import PgBackRest

REPO_ROOT = Path(__file__).resolve().parent.parent
LIFEBOAT = Path(sys.executable).parent / "lifeboat"
PGBACKREST = shutil.which("pgbackrest") or "/usr/bin/pgbackrest"  # Debian's, the default
OS_USER = "postgres"
CLUSTER = "bench"
STARTED_AT = time.monotonic()


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


def log(message: str) -> None:
    """Progress, to stderr, with the time since the start."""
    print(f"[{time.monotonic() - STARTED_AT:7.1f}s] {message}", file=sys.stderr, flush=True)


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
    basebackup: Path
    restore: Path
    verify: Path
    segments: Path
    push_lb_repo: Path
    push_lb_config: Path

    @classmethod
    def under(cls, root: Path) -> Paths:
        lifeboat, wal = root / "lifeboat", root / "wal"
        return cls(
            root=root, pgdata=root / "pgdata", sock=root / "sock", pglog=root / "postgresql.log",
            rss=root / "rss.txt", lb_repo=lifeboat / "repo", lb_config=lifeboat / "lifeboat.toml",
            lb_cache=lifeboat / "cache", basebackup=root / "basebackup",
            restore=root / "restore", verify=root / "verify", segments=wal / "segments",
            push_lb_repo=wal / "lifeboat-repo", push_lb_config=wal / "lifeboat.toml",
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
    grow_mb: int = 1600  # the append-only table `grow` (MiB), 0 for none
    append_mb: int = 54  # appended to `grow` before the append-mostly incremental (MiB)
    pgbench_seconds: int = 30  # pgbench -T before the pgbench incremental
    pgbackrests: tuple[PgBackRest, ...] = ()  # the pgBackRest builds compared (bench/pgbackrest.py)
    cold: bool = False  # sync + drop the page cache before each timed backup, restore, verify, expire
    lb_url: str = ""  # Lifeboat's repository as a URL (s3://...) instead of paths.lb_repo
    pgbackrest_extra: str = ""  # more [global] lines for every pgBackRest (its S3 repository)
    loads: list[float] = field(default_factory=list)  # 1-min load average at each timed command
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


def available_memory() -> int:
    """MemAvailable from /proc/meminfo, in bytes (0 if unknown)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def child_env(bench: Bench) -> dict[str, str]:
    """The environment of every command: postgres's, C.UTF-8, the work directory's cache."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PG", "LIFEBOAT", "XDG_"))}
    env.update(HOME=bench.user.home, USER=bench.user.name, LOGNAME=bench.user.name,
               LC_ALL="C.UTF-8", LANG="C.UTF-8", LIFEBOAT_CACHE_DIR=str(bench.paths.lb_cache),
               PATH=f"{bench.pg_bin}:/usr/local/bin:/usr/bin:/bin")
    return env


def as_postgres(bench: Bench) -> dict[str, object]:
    """subprocess keyword arguments that make the child run as the postgres OS user."""
    if os.geteuid() == bench.user.uid:
        return {}
    return {"user": bench.user.uid, "group": bench.user.gid,
            "extra_groups": os.getgrouplist(bench.user.name, bench.user.gid)}


def run(bench: Bench, command: Sequence[str | Path], *, check: bool = True,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as postgres in the work directory, output captured."""
    argv = [str(part) for part in command]
    done = subprocess.run(argv, cwd=bench.paths.root, env=child_env(bench), capture_output=True,
                          text=True, timeout=timeout, check=False, **as_postgres(bench))  # type: ignore[call-overload]
    if check and done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip())[-3000:]
        raise BenchError(f"command failed (exit {done.returncode}): {shlex.join(argv)}\n{output}")
    return done
