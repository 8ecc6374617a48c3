"""Backup manifests: every file of a backup, and for each the block list that says where
its blocks are.

A manifest is one object, written last: a backup without a manifest does not exist.
Layout::

    LIFEBOAT-MANIFEST <format> <summary length> <sha256 of summary>\n
    <summary: one line of JSON, ending in \n>
    <body: zstd-compressed JSON lines, one per file, in path order>

The summary (what ``info`` shows) can be read without the body and carries the
body's length and SHA-256, so a damaged manifest is always detected. It lists every
pack the backup's blocks are in, so garbage collection and copies need only summaries
to know the packs.

In an encrypted repository the summary is sealed (the first line's length and SHA-256
are then of the sealed summary), and so is the body, in pieces of :data:`BODY_PIECE`
bytes of compressed body, each sealed on its own with its place as associated data, the
last (shorter, possibly empty) marked as the end: the body is still written and read as a
stream, and a piece moved, dropped or cut off fails authentication. The body's length and
SHA-256 are then those of the stored (sealed) body, so a copy checks it without the keys.

A file's blocks are in a block list (:mod:`engine.repository.blocklist`): a shared,
content-addressed object named by its SHA-256 (``"L"``, with ``"P"``: the places in
the summary's pack list of the packs that list uses, so a later backup can take the
entry over without reading the list), or, for a small file, the list itself inline
(``"i"``, base64). An unchanged file thus costs a backup one short line. A stored list
that takes its first ids from a base list has that list's id too (``"B"``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import zstandard

from engine.errors import ChecksumError, NotFoundError
from engine.repository import formats, layout
from engine.repository.blocklist import BlockList, read_stored
from engine.repository.encryption import OVERHEAD, RepositoryKeys, keys_of, read_exactly
from engine.repository.storage import Storage

FORMAT = formats.MANIFEST
MAGIC = b"LIFEBOAT-MANIFEST"
CHUNK = 1 << 20
SPOOL_BYTES = 1 << 20  # a manifest body larger than this is spooled to disk
READ_BUFFER = 64 * 1024  # entries are read in pieces of this much (decompressed)
BODY_PIECE = 1 << 20  # an encrypted manifest's body is sealed in pieces of this much


@dataclass(slots=True)
class FileEntry:
    path: str
    kind: str  # "file", "dir" or "link"
    mode: int
    size: int = 0
    mtime: float = 0.0
    target: str | None = None
    list_id: bytes | None = None  # SHA-256 of its stored block list, or:
    inline: bytes | None = None  # its block list itself (small files)
    packs: tuple[int, ...] = ()  # with list_id: places in the summary's packs of the list's packs
    corrupt_pages: list[int] = field(default_factory=list)  # failed their PostgreSQL checksum
    base: bytes | None = None  # with list_id: the id of the list its list takes its first ids from

    @property
    def stored_lists(self) -> tuple[bytes, ...]:
        """The ids of the stored lists it needs: its own, and that list's base."""
        if self.list_id is None:
            return ()
        return (self.list_id,) if self.base is None else (self.list_id, self.base)

    @property
    def list_key(self) -> bytes | None:
        """What identifies its block list, stored or inline (None: an empty file)."""
        if self.list_id is not None:
            return self.list_id
        return hashlib.sha256(self.inline).digest() if self.inline is not None else None

    def encode(self) -> bytes:
        item: dict[str, Any] = {"p": self.path, "k": self.kind[0], "m": self.mode}
        if self.kind == "file":
            item["s"] = self.size
            item["t"] = self.mtime
            if self.list_id is not None:
                item["L"] = self.list_id.hex()
                item["P"] = list(self.packs)
                if self.base is not None:
                    item["B"] = self.base.hex()
            elif self.inline is not None:
                item["i"] = base64.b64encode(self.inline).decode()
            if self.corrupt_pages:
                item["c"] = self.corrupt_pages
        elif self.kind == "link":
            item["l"] = self.target
        return json.dumps(item, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> FileEntry:
        item = json.loads(line)
        kind = {"f": "file", "d": "dir", "l": "link"}[item["k"]]
        list_id = bytes.fromhex(item["L"]) if "L" in item else None
        inline = base64.b64decode(item["i"], validate=True) if "i" in item else None
        base = bytes.fromhex(item["B"]) if "B" in item else None
        size = item.get("s", 0)
        if kind == "file" and (size > 0) != ((list_id is None) != (inline is None)):
            raise ValueError(f"{item['p']}: a file of {size} bytes needs exactly one block list")
        if base is not None and list_id is None:
            raise ValueError(f"{item['p']}: a base list without a stored list")
        return cls(item["p"], kind, item["m"], size, item.get("t", 0.0), item.get("l"), list_id,
                   inline, tuple(item.get("P", ())), item.get("c", []), base)


@dataclass
class BackupSummary:
    """What a backup is: identity, WAL range, sizes. Shown by ``info``."""

    id: str
    cluster: str
    type: str
    started_at: str
    finished_at: str
    start_lsn: str
    stop_lsn: str
    timeline: int
    start_wal: str
    stop_wal: str
    stopped_at: str
    stop_next_xid: int
    system_identifier: int
    pg_version: int
    size_bytes: int
    stored_bytes: int
    file_count: int
    block_count: int
    block_size: int
    frame_size: int
    compression: str
    backup_label: str
    tablespace_map: str
    tablespaces: list[dict[str, Any]]
    packs: list[str]
    base: str | None = None
    reused_bytes: int = 0
    lists_written: int = 0  # block list objects this backup added to the repository
    list_bytes: int = 0
    page_checksums: bool = False  # the cluster's pages were checked while read
    corrupt_pages: int = 0
    corrupt_files: list[str] = field(default_factory=list)
    ratios: dict[str, dict[str, int]] = field(default_factory=dict)  # file kind -> raw, stored
    compression_changes: list[str] = field(default_factory=list)
    lifeboat_version: str = ""
    body_sha256: str = ""
    body_bytes: int = 0
    format: int = FORMAT

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BackupSummary:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _piece_aad(key: str, index: int, last: bool) -> bytes:
    return f"{key}#body {index}{' end' if last else ''}".encode()


class ManifestWriter:
    """Collects file entries (in path order) into a compressed body spooled to disk; with
    the repository's ``keys``, sealed for the manifest's ``key``."""

    def __init__(self, keys: RepositoryKeys | None = None, key: str = "") -> None:
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        self._compressor = zstandard.ZstdCompressor(level=3).compressobj()
        self._hash = hashlib.sha256()
        self._bytes = 0
        self._keys = keys
        self._key = key
        self._pending = bytearray()  # encrypted: compressed body not sealed yet
        self._pieces = 0

    def _emit(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self._keys is None:
            self._store(chunk)
            return
        self._pending += chunk
        while len(self._pending) >= BODY_PIECE:
            self._seal_piece(BODY_PIECE, last=False)

    def _seal_piece(self, size: int, last: bool) -> None:
        assert self._keys is not None
        piece = self._pending[:size]
        del self._pending[:size]
        self._store(self._keys.seal(piece, _piece_aad(self._key, self._pieces, last)))
        self._pieces += 1

    def _store(self, chunk: bytes) -> None:
        self._spool.write(chunk)
        self._hash.update(chunk)
        self._bytes += len(chunk)

    def add(self, entry: FileEntry) -> None:
        self._emit(self._compressor.compress(entry.encode()))

    def finish(self, summary: BackupSummary) -> Iterator[bytes]:
        """The whole manifest object as chunks (never whole in memory), with the body's
        checksum recorded in the summary first."""
        self._emit(self._compressor.flush())
        if self._keys is not None:
            self._seal_piece(len(self._pending), last=True)
        summary.body_sha256 = self._hash.hexdigest()
        summary.body_bytes = self._bytes
        head = json.dumps(summary.to_json(), separators=(",", ":")).encode() + b"\n"
        if self._keys is not None:
            head = self._keys.seal(head, f"{self._key}#summary".encode())
        first = b"%s %d %d %s\n" % (MAGIC, FORMAT, len(head), hashlib.sha256(head).hexdigest().encode())
        return self._chunks(first + head)

    def _chunks(self, head: bytes) -> Iterator[bytes]:
        yield head
        self._spool.seek(0)
        try:
            while chunk := self._spool.read(CHUNK):
                yield chunk
        finally:
            self._spool.close()


def _parse_first_line(data: bytes, key: str) -> tuple[int, int, str]:
    end = data.find(b"\n")
    fields = data[:end].split(b" ") if end > 0 else []
    if len(fields) < 2 or fields[0] != MAGIC:
        raise ChecksumError(f"{key}: not a Lifeboat manifest (damaged header)")
    try:
        found: object = int(fields[1])
    except ValueError:
        found = fields[1].decode(errors="replace")
    formats.check(f"manifest {key}", found, FORMAT)
    if len(fields) != 4:
        raise ChecksumError(f"{key}: damaged manifest header")
    try:
        return end + 1, int(fields[2]), fields[3].decode()
    except ValueError:
        raise ChecksumError(f"{key}: damaged manifest header") from None


def _summary_from(head: bytes, digest: str, key: str, keys: RepositoryKeys | None) -> BackupSummary:
    if hashlib.sha256(head).hexdigest() != digest:
        raise ChecksumError(f"{key}: manifest summary fails its checksum (damaged)")
    if keys is not None:
        head = keys.open(head, f"{key}#summary".encode(), f"{key} (its summary)")
    try:
        return BackupSummary.from_json(json.loads(head))
    except (ValueError, TypeError) as exc:
        raise ChecksumError(f"{key}: manifest summary is unreadable ({exc})") from None


def read_summary(storage: Storage, cluster: str, backup_id: str) -> BackupSummary:
    """The summary of one backup, reading only the start of its manifest."""
    key = layout.manifest_key(cluster, backup_id)
    size = storage.size(key)
    first = storage.read_range(key, 0, min(size, 256))
    start, length, digest = _parse_first_line(first, key)
    if start + length > size:
        raise ChecksumError(f"{key}: manifest is truncated")
    head = storage.read_range(key, start, length)
    return _summary_from(head, digest, key, keys_of(storage))


@dataclass
class Manifest:
    """A verified manifest; its entries are streamed from the repository on each read."""

    summary: BackupSummary
    storage: Storage
    key: str
    body_offset: int
    _pack_set: frozenset[str] | None = None

    def block_list(self, entry: FileEntry) -> BlockList:
        """The checked block list of a file entry: stored (its SHA-256 must be its id) or
        inline, for the entry's size and the backup's block size, naming only packs the
        entry (and so the summary) lists. NotFoundError when a stored list is missing,
        ChecksumError when it is damaged or disagrees with the manifest."""
        if entry.inline is not None:
            what = f"{self.key} file {entry.path} (inline list)"
            blocks = BlockList(entry.inline, what)
            if self._pack_set is None:
                self._pack_set = frozenset(self.summary.packs)
            allowed: frozenset[str] | set[str] = self._pack_set
        elif entry.list_id is not None:
            key = layout.list_key(self.summary.cluster, entry.list_id.hex())
            what = f"block list {key} (file {entry.path})"
            data = self._read_list(key, entry.list_id, what)
            base = None
            if entry.base is not None:
                base_key = layout.list_key(self.summary.cluster, entry.base.hex())
                base_what = f"block list {base_key} (base of {key}, file {entry.path})"
                base = BlockList(self._read_list(base_key, entry.base, base_what), base_what)
            blocks = BlockList(data, what, base)
            if blocks.base != entry.base:
                raise ChecksumError(f"{what}: its base list is not the one the manifest names "
                                    "(damaged or inconsistent)")
            try:
                allowed = {self.summary.packs[i] for i in entry.packs}
            except (IndexError, TypeError):
                raise ChecksumError(f"{self.key} file {entry.path}: its pack numbers are not in the "
                                    "summary's pack list (damaged manifest)") from None
        else:
            raise ChecksumError(f"{self.key} file {entry.path}: no block list (damaged manifest)")
        if blocks.size != entry.size or blocks.block_size != self.summary.block_size:
            raise ChecksumError(f"{what}: holds {blocks.size} bytes in blocks of {blocks.block_size}, "
                                f"but the manifest says {entry.size} bytes in blocks of "
                                f"{self.summary.block_size}")
        stray = [p for p in blocks.packs if p not in allowed]
        if stray:
            raise ChecksumError(f"{what}: names pack {stray[0]}, which the manifest does not list "
                                "for it (damaged or inconsistent)")
        return blocks

    def _read_list(self, key: str, ident: bytes, what: str) -> bytes:
        try:
            return read_stored(self.storage, key, ident, what)
        except NotFoundError:
            raise NotFoundError(f"{what} is missing from the repository") from None

    def entries(self) -> Iterator[FileEntry]:
        with self.storage.open_stream(self.key) as stream:
            stream.read(self.body_offset)
            keys = keys_of(self.storage)
            body = stream if keys is None else _OpenedBody(stream, keys, self.key)
            reader = zstandard.ZstdDecompressor().stream_reader(body)
            for number, line in enumerate(io.BufferedReader(reader, buffer_size=READ_BUFFER), 1):
                try:
                    entry = FileEntry.decode(line)
                except (ValueError, KeyError, TypeError) as exc:
                    raise ChecksumError(f"{self.key}: entry {number} is unreadable ({exc}); "
                                        "the manifest is damaged") from None
                yield entry


def read_manifest(storage: Storage, cluster: str, backup_id: str) -> Manifest:
    """The verified manifest of one backup; ChecksumError if any byte of it is damaged.

    The body is checked in one streaming pass; entries are read again when iterated.
    """
    key = layout.manifest_key(cluster, backup_id)
    try:
        stream = storage.open_stream(key)
    except NotFoundError:
        raise NotFoundError(f"backup '{backup_id}' of cluster '{cluster}' does not exist") from None
    with stream:
        first = stream.readline(256)
        start, length, digest = _parse_first_line(first, key)
        summary = _summary_from(stream.read(length), digest, key, keys_of(storage))
        body_hash, body_bytes = hashlib.sha256(), 0
        while chunk := stream.read(CHUNK):
            body_hash.update(chunk)
            body_bytes += len(chunk)
    if body_bytes != summary.body_bytes or body_hash.hexdigest() != summary.body_sha256:
        raise ChecksumError(f"{key}: manifest body fails its checksum (damaged or truncated)")
    return Manifest(summary, storage, key, start + length)


class _OpenedBody:
    """The compressed body of an encrypted manifest, opened piece by piece as it is read
    (a stream for the decompressor): a piece of less than :data:`BODY_PIECE` bytes is the
    last; one cut off, missing or out of place fails authentication."""

    def __init__(self, stream: BinaryIO, keys: RepositoryKeys, key: str) -> None:
        self._stream = stream
        self._keys = keys
        self._key = key
        self._piece = b""
        self._at = 0
        self._index = 0
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        while self._at >= len(self._piece) and not self._ended:
            self._next()
        end = len(self._piece) if size < 0 else self._at + size
        out = self._piece[self._at:end]
        self._at += len(out)
        return out

    def _next(self) -> None:
        stored = read_exactly(self._stream, BODY_PIECE + OVERHEAD)
        if not stored:
            raise ChecksumError(f"{self._key}: the manifest's body is cut off (its last piece is "
                                "missing); the manifest is damaged")
        last = len(stored) < BODY_PIECE + OVERHEAD
        self._piece = self._keys.open(stored, _piece_aad(self._key, self._index, last),
                                      f"{self._key} (body piece {self._index})")
        self._at = 0
        self._index += 1
        self._ended = last


def list_backup_ids(storage: Storage, cluster: str) -> list[str]:
    ids = (layout.backup_id_of(k) for k in storage.list(layout.backups_prefix(cluster), False))
    return sorted(i for i in ids if i)
