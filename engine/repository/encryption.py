"""Encryption at rest: AES-256-GCM of every object that holds data, and keyed names.

Keys, in two layers (envelope encryption):

- the **user's key** (the key encryption key): 32 random bytes the configuration names
  (``[repository.encryption] key_file`` or ``key_env``), never stored in the repository.
  Its *key id* is the first 4 bytes of HMAC-SHA256(key, "lifeboat key id"): it says which
  key is meant in messages and records, and reveals nothing of the key;
- the **repository's keys**, kept in ``lifeboat.keys`` (beside ``lifeboat.repo``) wrapped
  (AES-256-GCM) under the current user key: a random *name key* made once, the HMAC key
  of block and list ids, so names reveal nothing of the content and stay the same across
  rotations (dedup keeps working); and the *data keys* that seal objects, one per user key
  the repository has been used with: HKDF-SHA256(user key, the repository's random id).

Rotation: the configuration names a new ``key_file`` and lists the previous one in
``old_key_files``. The first command that opens the repository unwraps ``lifeboat.keys``
with the old key, adds the new user key's data key, makes it the one new objects are
sealed with, and wraps everything under the new key (:func:`open_keys`). Every data key
stays in ``lifeboat.keys``, so objects sealed before the rotation keep opening once the old
key file is gone. The new data key is derived, not drawn, so processes that rotate at the
same moment write the same keys (the last write wins, and says the same).

Every sealed object (an *envelope*) records the id of the data key that sealed it::

    "LBX" 0x01 | data key id (4) | nonce (12) | GCM tag (16) | ciphertext

with a fresh random 96-bit nonce per seal and the object's key (its name in the
repository, plus its place for a pack frame or a manifest chunk) as associated data: an
object moved to another name, or a frame to another place, fails authentication. The tag
comes first so that a long object can be opened as a stream (:meth:`RepositoryKeys.opening`).

The keys are opened once per command (:func:`open_keys`) and travel with the storage they
belong to (:func:`attach`, :func:`keys_of`): every reader and writer of an object already
holds the storage. This module is on the WAL path: ``cryptography`` is imported only when a
repository is encrypted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import stat
from collections import namedtuple

from engine.errors import (
    ChecksumError,
    ClusterSetupError,
    EncryptionKeyError,
    LifeboatError,
    NotFoundError,
)
from engine.repository import layout
from engine.repository.storage_keys import keys_of, name_key_of  # noqa: F401 (callers find them here too)

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from typing import BinaryIO

    from engine.repository.storage.base import Storage

CIPHER = "AES-256-GCM"
KEY_BYTES = 32
MAGIC = b"LBX\x01"
KEY_ID_BYTES = 4
NONCE_BYTES = 12
TAG_BYTES = 16
HEAD_BYTES = len(MAGIC) + KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES
OVERHEAD = HEAD_BYTES  # what sealing adds to an object
KEYS_OBJECT = layout.REPO_KEYS
_ID_LABEL = b"lifeboat key id"
_DATA_KEY_LABEL = b"lifeboat data key"


class KeySources(namedtuple("KeySources", "key_file key_env old_key_files")):
    """Where the user's keys are: the current one (a file or an environment variable) and
    earlier ones (files) that may still be needed once, to rotate."""

    __slots__ = ()
    key_file: str | None
    key_env: str | None
    old_key_files: tuple[str, ...]

    @classmethod
    def from_plain(cls, data: dict | None) -> KeySources | None:
        """From the configuration's ``[repository.encryption]`` as plain data (None: off)."""
        if not data:
            return None
        return cls(data.get("key_file"), data.get("key_env"), tuple(data.get("old_key_files") or ()))

    @property
    def current_source(self) -> str:
        """Where the current key is, for messages."""
        return f"key_file {self.key_file}" if self.key_file else f"key_env ${self.key_env}"


class UserKey(namedtuple("UserKey", "id secret source")):
    __slots__ = ()
    id: str  # 8 hex digits
    secret: bytes
    source: str  # where it was read, for messages


def key_id(secret: bytes) -> str:
    """The short id of a key: 8 hex digits of HMAC-SHA256(key, label), never the key."""
    return hmac.new(secret, _ID_LABEL, hashlib.sha256).hexdigest()[:2 * KEY_ID_BYTES]


def generate_key() -> bytes:
    return os.urandom(KEY_BYTES)


def format_key(secret: bytes) -> str:
    """How a key is written to a key file: base64, one line."""
    return base64.b64encode(secret).decode() + "\n"


def parse_key(text: bytes, source: str) -> bytes:
    """The 32 bytes of a key written as base64 or hex (surrounding space ignored), or raw."""
    if len(text) == KEY_BYTES:
        return text
    word = text.strip()
    secret = b""
    try:
        if len(word) == 2 * KEY_BYTES:
            secret = bytes.fromhex(word.decode("ascii"))
        elif len(word) in (43, 44):
            secret = base64.b64decode(word + b"=" * (44 - len(word)), validate=True)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        secret = b""
    if len(secret) != KEY_BYTES:
        raise EncryptionKeyError(
            f"{source}: not a repository key (32 bytes written as base64 or hex, e.g. "
            "'lifeboat repo-key generate --output FILE' or 'openssl rand -base64 32')")
    return secret


def read_key_file(path: str, what: str) -> UserKey:
    """The key in ``path``, which only its owner may read (like an ssh private key)."""
    source = f"{what} {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        from engine.errors import path_error

        raise EncryptionKeyError(f"cannot read the repository key ({what}): "
                                 f"{path_error(exc, 'read', path)}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise EncryptionKeyError(f"{source}: not a regular file")
        if mode & 0o077:
            raise EncryptionKeyError(f"{source}: readable by others than its owner (mode "
                                     f"{stat.S_IMODE(mode):04o}): chmod 600 it, owned by the user "
                                     "Lifeboat runs as (os_user, who runs archive_command)")
        text = os.read(fd, 4096)
    finally:
        os.close(fd)
    secret = parse_key(text, source)
    return UserKey(key_id(secret), secret, source)


def read_key_env(name: str) -> UserKey:
    source = f"key_env ${name}"
    value = os.environ.get(name)
    if not value:
        raise EncryptionKeyError(f"{source}: the environment variable is not set (the key must be "
                                 "in the environment of every lifeboat process, archive_command's "
                                 "included: a key_file is simpler)")
    secret = parse_key(value.encode(), source)
    return UserKey(key_id(secret), secret, source)


def current_key(sources: KeySources) -> UserKey:
    if sources.key_file:
        return read_key_file(sources.key_file, "key_file")
    return read_key_env(sources.key_env or "")


# sealing ----------------------------------------------------------------------------------

def _aes(secret: bytes):
    from cryptography.hazmat.primitives.ciphers import algorithms

    return algorithms.AES(secret)


def _seal(algorithm, kid: bytes, data: bytes | bytearray | memoryview, aad: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    nonce = os.urandom(NONCE_BYTES)
    encryptor = Cipher(algorithm, modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    body = encryptor.update(data)
    encryptor.finalize()
    return b"".join((MAGIC, kid, nonce, encryptor.tag, body))


def _head(sealed: bytes | memoryview, what: str) -> tuple[bytes, bytes, bytes]:
    """Key id, nonce and tag of an envelope; ChecksumError when it is none."""
    if len(sealed) < HEAD_BYTES or bytes(sealed[:len(MAGIC)]) != MAGIC:
        raise ChecksumError(f"{what}: not sealed, in an encrypted repository (damaged, or not "
                            "written by Lifeboat); refusing to use it")
    at = len(MAGIC)
    return (bytes(sealed[at:at + KEY_ID_BYTES]),
            bytes(sealed[at + KEY_ID_BYTES:at + KEY_ID_BYTES + NONCE_BYTES]),
            bytes(sealed[HEAD_BYTES - TAG_BYTES:HEAD_BYTES]))


def _failed(what: str) -> ChecksumError:
    return ChecksumError(f"{what}: fails authentication (AES-GCM): damaged or tampered with (or "
                         "moved from another name); refusing to use it")


def _open(algorithm, nonce: bytes, tag: bytes, body: bytes | memoryview, aad: bytes,
          what: str) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    decryptor = Cipher(algorithm, modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    out = decryptor.update(body)
    try:
        decryptor.finalize()
    except InvalidTag:
        raise _failed(what) from None
    return out


class RepositoryKeys:
    """The repository's keys, unwrapped: seal and open objects, key names.

    Thread-safe (each seal and open makes its own cipher context)."""

    def __init__(self, repository_id: bytes, name_key: bytes, data_keys: dict[bytes, bytes],
                 current: bytes, wrapped_under: str) -> None:
        self.repository_id = repository_id
        self.name_key = name_key
        self.data_keys = dict(data_keys)
        self.current = current  # id of the data key new objects are sealed with
        self.wrapped_under = wrapped_under  # id of the user key lifeboat.keys is wrapped under
        self.rotated_from: str | None = None  # set when opening re-wrapped the keys
        self._algorithms = {kid: _aes(secret) for kid, secret in data_keys.items()}

    def seal(self, data: bytes | bytearray | memoryview, aad: bytes) -> bytes:
        """``data`` sealed with the current data key; ``aad`` is the object's name."""
        return _seal(self._algorithms[self.current], self.current, data, aad)

    def _algorithm(self, kid: bytes, what: str):
        algorithm = self._algorithms.get(kid)
        if algorithm is None:
            raise ChecksumError(f"{what}: sealed with data key {kid.hex()}, which the repository's "
                                f"keys ({KEYS_OBJECT}) do not hold (was {KEYS_OBJECT} replaced by an "
                                "older copy?); it cannot be opened")
        return algorithm

    def open(self, sealed: bytes | bytearray | memoryview, aad: bytes, what: str) -> bytes:
        """The content of the envelope ``sealed``; ChecksumError naming ``what`` unless it
        authenticates under ``aad``."""
        view = memoryview(sealed)
        kid, nonce, tag = _head(view, what)
        return _open(self._algorithm(kid, what), nonce, tag, view[HEAD_BYTES:], aad, what)

    def opening(self, stream: BinaryIO, aad: bytes, what: str) -> _Opening:
        """A stream of the content of the envelope read from ``stream``. Its last read (the
        empty one at the end) raises ChecksumError unless everything authenticated: a
        reader uses what it read only after that."""
        kid, nonce, tag = _head(read_exactly(stream, HEAD_BYTES), what)
        return _Opening(stream, self._algorithm(kid, what), nonce, tag, aad, what)


def read_exactly(stream: BinaryIO, size: int) -> bytes:
    """``size`` bytes of ``stream``, fewer only at its end."""
    parts, got = [], 0
    while got < size:
        part = stream.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


class _Opening:
    def __init__(self, stream: BinaryIO, algorithm, nonce: bytes, tag: bytes, aad: bytes,
                 what: str) -> None:
        from cryptography.hazmat.primitives.ciphers import Cipher, modes

        self._stream = stream
        self._decryptor = Cipher(algorithm, modes.GCM(nonce, tag)).decryptor()
        self._decryptor.authenticate_additional_data(aad)
        self._what = what
        self._done = False

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data:
            return self._decryptor.update(data)
        if not self._done:
            from cryptography.exceptions import InvalidTag

            self._done = True
            try:
                self._decryptor.finalize()
            except InvalidTag:
                raise _failed(self._what) from None
        return b""


# attaching keys to the storage they belong to ---------------------------------------------

def attach(storage: Storage, keys: RepositoryKeys | None) -> Storage:
    """``storage`` with the repository's keys: what every reader and writer finds through
    :func:`keys_of`. None: the repository is not encrypted."""
    storage.keys = keys  # type: ignore[attr-defined]
    return storage


# lifeboat.keys ----------------------------------------------------------------------------

def _derive_data_key(user: UserKey, repository_id: bytes) -> tuple[bytes, bytes]:
    """HKDF-SHA256 of the user's key (salt: the repository's id): (its id, the key)."""
    prk = hmac.new(repository_id, user.secret, hashlib.sha256).digest()
    secret = hmac.new(prk, _DATA_KEY_LABEL + b"\x01", hashlib.sha256).digest()
    return bytes.fromhex(key_id(secret)), secret


def _wrap_aad(repository_id: bytes, user_id: str) -> bytes:
    return b"%s %s %s" % (KEYS_OBJECT.encode(), repository_id.hex().encode(), user_id.encode())


def _document(keys: RepositoryKeys, user: UserKey) -> bytes:
    from engine.repository import sealed

    secret = json.dumps({
        "name_key": base64.b64encode(keys.name_key).decode(),
        "data_keys": {kid.hex(): base64.b64encode(k).decode() for kid, k in keys.data_keys.items()},
        "current": keys.current.hex(),
    }).encode()
    aad = _wrap_aad(keys.repository_id, user.id)
    wrapped = _seal(_aes(user.secret), bytes.fromhex(user.id), secret, aad)
    return sealed.seal(sealed.KEYS, {
        "cipher": CIPHER, "id": keys.repository_id.hex(), "wrapped_under": user.id,
        "wrapped": base64.b64encode(wrapped).decode()})


def _unwrap(fields: dict, user: UserKey, what: str) -> RepositoryKeys:
    try:
        repository_id = bytes.fromhex(fields["id"])
        wrapped = base64.b64decode(fields["wrapped"], validate=True)
        _, nonce, tag = _head(wrapped, what)
        secret = json.loads(_open(_aes(user.secret), nonce, tag, memoryview(wrapped)[HEAD_BYTES:],
                                  _wrap_aad(repository_id, user.id), what))
        data_keys = {bytes.fromhex(k): base64.b64decode(v) for k, v in secret["data_keys"].items()}
        keys = RepositoryKeys(repository_id, base64.b64decode(secret["name_key"]), data_keys,
                              bytes.fromhex(secret["current"]), user.id)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ChecksumError(f"{what} is damaged: {exc}") from None
    if keys.current not in data_keys or len(keys.name_key) != KEY_BYTES:
        raise ChecksumError(f"{what} is damaged: its keys are inconsistent")
    return keys


def _read_document(storage: Storage) -> dict | None:
    from engine.repository import sealed

    try:
        raw = storage.get(KEYS_OBJECT)
    except NotFoundError:
        return None
    what = f"{storage.describe()}: {KEYS_OBJECT}"
    fields = sealed.unseal(raw, sealed.KEYS, what)
    if fields.get("cipher") != CIPHER:
        raise ChecksumError(f"{what}: unknown cipher {fields.get('cipher')!r} (damaged?)")
    return fields


def _missing(storage: Storage, sources: KeySources) -> LifeboatError:
    """Why a repository without ``lifeboat.keys`` cannot be opened with a key."""
    from engine.repository import clusterinfo

    where = storage.describe()
    encrypted = clusterinfo.marker_encrypted(storage)
    if encrypted is None:
        return ClusterSetupError(f"repository {where} is not initialised (no {KEYS_OBJECT}): run "
                                 "'lifeboat init', which creates its keys under the configured "
                                 f"{sources.current_source}")
    if encrypted:
        return EncryptionKeyError(
            f"repository {where} is encrypted but its keys ({KEYS_OBJECT}) are missing: nothing in "
            f"it can be opened without them; put back {KEYS_OBJECT} from a copy of the repository "
            "(a region's copy holds one)")
    return EncryptionKeyError(
        f"repository {where} is not encrypted, but the configuration has [repository.encryption]: "
        "remove that table (encryption can be turned on for a new repository only)")



def open_keys(storage: Storage, sources: KeySources) -> RepositoryKeys:
    """Unwrap the repository's keys with the configured user key, before anything is read
    or written. A key that is not the repository's is refused with an EncryptionKeyError
    naming where it came from and the key the repository expects. When the keys are wrapped
    under one of ``old_key_files``, they are re-wrapped under the current key, with its data
    key added and made current (rotation); ``rotated_from`` says so."""
    current = current_key(sources)
    fields = _read_document(storage)
    if fields is None:
        raise _missing(storage, sources)
    what = f"{storage.describe()}: {KEYS_OBJECT}"
    wanted = str(fields.get("wrapped_under", ""))
    if wanted == current.id:
        return _unwrap(fields, current, what)
    olds = [read_key_file(path, "old_key_files") for path in sources.old_key_files]
    old = next((k for k in olds if k.id == wanted), None)
    if old is None:
        named = f"key {current.id} ({current.source})" + "".join(
            f", key {k.id} ({k.source})" for k in olds)
        raise EncryptionKeyError(
            f"wrong key for repository {storage.describe()}: its keys are wrapped under key "
            f"{wanted}, and the configuration gives {named}. Configure the key whose id is "
            f"{wanted} (to rotate to a new key, set key_file to the new key and list the old one "
            "in old_key_files); nothing was written")
    keys = _unwrap(fields, old, what)
    kid, secret = _derive_data_key(current, keys.repository_id)
    keys = RepositoryKeys(keys.repository_id, keys.name_key, {**keys.data_keys, kid: secret}, kid,
                          current.id)
    storage.put(KEYS_OBJECT, _document(keys, current))
    keys.rotated_from = old.id
    return keys


def create_keys(storage: Storage, sources: KeySources) -> RepositoryKeys:
    """The keys of a new repository, written to ``lifeboat.keys`` (or those it already has,
    opened as :func:`open_keys` does). Refuses a repository that exists unencrypted."""
    current = current_key(sources)
    if _read_document(storage) is None:
        from engine.repository import clusterinfo

        if clusterinfo.marker_encrypted(storage) is not None:
            raise _missing(storage, sources)
        repository_id = os.urandom(16)
        kid, secret = _derive_data_key(current, repository_id)
        keys = RepositoryKeys(repository_id, os.urandom(KEY_BYTES), {kid: secret}, kid, current.id)
        if storage.put_if_absent(KEYS_OBJECT, _document(keys, current)):
            return keys
    return open_keys(storage, sources)


def belongs(raw: bytes, keys: RepositoryKeys, what: str) -> bool:
    """Whether ``raw``, a ``lifeboat.keys``, is of the repository of ``keys`` (a copy's
    must be). ChecksumError when it is damaged."""
    from engine.repository import sealed

    return sealed.unseal(raw, sealed.KEYS, what).get("id") == keys.repository_id.hex()
