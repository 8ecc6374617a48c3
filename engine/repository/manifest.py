"""Backup manifests: the list of every file of a backup and where its blocks are.

A manifest is one object, written last: a backup without a manifest does not exist.
Layout::

    LIFEBOAT-MANIFEST 1 <summary length> <sha256 of summary>\\n
    <summary: one line of JSON, ending in \\n>
    <body: zstd-compressed JSON lines, one per file, in path order>

The summary (what ``info`` shows) can be read without the body and carries the
body's length and SHA-256, so a damaged manifest is always detected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import zstandard

from engine.errors import ChecksumError, NotFoundError
from engine.repository import layout
from engine.repository.storage import Storage

FORMAT = 1
MAGIC = b"LIFEBOAT-MANIFEST"
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class BlockRef:
    """One block of a file: its SHA-256 (its identity) and where it is stored.

    Blocks are compressed in frames of consecutive blocks: the frame is the ``stored``
    bytes at ``offset`` in pack number ``pack``, compressed with ``codec``, whose
    SHA-256 is ``frame_digest``; this block is the ``raw`` bytes at ``skip`` in the
    decompressed frame. Checking the stored frame proves the block as well as
    re-hashing it would (decompression is exact) at a twentieth of the cost.
    """

    digest: bytes
    pack: int
    offset: int
    stored: int
    raw: int
    codec: int
    skip: int
    frame_digest: bytes


@dataclass(slots=True)
class FileEntry:
    path: str
    kind: str  # "file", "dir" or "link"
    mode: int
    size: int = 0
    mtime: float = 0.0
    target: str | None = None
    blocks: list[BlockRef] = field(default_factory=list)
    corrupt_pages: list[int] = field(default_factory=list)  # failed their PostgreSQL checksum

    def encode(self, block_size: int) -> bytes:
        """One JSON line. A file's blocks are its block ids (hex, concatenated) and runs:
        ``[pack, offset, stored, codec, frame sha256 or "", count, first skip]`` says that
        the next ``count`` blocks are consecutive blocks of that frame. Raw sizes follow
        from the file's size, so a block costs its 16-byte id and little else."""
        item: dict[str, Any] = {"p": self.path, "k": self.kind[0], "m": self.mode}
        if self.kind == "file":
            item["s"] = self.size
            item["t"] = self.mtime
            item["d"] = b"".join(b.digest for b in self.blocks).hex()
            runs: list[list[Any]] = []
            seen_frame = None
            for b in self.blocks:
                last = runs[-1] if runs else None
                if last is not None and (last[0], last[1]) == (b.pack, b.offset) and \
                        b.skip == last[6] + last[5] * block_size:
                    last[5] += 1
                    continue
                frame = (b.pack, b.offset)
                runs.append([b.pack, b.offset, b.stored, b.codec,
                             "" if frame == seen_frame else b.frame_digest.hex(), 1, b.skip])
                seen_frame = frame
            item["r"] = runs
            if self.corrupt_pages:
                item["c"] = self.corrupt_pages
        elif self.kind == "link":
            item["l"] = self.target
        return json.dumps(item, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes, block_size: int) -> FileEntry:
        item = json.loads(line)
        kind = {"f": "file", "d": "dir", "l": "link"}[item["k"]]
        size = item.get("s", 0)
        blocks: list[BlockRef] = []
        if kind == "file":
            ids = bytes.fromhex(item["d"])
            width = layout.BLOCK_ID_BYTES
            frame_digest = b""
            for pack, offset, stored, codec, digest_hex, count, skip in item["r"]:
                frame_digest = bytes.fromhex(digest_hex) if digest_hex else frame_digest
                for n in range(count):
                    index = len(blocks)
                    raw = min(block_size, size - index * block_size)
                    blocks.append(BlockRef(ids[index * width:(index + 1) * width], pack, offset,
                                           stored, raw, codec, skip + n * block_size, frame_digest))
            if len(blocks) * width != len(ids) or sum(b.raw for b in blocks) != size:
                raise ValueError(f"{item['p']}: block list does not match the file's size")
        return cls(item["p"], kind, item["m"], size, item.get("t", 0.0), item.get("l"), blocks,
                   item.get("c", []))


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


class ManifestWriter:
    """Collects file entries (in path order) into a compressed body spooled to disk."""

    def __init__(self, block_size: int) -> None:
        self._block_size = block_size
        self._spool = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)  # noqa: SIM115
        self._compressor = zstandard.ZstdCompressor(level=3).compressobj()
        self._hash = hashlib.sha256()
        self._bytes = 0

    def _emit(self, chunk: bytes) -> None:
        if chunk:
            self._spool.write(chunk)
            self._hash.update(chunk)
            self._bytes += len(chunk)

    def add(self, entry: FileEntry) -> None:
        self._emit(self._compressor.compress(entry.encode(self._block_size)))

    def finish(self, summary: BackupSummary) -> Iterator[bytes]:
        """The whole manifest object as chunks (never whole in memory), with the body's
        checksum recorded in the summary first."""
        self._emit(self._compressor.flush())
        summary.body_sha256 = self._hash.hexdigest()
        summary.body_bytes = self._bytes
        head = json.dumps(summary.to_json(), separators=(",", ":")).encode() + b"\n"
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
    if len(fields) != 4 or fields[0] != MAGIC:
        raise ChecksumError(f"{key}: not a Lifeboat manifest (damaged header)")
    try:
        return end + 1, int(fields[2]), fields[3].decode()
    except ValueError:
        raise ChecksumError(f"{key}: damaged manifest header") from None


def _summary_from(head: bytes, digest: str, key: str) -> BackupSummary:
    if hashlib.sha256(head).hexdigest() != digest:
        raise ChecksumError(f"{key}: manifest summary fails its checksum (damaged)")
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
    return _summary_from(head, digest, key)


@dataclass
class Manifest:
    """A verified manifest; its entries are streamed from the repository on each read."""

    summary: BackupSummary
    storage: Storage
    key: str
    body_offset: int

    def entries(self) -> Iterator[FileEntry]:
        with self.storage.open_stream(self.key) as stream:
            stream.read(self.body_offset)
            reader = zstandard.ZstdDecompressor().stream_reader(stream)
            for number, line in enumerate(io.BufferedReader(reader, buffer_size=CHUNK), 1):
                try:
                    entry = FileEntry.decode(line, self.summary.block_size)
                except (ValueError, KeyError, TypeError) as exc:
                    raise ChecksumError(f"{self.key}: entry {number} is unreadable ({exc}); "
                                        "the manifest is damaged or of another format") from None
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
        summary = _summary_from(stream.read(length), digest, key)
        body_hash, body_bytes = hashlib.sha256(), 0
        while chunk := stream.read(CHUNK):
            body_hash.update(chunk)
            body_bytes += len(chunk)
    if body_bytes != summary.body_bytes or body_hash.hexdigest() != summary.body_sha256:
        raise ChecksumError(f"{key}: manifest body fails its checksum (damaged or truncated)")
    return Manifest(summary, storage, key, start + length)


def list_backup_ids(storage: Storage, cluster: str) -> list[str]:
    ids = (layout.backup_id_of(k) for k in storage.list(layout.backups_prefix(cluster), False))
    return sorted(i for i in ids if i)
