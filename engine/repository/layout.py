"""Repository layout: the only place that builds repository keys.

::

    lifeboat.repo                              format marker
    clusters/<cluster>/cluster.json            system identifier, version, segment size
    clusters/<cluster>/wal/<TLI+LOG>/<segment> archived segments (.partial, .backup too)
    clusters/<cluster>/wal/history/<TLI>.history
    clusters/<cluster>/backups/<id>.manifest   a backup exists iff its manifest does
    clusters/<cluster>/packs/<xx>/<pack>        compressed frames of blocks
    clusters/<cluster>/lists/<xx>/<sha256>      block lists of files, content-addressed
    clusters/<cluster>/restore-points/<name>.json
"""

from __future__ import annotations

import hashlib

from engine.wal.names import is_history

REPO_MARKER = "lifeboat.repo"
MANIFEST_SUFFIX = ".manifest"
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.@+-")


BLOCK_ID_BYTES = 16


def block_id(data: bytes | bytearray | memoryview) -> bytes:
    """The identity of a block: the first 128 bits of the SHA-256 of its content.

    128 bits keep collisions out of reach (2^64 blocks for an even chance of one) while
    halving what every manifest stores per block; a stored frame is checked against its
    full SHA-256 (:func:`frame_checksum`).
    """
    return hashlib.sha256(data).digest()[:BLOCK_ID_BYTES]


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
    """Key of a block list: ``list_id`` is the hex SHA-256 of its bytes."""
    return f"{cluster_prefix(cluster)}/lists/{list_id[:2]}/{list_id}"


def lists_prefix(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}/lists"


def restore_points_prefix(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}/restore-points"


def restore_point_key(cluster: str, name: str) -> str:
    if not 0 < len(name) <= 200 or not _SAFE_CHARS.issuperset(name) or name.startswith("."):
        safe = hashlib.sha256(name.encode()).hexdigest()[:32]
        return f"{restore_points_prefix(cluster)}/h-{safe}.json"
    return f"{restore_points_prefix(cluster)}/{name}.json"


def verify_state_key(cluster: str) -> str:
    """What earlier verifications proved (packs and WAL segments), for --since-last."""
    return f"{cluster_prefix(cluster)}/verified.json"


def lock_key(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}/lock"
