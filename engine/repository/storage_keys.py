"""Which keys a storage carries (:func:`engine.repository.encryption.attach` sets them).

Apart from :mod:`engine.repository.encryption` so that the WAL path, which asks this of
every repository, does not import that module (and its ``json``, ``hmac``, ``base64``)
for a repository that is not encrypted.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from engine.repository.encryption import RepositoryKeys
    from engine.repository.storage.base import Storage


def keys_of(storage: Storage) -> RepositoryKeys | None:
    """The keys of the repository ``storage`` is (None: it is not encrypted)."""
    return getattr(storage, "keys", None)


def name_key_of(storage: Storage) -> bytes | None:
    """The HMAC key of block and list ids (None: plain SHA-256)."""
    keys = getattr(storage, "keys", None)
    return None if keys is None else keys.name_key
