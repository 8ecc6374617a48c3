"""The plan of a restore, made before anything runs: what it would use, what it needs, and
every reason it cannot run.

:func:`plan_restore` is pure reading (repository, catalog, file system, a port probe); it
raises nothing for a problem of the user's request: each becomes an entry of ``problems``
naming the thing and what to do. The backup is chosen by the code the restore itself runs
(:func:`engine.restore.physical.choose`), and the WAL range by the same timeline logic
(:mod:`engine.wal.timelines`). ``lifeboat restore --plan`` prints it; the console shows it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from engine.errors import LifeboatError
from engine.repository import clusterinfo, layout
from engine.restore.windows import NamedPoint, RecoveryWindow, named_points, recovery_windows
from engine.wal import archive, timelines
from engine.wal.names import format_lsn, parse_lsn, segment_name, segment_of_lsn

if TYPE_CHECKING:
    from engine.context import Context
    from engine.jobs import RestoreParams
    from engine.repository.manifest import BackupSummary

__all__ = ["NamedPoint", "RecoveryWindow", "RestorePlan", "TablespaceCheck", "named_points",
           "plan_restore", "recovery_windows"]

MISSING, EMPTY, NOT_EMPTY, OWN = "missing", "empty", "not empty", "the cluster's own data directory"


class TablespaceCheck(NamedTuple):
    oid: int
    source: str  # where the tablespace was when backed up
    destination: str  # where the restore would write it
    ok: bool
    why: str


@dataclass(frozen=True)
class RestorePlan:
    cluster: str
    backup_id: str | None
    backup_type: str | None
    backup_finished_at: str | None
    timeline: int | None
    target: str
    wal_first: str | None
    wal_last: str | None
    wal_segments: int
    wal_bytes: int
    restore_bytes: int
    expected_seconds: float | None
    expected_basis: str
    destination: str
    destination_state: str
    destination_free_bytes: int | None
    in_place: bool
    server_running: bool
    pg_version: int | None
    bin_version: int | None
    tablespaces: list[TablespaceCheck]
    port: int | None
    port_free: bool | None
    problems: list[str]
    warnings: list[str]
    params: dict[str, Any] = field(default_factory=dict)  # the request, as validated
    stop_server: bool = False  # the restore stops the running server first (in place)
    tier: str | None = None  # the tier the backup is read from (hot: the repository)
    archive_objects: int = 0  # objects in an archive class to restore before anything is written
    archive_bytes: int = 0
    archive_wait_seconds: float = 0.0  # the expected wait for them (included in expected_seconds)
    archive_note: str = ""
    region: str | None = None  # restored from the copy in this region (None: the primary)
    source: str = ""  # the repository it restores from, and its WAL

    @property
    def runnable(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["tablespaces"] = [t._asdict() for t in self.tablespaces]
        data["runnable"] = self.runnable
        return data


def _major(version: int | None) -> int | None:
    return None if version is None else (version // 10000 if version >= 100000 else version)


def bin_version(bin_dir: Path) -> int | None:
    """The major version of the server binaries in ``bin_dir`` (``pg_ctl --version``)."""
    try:
        done = subprocess.run([str(bin_dir / "pg_ctl"), "--version"], capture_output=True, text=True,
                              timeout=10)
    except OSError:
        return None
    words = done.stdout.split()
    try:
        return int(words[-1].split(".")[0])
    except (IndexError, ValueError):
        return None


def port_free(port: int) -> bool:
    """Nobody listens on ``port`` (TCP, loopback and any address)."""
    for host in ("127.0.0.1", "0.0.0.0"):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def _directory_state(path: Path) -> str:
    if not path.exists():
        return MISSING
    if not path.is_dir():
        return "not a directory"
    return NOT_EMPTY if any(path.iterdir()) else EMPTY


def _free_bytes(path: Path) -> int | None:
    existing = next((d for d in (path, *path.parents) if d.exists()), None)
    if existing is None:
        return None
    try:
        return shutil.disk_usage(existing).free
    except OSError:
        return None


def _used_bytes(path: Path) -> int:
    from engine.drill.scratch import directory_bytes

    return directory_bytes(path) if path.is_dir() else 0


def _size(n: float) -> str:
    from engine.config.units import format_size

    return format_size(int(n))


@dataclass
class _Draft:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


def plan_restore(ctx: Context, params: RestoreParams) -> RestorePlan:
    """The plan of restoring ``ctx``'s cluster as ``params`` ask; runs nothing."""
    from engine.jobs import restore_options
    from engine.restore import inplace, physical

    cluster = ctx.require_cluster()
    draft = _Draft()
    v = draft.values
    v.update(cluster=cluster, backup_id=None, backup_type=None, backup_finished_at=None, timeline=None,
             target=" ".join(str(p) for p in (params.target, params.target_value) if p is not None),
             wal_first=None, wal_last=None, wal_segments=0, wal_bytes=0, restore_bytes=0,
             expected_seconds=None, expected_basis="", destination=params.pgdata,
             destination_state=MISSING, destination_free_bytes=None, in_place=False,
             server_running=False, pg_version=None, bin_version=None, tablespaces=[],
             port=params.port, port_free=None, params=params.model_dump(mode="json"),
             stop_server=params.stop_server, tier=None, archive_objects=0, archive_bytes=0,
             archive_wait_seconds=0.0, archive_note="", region=params.region, source="")
    reachable = True
    try:
        ctx = ctx.in_region(params.region)  # a region's copy is read as the repository, WAL too
        v["source"] = (f"the copy in region {params.region}: " if params.region else "") + \
            ctx.storage.describe()
    except LifeboatError as exc:
        reachable = False
        draft.problems.append(f"{exc}: restore from the primary or another region's copy "
                              f"({_regions(ctx)})" if params.region else str(exc))
    options = None
    try:
        options = restore_options(params)
        v["target"] = options.target.describe()
    except LifeboatError as exc:
        draft.problems.append(str(exc))
    pgdata = Path(params.pgdata)
    in_place = inplace.is_in_place(ctx.config, cluster, pgdata)
    running = inplace.running_pid(pgdata) if pgdata.is_absolute() else None
    v.update(in_place=in_place, server_running=running is not None)
    backup = None
    if options is not None and reachable:
        try:
            backup = physical.choose(ctx.tiered, cluster, options)
        except LifeboatError as exc:
            if "holds no backup" in str(exc) and params.region is None and ctx.config.repository.copies:
                draft.problems.append(f"{exc}: if the primary region is lost, restore from a region's "
                                      f"copy instead ({_regions(ctx)})")
            else:
                draft.problems.append(f"{exc}: choose a later point, or take a backup before the point "
                                      "you need next time" if "no backup" in str(exc) else str(exc))
    if backup is not None and options is not None:
        v.update(backup_id=backup.id, backup_type=backup.type, backup_finished_at=backup.finished_at,
                 timeline=backup.timeline, restore_bytes=backup.size_bytes,
                 pg_version=_major(backup.pg_version))
        for check in (lambda: _tier(ctx, cluster, backup, options.target, draft),
                      lambda: _wal(ctx, cluster, backup, options.target, draft),
                      lambda: _binaries(ctx, cluster, backup, draft),
                      lambda: _tablespaces(backup, params, in_place, draft)):
            try:
                check()
            except LifeboatError as exc:  # the repository could not say: a reason not to run
                draft.problems.append(str(exc))
    _destination(ctx, cluster, params, pgdata, in_place, running, draft)
    _port(ctx, cluster, params, in_place, running, draft)
    _estimate(ctx, cluster, draft)
    return RestorePlan(**v, problems=draft.problems, warnings=draft.warnings)


def _regions(ctx: Context) -> str:
    return "regions: " + ", ".join(sorted(ctx.config.repository.copies))


def _tier(ctx: Context, cluster: str, backup: BackupSummary, target: Any, draft: _Draft) -> None:
    """Which tier holds the backup, and when some of what the restore reads is in an archive
    class (GLACIER, DEEP_ARCHIVE): how many objects must be restored first, and the wait."""
    if not ctx.tiers.enabled:
        return
    from engine.repository.manifest import read_manifest
    from engine.repository.tiers import thaw

    view = ctx.tiered
    index = view.holder(layout.manifest_key(cluster, backup.id))  # type: ignore[attr-defined]
    if index is not None:
        draft.values["tier"] = ctx.tiers.at(index)[0].name
    if not any(t.archive_class for t in ctx.tiers.tiers):
        return
    manifest = read_manifest(view, cluster, backup.id)
    waits = thaw.plan(ctx.tiers, view, cluster, thaw.restore_keys(view, cluster, backup, manifest, target))
    if waits.objects:
        draft.values.update(archive_objects=waits.objects, archive_bytes=waits.bytes,
                            archive_wait_seconds=waits.wait_seconds, archive_note=waits.describe())
        draft.warnings.append(waits.describe())


def _wal(ctx: Context, cluster: str, backup: BackupSummary, target: Any, draft: _Draft) -> None:
    """The WAL range recovery reads, from the backup's start to the target (or the end of
    the archive), and whether the archive holds all of it and reaches the target."""
    from engine.restore import physical

    storage = ctx.tiered
    v = draft.values
    size = clusterinfo.read(storage, cluster).wal_segment_size
    spans = timelines.recovery_path(storage, cluster, backup.timeline, parse_lsn(backup.start_lsn),
                                    parse_lsn(backup.stop_lsn), size, target.timeline)
    archived = archive.segments_by_timeline(storage, cluster, size)
    held = {(tl, segno) for tl, segnos in archived.items() for segno in segnos}
    needed = timelines.required_segments(spans, archived)
    stop_segno = segment_of_lsn(parse_lsn(backup.stop_lsn), size)
    if not needed or needed[-1][1] < stop_segno:
        draft.problems.append(
            f"the archive does not hold the WAL up to backup {backup.id}'s end ({backup.stop_wal}): "
            "no point can be reached from it yet (check archiving: lifeboat check)")
    cut = len(needed)
    kind = target.kind
    target_lsn = None
    if kind == "immediate":
        target_lsn = parse_lsn(backup.stop_lsn)
    elif kind in ("lsn", "name"):
        target_lsn = physical.target_lsn(storage, cluster, target)
        if kind == "name" and target_lsn is None:
            draft.warnings.append(
                f"restore point '{target.value}' was not recorded by 'lifeboat restore-point': the "
                "newest backup is used, and whether the WAL holds the point is known only when "
                "recovery reaches it (a name it does not find ends recovery with an error)")
    if target_lsn is not None:
        segno = segment_of_lsn(target_lsn, size)
        ends = [i for i, (_tl, s) in enumerate(needed) if s == segno]
        if ends:
            cut = ends[-1] + 1
        elif needed and segno > needed[-1][1]:
            end_lsn = (needed[-1][1] + 1) * size
            draft.problems.append(
                f"{target.describe()} is past the end of the archived WAL (it ends at "
                f"{format_lsn(end_lsn)}, in {segment_name(*needed[-1], size)}): choose an "
                "earlier point, or 'latest'")
    elif kind == "time":
        cut = _cut_at_time(ctx, cluster, needed, size, target.moment(), draft)
    within = needed[:cut]
    missing = [item for item in within if item not in held]
    if missing:
        name = segment_name(*missing[0], size)
        draft.problems.append(
            f"WAL segment {name} is missing from the archive: recovery cannot pass it, so "
            f"{target.describe()} cannot be reached from backup {backup.id} (choose a point before "
            f"it, restore from a newer backup, or run 'lifeboat verify')")
    if within:
        v.update(wal_first=segment_name(*within[0], size), wal_last=segment_name(*within[-1], size),
                 wal_segments=len(within),
                 wal_bytes=max(0, (within[-1][1] + 1) * size - parse_lsn(backup.start_lsn))
                 if len({tl for tl, _ in within}) == 1 else len(within) * size)


def _cut_at_time(ctx: Context, cluster: str, needed: list[tuple[int, int]], size: int,
                 moment: datetime, draft: _Draft) -> int:
    """How many of ``needed`` recovery reads to reach ``moment``: up to the first segment
    archived at or after it; a problem when the moment is past the archive's last transaction."""
    storage = ctx.tiered
    final = needed[-1][0] if needed else None
    windows = [w for w in recovery_windows(ctx, cluster) if w.timeline == final]
    if final is not None:
        if not windows:
            draft.problems.append(
                f"time {moment.isoformat()} cannot be reached: the archive holds no transaction on "
                f"timeline {final} after the backup ends (use 'latest' or 'immediate')")
        elif moment > windows[0].end:
            draft.problems.append(
                f"time {moment.isoformat()} is after the last transaction the archive holds "
                f"({windows[0].end.isoformat()} on timeline {final}): recovery would end before it; "
                "choose a time up to then, or 'latest'")
    low, high = 0, len(needed)
    while low < high:  # segments are archived in order: the first one archived at or after it
        middle = (low + high) // 2
        key = layout.wal_key(cluster, segment_name(*needed[middle], size))
        try:
            archived_at = storage.mtime(key)
        except LifeboatError:
            archived_at = float("inf")  # missing: found as missing by the caller
        if archived_at >= moment.timestamp():
            high = middle
        else:
            low = middle + 1
    return min(len(needed), low + 1)


def _binaries(ctx: Context, cluster: str, backup: BackupSummary, draft: _Draft) -> None:
    from engine.postgres import server

    major = _major(backup.pg_version)
    try:
        bin_dir = server.bin_dir_for(backup.pg_version, ctx.config.clusters[cluster].bin_dir)
    except LifeboatError as exc:
        draft.problems.append(f"{exc} (install PostgreSQL {major}'s server package)")
        return
    found = bin_version(bin_dir)
    draft.values["bin_version"] = found
    if found is None:
        draft.problems.append(f"cannot run {bin_dir / 'pg_ctl'}: install PostgreSQL {major}'s server "
                              "package, or set bin_dir in the cluster's configuration")
    elif found != major:
        draft.problems.append(
            f"backup {backup.id} is of PostgreSQL {major}, but the server binaries in {bin_dir} are "
            f"PostgreSQL {found}: set bin_dir to PostgreSQL {major}'s (a data directory cannot be "
            "started by another major version)")


def _tablespaces(backup: BackupSummary, params: RestoreParams, in_place: bool, draft: _Draft) -> None:
    checks = []
    known = {int(t["oid"]) for t in backup.tablespaces}
    for oid in sorted(set(params.tablespace_map) - known):
        draft.problems.append(f"the tablespace map names OID {oid}, which backup {backup.id} does not "
                              f"have (it has: {', '.join(str(o) for o in sorted(known)) or 'none'})")
    for t in backup.tablespaces:
        oid, source = int(t["oid"]), str(t["location"])
        destination = params.tablespace_map.get(oid, source)
        state = _directory_state(Path(destination))
        ok, why = True, f"{state}"
        if oid not in params.tablespace_map and not in_place:
            ok, why = False, (f"tablespace {oid} ({t.get('name', '?')}) would be restored to its original "
                              f"location {source}, which the cluster uses: map it elsewhere "
                              f"(--tablespace-map {oid}=/new/dir)")
        elif state == NOT_EMPTY and not (params.force or params.delta):
            ok, why = False, (f"tablespace {oid} destination {destination} is not empty: choose an "
                              "empty directory, or use delta or force")
        elif state == "not a directory":
            ok, why = False, f"tablespace {oid} destination {destination} is a file, not a directory"
        if not ok:
            draft.problems.append(why)
        checks.append(TablespaceCheck(oid, source, destination, ok, why))
    draft.values["tablespaces"] = checks


def _destination(ctx: Context, cluster: str, params: RestoreParams, pgdata: Path, in_place: bool,
                 running: int | None, draft: _Draft) -> None:
    from engine.directories import check_writable

    v = draft.values
    state = _directory_state(pgdata)
    v["destination_state"] = OWN if in_place else state
    v["destination_free_bytes"] = free = _free_bytes(pgdata)
    if not pgdata.is_absolute():
        return
    if state == "not a directory":
        draft.problems.append(f"destination {pgdata} is a file, not a directory: choose another path")
        return
    if in_place:
        if running is not None and not params.stop_server:
            draft.problems.append(
                f"destination {pgdata} is cluster '{cluster}''s own data directory and its server is "
                f"running (pid {running}): stop the server first (or ask the restore to stop it)")
        elif running is not None:
            draft.warnings.append(f"the server of cluster '{cluster}' (pid {running}) will be stopped "
                                  "(fast shutdown) before the restore writes anything")
        draft.warnings.append(f"a restore in place replaces cluster '{cluster}''s data: what it holds "
                              "after the target is lost; the agent holds the cluster's scheduled jobs "
                              "until the restore ends")
    elif running is not None:
        draft.problems.append(f"destination {pgdata} belongs to a running server (pid {running}): stop "
                              "it, or choose another directory")
    if state == NOT_EMPTY and not (params.force or params.delta):
        draft.problems.append(
            f"destination {pgdata} exists and is not empty: choose a new or empty directory, or ask "
            "for delta (update it, rewriting only what differs) or force (replace its contents)")
    try:
        check_writable(pgdata, "the restore")
    except LifeboatError as exc:
        draft.problems.append(str(exc))
    need = int(v["restore_bytes"])
    if state == NOT_EMPTY and (params.force or params.delta):
        need = max(0, need - _used_bytes(pgdata))  # replaced or patched where it is
    if free is not None and need > free:
        draft.problems.append(f"not enough free space for {pgdata}: the backup needs {_size(need)}, the "
                              f"file system has {_size(free)} free (free space, or choose another "
                              "file system)")


def _port(ctx: Context, cluster: str, params: RestoreParams, in_place: bool, running: int | None,
          draft: _Draft) -> None:
    settings = ctx.config.clusters[cluster]
    port = params.port
    if port is None and params.start:
        port = settings.port  # the restored server keeps the configuration's port
        if not in_place:
            draft.warnings.append(f"no port given: the restored server would use port {port} from the "
                                  "backed-up configuration")
    draft.values["port"] = port
    if port is None:
        return
    free = port_free(port)
    draft.values["port_free"] = free
    frees_itself = in_place and running is not None and params.stop_server and port == settings.port
    if not free and params.start and not frees_itself:
        draft.problems.append(f"port {port} is in use: the restored server could not listen there; "
                              "choose a free port")
    elif not free and not frees_itself:
        draft.warnings.append(f"port {port} is in use now: start the restored server elsewhere")


def _estimate(ctx: Context, cluster: str, draft: _Draft) -> None:
    from engine.catalog import objectives

    v = draft.values
    if not v["backup_id"]:
        v["expected_basis"] = "no backup chosen"
        return
    try:
        rates = objectives.measured_rates(ctx.catalog, cluster)
        basis = rates.basis
    except LifeboatError as exc:
        rates = objectives.Rates(objectives.ASSUMED_RESTORE_RATE, objectives.ASSUMED_REPLAY_RATE,
                                 objectives.ASSUMED_STARTUP, "")
        basis = f"assumed rates (the catalog cannot be read: {exc})"
    v["expected_seconds"] = round(objectives.expected_rto(v["restore_bytes"], v["wal_bytes"], rates)
                                  + v["archive_wait_seconds"], 1)
    v["expected_basis"] = (f"{basis}: {_size(rates.restore_bytes_per_second)}/s restore, "
                           f"{_size(rates.replay_bytes_per_second)}/s WAL replay, "
                           f"{rates.startup_seconds:.0f}s start-up")
    if v["archive_wait_seconds"]:
        v["expected_basis"] += f", and up to {v['archive_wait_seconds'] / 3600:g} h for archive restores"


def plan_text(plan: RestorePlan) -> str:
    """The plan for a terminal."""
    lines = [f"restore plan for cluster '{plan.cluster}': {'RUNNABLE' if plan.runnable else 'CANNOT RUN'}",
             f"  target: {plan.target}"]
    if plan.source:
        lines.append(f"  from: {plan.source}")
    if plan.backup_id:
        lines.append(f"  backup: {plan.backup_id} ({plan.backup_type}, finished {plan.backup_finished_at}, "
                     f"timeline {plan.timeline}, PostgreSQL {plan.pg_version}), {_size(plan.restore_bytes)}"
                     + (f", in the {plan.tier} tier" if plan.tier else ""))
    if plan.wal_first:
        lines.append(f"  WAL: {plan.wal_first} .. {plan.wal_last} ({plan.wal_segments} segments, "
                     f"up to {_size(plan.wal_bytes)} to replay)")
    if plan.expected_seconds is not None:
        lines.append(f"  expected duration: {plan.expected_seconds:.0f}s ({plan.expected_basis})")
    free = "unknown" if plan.destination_free_bytes is None else _size(plan.destination_free_bytes)
    lines.append(f"  destination: {plan.destination} ({plan.destination_state}; {free} free)"
                 + (" IN PLACE" if plan.in_place else ""))
    if plan.in_place:
        lines.append(f"  server: {'running' if plan.server_running else 'stopped'}")
    if plan.bin_version is not None:
        lines.append(f"  server binaries: PostgreSQL {plan.bin_version}")
    for t in plan.tablespaces:
        lines.append(f"  tablespace {t.oid}: {t.source} -> {t.destination} ({'ok' if t.ok else t.why})")
    if plan.port is not None:
        lines.append(f"  port: {plan.port} ({'free' if plan.port_free else 'IN USE'})")
    lines += [f"  problem: {p}" for p in plan.problems]
    lines += [f"  warning: {w}" for w in plan.warnings]
    return "\n".join(lines)
