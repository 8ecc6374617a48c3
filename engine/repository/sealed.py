"""Sealed documents: the small JSON objects of the repository, each with its kind, its
format and the SHA-256 of its body on a first line, so damage to any byte is detected.

::

    LIFEBOAT-<KIND> <format> <sha256 of body, hex>\\n
    <body: one JSON object, ending in \\n>

``lifeboat.repo``, ``cluster.json``, named restore points and ``verified.json`` are
sealed, and every reader opens them through :func:`unseal`, which refuses another kind,
another format (:class:`FormatError`, saying whether a newer or an older Lifeboat wrote
it) or a body that fails its checksum (:class:`ChecksumError`), naming the key.

In an encrypted repository (:mod:`engine.repository.encryption`) the body is an envelope
sealed under the document's key, except in ``lifeboat.repo`` and ``lifeboat.keys``, which
are read before any key is known (they hold nothing secret); ``lifeboat.repo`` and
``cluster.json`` are then in the encrypted repository's format (4), so a Lifeboat without
encryption refuses them as newer, and one configured with a key for a repository that has
none, or without a key for one that has, says so (:class:`EncryptionKeyError`).

``cluster.json`` is read by every command, ``wal-push`` included: this module imports
only what that path imports anyway (hashlib, json).
"""

from __future__ import annotations

import hashlib

from engine.errors import ChecksumError, EncryptionKeyError
from engine.repository import formats

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from engine.repository.encryption import RepositoryKeys

#: Kinds of sealed documents, each with the format number it is written in.
REPOSITORY = "REPOSITORY"  # lifeboat.repo
CLUSTER = "CLUSTER"  # cluster.json
RESTORE_POINT = "RESTORE-POINT"
VERIFIED = "VERIFIED"  # verified.json
KEYS = "KEYS"  # lifeboat.keys
FORMAT_OF = {REPOSITORY: formats.REPOSITORY, CLUSTER: formats.REPOSITORY,
             RESTORE_POINT: formats.RESTORE_POINT, VERIFIED: formats.VERIFY_STATE,
             KEYS: formats.KEYS}
#: The same kinds' formats in an encrypted repository.
ENCRYPTED_FORMAT_OF = FORMAT_OF | {REPOSITORY: formats.ENCRYPTED_REPOSITORY,
                                   CLUSTER: formats.ENCRYPTED_REPOSITORY}
#: Kinds whose body is never encrypted: read before any key is known.
_PLAIN = frozenset((REPOSITORY, KEYS))
_PREFIX = b"LIFEBOAT-"


def seal(kind: str, fields: dict[str, object], indent: int | None = None,
         keys: RepositoryKeys | None = None, key: str = "") -> bytes:
    """The sealed document of ``kind`` holding ``fields``, in this Lifeboat's format; with
    the repository's ``keys``, its body sealed under ``key`` (where it is stored)."""
    import json  # here, not above: a wal-push takes its cluster.json from engine.memo

    body = json.dumps(fields, indent=indent).encode() + b"\n"
    if keys is not None and kind not in _PLAIN:
        body = keys.seal(body, key.encode())
    number = (FORMAT_OF if keys is None else ENCRYPTED_FORMAT_OF)[kind]
    head = b"%s%s %d %s\n" % (_PREFIX, kind.encode(), number,
                              hashlib.sha256(body).hexdigest().encode())
    return head + body


def unseal(data: bytes, kind: str, what: str, keys: RepositoryKeys | None = None,
           key: str = "") -> dict:
    """The fields of the sealed document ``data`` of ``kind``; ``what`` names it (its key).
    With the repository's ``keys``, its body must be sealed under ``key`` (where it is).

    FormatError when it is of another format (an unsealed JSON document is one written
    before documents were sealed), ChecksumError when any byte of it is damaged or it
    fails authentication, EncryptionKeyError when the repository's encryption is not
    what ``keys`` says.
    """
    supported = (FORMAT_OF if keys is None else ENCRYPTED_FORMAT_OF)[kind]
    if not data.startswith(_PREFIX):
        _refuse_unsealed(data, what, supported)
    end = data.find(b"\n")
    fields = data[:end].split(b" ") if end > 0 else []
    if len(fields) != 3 or fields[0] != _PREFIX + kind.encode():
        raise ChecksumError(f"{what} is damaged: its first line is not that of a Lifeboat "
                            f"{kind.lower().replace('-', ' ')} document")
    try:
        found: object = int(fields[1])
    except ValueError:
        found = fields[1].decode(errors="replace")
    _check_encryption(kind, found, keys, what)
    formats.check(what, found, supported)
    body = data[end + 1:]
    if hashlib.sha256(body).hexdigest().encode() != fields[2]:
        raise ChecksumError(f"{what} is damaged: its content fails its checksum")
    if keys is not None and kind not in _PLAIN:
        body = keys.open(body, key.encode(), what)
    import json

    try:
        document = json.loads(body)
    except ValueError as exc:
        raise ChecksumError(f"{what} is damaged: {exc}") from None
    if not isinstance(document, dict):
        raise ChecksumError(f"{what} is damaged: it holds no JSON object")
    return document


def _check_encryption(kind: str, found: object, keys: RepositoryKeys | None, what: str) -> None:
    """Refuse a repository whose encryption differs from the configuration's."""
    if kind not in (REPOSITORY, CLUSTER):
        return
    if keys is None and found == formats.ENCRYPTED_REPOSITORY:
        raise EncryptionKeyError(
            f"{what}: the repository is encrypted, but the configuration has no "
            "[repository.encryption]: add it with the repository's key (key_file or key_env)")
    if keys is not None and found == formats.REPOSITORY:
        raise EncryptionKeyError(
            f"{what}: the repository is not encrypted, but the configuration has "
            "[repository.encryption]: remove that table (encryption can be turned on for a new "
            "repository only)")


def _refuse_unsealed(data: bytes, what: str, supported: int) -> None:
    """A document without a seal: one of an older format (JSON with or without a format
    number), or damaged."""
    try:
        import json

        document = json.loads(data)
    except ValueError:
        raise ChecksumError(f"{what} is damaged: it is not a sealed Lifeboat document") from None
    found = document.get("format") if isinstance(document, dict) else None
    formats.check(what, found, supported)
    raise ChecksumError(f"{what} is damaged: it claims format {found} but carries no checksum")
