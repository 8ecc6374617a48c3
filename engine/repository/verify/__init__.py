"""Verification: every object in a cluster's part of the repository is checked against the
checksum recorded when it was written, and each missing, damaged or unknown one is named
with what it breaks.

One listing classifies every key (:mod:`engine.repository.inventory`); each kind has its
check:

- the sealed documents (``lifeboat.repo``, ``cluster.json``, restore points,
  ``verified.json``) and objects Lifeboat did not write: :mod:`.documents`;
- manifests (their checksummed summary and body); block lists, each read once however
  many backups share it, and those no backup refers to any more: :mod:`.lists`;
- packs, each read once from start to end, whether a backup uses them or not: their
  index, every frame, and the blocks the lists use re-hashed: :mod:`.packs`;
- every archived WAL file, and the WAL the backups need but the archive lacks: :mod:`.wal`.

Packs are checked in groups when the backups hold many frames: the claims on frames (what
the pack check re-hashes) are kept for one group of packs at a time, the lists read again
for each later group, so memory stays flat however large the database
(:data:`MAX_CLAIMS`).

``since_last`` skips the immutable objects (packs, lists, WAL files, manifests with all
their lists and packs) an earlier verify proved; the small mutable documents are checked
every time. ``backup_id`` checks one backup's manifest, lists, packs and WAL (and the
documents).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from engine.errors import LifeboatError, UsageError
from engine.repository import inventory, layout
from engine.repository.manifest import BackupSummary, Manifest, read_manifest, read_summary
from engine.repository.storage import Storage
from engine.repository.verify import documents
from engine.repository.verify.lists import Claims, ListChecker, check_orphan, reclaim, users_of
from engine.repository.verify.packs import PackResult, check_pack
from engine.repository.verify.report import NOT_NEEDED, Problem, VerifyReport
from engine.repository.verify.wal import WalNeeds, archived_segments, check_file
from engine.wal import names as wal

__all__ = ["Problem", "VerifyReport", "run"]

WAL_KINDS = ("wal", "backup-history", "history")
#: About how many frames' claims are held at once (some 600 bytes each).
MAX_CLAIMS = 16384


def run(storage: Storage, cluster: str, backup_id: str | None = None, since_last: bool = False,
        jobs: int = 2, progress: Callable[[int], None] | None = None) -> VerifyReport:
    started = time.monotonic()
    report = VerifyReport(cluster, "since-last" if since_last else "full")
    found = inventory.take(storage, cluster)
    info = documents.check(storage, cluster, found, report)
    prior = documents.read_state(storage, cluster, found, report)
    proven = prior if since_last else {name: set() for name in documents.STATE_FIELDS}
    ids = sorted(filter(None, (layout.backup_id_of(k) for k in found.of("manifest"))))
    if backup_id is not None and backup_id not in ids:
        raise UsageError(f"backup '{backup_id}' of cluster '{cluster}' does not exist "
                         "('lifeboat info' lists the backups)")
    scope = ids if backup_id is None else [backup_id]
    report.backups = len(scope)
    summaries, manifests = _manifests(storage, cluster, ids, scope, proven["manifests"], report)

    wal_names = found.names("wal") | found.names("backup-history") | found.names("history")
    needs = None
    if info is not None:
        archived = archived_segments(wal_names, info.wal_segment_size)
        needs = WalNeeds(storage, cluster, list(summaries.values()), info.wal_segment_size, archived)
        _missing_wal(cluster, needs, archived, wal_names, backup_id, report)
    wal_scope = wal_names if backup_id is None or needs is None else \
        (set(needs.required(backup_id)) | found.names("history")) & wal_names
    wal_todo = sorted(wal_scope - proven["wal"])
    report.skipped_wal = len(wal_scope) - len(wal_todo)

    pack_names = found.names("pack")
    pack_scope = pack_names if backup_id is None else set(summaries[backup_id].packs) & pack_names \
        if backup_id in summaries else set()
    pack_todo = sorted(pack_scope - proven["packs"])
    report.skipped_packs = len(pack_scope) - len(pack_todo)
    frame_limit = max((max(s.frame_size, s.block_size) for s in summaries.values()), default=1 << 20)

    groups = _pack_groups(pack_todo, [summaries[i] for i in scope if i in summaries])
    claims = Claims(skip_packs=pack_names - set(groups[0]))
    checker = ListChecker(cluster, claims, proven["lists"], report, jobs)
    with ThreadPoolExecutor(jobs, thread_name_prefix="lifeboat-verify") as pool:
        wal_results = {n: pool.submit(check_file, storage, cluster, n) for n in wal_todo}
        for manifest in manifests.values():
            try:
                for entry in manifest.entries():
                    checker.add(pool, manifest, entry)
            except LifeboatError as exc:
                checker.broken_backups.add(manifest.summary.id)
                report.problems.append(Problem("manifest", manifest.summary.id, str(exc), manifest.key,
                                               f"backup {manifest.summary.id} cannot be restored"))
        checker.finish()
        orphans: dict[str, Future[Problem | None]] = {}
        if backup_id is None:  # lists no manifest checked here refers to: orphans, or proven
            unreached = [k for k in found.of("list") if k.rsplit("/", 1)[-1] not in checker.reached]
            orphans = {k: pool.submit(check_orphan, storage, k) for k in unreached
                       if k.rsplit("/", 1)[-1] not in proven["lists"]}
            report.skipped_lists += len(unreached) - len(orphans)
        results: dict[str, PackResult] = {}
        for number, group in enumerate(groups):
            if number:  # the claims of the packs of this group, from the lists found sound
                claims = Claims(skip_packs=pack_names - set(group))
                reclaim(manifests.values(), claims, checker.sound, set(group))
            packs = {p: pool.submit(check_pack, storage, cluster, p, claims.by_pack.get(p, {}),
                                    claims.owners, frame_limit) for p in group}
            results.update((p, _collect(f, report, progress)) for p, f in packs.items())
            checker.release_claims()
            del claims, packs
        orphans_ok, orphans_bad = set(), set()
        for key, future in orphans.items():
            report.lists += 1
            problem = future.result()
            (orphans_ok if problem is None else orphans_bad).add(key.rsplit("/", 1)[-1])
            if problem is not None:
                report.problems.append(problem)
        bad_wal = set()
        for name, wal_future in wal_results.items():
            report.wal_segments += 1
            problem = wal_future.result()
            if problem is not None:
                bad_wal.add(name)
                problem.affects = needs.affects(name) if needs is not None else \
                    "unknown: cluster.json is damaged, so what the backups need cannot be worked out"
                report.problems.append(problem)

    bad_packs = _pack_problems(storage, cluster, results, summaries, manifests, scope, pack_names, report)
    _save_state(storage, cluster, prior if since_last or backup_id is not None else None, found, {
        "packs": {p for p, r in results.items() if r.ok},
        "lists": checker.proven | orphans_ok,
        "wal": set(wal_todo) - bad_wal,
        "manifests": set(manifests) - checker.broken_backups,
    }, {"packs": bad_packs, "lists": checker.bad | orphans_bad, "wal": bad_wal,
        "manifests": checker.broken_backups}, summaries)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _pack_groups(packs: list[str], summaries: list[BackupSummary]) -> list[list[str]]:
    """``packs`` in groups of about :data:`MAX_CLAIMS` frames (estimated from what the
    backups stored anew), at least one group."""
    frames = sum(max(0, s.size_bytes - s.reused_bytes) // max(1, s.frame_size) + 1
                 for s in summaries)
    count = max(1, min(len(packs), -(-frames // MAX_CLAIMS)))
    size = -(-len(packs) // count) if packs else 1
    return [packs[i:i + size] for i in range(0, len(packs), size)] or [[]]


def _manifests(storage: Storage, cluster: str, ids: list[str], scope: list[str], proven: set[str],
               report: VerifyReport) -> tuple[dict[str, BackupSummary], dict[str, Manifest]]:
    """Every backup's summary (what the WAL and packs serve), and the manifests to check
    in full (those in scope an earlier verify did not prove with all they refer to)."""
    summaries: dict[str, BackupSummary] = {}
    manifests: dict[str, Manifest] = {}
    for each in ids:
        key = layout.manifest_key(cluster, each)
        try:
            if each in scope and each not in proven:
                report.manifests += 1
                manifests[each] = read_manifest(storage, cluster, each)
                summaries[each] = manifests[each].summary
                continue
            if each in scope:
                report.skipped_manifests += 1
            summaries[each] = read_summary(storage, cluster, each)
        except LifeboatError as exc:
            if each in scope:
                report.problems.append(Problem("manifest", each, str(exc), key,
                                               f"backup {each} cannot be restored"))
            try:
                summaries[each] = read_summary(storage, cluster, each)  # the body alone is damaged
            except LifeboatError:
                pass
    return summaries, manifests


def _missing_wal(cluster: str, needs: WalNeeds, archived: dict[int, list[int]], present: set[str],
                 backup_id: str | None, report: VerifyReport) -> None:
    for timeline in archived:
        name = wal.history_name(timeline)
        if timeline > 1 and name not in present:
            report.problems.append(Problem(
                "history", name, f"missing from the archive, but segments of timeline {timeline} are "
                "archived", layout.wal_key(cluster, name), needs.affects(name)))
    for name in sorted(needs.required(backup_id)):
        if name not in present:
            report.problems.append(Problem("wal", name, "missing from the archive",
                                           layout.wal_key(cluster, name), needs.affects(name)))


def _collect(future: Future[PackResult], report: VerifyReport,
             progress: Callable[[int], None] | None) -> PackResult:
    result = future.result()
    report.packs += 1
    report.frames += result.frames
    report.blocks += result.blocks
    report.bytes += result.bytes
    if progress is not None:
        progress(result.read)
    return result


def _pack_problems(storage: Storage, cluster: str, results: dict[str, PackResult],
                   summaries: dict[str, BackupSummary], manifests: dict[str, Manifest], scope: list[str],
                   present: set[str], report: VerifyReport) -> set[str]:
    """Report the packs' problems with the backups each breaks, and the packs backups
    refer to that are missing; the packs found bad."""
    bad: set[str] = set()
    damaged = {p: {offset for offset, _ in r.frame_problems} for p, r in results.items() if r.frame_problems}
    users: dict[tuple[str, int], list[str]] = {}
    if damaged:
        users = users_of(_every_manifest(storage, cluster, summaries, manifests), damaged)
    for pack, result in results.items():
        if result.ok:
            continue
        bad.add(pack)
        for problem in result.problems:
            if not problem.affects:
                problem.affects = _referring(pack, summaries)
            report.problems.append(problem)
        for offset, problem in result.frame_problems:
            who = users.get((pack, offset))
            problem.affects = f"backups it breaks: {', '.join(who)}" if who else NOT_NEEDED
            report.problems.append(problem)
    for backup in scope:
        summary = summaries.get(backup)
        for pack in [] if summary is None else summary.packs:
            if pack not in present and pack not in bad:
                bad.add(pack)
                report.problems.append(Problem("pack", pack, "missing from the repository",
                                               layout.pack_key(cluster, pack), _referring(pack, summaries)))
    return bad


def _referring(pack: str, summaries: dict[str, BackupSummary]) -> str:
    ids = [s.id for s in summaries.values() if pack in s.packs]
    return f"backups that use it: {', '.join(ids)}" if ids else NOT_NEEDED


def _every_manifest(storage: Storage, cluster: str, summaries: dict[str, BackupSummary],
                    manifests: dict[str, Manifest]) -> list[Manifest]:
    """The manifests checked, and those of the other backups (to name who uses damage)."""
    every = []
    for backup in summaries:
        if backup in manifests:
            every.append(manifests[backup])
            continue
        try:
            every.append(read_manifest(storage, cluster, backup))
        except LifeboatError:
            continue
    return every


def _save_state(storage: Storage, cluster: str, prior: documents.State | None, found: inventory.Inventory,
                new: documents.State, bad: documents.State, summaries: dict[str, BackupSummary]) -> None:
    """What this verify proved, with what an earlier one proved that this one skipped
    (``prior``: since-last, or one backup) unless found ``bad`` now, of the objects still
    there. A manifest stays proven only while every pack it uses is."""
    present = {"packs": found.names("pack"), "lists": found.names("list"),
               "wal": found.names("wal") | found.names("backup-history") | found.names("history"),
               "manifests": {layout.backup_id_of(k) or "" for k in found.of("manifest")}}
    state = {name: (new[name] | (prior[name] - bad[name] if prior is not None else set())) & present[name]
             for name in documents.STATE_FIELDS}
    state["manifests"] = {m for m in state["manifests"] if m in summaries
                          and all(p in state["packs"] for p in summaries[m].packs)}
    documents.write_state(storage, cluster, state)
