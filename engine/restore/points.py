"""Named restore points, created in WAL and remembered in the repository.

Remembering a point's LSN lets ``restore --target-name`` pick the newest backup that
ends before it (PostgreSQL itself cannot tell which backups can reach a name).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from engine.config.schema import Config
from engine.errors import NotFoundError, UsageError
from engine.repository import formats, layout
from engine.repository.storage import Storage
from engine.wal.names import format_lsn, parse_lsn


@dataclass(frozen=True)
class RestorePoint:
    name: str
    lsn: str
    wal: str
    created_at: str


def create(config: Config, cluster: str, storage: Storage, name: str) -> RestorePoint:
    if not name or len(name) >= 64:
        raise UsageError("a restore point name must have 1 to 63 characters")
    from engine.postgres import connection as postgres  # psycopg only for creating, not for looking up

    settings = config.clusters[cluster]
    with postgres.connect_cluster(settings, cluster) as conn:
        lsn, wal_name, at = postgres.create_restore_point(conn, name)
    point = RestorePoint(name, format_lsn(lsn), wal_name, at.isoformat())
    save(storage, cluster, point)
    return point


def save(storage: Storage, cluster: str, point: RestorePoint) -> None:
    """Remember a restore point in the repository (replacing one of the same name)."""
    record = {"format": formats.RESTORE_POINT} | asdict(point)
    storage.put(layout.restore_point_key(cluster, point.name), json.dumps(record).encode())


def lookup_lsn(storage: Storage, cluster: str, name: str) -> int | None:
    """The LSN of a restore point made by ``lifeboat restore-point``, if it was."""
    key = layout.restore_point_key(cluster, name)
    try:
        data = json.loads(storage.get(key))
    except NotFoundError:
        return None
    formats.check(f"restore point {key}", data.get("format"), formats.RESTORE_POINT)
    return parse_lsn(data["lsn"]) if data.get("name") == name else None
