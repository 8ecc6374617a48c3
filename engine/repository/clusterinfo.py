"""The cluster's identity in the repository (``cluster.json``), written by ``init``.

WAL pushes and backups compare what they see with it, so segments or files of
another cluster can never be mixed into this cluster's archive.
"""

from __future__ import annotations

import json
from collections import namedtuple

from engine.errors import ClusterSetupError, NotFoundError, StorageError
from engine.repository import layout

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
    try:
        return ClusterInfo(**json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise StorageError(f"{layout.cluster_info_key(cluster)} is damaged: {exc}") from None


def write(storage: Storage, cluster: str, info: ClusterInfo) -> bool:
    """Store the identity unless one exists; True when written."""
    data = json.dumps(info._asdict(), indent=2).encode() + b"\n"
    return storage.put_if_absent(layout.cluster_info_key(cluster), data)
