"""Sealed documents: the small JSON objects of the repository, each with its kind, its
format and the SHA-256 of its body on a first line, so damage to any byte is detected.

::

    LIFEBOAT-<KIND> <format> <sha256 of body, hex>\\n
    <body: one JSON object, ending in \\n>

``lifeboat.repo``, ``cluster.json``, named restore points and ``verified.json`` are
sealed, and every reader opens them through :func:`unseal`, which refuses another kind,
another format (:class:`FormatError`, saying whether a newer or an older Lifeboat wrote
it) or a body that fails its checksum (:class:`ChecksumError`), naming the key.

``cluster.json`` is read by every command, ``wal-push`` included: this module imports
only what that path imports anyway (hashlib, json).
"""

from __future__ import annotations

import hashlib
import json

from engine.errors import ChecksumError
from engine.repository import formats

#: Kinds of sealed documents, each with the format number it is written in.
REPOSITORY = "REPOSITORY"  # lifeboat.repo
CLUSTER = "CLUSTER"  # cluster.json
RESTORE_POINT = "RESTORE-POINT"
VERIFIED = "VERIFIED"  # verified.json
FORMAT_OF = {REPOSITORY: formats.REPOSITORY, CLUSTER: formats.REPOSITORY,
             RESTORE_POINT: formats.RESTORE_POINT, VERIFIED: formats.VERIFY_STATE}
_PREFIX = b"LIFEBOAT-"


def seal(kind: str, fields: dict[str, object], indent: int | None = None) -> bytes:
    """The sealed document of ``kind`` holding ``fields``, in this Lifeboat's format."""
    body = json.dumps(fields, indent=indent).encode() + b"\n"
    head = b"%s%s %d %s\n" % (_PREFIX, kind.encode(), FORMAT_OF[kind],
                              hashlib.sha256(body).hexdigest().encode())
    return head + body


def unseal(data: bytes, kind: str, what: str) -> dict:
    """The fields of the sealed document ``data`` of ``kind``; ``what`` names it (its key).

    FormatError when it is of another format (an unsealed JSON document is one written
    before documents were sealed), ChecksumError when any byte of it is damaged.
    """
    supported = FORMAT_OF[kind]
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
    formats.check(what, found, supported)
    body = data[end + 1:]
    if hashlib.sha256(body).hexdigest().encode() != fields[2]:
        raise ChecksumError(f"{what} is damaged: its content fails its checksum")
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise ChecksumError(f"{what} is damaged: {exc}") from None
    if not isinstance(document, dict):
        raise ChecksumError(f"{what} is damaged: it holds no JSON object")
    return document


def _refuse_unsealed(data: bytes, what: str, supported: int) -> None:
    """A document without a seal: one of an older format (JSON with or without a format
    number), or damaged."""
    try:
        document = json.loads(data)
    except ValueError:
        raise ChecksumError(f"{what} is damaged: it is not a sealed Lifeboat document") from None
    found = document.get("format") if isinstance(document, dict) else None
    formats.check(what, found, supported)
    raise ChecksumError(f"{what} is damaged: it claims format {found} but carries no checksum")
