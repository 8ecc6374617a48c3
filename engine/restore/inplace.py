"""Restoring a cluster over its own data directory ("in place").

A restore is in place when its data directory is the cluster's configured ``pgdata`` (the
same directory, however the path is spelled). It needs the server stopped: the plan says
so as a problem, unless the restore is asked with ``stop_server``, in which case the restore
job itself stops the server (fast shutdown, :func:`stop_server`) before writing anything.
While such a restore is queued or running, the agent holds the cluster's scheduled jobs
(:func:`held_clusters`).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import PostgresError, UsageError
from engine.postgres import server

if TYPE_CHECKING:
    from engine.catalog.store import Catalog
    from engine.config.schema import Config
    from engine.context import Context

DEFAULT_STOP_TIMEOUT = 120.0


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def is_in_place(config: Config, cluster: str, pgdata: str | Path) -> bool:
    """Whether ``pgdata`` is ``cluster``'s own data directory."""
    settings = config.clusters.get(cluster)
    return settings is not None and _same(Path(pgdata), settings.pgdata)


def running_pid(pgdata: Path) -> int | None:
    """The pid of the server running on ``pgdata``, or None."""
    pid = server.read_pid_file(pgdata)
    return pid.pid if pid is not None and server.process_alive(pid.pid) else None


def _bin_dir(config: Config, cluster: str) -> Path:
    settings = config.clusters[cluster]
    try:
        major = int((settings.pgdata / "PG_VERSION").read_text().strip())
    except (OSError, ValueError):
        major = 0
    return server.bin_dir_for(major * 10000, settings.bin_dir)


def stop_server(ctx: Context, cluster: str, timeout: float = DEFAULT_STOP_TIMEOUT) -> int | None:
    """Stop ``cluster``'s server (pg_ctl stop, fast mode: sessions are disconnected, a shutdown
    checkpoint is written) and wait up to ``timeout`` seconds; returns the pid that was
    stopped (None: it was not running). PostgresError when it does not stop."""
    if cluster not in ctx.config.clusters:
        raise UsageError(f"unknown cluster '{cluster}'")
    pgdata = ctx.config.clusters[cluster].pgdata
    pid = running_pid(pgdata)
    if pid is None:
        return None
    command = [str(_bin_dir(ctx.config, cluster) / "pg_ctl"), "-D", str(pgdata), "-m", "fast",
               "-w", "-t", str(max(1, int(timeout))), "stop"]
    done = subprocess.run(command, capture_output=True, text=True)
    if running_pid(pgdata) is not None:
        raise PostgresError(f"the server of cluster '{cluster}' (pid {pid}) did not stop within "
                            f"{timeout:g}s: {(done.stderr or done.stdout).strip()}")
    return pid


def in_place_job(config: Config, kind: str, cluster: str, params: dict[str, Any]) -> bool:
    """Whether a job is a restore over its cluster's own data directory."""
    return kind == "restore" and bool(params.get("pgdata")) and \
        is_in_place(config, cluster, str(params["pgdata"]))


def held_clusters(catalog: Catalog, config: Config) -> dict[str, int]:
    """Clusters whose scheduled work is held, with the in-place restore job that holds each
    (queued, waiting or running)."""
    from engine.catalog.store import ACTIVE_STATES

    held: dict[str, int] = {}
    for job in catalog.jobs(states=ACTIVE_STATES, kind="restore", limit=1000):
        if in_place_job(config, job.kind, job.cluster, job.params):
            held[job.cluster] = min(job.id, held.get(job.cluster, job.id))
    return held
