"""The WAL archive: push (archive_command) and get (restore_command).

An archived file is one object: a 48-byte header (magic, codec, raw size, SHA-256
of the stored body) followed by the body. The checksum covers the stored bytes, so
a push hashes a few MB of compressed data, not the 16 MB segment; decompression
then proves the content. In an encrypted repository the body is the compressed file
sealed (:mod:`engine.repository.encryption`) under the object's key; the header (codec,
raw size) stays readable. A file pushed again is then compared by content, since two
seals of the same bytes differ.

``get`` reports a file as absent only when its absence is legitimate: past the end
of its timeline, or before the timeline began. A file missing while later segments
of its timeline are present, or one that fails its checksum, raises
:class:`ArchiveDamagedError` so that recovery stops instead of ending early.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections import namedtuple

from engine.errors import (
    ArchiveDamagedError,
    ArchiveDuplicateError,
    ChecksumError,
    NotFoundError,
    StorageError,
    UsageError,
)
from engine.repository import clusterinfo, formats, layout
from engine.repository.codec import ZSTD, Codec, decompress
from engine.repository.storage_keys import keys_of
from engine.wal import names as wal

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from typing import BinaryIO

    from engine.repository.encryption import RepositoryKeys
    from engine.repository.storage.base import Storage

MAGIC = b"LBWAL%d" % formats.WAL
HEADER = struct.Struct("<6sBxQ32s")  # magic, codec, pad, raw size, sha256(body)
CHECK_CHUNK = 1 << 20


class PushResult(namedtuple("PushResult", "name raw_bytes stored_bytes already_archived")):
    __slots__ = ()
    name: str
    raw_bytes: int
    stored_bytes: int
    already_archived: bool


def encode(data: bytes | mmap.mmap, codec: Codec, large: bool, keys: RepositoryKeys | None = None,
           key: str = "") -> bytes:
    """The object of an archived file; sealed under ``key`` with the repository's ``keys``.
    A ``large`` file (a segment) is compressed without probing samples first: WAL compresses."""
    codec_id, body = codec.compress(data, probe=not large)
    if keys is not None:
        body = keys.seal(body, key.encode())
    return HEADER.pack(MAGIC, codec_id, len(data), hashlib.sha256(body).digest()) + body


def _header(obj: bytes, name: str) -> tuple[int, int, bytes]:
    """Codec, raw size and body SHA-256 from an object's header; refuses other formats."""
    if len(obj) < HEADER.size:
        raise ChecksumError(f"{name}: archived object is truncated ({len(obj)} bytes)")
    magic, codec_id, raw_size, digest = HEADER.unpack_from(obj)
    if magic[:5] == MAGIC[:5] and magic != MAGIC:  # LBWAL<format>
        found = int(magic[5:]) if magic[5:].isdigit() else magic[5:].decode(errors="replace")
        formats.check(f"archived WAL file {name}", found, formats.WAL)
    if magic != MAGIC:
        raise ChecksumError(f"{name}: archived object has a damaged header")
    return codec_id, raw_size, digest


def decode(obj: bytes, name: str, keys: RepositoryKeys | None = None, key: str = "") -> bytes:
    """The original content of an archived object; ChecksumError if damaged (or, with the
    repository's ``keys``, if it fails authentication under ``key``)."""
    codec_id, raw_size, digest = _header(obj, name)
    body = memoryview(obj)[HEADER.size:]
    if hashlib.sha256(body).digest() != digest:
        raise ChecksumError(f"{name}: checksum mismatch, the archived copy is corrupt")
    if keys is not None:
        body = memoryview(keys.open(body, key.encode(), name))
    return decompress(codec_id, body, raw_size, what=name)


class _Hashing:
    """A stream that hashes what is read from it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.hash = hashlib.sha256()
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.hash.update(data)
        self.read_bytes += len(data)
        return data


def check(storage: Storage, cluster: str, name: str) -> None:
    """What :func:`decode` proves of an archived file (its SHA-256, that it decompresses to
    its size), streamed a MiB at a time instead of holding the segment: verify checks
    many. ChecksumError if damaged, NotFoundError if missing."""
    key = layout.wal_key(cluster, name)
    keys = keys_of(storage)
    with storage.open_stream(key) as stream:
        codec_id, raw_size, digest = _header(stream.read(HEADER.size), name)
        if codec_id != ZSTD:  # raw or lz4 blocks: small enough, or not streamable
            decode(HEADER.pack(MAGIC, codec_id, raw_size, digest) + stream.read(), name, keys, key)
            return
        import zstandard

        body = _Hashing(stream)
        source = body if keys is None else keys.opening(body, key.encode(), name)
        produced = 0
        try:
            reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
            while chunk := reader.read(CHECK_CHUNK):
                produced += len(chunk)
                if produced > raw_size:
                    break
        except zstandard.ZstdError as exc:
            raise ChecksumError(f"{name}: compressed data is damaged ({exc})") from None
        while source.read(CHECK_CHUNK):  # the rest of the body (and its authentication)
            pass
    if body.hash.digest() != digest:
        raise ChecksumError(f"{name}: checksum mismatch, the archived copy is corrupt")
    if produced != raw_size:
        raise ChecksumError(f"{name}: decompressed to {produced} bytes or more, expected {raw_size}")


def push(storage: Storage, cluster: str, path: str | os.PathLike[str], codec: Codec) -> PushResult:
    """Archive the WAL file at ``path`` durably; idempotent for identical content."""
    name = os.path.basename(path)
    kind = wal.wal_file_kind(name)
    if kind is None:
        raise UsageError(f"{path}: not a WAL file name (segment, .history, .backup or .partial)")
    info = clusterinfo.read(storage, cluster, cached=True)
    data = _map(path)
    if kind in ("segment", "partial"):
        _check_segment(name, data, info, partial=kind == "partial")
    key = layout.wal_key(cluster, name)
    keys = keys_of(storage)
    obj = encode(data, codec, len(data) >= 1024 * 1024, keys, key)
    size = len(data)
    if storage.put_if_absent(key, obj):
        return PushResult(name, size, len(obj), already_archived=False)
    existing = storage.get(key)
    same_digest = existing[HEADER.size - 32:HEADER.size] == obj[HEADER.size - 32:HEADER.size]
    if not same_digest:
        try:
            same_digest = memoryview(data) == decode(existing, name, keys, key)
        except ChecksumError:
            same_digest = False
    if not same_digest:
        raise ArchiveDuplicateError(
            f"{name} is already archived for cluster '{cluster}' with different content: "
            "refusing to overwrite it (is another server archiving into this cluster's "
            "repository, or was this cluster restored without a new timeline?)"
        )
    return PushResult(name, size, len(existing), already_archived=True)


def _map(path: str | os.PathLike[str]) -> mmap.mmap | bytes:
    """The file's content without copying it (an empty file cannot be mapped)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                return b""
            return mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ)
    except OSError as exc:
        from engine.errors import path_error

        raise StorageError(str(path_error(exc, "read", path))) from None


def _check_segment(name: str, data: bytes | mmap.mmap, info: clusterinfo.ClusterInfo, partial: bool) -> None:
    if not partial and len(data) != info.wal_segment_size:
        raise UsageError(
            f"{name}: {len(data)} bytes, but this cluster's segments are "
            f"{info.wal_segment_size} bytes"
        )
    sysid = wal.segment_system_identifier(data[:64])
    if sysid is not None and sysid != info.system_identifier:
        raise ArchiveDuplicateError(
            f"{name} belongs to database system {sysid}, but this repository's cluster is "
            f"system {info.system_identifier}: refusing to mix clusters in one archive"
        )


def get(storage: Storage, cluster: str, name: str, dest: str | os.PathLike[str],
        stream_dir: str | None = None) -> bool:
    """Restore ``name`` to ``dest``. False when legitimately absent; raises when damaged.

    A file the repository does not hold yet is served from ``stream_dir`` (pg_receivewal's
    directory) when given: the complete segment, else its ``.partial``.
    """
    kind = wal.wal_file_kind(name)
    if kind is None:
        raise UsageError(f"{name}: not a WAL file name")
    key = layout.wal_key(cluster, name)
    try:
        obj = storage.get(key)
    except NotFoundError:
        if stream_dir is not None:
            if get_streamed(storage, cluster, stream_dir, name, dest):
                return True
            if storage.exists(layout.wal_key(cluster, name)):  # archived, then pruned meanwhile
                return get(storage, cluster, name, dest)
        damage = missing_is_damage(storage, cluster, name, stream_dir)
        if damage:
            raise ArchiveDamagedError(damage) from None
        return False
    except StorageError as exc:
        raise ArchiveDamagedError(f"cannot read {name} from the repository: {exc}") from None
    try:
        data = decode(obj, name, keys_of(storage), key)
    except ChecksumError as exc:
        raise ArchiveDamagedError(f"{exc}; recovery must not continue past it") from None
    _write_dest(dest, data)
    return True


def _write_dest(dest: str | os.PathLike[str], data: bytes) -> None:
    head, tail = os.path.split(os.fspath(dest))
    tmp = os.path.join(head, f".{tail}.lifeboat-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.rename(tmp, dest)
    except OSError as exc:
        from engine.errors import path_error

        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise path_error(exc, "write", dest) from None


PARTIAL = ".partial"


def streamed_file(stream_dir: str, name: str) -> str | None:
    """The path of ``name`` in pg_receivewal's directory: the file, else a segment's ``.partial``."""
    candidates = (name, name + PARTIAL) if wal.is_segment(name) else (name,)
    for candidate in candidates:
        path = os.path.join(stream_dir, candidate)
        if os.path.isfile(path):
            return path
    return None


def get_streamed(storage: Storage, cluster: str, stream_dir: str, name: str,
                 dest: str | os.PathLike[str]) -> bool:
    """Copy ``name`` from the streaming directory to ``dest``; False when it is not there.

    A ``.partial`` is copied whole: pg_receivewal pads it to the segment size, and
    PostgreSQL replays up to its last valid record.
    """
    for _attempt in range(3):  # a .partial is renamed when its segment completes: look again
        path = streamed_file(stream_dir, name)
        if path is None:
            return False
        try:
            with open(path, "rb") as handle:
                data = handle.read()
            break
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ArchiveDamagedError(f"cannot read streamed WAL {path}: {exc.strerror}") from None
    else:
        return False
    if wal.is_segment(name):
        size = clusterinfo.read(storage, cluster).wal_segment_size
        if len(data) != size:
            raise ArchiveDamagedError(f"streamed WAL {path} is {len(data)} bytes, not a whole "
                                      f"{size}-byte segment: recovery must not continue past it")
    _write_dest(dest, data)
    return True


def streamed_after(stream_dir: str, name: str) -> str | None:
    """The first segment (complete or ``.partial``) of ``name``'s timeline streamed after it."""
    try:
        entries = os.listdir(stream_dir)
    except OSError:
        return None
    later = [e for e in entries if e[:24] > name and e[:8] == name[:8]
             and wal.wal_file_kind(e) in ("segment", "partial")]
    return min(later) if later else None


def streamed_segments(stream_dir: str, segment_size: int) -> dict[int, list[int]]:
    """Complete segments in the streaming directory, per timeline, sorted."""
    try:
        entries = os.listdir(stream_dir)
    except OSError:
        return {}
    found: dict[int, list[int]] = {}
    for entry in entries:
        if wal.is_segment(entry):
            segment = wal.parse_segment(entry, segment_size)
            found.setdefault(segment.timeline, []).append(segment.segno)
    return {tl: sorted(segnos) for tl, segnos in sorted(found.items())}


def missing_is_damage(storage: Storage, cluster: str, name: str,
                      stream_dir: str | None = None) -> str | None:
    """Why a missing ``name`` means a damaged archive, or None if its absence is legitimate.

    Later WAL of the same timeline in the repository or in ``stream_dir`` means a gap.
    """
    kind = wal.wal_file_kind(name)
    if kind == "history":
        timeline = wal.history_timeline(name)
        first = None if timeline == 1 else first_segment_on_timeline(storage, cluster, timeline)
        if first is not None:
            return (f"timeline history file {name} is missing from the archive, but segments "
                    f"of timeline {timeline} are present (e.g. {first}): the archive is damaged")
        return None
    if kind != "segment":
        return None
    info = clusterinfo.read(storage, cluster)
    segment = wal.parse_segment(name, info.wal_segment_size)
    if segment.timeline > 1:
        history = read_history(storage, cluster, segment.timeline)
        if history is not None:
            begin = wal.segment_of_lsn(wal.timeline_begin_lsn(history), info.wal_segment_size)
            if segment.segno < begin:
                return None
    later = next_segment_after(storage, cluster, segment, info.wal_segment_size)
    if later is not None:
        return (f"WAL segment {name} is missing from the archive, but later segments of "
                f"timeline {segment.timeline} are present (next: {later}): the archive has a "
                "gap; recovery cannot continue past it")
    streamed = None if stream_dir is None else streamed_after(stream_dir, name)
    if streamed is not None:
        return (f"WAL segment {name} is missing from the archive and the streaming directory "
                f"{stream_dir}, but later WAL of timeline {segment.timeline} was streamed "
                f"({streamed}): recovery cannot continue past the gap")
    return None


def read_history(storage: Storage, cluster: str, timeline: int) -> list[wal.TimelineSwitch] | None:
    """The parsed history of ``timeline``, or None when it is not archived."""
    if timeline == 1:
        return []
    name = wal.history_name(timeline)
    key = layout.wal_key(cluster, name)
    try:
        obj = storage.get(key)
    except NotFoundError:
        return None
    return wal.parse_history(decode(obj, name, keys_of(storage), key).decode())


def _timeline_dirs(storage: Storage, cluster: str, timeline: int) -> list[str]:
    prefix = f"{timeline:08X}"
    return [
        d for d in storage.list(layout.wal_prefix(cluster), recursive=False)
        if d.endswith("/") and d.rstrip("/").rsplit("/", 1)[-1].startswith(prefix)
        and len(d.rstrip("/").rsplit("/", 1)[-1]) == 16
    ]


def segments_in(storage: Storage, directory: str) -> list[str]:
    return [k.rsplit("/", 1)[-1] for k in storage.list(directory.rstrip("/"), recursive=False)
            if wal.is_segment(k.rsplit("/", 1)[-1])]


def next_segment_after(storage: Storage, cluster: str, segment: wal.Segment,
                       segment_size: int) -> str | None:
    """The first archived segment of the same timeline after ``segment``, if any."""
    own = segment.name(segment_size)
    for directory in _timeline_dirs(storage, cluster, segment.timeline):
        if directory.rstrip("/").rsplit("/", 1)[-1] < own[:16]:
            continue
        for name in segments_in(storage, directory):
            if name > own:
                return name
    return None


def first_segment_on_timeline(storage: Storage, cluster: str, timeline: int) -> str | None:
    for directory in _timeline_dirs(storage, cluster, timeline):
        names = segments_in(storage, directory)
        if names:
            return names[0]
    return None


def segments_by_timeline(storage: Storage, cluster: str, segment_size: int) -> dict[int, list[int]]:
    """Archived segment numbers per timeline, sorted."""
    found: dict[int, list[int]] = {}
    for key in storage.list(layout.wal_prefix(cluster)):
        name = key.rsplit("/", 1)[-1]
        if wal.is_segment(name):
            segment = wal.parse_segment(name, segment_size)
            found.setdefault(segment.timeline, []).append(segment.segno)
    return {tl: sorted(segnos) for tl, segnos in sorted(found.items())}


class TimelineRange(namedtuple("TimelineRange", "timeline first last count")):
    __slots__ = ()
    timeline: int
    first: str
    last: str
    count: int


def archive_ranges(storage: Storage, cluster: str, segment_size: int) -> list[TimelineRange]:
    """First and last archived segment (and how many) per timeline."""
    return [
        TimelineRange(tl, wal.segment_name(tl, segnos[0], segment_size),
                      wal.segment_name(tl, segnos[-1], segment_size), len(segnos))
        for tl, segnos in segments_by_timeline(storage, cluster, segment_size).items()
    ]


def archived_histories(storage: Storage, cluster: str) -> list[int]:
    return sorted(
        wal.history_timeline(k.rsplit("/", 1)[-1])
        for k in storage.list(layout.history_prefix(cluster))
        if wal.is_history(k.rsplit("/", 1)[-1])
    )
