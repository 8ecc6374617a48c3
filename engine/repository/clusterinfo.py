"""The cluster's identity in the repository (``cluster.json``), written by ``init``, and
the repository's marker (``lifeboat.repo``).

WAL pushes and backups compare what they see with it, so segments or files of
another cluster can never be mixed into this cluster's archive. Both are sealed
documents (:mod:`engine.repository.sealed`) in the repository's format
(:data:`engine.repository.formats.REPOSITORY`); every command reads ``cluster.json``
first, so a repository of another format, or a damaged identity, is refused before
anything else of it is read (at no extra request on the WAL path). In an encrypted
repository ``cluster.json`` is sealed too, and both are in its format
(:data:`engine.repository.formats.ENCRYPTED_REPOSITORY`): so is the encryption checked
against the configuration's by every command, before it writes anything.
"""

from __future__ import annotations

import os
from collections import namedtuple

from engine.errors import ChecksumError, ClusterSetupError, EncryptionKeyError, FormatError, NotFoundError
from engine.repository import layout, sealed
from engine.repository.storage_keys import keys_of

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from engine.repository.encryption import RepositoryKeys
    from engine.repository.storage.base import Storage

_HERE = os.path.dirname(os.path.abspath(__file__))
#: What :func:`parse` reads a document with: a change of any means parsing again.
_PARSERS = tuple(os.path.join(_HERE, name) for name in ("clusterinfo.py", "sealed.py", "formats.py"))


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


def read(storage: Storage, cluster: str, cached: bool = False) -> ClusterInfo:
    """The stored identity; a clear error when ``init`` has not run.

    ``cached``: for a process per WAL file. The identity parsed from the same bytes of an
    unencrypted repository's document is taken from :mod:`engine.memo` (parsing imports
    ``json`` and ``re``, a tenth of a ``wal-push``); the document is read every time, and
    any change of it (another cluster, a new format, damage) is parsed and checked anew.
    """
    try:
        raw = storage.get(layout.cluster_info_key(cluster))
    except NotFoundError:
        raise ClusterSetupError(
            f"cluster '{cluster}' is not initialised in the repository {storage.describe()}: "
            f"run 'lifeboat init --cluster {cluster}'"
        ) from None
    key = layout.cluster_info_key(cluster)
    what, keys = f"{storage.describe()}: {key}", keys_of(storage)
    if not cached or keys is not None:
        return parse(raw, what, keys, key)
    from engine.memo import derived

    return ClusterInfo(**derived("cluster", raw, _PARSERS, lambda: parse(raw, what)._asdict()))


def parse(raw: bytes, what: str, keys: RepositoryKeys | None = None, key: str = "") -> ClusterInfo:
    """The identity in the sealed ``cluster.json`` ``raw``; ``what`` names it in errors
    (FormatError for another format, ChecksumError when damaged). With the repository's
    ``keys``, it must be sealed under ``key``."""
    fields = sealed.unseal(raw, sealed.CLUSTER, what, keys, key)
    try:
        return ClusterInfo(**fields)
    except (ValueError, TypeError) as exc:
        raise ChecksumError(f"{what} is damaged: {exc}") from None


def write(storage: Storage, cluster: str, info: ClusterInfo) -> bool:
    """Store the identity unless one exists; True when written."""
    key = layout.cluster_info_key(cluster)
    data = sealed.seal(sealed.CLUSTER, info._asdict(), indent=2, keys=keys_of(storage), key=key)
    return storage.put_if_absent(key, data)


def marker(keys: RepositoryKeys | None = None) -> bytes:
    """The content of ``lifeboat.repo`` (of an encrypted repository with ``keys``)."""
    from engine.repository.encryption import CIPHER

    return sealed.seal(sealed.REPOSITORY, {"encryption": CIPHER} if keys else {}, keys=keys)


def parse_marker(raw: bytes, what: str, keys: RepositoryKeys | None = None) -> None:
    """Refuse the marker ``raw`` when it is of another format or damaged, or says the
    repository's encryption is not what ``keys`` says."""
    sealed.unseal(raw, sealed.REPOSITORY, what, keys)


def check_marker(storage: Storage) -> bool:
    """Refuse a repository whose marker says another format or is damaged, or another
    encryption than the storage's keys; False when it has none."""
    try:
        raw = storage.get(layout.REPO_MARKER)
    except NotFoundError:
        return False
    parse_marker(raw, f"repository {storage.describe()} ({layout.REPO_MARKER})", keys_of(storage))
    return True


def marker_encrypted(storage: Storage) -> bool | None:
    """Whether the repository's marker says it is encrypted (None: it has no marker; False
    too when it is damaged or of another format, which verify and init report)."""
    try:
        refuse_if_encrypted(storage)
    except EncryptionKeyError:
        return True
    return False if storage.exists(layout.REPO_MARKER) else None


def refuse_if_encrypted(storage: Storage) -> None:
    """EncryptionKeyError when the marker of ``storage`` (opened without keys) says the
    repository is encrypted: the configuration lacks its key. A marker that is missing,
    damaged or of another format is left to verify and init to report."""
    try:
        parse_marker(storage.get(layout.REPO_MARKER),
                     f"repository {storage.describe()} ({layout.REPO_MARKER})")
    except (NotFoundError, ChecksumError, FormatError):
        pass
