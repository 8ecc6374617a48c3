"""Health checks shared by the CLI, the agent's remediation and the console.

Can the server, the repository and each copy be reached; how much room is left where
Lifeboat and PostgreSQL write; is WAL archiving working; is the repository writable; is
the cluster's lock free. Each check returns :class:`Finding` values (what was checked,
whether it answered, the detail in words) and raises for no expected fault: a server
that is down, a directory that is missing or a full disk is a finding, not an error.

Every check takes a ``timeout``. A connection gets it as its connect timeout; a call that
can hang in the kernel (a dead network mount) runs in a worker thread that is abandoned
when it overruns (:func:`bounded`), so a check never holds its caller past the timeout.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.config.schema import ClusterConfig, Config
from engine.errors import LifeboatError, PostgresError, StorageError, path_error
from engine.repository import layout
from engine.repository.storage import Storage, local_path, open_storage

T = TypeVar("T")


@dataclass(frozen=True)
class Finding:
    """One thing checked: ``target`` names it (a server, a path, a copy), ``ok`` whether it
    answered or passed, ``detail`` what was found."""

    target: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.target}: {'ok' if self.ok else 'FAILED'}: {self.detail}"


class CheckTimeout(LifeboatError):
    """A check that did not answer within its time."""


def bounded(call: Callable[[], T], timeout: float, what: str) -> T:
    """``call()`` in a worker thread; CheckTimeout naming ``what`` when it overruns
    ``timeout`` seconds (the thread is abandoned: it cannot be stopped). Its exception,
    if any, is raised here."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True, name=f"lifeboat-check-{what[:20]}")
    worker.start()
    worker.join(max(0.01, timeout))
    if worker.is_alive():
        raise CheckTimeout(f"{what} did not answer within {timeout:.3g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


# reaching things ------------------------------------------------------------------------

def server_target(settings: ClusterConfig, cluster: str) -> str:
    from engine.postgres.connection import endpoint_of

    return f"PostgreSQL server of cluster '{cluster}' ({endpoint_of(settings).describe()})"


def reach_server(settings: ClusterConfig, cluster: str, timeout: float) -> Finding:
    """Connect to the cluster's server (its connect_timeout, at most ``timeout``) and ask
    for its version and whether it is in recovery."""
    from engine.postgres import connection as postgres

    target = server_target(settings, cluster)
    limit = max(1.0, min(settings.connect_timeout, timeout))
    started = time.monotonic()
    try:
        def ask() -> tuple[str, bool]:
            with postgres.connect(postgres.endpoint_of(settings), cluster, limit,
                                  statement_timeout=limit) as conn:
                row = conn.execute("SELECT current_setting('server_version'), "
                                   "pg_is_in_recovery()").fetchone()
                assert row is not None
                return str(row[0]), bool(row[1])
        version, recovering = bounded(ask, limit + 1.0, target)
    except (PostgresError, CheckTimeout) as exc:
        return Finding(target, False, f"did not answer: {exc}")
    took = time.monotonic() - started
    role = "in recovery (a standby)" if recovering else "primary"
    return Finding(target, True, f"answered in {took * 1000:.0f} ms: PostgreSQL {version}, {role}")


def reach_storage(url: str, label: str, timeout: float,
                  credentials: Mapping[str, str] | None = None) -> Finding:
    """List the repository (or copy) at ``url`` and look for its format marker. A local
    path that is missing, not a directory or unreadable fails, naming it; so does a missing
    bucket (the S3 driver names it and says to create it)."""
    target = f"{label} {url}"

    def look() -> str:
        path = local_path(url)
        if path is not None:
            if not os.path.exists(path):
                raise StorageError(f"{path} does not exist")
            if not os.path.isdir(path):
                raise StorageError(f"{path} is not a directory")
            try:
                os.listdir(path)
            except OSError as exc:
                raise StorageError(str(path_error(exc, "list", path))) from None
        storage = open_storage(url, credentials)
        clusters = storage.list(layout.cluster_prefix("").rstrip("/"), recursive=False)
        marker = storage.exists(layout.REPO_MARKER)
        return (f"{len(clusters)} cluster(s) listed, "
                + ("format marker present" if marker else f"no {layout.REPO_MARKER} marker yet"))

    started = time.monotonic()
    try:
        detail = bounded(look, timeout, target)
    except (LifeboatError, OSError) as exc:
        text = str(path_error(exc)) if isinstance(exc, OSError) else str(exc)
        return Finding(target, False, f"did not answer: {text}")
    return Finding(target, True, f"answered in {(time.monotonic() - started) * 1000:.0f} ms: {detail}")


@dataclass(frozen=True)
class Replica:
    """A row of the primary's ``pg_stat_replication``."""

    application_name: str
    client: str | None
    state: str
    sync_state: str
    lag_bytes: int | None  # the primary's current LSN minus what the replica replayed (or flushed)
    lag_of: str  # "replay", or "flush" for a WAL receiver that replays nothing (pg_receivewal)
    reply_age: float | None  # seconds since its last reply


def replicas(settings: ClusterConfig, cluster: str, timeout: float) -> list[Replica]:
    """What the primary's ``pg_stat_replication`` shows (PostgresError when unreachable)."""
    from engine.postgres import connection as postgres

    limit = max(1.0, min(settings.connect_timeout, timeout))
    with postgres.connect(postgres.endpoint_of(settings), cluster, limit, statement_timeout=limit) as conn:
        rows = conn.execute(
            "SELECT application_name, client_addr::text, state, sync_state, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(replay_lsn, flush_lsn))::bigint, "
            "CASE WHEN replay_lsn IS NULL THEN 'flush' ELSE 'replay' END, "
            "extract(epoch FROM now() - reply_time)::float8 "
            "FROM pg_stat_replication ORDER BY application_name").fetchall()
    return [Replica(str(r[0]), r[1], str(r[2]), str(r[3]), None if r[4] is None else int(r[4]), str(r[5]),
                    None if r[6] is None else float(r[6])) for r in rows]


def network(config: Config, cluster: str, timeout: float) -> list[Finding]:
    """Reach the cluster's server, the repository and each of its copies, the time shared."""
    deadline = time.monotonic() + timeout
    found = [reach_server(config.cluster(cluster), cluster, timeout)]
    found.append(reach_storage(config.repository.url, "repository",
                               max(0.5, deadline - time.monotonic()), config.repository.credentials))
    for region, copy in sorted(config.repository.copies.items()):
        found.append(reach_storage(copy.url, f"copy '{region}'", max(0.5, deadline - time.monotonic())))
    return found


# disk space ---------------------------------------------------------------------------

@dataclass(frozen=True)
class DiskSpace:
    """Free space of the file system holding ``path`` (``resolved``: symlinks followed)."""

    label: str
    path: str
    resolved: str
    free: int | None  # bytes available to unprivileged users; None: could not be read
    total: int | None
    error: str | None = None

    @property
    def share(self) -> float | None:
        if self.free is None or not self.total:
            return None
        return self.free / self.total


def disk_paths(config: Config, cluster: str) -> list[tuple[str, str]]:
    """(label, path) of where a cluster's data and Lifeboat's files are written: the
    repository (when local), PGDATA, pg_wal, the spool (when archiving is async)."""
    settings = config.cluster(cluster)
    paths: list[tuple[str, str]] = []
    repo = local_path(config.repository.url)
    if repo is not None:
        paths.append(("repository", repo))
    paths.append(("PGDATA", str(settings.pgdata)))
    paths.append(("pg_wal", str(settings.pgdata / "pg_wal")))
    if settings.archive.mode == "async":
        paths.append(("spool", str(config.spool_directory(cluster))))
    return paths


def free_space(label: str, path: str, timeout: float = 10.0) -> DiskSpace:
    """Free space where ``path`` is (the nearest existing parent of a path not made yet)."""
    resolved = os.path.realpath(path)
    probe = resolved
    try:
        if not os.path.exists(resolved):
            raise FileNotFoundError(2, "No such file or directory", resolved)
        usage = bounded(lambda: shutil.disk_usage(probe), timeout, path)
    except CheckTimeout as exc:
        return DiskSpace(label, path, resolved, None, None, str(exc))
    except OSError as exc:
        return DiskSpace(label, path, resolved, None, None, str(path_error(exc, "stat", path)))
    return DiskSpace(label, path, resolved, int(usage.free), int(usage.total))


def disk_space(config: Config, cluster: str, timeout: float = 10.0) -> list[DiskSpace]:
    deadline = time.monotonic() + timeout
    return [free_space(label, path, max(0.5, deadline - time.monotonic()))
            for label, path in disk_paths(config, cluster)]


# archiving, writability, the lock -----------------------------------------------------

@dataclass(frozen=True)
class ArchiverState:
    """``pg_stat_archiver`` of a server."""

    archived_count: int
    last_archived_wal: str | None
    last_archived_time: float | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_time: float | None

    @property
    def failing(self) -> bool:
        """The last attempt failed: a failure newer than the last success."""
        if self.last_failed_time is None:
            return False
        return self.last_archived_time is None or self.last_failed_time > self.last_archived_time


def archiver_state(settings: ClusterConfig, cluster: str, timeout: float) -> ArchiverState:
    """Read ``pg_stat_archiver`` (PostgresError when the server cannot be reached)."""
    from engine.postgres import connection as postgres

    limit = max(1.0, min(settings.connect_timeout, timeout))
    with postgres.connect(postgres.endpoint_of(settings), cluster, limit, statement_timeout=limit) as conn:
        row = conn.execute(
            "SELECT archived_count, last_archived_wal, extract(epoch FROM last_archived_time)::float8, "
            "failed_count, last_failed_wal, extract(epoch FROM last_failed_time)::float8 "
            "FROM pg_stat_archiver").fetchone()
    assert row is not None
    return ArchiverState(int(row[0]), row[1], row[2], int(row[3]), row[4], row[5])


def archiving(settings: ClusterConfig, cluster: str, timeout: float) -> Finding:
    target = f"WAL archiving of cluster '{cluster}'"
    try:
        state = archiver_state(settings, cluster, timeout)
    except PostgresError as exc:
        return Finding(target, False, f"cannot be read: {exc}")
    when = _ago(state.last_archived_time)
    if state.failing:
        return Finding(target, False, (
            f"failing: archive_command failed for {state.last_failed_wal} {_ago(state.last_failed_time)} "
            f"({state.failed_count} failures since the statistics were reset); last success: "
            + (f"{state.last_archived_wal} {when}" if state.last_archived_wal else "none")))
    if state.last_archived_wal is None:
        return Finding(target, True, "nothing archived or failed since the statistics were reset")
    return Finding(target, True, f"working: last archived {state.last_archived_wal} {when} "
                                 f"({state.archived_count} archived, {state.failed_count} failed)")


def _ago(at: float | None) -> str:
    if at is None:
        return "never"
    seconds = max(0.0, time.time() - at)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


PROBE_BYTES = 4096


def repository_writable(storage: Storage, cluster: str, timeout: float) -> Finding:
    """Write a probe object (durably: the driver fsyncs), read it back, compare, delete it.
    Its key is :func:`engine.repository.layout.probe_key`, which verify knows is no data."""
    token = f"{os.uname().nodename.lower()}-{os.getpid()}-{os.urandom(4).hex()}"
    token = "".join(c if c.isalnum() or c == "-" else "-" for c in token)
    key = layout.probe_key(cluster, token)
    target = f"repository {storage.describe()} (writing {key})"
    payload = os.urandom(PROBE_BYTES)

    def probe() -> None:
        storage.put(key, payload)
        try:
            back = storage.get(key)
            if back != payload:
                raise StorageError(f"{key}: read back {len(back)} bytes that differ from the "
                                   f"{len(payload)} written")
        finally:
            storage.delete(key)

    started = time.monotonic()
    try:
        bounded(probe, timeout, target)
    except (LifeboatError, OSError) as exc:
        text = str(path_error(exc)) if isinstance(exc, OSError) else str(exc)
        return Finding(target, False, f"not writable: {text}")
    return Finding(target, True, f"written, synced, read back and deleted in "
                                 f"{(time.monotonic() - started) * 1000:.0f} ms")


def lock_free(storage: Storage, cluster: str) -> Finding:
    from engine.repository.locks import cluster_lock_holder

    target = f"lock of cluster '{cluster}'"
    try:
        holder = cluster_lock_holder(storage, cluster)
    except StorageError as exc:
        return Finding(target, False, f"cannot be checked: {exc}")
    if holder is None:
        return Finding(target, True, "free")
    return Finding(target, False, f"held by {holder}")


def backup_dependencies(config: Config, cluster: str, storage: Storage, timeout: float) -> list[Finding]:
    """What a backup needs: the server reachable, archiving working, the repository
    writable, the cluster's lock free."""
    deadline = time.monotonic() + timeout
    settings = config.cluster(cluster)

    def left() -> float:
        return max(0.5, deadline - time.monotonic())

    server = reach_server(settings, cluster, left())
    found = [server]
    if server.ok:
        found.append(archiving(settings, cluster, left()))
    else:
        found.append(Finding(f"WAL archiving of cluster '{cluster}'", False,
                             "not checked: the server did not answer"))
    found.append(repository_writable(storage, cluster, left()))
    found.append(lock_free(storage, cluster))
    return found
