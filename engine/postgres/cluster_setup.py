"""``init`` and ``check``: is this cluster's archiving wired to Lifeboat, and does it work?"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from engine.config.schema import Config
from engine.errors import ClusterSetupError, PostgresError
from engine.postgres import connection as postgres
from engine.postgres.commands import archive_command
from engine.repository import clusterinfo, layout
from engine.repository.encryption import keys_of
from engine.repository.storage import Storage


def settings_problems(found: dict[str, str], cluster: str, config: Config,
                      config_path: Path) -> list[str]:
    """Why the server's archiving settings cannot work with Lifeboat (empty when they can)."""
    problems = []
    expected = archive_command(config_path, cluster)
    if found.get("wal_level") not in ("replica", "logical"):
        problems.append(f"wal_level is '{found.get('wal_level')}': it must be 'replica' or 'logical'")
    if found.get("archive_mode") not in ("on", "always"):
        problems.append(f"archive_mode is '{found.get('archive_mode')}': it must be 'on' "
                        "(changing it needs a server restart)")
    command = found.get("archive_command", "")
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    if "wal-push" not in words or not any(os.path.basename(w) == "lifeboat" for w in words):
        problems.append(f"archive_command is '{command}': it must run lifeboat wal-push, "
                        f"e.g. archive_command = '{expected}'")
    else:
        named = _option(words, "--cluster")
        if named is not None and named != cluster:
            problems.append(f"archive_command archives into cluster '{named}', not '{cluster}'")
        elif named is None and len(config.clusters) > 1:
            problems.append(f"archive_command does not name the cluster: add --cluster {cluster}")
        other = _option(words, "--config")
        if other is not None and os.path.realpath(other) != os.path.realpath(config_path):
            problems.append(f"archive_command reads the configuration {other}, not "
                            f"{config_path}: it archives into another repository")
    return problems


def _option(words: list[str], name: str) -> str | None:
    """The value of ``name`` in a command line, as ``name VALUE`` or ``name=VALUE``."""
    for i, word in enumerate(words):
        if word == name:
            return words[i + 1] if i + 1 < len(words) else ""
        if word.startswith(name + "="):
            return word[len(name) + 1:]
    return None


@dataclass(frozen=True)
class InitResult:
    cluster: str
    info: clusterinfo.ClusterInfo
    created: bool


def _identity_checked(conn: psycopg.Connection, cluster: str, config: Config) -> postgres.Identity:
    identity = postgres.identity(conn)
    expected = Path(config.clusters[cluster].pgdata)
    if Path(identity.data_directory).resolve() != expected.resolve():
        raise ClusterSetupError(
            f"cluster '{cluster}': the server at {config.clusters[cluster].host}:"
            f"{config.clusters[cluster].port} runs data directory {identity.data_directory}, "
            f"but the configuration says pgdata = {expected}"
        )
    return identity


def init(config: Config, cluster: str, storage: Storage, config_path: Path) -> InitResult:
    """Create the cluster's place in the repository after checking the server's settings."""
    settings = config.clusters[cluster]
    with postgres.connect_cluster(settings, cluster) as conn:
        identity = _identity_checked(conn, cluster, config)
        found = postgres.settings(conn, "wal_level", "archive_mode", "archive_command")
    problems = settings_problems(found, cluster, config, config_path)
    if problems:
        raise ClusterSetupError(
            f"cluster '{cluster}' cannot be archived by Lifeboat yet:\n  - " + "\n  - ".join(problems)
        )
    if not storage.put_if_absent(layout.REPO_MARKER, clusterinfo.marker(keys_of(storage))):
        clusterinfo.check_marker(storage)
    info = clusterinfo.ClusterInfo(
        system_identifier=identity.system_identifier,
        pg_version=identity.version_num,
        wal_segment_size=identity.wal_segment_size,
        page_size=identity.page_size,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if clusterinfo.write(storage, cluster, info):
        return InitResult(cluster, info, created=True)
    stored = clusterinfo.read(storage, cluster)
    if stored.system_identifier != identity.system_identifier:
        raise ClusterSetupError(
            f"the repository's cluster '{cluster}' belongs to database system "
            f"{stored.system_identifier}, but the server is system {identity.system_identifier}: "
            "use another cluster name for a different database system"
        )
    return InitResult(cluster, stored, created=False)


@dataclass(frozen=True)
class CheckResult:
    cluster: str
    segment: str
    seconds: float


def check(config: Config, cluster: str, storage: Storage, config_path: Path) -> CheckResult:
    """Connection, settings, repository identity, and a forced WAL switch that arrives."""
    settings = config.clusters[cluster]
    with postgres.connect_cluster(settings, cluster) as conn:
        identity = _identity_checked(conn, cluster, config)
        problems = settings_problems(
            postgres.settings(conn, "wal_level", "archive_mode", "archive_command"),
            cluster, config, config_path)
        if problems:
            raise ClusterSetupError(f"cluster '{cluster}':\n  - " + "\n  - ".join(problems))
        stored = clusterinfo.read(storage, cluster)
        if stored.system_identifier != identity.system_identifier:
            raise ClusterSetupError(
                f"the repository's cluster '{cluster}' is database system "
                f"{stored.system_identifier}, the server is {identity.system_identifier}")
        before = postgres.archiver_status(conn)
        started = time.monotonic()
        segment = postgres.switch_wal(conn)
        wait_for_segments(conn, storage, cluster, [segment], settings.archive_timeout, before)
    return CheckResult(cluster, segment, time.monotonic() - started)


def wait_for_segments(conn: psycopg.Connection, storage: Storage, cluster: str,
                      names: list[str], timeout: float,
                      before: postgres.ArchiverStatus | None = None) -> None:
    """Wait until every segment in ``names`` is in the archive; explain why if it is not."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    pause = 0.01  # the archiver usually needs a few tens of ms: look again soon, then less often
    while True:
        pending = [n for n in pending if not storage.exists(layout.wal_key(cluster, n))]
        if not pending:
            return
        status = postgres.archiver_status(conn)
        # The archiver works in order: a segment failing at or before ours blocks ours.
        failing = (before is not None and status.failed_count >= before.failed_count + 3
                   and status.last_failed_wal is not None
                   and status.last_failed_wal[:24] <= max(pending))
        if failing or time.monotonic() > deadline:
            raise PostgresError(_not_archived(cluster, pending[0], timeout, status, failing))
        time.sleep(pause)
        pause = min(0.1, pause * 2)


def _not_archived(cluster: str, segment: str, timeout: float, status: postgres.ArchiverStatus,
                  failing: bool) -> str:
    lines = [f"cluster '{cluster}': WAL segment {segment} did not reach the archive"
             + ("" if failing else f" within {timeout:g}s")]
    if status.last_failed_wal:
        when = status.last_failed_time.isoformat(timespec="seconds") if status.last_failed_time else "?"
        lines.append(f"  archive_command failed {status.failed_count} times; last failure: "
                     f"{status.last_failed_wal} at {when} (the server log has the command's error)")
    else:
        lines.append("  archive_command has not reported a failure: is archiving stuck or slow? "
                     f"last archived: {status.last_archived_wal or 'none'}")
    return "\n".join(lines)
