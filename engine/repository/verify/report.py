"""What verify found: each problem with its object, and what the damage affects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: What a problem affects when no backup needs the damaged object: still damage.
NOT_NEEDED = "not needed by any backup"


@dataclass
class Problem:
    """One missing, damaged or unknown object.

    ``kind`` is the kind of object (``wal``, ``history``, ``backup-history``, ``manifest``,
    ``list``, ``pack``, ``block`` (a frame a backup's block list uses), ``cluster``,
    ``restore-point``, ``verify-state``, ``marker``, ``keys`` (``lifeboat.keys``), ``unknown``);
    ``key`` its key in the repository; ``item`` its short name (a WAL file, a backup, a pack,
    a file's block);
    ``detail`` what is wrong; ``affects`` the backups and recovery window it breaks.
    """

    kind: str
    item: str
    detail: str
    key: str = ""
    affects: str = ""

    def __str__(self) -> str:
        where = self.key if self.key and self.key.endswith(self.item) else \
            f"{self.item}{f' ({self.key})' if self.key else ''}"
        detail = self.detail
        for name in (self.key, self.item):  # said already
            if name and detail.startswith(f"{name}: "):
                detail = detail[len(name) + 2:]
        return f"{self.kind} {where}: {detail}" + (f"; affects: {self.affects}" if self.affects else "")


@dataclass
class VerifyReport:
    """Counts of what was checked (and skipped as proven by an earlier verify), and the
    problems; ``wal_segments`` counts every WAL object checked (segments, partial
    segments, backup and timeline history files), ``frames`` every frame of the packs read,
    ``blocks`` and ``bytes`` the blocks re-hashed from them."""

    cluster: str
    mode: str
    backups: int = 0
    manifests: int = 0
    lists: int = 0
    packs: int = 0
    frames: int = 0
    blocks: int = 0
    bytes: int = 0
    wal_segments: int = 0
    documents: int = 0  # lifeboat.repo, cluster.json, restore points, verified.json
    skipped_manifests: int = 0
    skipped_packs: int = 0
    skipped_lists: int = 0
    skipped_wal: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return asdict(self) | {"ok": self.ok}
