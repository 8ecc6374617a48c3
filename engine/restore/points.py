"""Named restore points, created in WAL and remembered in the repository.

Remembering a point's LSN lets ``restore --target-name`` pick the newest backup that
ends before it (PostgreSQL itself cannot tell which backups can reach a name).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from engine.config.schema import Config
from engine.errors import ChecksumError, NotFoundError, UsageError
from engine.repository import clusterinfo, layout, sealed
from engine.repository.encryption import RepositoryKeys, keys_of
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
    clusterinfo.read(storage, cluster)  # an initialised cluster, encrypted as configured
    with postgres.connect_cluster(settings, cluster) as conn:
        lsn, wal_name, at = postgres.create_restore_point(conn, name)
    point = RestorePoint(name, format_lsn(lsn), wal_name, at.isoformat())
    save(storage, cluster, point)
    return point


def save(storage: Storage, cluster: str, point: RestorePoint) -> None:
    """Remember a restore point in the repository (replacing one of the same name)."""
    keys = keys_of(storage)
    key = layout.restore_point_key(cluster, point.name, None if keys is None else keys.name_key)
    storage.put(key, sealed.seal(sealed.RESTORE_POINT, asdict(point), keys=keys, key=key))


def lookup_lsn(storage: Storage, cluster: str, name: str) -> int | None:
    """The LSN of a restore point made by ``lifeboat restore-point``, if it was."""
    keys = keys_of(storage)
    key = layout.restore_point_key(cluster, name, None if keys is None else keys.name_key)
    try:
        raw = storage.get(key)
    except NotFoundError:
        return None
    data = parse(raw, f"restore point {key}", keys, key)
    return parse_lsn(data.lsn) if data.name == name else None


def parse(raw: bytes, what: str, keys: RepositoryKeys | None = None, key: str = "") -> RestorePoint:
    """The restore point in the sealed record ``raw``; FormatError or ChecksumError naming
    ``what`` when it is of another format or damaged (or, with the repository's ``keys``,
    fails authentication under ``key``)."""
    fields = sealed.unseal(raw, sealed.RESTORE_POINT, what, keys, key)
    try:
        point = RestorePoint(**fields)
        parse_lsn(point.lsn)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ChecksumError(f"{what} is damaged: {exc}") from None
    return point
