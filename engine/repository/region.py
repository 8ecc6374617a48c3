"""A region's copy of the repository: opening it (with errors that name the region), what it
keeps, and expiring it by the same code that expires the primary.

A copy's ``retention`` is ``"primary"`` (keep what the primary keeps: every backup the
primary no longer holds, in any of its tiers, goes, and the WAL no kept backup needs) or a
retention section of its own. Keeping what the primary keeps needs the primary to say what
it holds: when it cannot (unreachable, not initialised, another database system, a tier that
cannot be listed, or holding no backup at all, as a primary lost in a disaster would),
nothing is expired in the copy and the report says why.
A disaster must never empty the copy it is restored from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.errors import LifeboatError, RegionUnavailableError, StorageError, UsageError
from engine.repository import clusterinfo, layout
from engine.repository.manifest import list_backup_ids
from engine.repository.retention import Policy

if TYPE_CHECKING:
    from engine.config.regions import CopyConfig
    from engine.config.schema import Config
    from engine.repository.expire import ExpireReport
    from engine.repository.storage.base import Storage


def settings_of(config: Config, region: str) -> CopyConfig:
    """The ``[repository.copies.REGION]`` settings; UsageError naming the regions there are."""
    copies = config.repository.copies
    if region not in copies:
        raise UsageError(f"region '{region}': the configuration has no [repository.copies.{region}] "
                         f"(regions: {', '.join(sorted(copies)) or 'none'}; the primary is "
                         f"'{config.repository.region}')")
    return copies[region]


def open_copy(config: Config, region: str, cluster: str | None = None,
              keys: Callable[[Storage], Storage] | None = None) -> Storage:
    """The copy in ``region``, given its keys by ``keys`` (an encrypted repository's copy is
    sealed alike). With ``cluster``, it must hold that cluster's copy (restore, plan, verify
    and expire of a region read it): RegionUnavailableError names the region, where it is and
    what is wrong (unreachable, or no copy there)."""
    from engine.repository.storage import open_storage

    url = settings_of(config, region).url
    try:
        storage = open_storage(url)
    except LifeboatError as exc:
        raise RegionUnavailableError(f"region '{region}' ({url}) cannot be opened: {exc}") from None
    if keys is not None:
        try:
            storage = keys(storage)
        except StorageError as exc:
            raise RegionUnavailableError(f"region '{region}' ({url}) is unreachable: {exc}") from None
        except LifeboatError:
            if cluster is not None and not storage.exists(layout.REPO_KEYS):
                check_copy(storage, region, cluster)  # no copy there at all: say that
            raise  # the keys are there, but the configured key does not open them
    if cluster is not None:
        check_copy(storage, region, cluster)
    return storage


def check_copy(storage: Storage, region: str, cluster: str) -> clusterinfo.ClusterInfo:
    """The identity of ``cluster`` in the copy; RegionUnavailableError when it cannot be read."""
    where = storage.describe()
    try:
        return clusterinfo.read(storage, cluster)
    except StorageError as exc:
        raise RegionUnavailableError(f"region '{region}' ({where}) is unreachable: {exc}") from None
    except LifeboatError as exc:
        try:
            marked = clusterinfo.check_marker(storage)
        except LifeboatError:
            marked = False
        what = (f"its repository holds no copy of cluster '{cluster}'" if marked else
                "there is no Lifeboat repository there (not mounted, the wrong place, or never "
                "copied to)")
        raise RegionUnavailableError(
            f"region '{region}' ({where}): {what}; 'lifeboat copy --region {region}' copies to it "
            f"while the primary is there ({exc.__class__.__name__}: {exc})") from None


def copy_policy(config: Config, cluster: str, region: str, primary: Storage | None,
                copy: Storage) -> Policy:
    """What the copy in ``region`` keeps of ``cluster``. For ``retention = "primary"`` the
    primary's backup ids, read now; RegionUnavailableError when the primary cannot say
    (see the module's docstring), so that nothing is expired."""
    settings = settings_of(config, region)
    if settings.retention != "primary":
        return Policy.of(settings.retention)
    own = config.retention_for(cluster)
    refuse = (f"the copy in region '{region}' keeps what the primary keeps, but the primary "
              f"repository")
    if primary is None:
        raise RegionUnavailableError(f"{refuse} is not open: nothing is expired in the copy")
    try:
        theirs = clusterinfo.read(primary, cluster)
        ids = _kept_by_primary(config, primary, cluster)
    except LifeboatError as exc:
        raise RegionUnavailableError(f"{refuse} ({primary.describe()}) cannot say what it holds "
                                     f"({exc}): nothing is expired in the copy") from None
    try:
        ours: clusterinfo.ClusterInfo | None = clusterinfo.read(copy, cluster)
    except LifeboatError:
        ours = None  # not copied yet: the first copy writes it (and checks it)
    if ours is not None and ours.system_identifier != theirs.system_identifier:
        raise RegionUnavailableError(
            f"{refuse} holds database system {theirs.system_identifier} but the copy holds "
            f"{ours.system_identifier}: nothing is expired in the copy")
    if not ids:
        raise RegionUnavailableError(f"{refuse} ({primary.describe()}) holds no backup of cluster "
                                     f"'{cluster}' (lost?): nothing is expired in the copy")
    return Policy({}, None, own.gc_grace, mirror=ids, expire_after=own.expire_after_backup)


def _kept_by_primary(config: Config, primary: Storage, cluster: str) -> frozenset[str]:
    """The backups the primary keeps: in the repository, and with tiers in every tier (a backup
    that moved to a colder tier is still kept). A tier that cannot be listed raises."""
    if not config.repository.tiers.enabled:
        return frozenset(list_backup_ids(primary, cluster))
    from engine.repository.tiers import census, open_tiers

    found = census(open_tiers(config, primary), cluster)
    if found.unreachable:
        raise StorageError(f"a tier storage cannot be listed ({'; '.join(found.unreachable)})")
    return frozenset([p.id for p in found.backups] + [backup_id for backup_id, _ in found.damaged])


def expire_copy(config: Config, cluster: str, region: str, primary: Storage | None, copy: Storage,
                dry_run: bool = False, now: float | None = None,
                policy: Policy | None = None) -> ExpireReport:
    """Apply the copy's retention to it: :func:`engine.repository.expire.run` on the copy, with
    the copy's policy (``policy``, or :func:`copy_policy` now), under the copy's cluster lock."""
    from engine.repository import expire

    policy = policy or copy_policy(config, cluster, region, primary, copy)
    return expire.run(config, cluster, copy, dry_run, time.time() if now is None else now, policy,
                      command=f"expire of the copy in region {region}")
