"""The cluster's identity in the repository (``cluster.json``), written by ``init``, and
the repository's marker (``lifeboat.repo``).

WAL pushes and backups compare what they see with it, so segments or files of
another cluster can never be mixed into this cluster's archive. Both are sealed
documents (:mod:`engine.repository.sealed`) in the repository's format
(:data:`engine.repository.formats.REPOSITORY`); every command reads ``cluster.json``
first, so a repository of another format, or a damaged identity, is refused before
anything else of it is read (at no extra request on the WAL path).
"""

from __future__ import annotations

from collections import namedtuple

from engine.errors import ChecksumError, ClusterSetupError, NotFoundError
from engine.repository import layout, sealed

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
    return parse(raw, f"{storage.describe()}: {layout.cluster_info_key(cluster)}")


def parse(raw: bytes, what: str) -> ClusterInfo:
    """The identity in the sealed ``cluster.json`` ``raw``; ``what`` names it in errors
    (FormatError for another format, ChecksumError when damaged)."""
    fields = sealed.unseal(raw, sealed.CLUSTER, what)
    try:
        return ClusterInfo(**fields)
    except (ValueError, TypeError) as exc:
        raise ChecksumError(f"{what} is damaged: {exc}") from None


def write(storage: Storage, cluster: str, info: ClusterInfo) -> bool:
    """Store the identity unless one exists; True when written."""
    data = sealed.seal(sealed.CLUSTER, info._asdict(), indent=2)
    return storage.put_if_absent(layout.cluster_info_key(cluster), data)


def marker() -> bytes:
    """The content of ``lifeboat.repo``."""
    return sealed.seal(sealed.REPOSITORY, {})


def parse_marker(raw: bytes, what: str) -> None:
    """Refuse the marker ``raw`` when it is of another format or damaged."""
    sealed.unseal(raw, sealed.REPOSITORY, what)


def check_marker(storage: Storage) -> bool:
    """Refuse a repository whose marker says another format or is damaged; False when it
    has none."""
    try:
        raw = storage.get(layout.REPO_MARKER)
    except NotFoundError:
        return False
    parse_marker(raw, f"repository {storage.describe()} ({layout.REPO_MARKER})")
    return True
