"""Validation of a region's copy (hourly in the agent, ``lifeboat copy --validate`` by hand):
is the copy what a restore from it needs, and does it hold what the primary does?

1. **Manifests against the primary's**: a backup the primary holds and the copy's retention
   keeps but the copy lacks (written longer ago than ``grace``, so a copy in progress is not
   a problem: that is copy lag) is *missing*; one both hold whose manifest differs (the
   SHA-256 of its body or its size) is *differing*; one only the copy holds is *extra*, which
   is reported but no problem (a copy may keep more than the primary).
2. **Presence**: every pack and block list each backup of the copy refers to is in the copy
   (one listing), each pack with the primary's size where the primary has it; every WAL
   segment a backup of the copy needs to reach consistency and to recover to the end of the
   copy's archive is there (verify's :class:`~engine.repository.verify.wal.WalNeeds`).
3. **A sample re-hashed**: ``sample`` objects (a count, or a share of them) picked at random
   among the copy's WAL files, packs, block lists and manifests are read and checked against
   the checksums recorded when they were written, by verify's own checks
   (:func:`~engine.repository.verify.wal.check_file`,
   :func:`~engine.repository.verify.packs.check_pack`,
   :func:`~engine.repository.verify.lists.check_orphan`, :func:`read_manifest`); each one's
   size is compared with the primary's copy of it too.

Each problem is a verify :class:`~engine.repository.verify.report.Problem` naming the object
and what it breaks for a restore from the region. When the primary cannot be read (the
disaster validation is for) the comparisons with it are skipped and said so; the copy's own
presence and checksums are still checked.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import LifeboatError, NotFoundError
from engine.repository import inventory, layout
from engine.repository.manifest import BackupSummary, list_backup_ids, read_manifest, read_summary
from engine.repository.region import check_copy
from engine.repository.retention import Policy
from engine.repository.storage import Storage
from engine.repository.verify.lists import check_orphan
from engine.repository.verify.packs import check_pack
from engine.repository.verify.report import Problem
from engine.repository.verify.wal import WalNeeds, archived_segments, check_file

if TYPE_CHECKING:
    from engine.config.regions import CopyConfig

WAL_KINDS = ("wal", "backup-history", "history")
#: Problems kept in a validation's record in the catalog (all are counted).
PROBLEMS_KEPT = 20
SAMPLED_KINDS = (*WAL_KINDS, "pack", "list", "manifest")


@dataclass
class ValidationReport:
    cluster: str
    region: str
    at: float = 0.0  # when it started (seconds since the epoch)
    primary: str = ""  # what the primary was, or why it was not compared
    compared: bool = False  # the manifests were compared with the primary's
    backups: int = 0  # backups in the copy
    missing: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    packs: int = 0  # packs and lists found present
    lists: int = 0
    wal: int = 0  # WAL files the backups need, found present
    sampled: list[str] = field(default_factory=list)  # keys re-hashed
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return asdict(self) | {"ok": self.ok}


def validate(primary: Storage | None, copy: Storage, cluster: str, region: str,
             policy: Policy | None = None, sample: tuple[str, float] = ("count", 8.0),
             grace: float = 300.0, now: float | None = None,
             rng: random.Random | None = None) -> ValidationReport:
    """Validate the copy of ``cluster`` in ``region`` (see the module's docstring); the
    report's ``ok`` says whether a restore from it would find what it needs. Raises only
    RegionUnavailableError, when the copy itself cannot be read."""
    started = time.monotonic()
    now = time.time() if now is None else now
    report = ValidationReport(cluster, region, at=now)
    info = check_copy(copy, region, cluster)
    found = inventory.take(copy, cluster)
    ids = sorted(filter(None, (layout.backup_id_of(k) for k in found.of("manifest"))))
    report.backups = len(ids)
    summaries: dict[str, BackupSummary] = {}
    for backup_id in ids:
        try:
            summaries[backup_id] = read_summary(copy, cluster, backup_id)
        except LifeboatError as exc:
            report.problems.append(Problem("manifest", backup_id, str(exc),
                                           layout.manifest_key(cluster, backup_id),
                                           f"backup {backup_id} cannot be restored from region {region}"))
    _compare(primary, copy, cluster, region, summaries, ids, policy, grace, now, info.wal_segment_size,
             report)
    names = set().union(*(found.names(kind) for kind in WAL_KINDS))
    needs = WalNeeds(copy, cluster, list(summaries.values()), info.wal_segment_size,
                     archived_segments(names, info.wal_segment_size))
    _presence(primary, copy, cluster, region, summaries, found, names, needs, report)
    _sample(primary, copy, cluster, region, found, sample, summaries, needs, rng or random.Random(), report)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _compare(primary: Storage | None, copy: Storage, cluster: str, region: str,
             summaries: dict[str, BackupSummary], ids: list[str], policy: Policy | None, grace: float,
             now: float, segment_size: int, report: ValidationReport) -> None:
    if primary is None:
        report.primary = "not compared: the primary repository is not open"
        return
    try:
        theirs = list_backup_ids(primary, cluster)
        if not theirs and not primary.exists(layout.cluster_info_key(cluster)):
            raise NotFoundError(f"{primary.describe()} holds no cluster '{cluster}'")
    except LifeboatError as exc:
        report.primary = f"not compared: the primary cannot be read ({exc})"
        return
    report.primary, report.compared = primary.describe(), True
    held = set(ids)
    kept = set(theirs)
    if policy is not None and policy.mirror is None and policy.configured:  # the copy keeps less
        both = dict(summaries)
        for backup_id in kept - held:
            try:
                both[backup_id] = read_summary(primary, cluster, backup_id)
            except LifeboatError:
                continue
        kept = {b.id for b in policy.plan(list(both.values()), now, segment_size).keep} | (kept - set(both))
    for backup_id in sorted(set(theirs) - held):
        key = layout.manifest_key(cluster, backup_id)
        if backup_id not in kept:
            continue
        try:
            age = now - primary.mtime(key)
        except LifeboatError:
            continue  # expired meanwhile
        if age < grace:
            continue  # being copied: copy lag, not a problem of the copy
        report.missing.append(backup_id)
        report.problems.append(Problem(
            "manifest", backup_id, f"the primary holds it (written {age / 60:.0f} min ago) but the copy "
            "lacks it", key, f"backup {backup_id} cannot be restored from region {region}"))
    report.extra = sorted(held - set(theirs))
    for backup_id in sorted(held & set(theirs)):
        ours = summaries.get(backup_id)
        if ours is None:
            continue
        try:
            other = read_summary(primary, cluster, backup_id)
        except LifeboatError:
            continue
        if (ours.body_sha256, ours.body_bytes) != (other.body_sha256, other.body_bytes):
            report.differing.append(backup_id)
            report.problems.append(Problem(
                "manifest", backup_id, "differs from the primary's (the SHA-256 of its body)",
                layout.manifest_key(cluster, backup_id),
                f"a restore of backup {backup_id} from region {region} would not restore what was "
                "backed up"))


def _presence(primary: Storage | None, copy: Storage, cluster: str, region: str,
              summaries: dict[str, BackupSummary], found: inventory.Inventory, names: set[str],
              needs: WalNeeds, report: ValidationReport) -> None:
    """Every pack, block list and WAL segment the copy's backups need is in the copy."""
    packs, lists = found.names("pack"), found.names("list")
    users: dict[str, list[str]] = {}
    for summary in summaries.values():
        for pack in summary.packs:
            users.setdefault(pack, []).append(summary.id)
    for pack in sorted(users):
        key = layout.pack_key(cluster, pack)
        breaks = f"backups it breaks in region {region}: {', '.join(users[pack])}"
        if pack not in packs:
            report.problems.append(Problem("pack", pack, "missing from the copy", key, breaks))
            continue
        report.packs += 1
        if primary is not None and report.compared:
            try:
                theirs = primary.size(key)
            except LifeboatError:
                continue  # the primary expired it, or cannot say: presence is what counts
            ours = copy.size(key)
            if ours != theirs:
                report.problems.append(Problem("pack", pack, f"holds {ours} bytes, the primary's "
                                               f"{theirs}", key, breaks))
    for backup_id in sorted(summaries):
        try:
            manifest = read_manifest(copy, cluster, backup_id)
            needed = {i.hex() for e in manifest.entries() for i in e.stored_lists}
        except LifeboatError as exc:
            report.problems.append(Problem("manifest", backup_id, str(exc),
                                           layout.manifest_key(cluster, backup_id),
                                           f"backup {backup_id} cannot be restored from region {region}"))
            continue
        for list_hex in sorted(needed - lists):
            report.problems.append(Problem("list", list_hex, "missing from the copy",
                                           layout.list_key(cluster, list_hex),
                                           f"backup {backup_id} cannot be restored from region {region}"))
        report.lists += len(needed & lists)
    for name, _backup in sorted(needs.required().items()):
        if name in names:
            report.wal += 1
            continue
        report.problems.append(Problem("wal", name, "missing from the copy", layout.wal_key(cluster, name),
                                       needs.affects(name)))


def _sample(primary: Storage | None, copy: Storage, cluster: str, region: str,
            found: inventory.Inventory, sample: tuple[str, float], summaries: dict[str, BackupSummary],
            needs: WalNeeds, rng: random.Random, report: ValidationReport) -> None:
    """Re-hash a random sample of the copy's objects with verify's checks."""
    population = [(kind, key) for kind in SAMPLED_KINDS for key in found.of(kind)]
    how, amount = sample
    count = int(amount) if how == "count" else math.ceil(amount * len(population))
    chosen = rng.sample(population, min(count, len(population)))
    frame_limit = max((max(s.frame_size, s.block_size) for s in summaries.values()), default=1 << 20)
    for kind, key in sorted(chosen, key=lambda c: c[1]):
        name = key.rsplit("/", 1)[-1]
        report.sampled.append(key)
        found_problems: list[Problem] = []
        if kind in WAL_KINDS:
            problem = check_file(copy, cluster, name)
            found_problems += [problem] if problem is not None else []
        elif kind == "list":
            problem = check_orphan(copy, key)
            found_problems += [problem] if problem is not None else []
        elif kind == "pack":
            result = check_pack(copy, cluster, name, {}, [], frame_limit)
            found_problems += result.problems + [p for _, p in result.frame_problems]
        else:
            backup_id = layout.backup_id_of(key) or name
            try:
                for _entry in read_manifest(copy, cluster, backup_id).entries():
                    pass
            except NotFoundError:
                continue
            except LifeboatError as exc:
                found_problems.append(Problem("manifest", backup_id, str(exc), key))
        if not found_problems and primary is not None and report.compared:
            try:
                theirs, ours = primary.size(key), copy.size(key)
            except LifeboatError:
                theirs = ours = 0
            if theirs != ours:
                found_problems.append(Problem(kind, name, f"holds {ours} bytes, the primary's {theirs}",
                                              key))
        for problem in found_problems:
            problem.affects = problem.affects or (needs.affects(name) if kind in WAL_KINDS else
                                                  _affects(kind, name, summaries, region))
            report.problems.append(problem)


def _affects(kind: str, name: str, summaries: dict[str, BackupSummary], region: str) -> str:
    if kind == "pack":
        users = [s.id for s in summaries.values() if name in s.packs]
        return f"backups it breaks in region {region}: {', '.join(users)}" if users else \
            "not needed by any backup of the copy"
    return f"restores from region {region} that read it"


def grace(settings: CopyConfig) -> float:
    """How long a backup the primary holds may be missing from the copy before validation calls
    it a problem: two copy rounds and a minute (before then it is copy lag)."""
    return 2 * float(settings.interval) + 60.0


def record_of(report: ValidationReport) -> dict[str, Any]:
    """What the catalog keeps of a validation (the exporter and the console read it)."""
    return {"ok": report.ok, "problems": len(report.problems),
            "details": [str(p) for p in report.problems[:PROBLEMS_KEPT]],
            "missing": report.missing, "differing": report.differing, "extra": report.extra,
            "sampled": len(report.sampled), "compared": report.compared, "primary": report.primary,
            "seconds": report.seconds}


def summary_of(report: ValidationReport) -> str:
    shown = "; ".join(str(p) for p in report.problems[:3])
    more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
    return (f"the copy of cluster '{report.cluster}' in region {report.region} fails its validation: "
            f"{len(report.problems)} problems: {shown}{more}")
