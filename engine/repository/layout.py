"""Repository layout: the only place that builds repository keys.

::

    lifeboat.repo                              format marker
    lifeboat.keys                              the repository's keys, wrapped (encrypted ones)
    clusters/<cluster>/cluster.json            system identifier, version, segment size
    clusters/<cluster>/wal/<TLI+LOG>/<segment> archived segments (.partial, .backup too)
    clusters/<cluster>/wal/history/<TLI>.history
    clusters/<cluster>/backups/<id>.manifest   a backup exists iff its manifest does
    clusters/<cluster>/packs/<xx>/<pack>        compressed frames of blocks
    clusters/<cluster>/lists/<xx>/<sha256>      block lists of files, content-addressed
    clusters/<cluster>/restore-points/<name>.json
    clusters/<cluster>/verified.json           what verify proved, for --since-last
    clusters/<cluster>/lock                    the cluster's lock file (posix)
    clusters/<cluster>/lock.lease/<generation> the cluster's lock leases (object storage)
    clusters/<cluster>/probes/<token>          a writability probe (written, read back, deleted)

:func:`classify` says which kind of object a key of a cluster is, so verify can check
every object by its kind and name what Lifeboat did not write.
"""

from __future__ import annotations

import hashlib

from engine.wal.names import is_history, wal_file_kind

REPO_MARKER = "lifeboat.repo"
REPO_KEYS = "lifeboat.keys"
MANIFEST_SUFFIX = ".manifest"
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.@+-")


BLOCK_ID_BYTES = 16


def block_id(data: bytes | bytearray | memoryview, name_key: bytes | None = None) -> bytes:
    """The identity of a block: the first 128 bits of the SHA-256 of its content, or, in an
    encrypted repository, of its HMAC-SHA256 under the repository's ``name_key`` (so ids
    reveal nothing of the content).

    128 bits keep collisions out of reach (2^64 blocks for an even chance of one) while
    halving what every manifest stores per block; a stored frame is checked against its
    full SHA-256 (:func:`frame_checksum`).
    """
    if name_key is not None:
        import hmac  # encrypted repositories only: not on the WAL path

        return hmac.new(name_key, data, hashlib.sha256).digest()[:BLOCK_ID_BYTES]
    return hashlib.sha256(data).digest()[:BLOCK_ID_BYTES]


def block_ids(data: bytes | bytearray | memoryview, block_size: int,
              name_key: bytes | None = None) -> bytes:
    """:func:`block_id` of each ``block_size`` block of ``data`` (the last may be shorter),
    concatenated; one call into C for the whole buffer (it releases the GIL once)."""
    from engine.repository._blockhash import block_ids as ids_of  # not on the WAL path

    return ids_of(data, block_size, name_key)


def differing_runs(ids: bytes | memoryview, other: bytes | memoryview) -> list[tuple[int, int]]:
    """``(first, count)`` of each run of positions where two concatenations of block ids
    differ (a position only one of them reaches differs); computed in C."""
    from engine.repository._blockhash import differing_runs as runs_of

    return runs_of(ids, other)


def frame_checksum(data: bytes | bytearray | memoryview) -> bytes:
    """The full SHA-256 of a stored frame: what restore and verify check it against."""
    return hashlib.sha256(data).digest()


def cluster_prefix(cluster: str) -> str:
    """Everything the repository holds for one cluster."""
    return f"clusters/{cluster}"


def cluster_info_key(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}/cluster.json"


def wal_prefix(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}/wal"


def wal_key(cluster: str, name: str) -> str:
    """Key of an archived WAL file (segment, partial, backup history or timeline history)."""
    if is_history(name):
        return f"{cluster_prefix(cluster)}/wal/history/{name}"
    return f"{cluster_prefix(cluster)}/wal/{name[:16]}/{name}"


def history_prefix(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}/wal/history"


def backups_prefix(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}/backups"


def manifest_key(cluster: str, backup_id: str) -> str:
    return f"{cluster_prefix(cluster)}/backups/{backup_id}{MANIFEST_SUFFIX}"


def backup_id_of(key: str) -> str | None:
    name = key.rsplit("/", 1)[-1]
    return name[: -len(MANIFEST_SUFFIX)] if name.endswith(MANIFEST_SUFFIX) else None


def pack_key(cluster: str, pack_id: str) -> str:
    return f"{cluster_prefix(cluster)}/packs/{pack_id[:2]}/{pack_id}"


def packs_prefix(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}/packs"


def list_key(cluster: str, list_id: str) -> str:
    """Key of a block list: ``list_id`` is the hex SHA-256 of its bytes (HMAC-SHA256 in an
    encrypted repository)."""
    return f"{cluster_prefix(cluster)}/lists/{list_id[:2]}/{list_id}"


def lists_prefix(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}/lists"


def restore_points_prefix(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}/restore-points"


def restore_point_key(cluster: str, name: str, name_key: bytes | None = None) -> str:
    """Key of a named restore point: its name, or a hash of it when the name is not safe
    in a key, or its HMAC under ``name_key`` in an encrypted repository (names hidden)."""
    if name_key is not None:
        import hmac

        keyed = hmac.new(name_key, name.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{restore_points_prefix(cluster)}/k-{keyed}.json"
    if not 0 < len(name) <= 200 or not _SAFE_CHARS.issuperset(name) or name.startswith("."):
        safe = hashlib.sha256(name.encode()).hexdigest()[:32]
        return f"{restore_points_prefix(cluster)}/h-{safe}.json"
    return f"{restore_points_prefix(cluster)}/{name}.json"


def verify_state_key(cluster: str) -> str:
    """What earlier verifications proved (packs and WAL segments), for --since-last."""
    return f"{cluster_prefix(cluster)}/verified.json"


def lock_key(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}/lock"


LEASE_SUFFIX = ".lease"


def lease_prefix(lock: str) -> str:
    """Where the leases of the lock ``lock`` (a :func:`lock_key`) are, on object storage."""
    return f"{lock}{LEASE_SUFFIX}"


def lease_key(lock: str, generation: int) -> str:
    """The lease of ``generation`` (1, 2 ...; zero-padded so names sort as numbers)."""
    return f"{lease_prefix(lock)}/{generation:012d}"


def lease_generation(key: str) -> int | None:
    """The generation of a :func:`lease_key`, or None when ``key`` is not one."""
    name = key.rsplit("/", 1)[-1]
    return int(name) if len(name) == 12 and name.isdigit() else None


PROBE_DIR = "probes"


def probe_key(cluster: str, token: str) -> str:
    """A probe object (``[a-z0-9-]`` token): written, read back and deleted to prove the
    repository writable. It holds no data: verify and copies leave a leftover one alone."""
    if not token or not frozenset("abcdefghijklmnopqrstuvwxyz0123456789-").issuperset(token):
        raise ValueError(f"'{token}' is not a probe token (lower-case letters, digits and -)")
    return f"{cluster_prefix(cluster)}/{PROBE_DIR}/{token}"


#: The kinds of object :func:`classify` knows (``wal``: a segment or a ``.partial``).
KINDS = ("cluster", "verify-state", "lock", "wal", "backup-history", "history", "manifest",
         "pack", "list", "restore-point", "temp", "probe")
_HEX_DIGITS = frozenset("0123456789abcdef")


def _lower_hex(text: str, length: int) -> bool:
    return len(text) == length and _HEX_DIGITS.issuperset(text)


def classify(cluster: str, key: str) -> str | None:
    """The kind of object ``key`` is in ``cluster``'s part of the repository (one of
    :data:`KINDS`), or None when it is not a key Lifeboat writes there. ``temp``: the
    remains of a writer in flight or killed (``.<name>.tmp-*``), not an object; ``probe``: a
    writability probe (:func:`probe_key`), not data."""
    stem = cluster_prefix(cluster) + "/"
    if not key.startswith(stem):
        return None
    parts = key[len(stem):].split("/")
    name = parts[-1]
    if name.startswith(".") and ".tmp-" in name:
        return "temp"
    if len(parts) == 1:
        return {"cluster.json": "cluster", "verified.json": "verify-state", "lock": "lock"}.get(name)
    top = parts[0]
    if len(parts) == 2:
        if top == "backups":
            return "manifest" if name.endswith(MANIFEST_SUFFIX) and len(name) > len(MANIFEST_SUFFIX) \
                else None
        if top == "restore-points":
            return "restore-point" if name.endswith(".json") and not name.startswith(".") else None
        if top == PROBE_DIR:
            return "probe" if name and not name.startswith(".") else None
        if top == "lock" + LEASE_SUFFIX:
            return "lock" if lease_generation(name) is not None else None
        return None
    if len(parts) != 3:
        return None
    middle = parts[1]
    if top == "wal":
        kind = wal_file_kind(name)
        if middle == "history":
            return "history" if kind == "history" else None
        if kind in ("segment", "partial", "backup") and middle == name[:16]:
            return "backup-history" if kind == "backup" else "wal"
        return None
    if top == "packs" and _lower_hex(name, 32) and middle == name[:2]:
        return "pack"
    if top == "lists" and _lower_hex(name, 64) and middle == name[:2]:
        return "list"
    return None
