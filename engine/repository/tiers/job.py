"""The tiering job: move each backup to the tier its age says, keep each tier's replication
count, and collect what moved backups left behind.

Backups are taken oldest first (by stop time). A backup whose hottest copy is in a tier hotter
than its age says is moved, in this order, which keeps it restorable from at least one tier
whatever step a kill interrupts:

1. into each storage of the target tier that lacks it (:mod:`engine.repository.copies`, the
   order region copies use): the repository's identity, timeline histories and the WAL the
   backup needs (from its start up to the next backup's start, so a point-in-time recovery
   from it reaches the next backup), then the packs and block lists the target lacks, then its
   manifest, checked against its checksum while streaming;
2. verify it there: re-read and re-hash its manifest, lists, packs and WAL
   (:func:`engine.repository.verify.run` for that backup); in an archive class, where nothing
   can be read back without a restore request, the manifest is re-read (it is kept in the
   default class) and every object's size is compared with the source's (S3 checked each
   PUT's checksum on arrival);
3. only when at least the target tier's ``replication`` storages verified it: delete its
   manifest from every hotter storage holding it. The packs and WAL it used there are
   collected by that storage's garbage collection (``expire`` for the repository; this job's
   own pass, past ``gc_grace``, for a tier's storages).

A backup already in the tier its age says with fewer copies than the tier's replication is
repaired: copied to the storages that lack it. A backup that moved as the newest took the
archive as it was: each run copies to its tier what was archived since, up to the next
backup's start (:func:`_top_up_wal`). A backup older than the last tier's age stays
in the last tier: retention decides when it goes. Backups never move to a hotter tier.

Every writer of a cluster's tiers runs under the repository's cluster lock (expire and backups
take it too), and under each tier storage's own lock where the storage has one.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field

from engine.errors import ArchivedObjectError, LifeboatError, StorageError
from engine.repository import clusterinfo, layout
from engine.repository.copies import CopyReport, copy_backup, copy_identity, copy_wal, own_wal
from engine.repository.locks import cluster_lock, lock_space
from engine.repository.manifest import read_manifest
from engine.repository.retention import stopped_at
from engine.repository.storage import Storage
from engine.repository.storage.tiered import TieredView
from engine.repository.tiers import Census, Placement, Tier, TierSet, census
from engine.wal import names as wal

#: The problems of verify that say a copy cannot be restored (not a stray document).
DATA_PROBLEMS = ("manifest", "list", "pack", "block", "wal", "backup-history", "history")


@dataclass
class TierReport:
    """What one run did, and what is left below its tier's replication count."""

    cluster: str
    dry_run: bool = False
    moved: list[dict[str, object]] = field(default_factory=list)  # backup, from, to, bytes
    repaired: list[dict[str, object]] = field(default_factory=list)  # backup, tier, copies
    planned: list[dict[str, object]] = field(default_factory=list)  # dry run: what would be done
    failed: list[str] = field(default_factory=list)  # what could not be done, and why
    waiting: list[str] = field(default_factory=list)  # repairs waiting for an archive restore
    below_replication: list[dict[str, object]] = field(default_factory=list)
    past_last_tier: list[str] = field(default_factory=list)  # older than the last tier's age
    collected: dict[str, dict[str, int]] = field(default_factory=dict)  # storage -> gc counts
    notices: list[str] = field(default_factory=list)
    wal_topped_up: int = 0  # WAL files archived after a backup moved, copied to its tier since
    bytes_copied: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Everything due was done (in a dry run: nothing is due) and every backup has its
        tier's copies."""
        return not (self.failed or self.below_replication or self.waiting or self.planned)

    def to_json(self) -> dict[str, object]:
        return asdict(self) | {"ok": self.ok}


def run(tiers: TierSet, cluster: str, gc_grace: float, now: float | None = None,
        dry_run: bool = False) -> TierReport:
    """Tier ``cluster``'s backups once (see the module's docstring); garbage younger than
    ``gc_grace`` seconds is left (the retention's ``gc_grace``)."""
    started = time.monotonic()
    now = time.time() if now is None else now
    report = TierReport(cluster, dry_run)
    with contextlib.ExitStack() as locks:
        locks.enter_context(cluster_lock(tiers.repository, cluster, "tiering", report.notices))
        if not dry_run:
            _lock_tier_storages(tiers, cluster, locks, report)
        found = census(tiers, cluster)
        report.failed += [f"cannot list {where}" for where in found.unreachable]
        report.failed += [f"backup {b}: its manifest cannot be read ({why})" for b, why in found.damaged]
        segment_size = clusterinfo.read(tiers.repository, cluster).wal_segment_size
        view = tiers.view()
        for placement in found.backups:
            _place(cluster, tiers, found, placement, view, segment_size, now, report)
        if not dry_run:
            found = census(tiers, cluster)
            _top_up_wal(cluster, tiers, found, view, segment_size, report)
            _collect(cluster, tiers, gc_grace, segment_size, now, report)
        _count(tiers, found, report)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _lock_tier_storages(tiers: TierSet, cluster: str, locks: contextlib.ExitStack,
                        report: TierReport) -> None:
    """Each tier storage's own lock, where its driver has locks (a storage without them is
    written only under the repository's lock, which every Lifeboat writer of the tiers takes)."""
    for tier, index, storage in tiers.storages():
        if storage is tiers.repository:
            continue
        try:
            lock_space(storage)
        except StorageError:
            continue  # no lock implementation for this driver
        locks.enter_context(cluster_lock(storage, cluster, f"tiering ({tier.describe(index)})",
                                         report.notices))


def _place(cluster: str, tiers: TierSet, found: Census, placement: Placement, view: TieredView,
           segment_size: int, now: float, report: TierReport) -> None:
    age = now - stopped_at(placement.summary)
    current = placement.hottest(tiers)
    wanted = tiers.for_age(age)
    if age >= tiers.tiers[-1].age:
        report.past_last_tier.append(placement.id)
    if tiers.rank(wanted.name) < tiers.rank(current.name):
        return  # never back to a hotter tier (the ages were raised): it stays where it is
    moving = wanted.name != current.name
    lacking = [i for i in range(len(wanted.storages)) if i not in placement.held.get(wanted.name, [])]
    if not moving and placement.copies(wanted.name) >= wanted.replication:
        return
    if _dry_run_step(report, placement, current, wanted, moving, lacking):
        return
    started = time.monotonic()
    copied = CopyReport(cluster, wanted.name)
    ok = _copy_into(cluster, tiers, found, placement, wanted, lacking, view, segment_size, copied,
                    report, need=None if moving else wanted.replication)
    report.bytes_copied += copied.bytes_copied
    holders = sorted(set(placement.held.get(wanted.name, [])) | ok)
    verified = [i for i in holders if _verified(cluster, wanted, i, placement, view, segment_size,
                                                 report, fresh=i in ok or moving)]
    placement.held[wanted.name] = verified
    if not moving:
        if len(verified) > len(set(holders) - ok):
            report.repaired.append({"backup": placement.id, "tier": wanted.name,
                                    "copies": len(verified), "replication": wanted.replication})
        return
    if len(verified) < wanted.replication:
        report.failed.append(f"backup {placement.id}: only {len(verified)} of the {wanted.replication} "
                             f"copies {wanted.name} needs are verified; it stays in {current.name}")
        return
    for tier in tiers.tiers[:tiers.rank(wanted.name)]:
        for index in placement.held.get(tier.name, []):
            tier.storages[index].delete(layout.manifest_key(cluster, placement.id))
        placement.held.pop(tier.name, None)
    report.moved.append({"backup": placement.id, "from": current.name, "to": wanted.name,
                         "copies": len(verified), "bytes": copied.bytes_copied,
                         "seconds": round(time.monotonic() - started, 3)})


def _dry_run_step(report: TierReport, placement: Placement, current: Tier, wanted: Tier, moving: bool,
                 lacking: list[int]) -> bool:
    """In a dry run, record what would be done instead of doing it."""
    if not report.dry_run:
        return False
    report.planned.append({"backup": placement.id, "action": "move" if moving else "repair",
                           "from": current.name, "to": wanted.name,
                           "storages": [wanted.describe(i) for i in lacking]})
    return True


def wal_needed(found: Census, placement: Placement, names: set[str], segment_size: int
               ) -> tuple[set[str], list[str]]:
    """The WAL a backup takes along: every archived file from its start segment up to (not
    including) the next backup's start segment, on any timeline (to the end of the archive
    when it is the newest), and every timeline history; and the segments from its start to its
    stop that none of the tiers holds (it cannot move without them)."""
    summary = placement.summary
    first = wal.segment_of_lsn(wal.parse_lsn(summary.start_lsn), segment_size)
    following = found.next_after(placement)
    end = wal.segment_of_lsn(wal.parse_lsn(following.summary.start_lsn), segment_size) \
        if following is not None else 1 << 62
    end = max(end, wal.parse_segment(summary.stop_wal, segment_size).segno + 1)
    chosen = set()
    for name in names:
        kind = wal.wal_file_kind(name)
        if kind == "history" or (kind is not None and first <= wal.parse_segment(
                name[:24], segment_size).segno < end):
            chosen.add(name)
    missing = [n for n in own_wal(summary, segment_size) if n not in names]
    return chosen, missing


def _copy_into(cluster: str, tiers: TierSet, found: Census, placement: Placement, target_tier: Tier,
               lacking: list[int], view: TieredView, segment_size: int, copied: CopyReport,
               report: TierReport, need: int | None) -> set[int]:
    """Copy the backup into each of ``lacking`` (at most ``need`` of them: a repair); the
    indices that now hold it."""
    from engine.repository.copies import wal_names

    done: set[int] = set()
    if not lacking:
        return done
    wanted, missing = wal_needed(found, placement, wal_names(view, cluster), segment_size)
    if missing:
        report.failed.append(f"backup {placement.id}: its WAL {missing[0]} is in none of the tiers; "
                             f"it cannot be copied to {target_tier.name}")
        return done
    have = placement.copies(target_tier.name)
    for index in lacking:
        if need is not None and have + len(done) >= need:
            break
        target = target_tier.storages[index]
        where = target_tier.describe(index)
        try:
            copy_identity(tiers.repository, target, cluster, copied)
            held_wal = copy_wal(view, target, cluster, copied, only=wanted)
            skipped = len(copied.skipped)
            if copy_backup(view, target, cluster, placement.id, held_wal, (set(), set()), segment_size,
                           copied):
                done.add(index)
            else:
                report.failed += [f"{where}: {why}" for why in copied.skipped[skipped:]]
        except ArchivedObjectError as exc:
            report.waiting.append(_request_thaw(cluster, target_tier, placement, segment_size, exc))
            break
        except LifeboatError as exc:
            report.failed.append(f"backup {placement.id}: copy to {where} failed: {exc}")
    return done


def _request_thaw(cluster: str, tier: Tier, placement: Placement, segment_size: int,
                  exc: ArchivedObjectError) -> str:
    """A repair whose only source is archived: ask for the backup's objects to be restored in
    the first storage holding it; a later run copies them once readable."""
    from engine.repository.tiers.thaw import backup_keys, request

    holder = tier.storages[placement.held[tier.name][0]]
    keys = backup_keys(holder, cluster, placement.summary, segment_size)
    asked = request(holder, keys, tier.restore_days, tier.retrieval)
    return (f"backup {placement.id}: repair of {tier.name} waits for {asked} archived objects to be "
            f"restored in {holder.describe()} ({tier.retrieval} retrieval; {exc})")


def _verified(cluster: str, tier: Tier, index: int, placement: Placement, view: TieredView,
              segment_size: int, report: TierReport, fresh: bool) -> bool:
    """Whether the copy in ``tier``'s storage ``index`` restores (see the module's docstring); a
    copy that fails loses its manifest there (it is not a copy) and the failure is reported."""
    if not fresh:
        return True  # verified when it was copied, by an earlier run
    storage = tier.storages[index]
    try:
        problems = _archived_problems(storage, cluster, placement, view, segment_size) \
            if tier.archive_class else _readable_problems(storage, cluster, placement.id)
    except LifeboatError as exc:
        problems = [str(exc)]
    if not problems:
        return True
    report.failed.append(f"backup {placement.id}: the copy in {tier.describe(index)} fails "
                         f"verification ({problems[0]}); it was removed there and will be copied again")
    with contextlib.suppress(StorageError):
        storage.delete(layout.manifest_key(cluster, placement.id))
    return False


def _readable_problems(storage: Storage, cluster: str, backup_id: str) -> list[str]:
    from engine.repository import verify

    checked = verify.run(storage, cluster, backup_id)
    return [str(p) for p in checked.problems if p.kind in DATA_PROBLEMS]


def _archived_problems(storage: Storage, cluster: str, placement: Placement, view: TieredView,
                       segment_size: int) -> list[str]:
    """The manifest re-read in full; each pack, list and WAL file the backup needs present with
    the size the source has."""
    from engine.repository.tiers.thaw import backup_keys

    manifest = read_manifest(storage, cluster, placement.id)  # ChecksumError when damaged
    problems = []
    for key in backup_keys(storage, cluster, manifest.summary, segment_size, manifest):
        try:
            theirs, ours = storage.size(key), view.size(key)
        except StorageError as exc:
            problems.append(f"{key}: {exc}")
            continue
        if theirs != ours:
            problems.append(f"{key}: {theirs} bytes, the source's {ours}")
    return problems


def _top_up_wal(cluster: str, tiers: TierSet, found: Census, view: TieredView, segment_size: int,
                report: TierReport) -> None:
    """The WAL of each backup outside the repository that its tier lacks: a backup that moved as
    the newest took the archive as it was; what was archived after it, up to the next backup's
    start, follows it now (so a point-in-time recovery from it reaches the next backup)."""
    from engine.repository.copies import wal_names

    names = wal_names(view, cluster)
    held: dict[tuple[str, int], set[str]] = {}
    for placement in found.backups:
        tier = placement.hottest(tiers)
        if tier is tiers.tiers[0]:
            continue
        wanted, _missing = wal_needed(found, placement, names, segment_size)
        for index in placement.held.get(tier.name, []):
            storage = tier.storages[index]
            try:
                have = held.setdefault((tier.name, index), wal_names(storage, cluster))
                lacking = wanted - have
                if lacking:
                    copied = CopyReport(cluster, tier.name)
                    have |= copy_wal(view, storage, cluster, copied, only=lacking)
                    report.wal_topped_up += copied.wal_copied
                    report.bytes_copied += copied.bytes_copied
            except LifeboatError as exc:
                report.notices.append(f"the WAL of backup {placement.id} could not be brought up to "
                                      f"date in {tier.describe(index)}: {exc}")


def _collect(cluster: str, tiers: TierSet, grace: float, segment_size: int, now: float,
             report: TierReport) -> None:
    """Garbage collection of every tier storage but the repository (expire collects that one)."""
    from engine.repository.expire import collect_garbage

    for tier, index, storage in tiers.storages():
        if storage is tiers.repository:
            continue
        try:
            done = collect_garbage(storage, cluster, grace, segment_size, now)
        except LifeboatError as exc:
            report.notices.append(f"garbage collection of {tier.describe(index)} failed: {exc}")
            continue
        report.notices += done.notices
        if done.packs_removed or done.lists_removed or done.wal_removed:
            report.collected[tier.describe(index)] = {
                "packs": len(done.packs_removed), "lists": done.lists_removed,
                "wal": len(done.wal_removed),
                "bytes": done.pack_bytes + done.list_bytes + done.wal_bytes}


def _count(tiers: TierSet, found: Census, report: TierReport) -> None:
    for placement in found.backups:
        tier = placement.hottest(tiers)
        if placement.copies(tier.name) < tier.replication:
            report.below_replication.append({"backup": placement.id, "tier": tier.name,
                                             "copies": placement.copies(tier.name),
                                             "replication": tier.replication})
