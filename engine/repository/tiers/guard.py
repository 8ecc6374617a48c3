"""What the repository's WAL expiry must keep for backups in other tiers.

The tiering job copies a backup's WAL into its new tier before the manifest, so a backup in
warm or cold normally holds all it needs there, and the repository's expiry (below its own
oldest backup) loses nothing. This guard makes that a check rather than a belief: WAL a backup
of another tier takes along (from its start up to the next backup's start: what a point-in-time
recovery from it reads) that the repository holds and no storage of that tier does (archived
after the backup moved as the newest, an interrupted copy, a storage restored from elsewhere)
is kept until the tiering job has copied it there.
"""

from __future__ import annotations

from engine.config.schema import Config
from engine.errors import LifeboatError
from engine.repository.copies import wal_names
from engine.repository.storage import Storage
from engine.repository.tiers import census, open_tiers
from engine.repository.tiers.job import wal_needed
from engine.wal import names as wal


def wal_floor(config: Config, repository: Storage, cluster: str, segment_size: int
              ) -> tuple[int | None, str]:
    """The lowest segment number the repository must keep for backups of other tiers (None:
    no such need), and why. A tier that cannot be read keeps everything its backups may need."""
    tiers = open_tiers(config, repository)
    try:
        found = census(tiers, cluster)
    except LifeboatError as exc:
        return 0, f"WAL expiry kept all WAL: the tiers cannot be listed ({exc})"
    if found.unreachable:
        return 0, f"WAL expiry kept all WAL: {'; '.join(found.unreachable)}"
    held: dict[tuple[str, int], set[str]] = {}
    ours = wal_names(repository, cluster)
    floor: int | None = None
    why = ""
    for placement in found.backups:
        tier = placement.hottest(tiers)
        if tier is tiers.tiers[0]:
            continue  # hot: retention's own plan keeps its WAL
        wanted, _missing = wal_needed(found, placement, ours, segment_size)
        lacking = set(wanted)
        for index in placement.held.get(tier.name, []):
            key = (tier.name, index)
            if key not in held:
                try:
                    held[key] = wal_names(tier.storages[index], cluster)
                except LifeboatError:
                    held[key] = set()
            lacking &= wanted - held[key]
        lacking = {n for n in lacking if wal.wal_file_kind(n) != "history"}
        if lacking:
            first = min(lacking)
            segno = wal.parse_segment(first[:24], segment_size).segno
            if floor is None or segno < floor:
                floor = segno
                why = (f"WAL from {first[:24]} on was kept: backup {placement.id} in the {tier.name} tier "
                       f"needs it and no storage of {tier.name} holds it yet (the tiering job copies it)")
    return floor, why
