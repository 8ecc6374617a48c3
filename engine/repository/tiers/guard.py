"""What the repository's WAL expiry must keep for backups in other tiers.

The tiering job copies a backup's WAL into its new tier before the manifest, so a backup in
warm or cold normally holds all it needs there, and the repository's expiry (below its own
oldest backup) loses nothing. This guard makes that a check rather than a belief: a backup in
another tier whose WAL from start to stop is not all held by some storage of that tier (an
interrupted or older copy, a storage restored from elsewhere) keeps the repository's WAL from
its start on until the tier holds it.
"""

from __future__ import annotations

from engine.config.schema import Config
from engine.errors import LifeboatError
from engine.repository.copies import own_wal, wal_names
from engine.repository.storage import Storage
from engine.repository.tiers import census, open_tiers
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
    held: dict[tuple[str, int], set[str]] = {}
    floor: int | None = None
    why = ""
    for placement in found.backups:
        tier = placement.hottest(tiers)
        if tier is tiers.tiers[0]:
            continue  # hot: retention's own plan keeps its WAL
        needed = set(own_wal(placement.summary, segment_size))
        covered = False
        for index in placement.held.get(tier.name, []):
            key = (tier.name, index)
            if key not in held:
                try:
                    held[key] = wal_names(tier.storages[index], cluster)
                except LifeboatError:
                    held[key] = set()
            covered = covered or needed <= held[key]
        if not covered:
            start = wal.segment_of_lsn(wal.parse_lsn(placement.summary.start_lsn), segment_size)
            if floor is None or start < floor:
                floor = start
                why = (f"WAL from {placement.summary.start_wal} on was kept: backup {placement.id} in "
                       f"the {tier.name} tier needs it and no storage of {tier.name} holds all of it yet")
    return floor, why
