"""The cluster's identity in the repository (``cluster.json``), written by ``init``, and
the repository's marker (``lifeboat.repo``).

WAL pushes and backups compare what they see with it, so segments or files of
another cluster can never be mixed into this cluster's archive. Both objects carry
the repository's format (:data:`engine.repository.formats.REPOSITORY`); every command
reads ``cluster.json`` first, so a repository of another format is refused before
anything else of it is read (at no extra request on the WAL path).
"""

from __future__ import annotations

import json
from collections import namedtuple

from engine.errors import ClusterSetupError, NotFoundError, StorageError
from engine.repository import formats, layout

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from engine.repository.storage.base import Storage


class ClusterInfo(namedtuple("ClusterInfo", "system_identifier pg_version wal_segment_size "
                             "page_size created_at")):
    __slots__ = ()
    system_identifier: int
    pg_version: int
    wal_segment_size: int
    page_size: int
    created_at: str

    @property
    def major(self) -> int:
        return self.pg_version // 10000


def read(storage: Storage, cluster: str) -> ClusterInfo:
    """The stored identity; a clear error when ``init`` has not run."""
    try:
        raw = storage.get(layout.cluster_info_key(cluster))
    except NotFoundError:
        raise ClusterSetupError(
            f"cluster '{cluster}' is not initialised in the repository {storage.describe()}: "
            f"run 'lifeboat init --cluster {cluster}'"
        ) from None
    key = layout.cluster_info_key(cluster)
    try:
        fields = json.loads(raw)
        found = fields.pop("format", None)
    except (ValueError, TypeError, AttributeError) as exc:
        raise StorageError(f"{key} is damaged: {exc}") from None
    formats.check(f"{storage.describe()}: {key}", found, formats.REPOSITORY)
    try:
        return ClusterInfo(**fields)
    except (ValueError, TypeError) as exc:
        raise StorageError(f"{key} is damaged: {exc}") from None


def write(storage: Storage, cluster: str, info: ClusterInfo) -> bool:
    """Store the identity unless one exists; True when written."""
    data = json.dumps({"format": formats.REPOSITORY} | info._asdict(), indent=2).encode() + b"\n"
    return storage.put_if_absent(layout.cluster_info_key(cluster), data)


def marker() -> bytes:
    """The content of ``lifeboat.repo``."""
    return json.dumps({"format": formats.REPOSITORY}).encode() + b"\n"


def check_marker(storage: Storage) -> bool:
    """Refuse a repository whose marker says another format; False when it has none."""
    try:
        raw = storage.get(layout.REPO_MARKER)
    except NotFoundError:
        return False
    try:
        found = json.loads(raw).get("format")
    except (ValueError, AttributeError):
        raise StorageError(f"{storage.describe()}: {layout.REPO_MARKER} is damaged") from None
    formats.check(f"repository {storage.describe()} ({layout.REPO_MARKER})", found, formats.REPOSITORY)
    return True
