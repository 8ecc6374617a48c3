"""Throwaway PostgreSQL clusters for the integration tests (initdb -k, run as postgres)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

PG_BIN = Path(os.environ.get("LIFEBOAT_PG_BIN", "/usr/lib/postgresql/15/bin"))
LIFEBOAT = Path(sys.executable).parent / "lifeboat"
PG_USER = "postgres"


def as_postgres(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as the OS user postgres (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", PG_USER, "--", *command]
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(command, **kwargs)


def chown_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(PG_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Workspace:
    """A directory tree that postgres can use (pytest's tmp_path is root-only)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lifeboat-it-", dir="/var/tmp"))
        os.chmod(self.root, 0o755)
        chown_postgres(self.root)
        self._count = 0

    def path(self, name: str, create: bool = True) -> Path:
        self._count += 1
        path = self.root / f"{self._count:03d}-{name}"
        if create:
            path.mkdir(mode=0o750)
            chown_postgres(path)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Cluster:
    pgdata: Path
    port: int
    log: Path
    started: bool = False

    @classmethod
    def create(cls, workspace: Workspace, name: str, settings: dict[str, str] | None = None
               ) -> Cluster:
        pgdata = workspace.path(name, create=False)
        done = as_postgres([str(PG_BIN / "initdb"), "-k", "-A", "trust", "-U", PG_USER,
                            "-D", str(pgdata)])
        assert done.returncode == 0, done.stderr
        cluster = cls(pgdata, free_port(), pgdata.parent / f"{pgdata.name}.log")
        base = {"port": str(cluster.port), "listen_addresses": "'127.0.0.1'",
                "unix_socket_directories": f"'{pgdata}'", "wal_level": "replica",
                "archive_mode": "on", "max_wal_senders": "4", "fsync": "on",
                "max_wal_size": "1GB", "shared_buffers": "64MB", "lc_messages": "'C'"}
        cluster.configure(base | (settings or {}))
        return cluster

    def configure(self, settings: dict[str, str]) -> None:
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        conf = self.pgdata / "postgresql.conf"
        conf.write_text(conf.read_text() + lines)

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), *args])

    def start(self) -> None:
        done = self.pg_ctl("-l", str(self.log), "-w", "-t", "60", "start")
        assert done.returncode == 0, f"{done.stderr}\n{self.log.read_text()}"
        self.started = True

    def stop(self, mode: str = "fast") -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self.pg_ctl("-m", mode, "-w", "stop")
        self.started = False

    def kill(self) -> None:
        pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.started = False

    def wait_promoted(self, timeout: float = 60) -> None:
        """Wait until recovery has ended (a started restore promotes at its end)."""
        deadline = time.monotonic() + timeout
        while not self.value("SELECT NOT pg_is_in_recovery()"):
            assert time.monotonic() < deadline, f"{self.pgdata} is still in recovery"
            time.sleep(0.1)

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname=dbname,
                               autocommit=True, connect_timeout=10)

    def sql(self, query: str, params: tuple[Any, ...] | None = None,
            dbname: str = "postgres") -> list[tuple[Any, ...]]:
        with self.connect(dbname) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def value(self, query: str, params: tuple[Any, ...] | None = None) -> Any:
        rows = self.sql(query, params)
        return rows[0][0] if rows else None

    def pgbench(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return as_postgres(["pgbench", "-h", "127.0.0.1", "-p", str(self.port), *args,
                            "postgres"], **kwargs)

    def table_checksums(self, dbname: str = "postgres") -> dict[str, tuple[int, int]]:
        """Row count and an order-independent checksum of every user table."""
        tables = [r[0] for r in self.sql(
            "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables "
            "ORDER BY 1", dbname=dbname)]
        return {t: tuple(self.sql(  # type: ignore[misc]
            f"SELECT count(*), coalesce(sum(hashtext(x::text)::bigint), 0) FROM {t} x",
            dbname=dbname)[0]) for t in tables}


@dataclass
class Lifeboat:
    """A repository, a configuration file and one cluster archiving into it."""

    workspace: Workspace
    cluster: Cluster
    repo: Path
    config: Path
    name: str = "main"
    restored: list[Cluster] = field(default_factory=list)
    repository: str = ""  # the [repository] table(s) of the configuration; default: path = repo

    @classmethod
    def create(cls, workspace: Workspace, settings: dict[str, str] | None = None,
               archive: bool = True) -> Lifeboat:
        cluster = Cluster.create(workspace, "pgdata", settings)
        repo = workspace.path("repo")
        config = workspace.root / f"lifeboat-{cluster.port}.toml"
        env = cls(workspace, cluster, repo, config)
        env.write_config(cluster)
        if archive:
            cluster.configure({"archive_command": f"'{env.archive_command()}'"})
        return env

    def write_config(self, cluster: Cluster, path: Path | None = None, extra: str = "") -> Path:
        path = path or self.config
        path.write_text(
            (self.repository or f'[repository]\npath = "{self.repo}"\n') + '\n'
            f'[clusters.{self.name}]\npgdata = "{cluster.pgdata}"\nhost = "127.0.0.1"\n'
            f'port = {cluster.port}\narchive_timeout = "30s"\n{extra}')
        os.chmod(path, 0o644)
        return path

    def archive_command(self) -> str:
        return f"{LIFEBOAT} --config {self.config} --cluster {self.name} wal-push %p"

    def run(self, *args: str, check: bool = True, config: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        command = [str(LIFEBOAT), "--config", str(config or self.config), "--cluster", self.name,
                   *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check:
            assert done.returncode == 0, (
                f"{' '.join(command)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def restore(self, *args: str, start: bool = True, check: bool = True,
                archive_mode: str = "off") -> tuple[Cluster, subprocess.CompletedProcess[str]]:
        pgdata = self.workspace.path("restored", create=False)
        port = free_port()
        restored = Cluster(pgdata, port, pgdata.parent / f"{pgdata.name}.log")
        self.restored.append(restored)
        extra = ["--port", str(port), *(["--start"] if start else [])]
        done = self.run("restore", "--pgdata", str(pgdata), "--archive-mode", archive_mode,
                        *extra, *args, check=check)
        restored.started = start and done.returncode == 0
        return restored, done

    def switch_and_archive(self) -> None:
        """Close the current segment and wait until it is in the archive."""
        self.run("check")

    def cleanup(self) -> None:
        for cluster in [*self.restored, self.cluster]:
            with contextlib.suppress(Exception):
                cluster.stop("immediate")
