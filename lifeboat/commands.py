"""Handlers of the subcommands: load the configuration, call the engine, print."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.config.file import config_path
from engine.errors import UsageError
from lifeboat import drill_command, wal_commands
from lifeboat.privileges import become, who


def load_context(args: argparse.Namespace, need_cluster: bool = True) -> tuple[Any, Path, str, Any]:
    """The validated configuration, its path, the cluster asked for and the repository."""
    from engine.config.schema import load_config
    from engine.repository.storage import open_posix

    path = Path(config_path(args.config)).absolute()
    config = load_config(path)
    args.requested_by_user = who()  # before switching user: jobs record who asked
    become(config.os_user)
    cluster = config.cluster_name(args.cluster, path) if need_cluster else args.cluster
    return config, path, cluster, open_posix(config.repository.path)


def _init(args: argparse.Namespace) -> int:
    from engine.postgres import cluster_setup

    config, path, cluster, storage = load_context(args)
    result = cluster_setup.init(config, cluster, storage, path)
    verb = "initialised" if result.created else "already initialised (settings checked)"
    version = f"{result.info.pg_version // 10000}.{result.info.pg_version % 10000}"
    print(f"cluster '{cluster}' {verb} in {storage.describe()}: PostgreSQL {version}, "
          f"system {result.info.system_identifier}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from engine.postgres import cluster_setup

    config, path, cluster, storage = load_context(args)
    result = cluster_setup.check(config, cluster, storage, path)
    print(f"cluster '{cluster}': ok (WAL segment {result.segment} archived in "
          f"{result.seconds:.2f}s)")
    return 0


def _notice(text: str) -> None:
    print(f"lifeboat: notice: {text}", file=sys.stderr)


def recorded(args: argparse.Namespace, config: Any, kind: str, cluster: str,
             params: dict[str, Any]) -> Any:
    """The command's run, recorded in the catalog as a job (see engine.jobs.recorded_run),
    with its parameters completed as an enqueued job's are."""
    from engine.jobs import recorded_run, validate_params

    return recorded_run(config, kind, cluster, validate_params(kind, params), args.requested_by_user,
                        _notice)


def _backup(args: argparse.Namespace) -> int:
    from engine.backup import physical as backup
    from engine.config.units import format_size
    from engine.jobs import backup_result
    from lifeboat.progress import byte_progress

    config, path, cluster, storage = load_context(args)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    started = time.monotonic()
    request = backup.BackupRequest(args.type, args.jobs, args.checksum, not args.no_expire)
    params = {"type": args.type, "checksum": args.checksum, "expire": not args.no_expire,
              "jobs": args.jobs}
    try:
        with recorded(args, config, "backup", cluster, params) as run, \
                byte_progress(f"backup {cluster}") as update:
            def callback(p: Any) -> None:
                run.progress(p.done_bytes, p.total_bytes, p.phase)
                if update is not None:
                    update(p.done_bytes, p.total_bytes, p.phase)
            summary = backup.run(config, cluster, storage, path, request, callback)
            run.result = backup_result(summary, request)
    finally:
        for notice in request.notices:
            print(f"lifeboat: notice: {notice}", file=sys.stderr)
    new = summary.size_bytes - summary.reused_bytes
    base = f" on {summary.base}" if summary.base else ""
    print(f"backup {summary.id} ({summary.type}{base}) of cluster '{cluster}' complete in "
          f"{time.monotonic() - started:.1f}s: {format_size(summary.size_bytes)} in "
          f"{summary.file_count} files; {format_size(new)} new, stored in "
          f"{format_size(summary.stored_bytes)}; WAL {summary.start_wal}..{summary.stop_wal}")
    if request.expired is not None:
        from lifeboat.output import expire_text

        print(expire_text(request.expired))
    return 0


def _expire(args: argparse.Namespace) -> int:
    from engine.repository import expire
    from lifeboat.output import expire_text

    config, _path, cluster, storage = load_context(args)
    with recorded(args, config, "expire", cluster, {"dry_run": args.dry_run}) as run:
        report = expire.run(config, cluster, storage, args.dry_run)
        run.result = dict(report.to_json())
    for notice in report.notices:
        print(f"lifeboat: notice: {notice}", file=sys.stderr)
    if args.output == "json":
        json.dump(report.to_json(), sys.stdout, indent=2)
        print()
    else:
        print(expire_text(report))
    return 0


def _tablespace_map(items: list[str]) -> dict[int, Path]:
    mapping: dict[int, Path] = {}
    for item in items:
        oid, sep, directory = item.partition("=")
        if not sep or not oid.isdigit() or not directory.startswith("/"):
            raise UsageError(f"--tablespace-map '{item}': use OID=/absolute/dir")
        mapping[int(oid)] = Path(directory)
    return mapping


def restore_target(args: argparse.Namespace) -> Any:
    """The RecoveryTarget the --target-* options ask for (restore and enqueue restore)."""
    from engine.restore.recovery import RecoveryTarget

    for kind in ("time", "xid", "lsn", "name"):
        value = getattr(args, f"target_{kind}")
        if value is not None:
            return RecoveryTarget(kind, value, args.target_exclusive, args.target_action,
                                  args.target_timeline)
    return RecoveryTarget(args.target or "latest", None, args.target_exclusive,
                          args.target_action, args.target_timeline)


def _restore(args: argparse.Namespace) -> int:
    from engine.config.units import format_size, parse_duration
    from engine.restore import physical as restore
    from lifeboat.progress import byte_progress

    target = restore_target(args)
    if not args.pgdata.is_absolute():
        args.pgdata = args.pgdata.absolute()
    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError("--port must be within 1..65535")
    try:
        timeout = parse_duration(args.timeout) if args.timeout else None
    except ValueError as exc:
        raise UsageError(f"--timeout: {exc}") from None
    options = restore.RestoreOptions(
        pgdata=args.pgdata, target=target, backup_id=args.backup, force=args.force,
        delta=args.delta,
        tablespace_map=_tablespace_map(args.tablespace_map), archive_mode=args.archive_mode,
        port=args.port, standby=args.standby, start=args.start, jobs=args.jobs,
        timeout=timeout)
    config, path, cluster, storage = load_context(args)
    params = {"pgdata": str(args.pgdata), "backup": args.backup, "target": target.kind,
              "target_value": target.value, "delta": args.delta, "start": args.start}
    with recorded(args, config, "restore", cluster, params) as run, \
            byte_progress(f"restore {cluster}") as update:
        def callback(done: int, total: int) -> None:
            run.progress(done, total, "restoring")
            if update is not None:
                update(done, total, "")
        result = restore.run(config, cluster, storage, path, options, callback)
        run.result = result.to_json()
    delta = (f"; delta: {format_size(result.written_bytes)} rewritten, {result.removed} "
             "extra files removed") if args.delta else ""
    print(f"restored backup {result.backup.id} of cluster '{cluster}' into {result.pgdata}: "
          f"{format_size(result.bytes)} in {result.files} files "
          f"({result.seconds:.1f}s), target {target.describe()}{delta}")
    if result.reached is not None:
        point = result.reached
        print(f"recovery {point.state}: reached LSN {point.lsn}, last transaction at "
              f"{point.time or 'unknown'}, timeline {point.timeline}"
              + (f"; {point.stop_message}" if point.stop_message else ""))
        if result.archive_end:
            print(f"archive end was {result.archive_end}")
    elif args.start:
        print(f"server started (log: {result.log_file})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from engine.repository import verify
    from lifeboat.output import verify_text
    from lifeboat.progress import byte_progress

    config, _path, cluster, storage = load_context(args)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    params = {"backup": args.backup, "since_last": args.since_last, "jobs": args.jobs}
    with recorded(args, config, "verify", cluster, params) as run, \
            byte_progress(f"verify {cluster}") as update:
        callback = None
        if update is not None:
            done = [0]

            def callback(n: int) -> None:
                done[0] += n
                update(done[0], 0, "")
        report = verify.run(storage, cluster, args.backup, args.since_last,
                            args.jobs or config.jobs, callback)
        run.result = report.to_json() | {"_ok": report.ok}
    if args.output == "json":
        json.dump(report.to_json(), sys.stdout, indent=2)
        print()
    else:
        print(verify_text(report))
    return 0 if report.ok else 1


def _copy(args: argparse.Namespace) -> int:
    from engine.config.units import format_size
    from engine.repository.copies import copy_cluster
    from engine.repository.storage import open_posix

    config, _path, cluster, storage = load_context(args)
    copies = config.repository.copies
    if args.region is not None and args.region not in copies:
        raise UsageError(f"--region {args.region}: the configuration has no [repository.copies."
                         f"{args.region}] (regions: {', '.join(sorted(copies)) or 'none'})")
    regions = [args.region] if args.region else sorted(copies)
    if not regions:
        raise UsageError("no copies configured: add [repository.copies.REGION] path = \"...\"")
    reports = [copy_cluster(storage, open_posix(copies[r].path), cluster, r) for r in regions]
    if args.output == "json":
        json.dump([r.to_json() for r in reports], sys.stdout, indent=2)
        print()
    else:
        for r in reports:
            print(f"copy of cluster '{cluster}' to region {r.region}: {r.backups_copied} backups, "
                  f"{r.packs_copied} packs, {r.wal_copied} WAL files ({format_size(r.bytes_copied)}) "
                  f"in {r.seconds:.1f}s")
    return 0


def _restore_point(args: argparse.Namespace) -> int:
    from engine.restore import points as restore_points

    config, _path, cluster, storage = load_context(args)
    point = restore_points.create(config, cluster, storage, args.name)
    print(f"restore point '{point.name}' created at LSN {point.lsn} (WAL {point.wal})")
    return 0


def _info(args: argparse.Namespace) -> int:
    from engine.repository.info import cluster_report
    from lifeboat.output import info_text

    config, path, cluster, storage = load_context(args, need_cluster=False)
    names = [config.cluster_name(cluster, path)] if cluster else sorted(config.clusters)
    reports = [cluster_report(storage, name) for name in names]
    from engine.catalog.objectives import recorded

    for report, objectives in zip(reports, recorded(config, names).values(), strict=True):
        report.objectives = objectives
    if args.output == "json":
        json.dump({"repository": str(config.repository.path),
                   "clusters": [r.to_json() for r in reports]}, sys.stdout, indent=2)
        print()
    else:
        print(info_text(str(config.repository.path), reports))
    return 0


def _version(args: argparse.Namespace) -> int:
    from engine.version import VERSION

    print(f"lifeboat {VERSION}")
    return 0


HANDLERS = {
    "init": _init, "check": _check, "wal-push": wal_commands.wal_push,
    "wal-get": wal_commands.wal_get,
    "backup": _backup, "restore": _restore, "restore-point": _restore_point, "copy": _copy,
    "info": _info, "verify": _verify, "expire": _expire, "version": _version,
    "drill": drill_command.drill, "drill-report": drill_command.report,
}


def run(args: argparse.Namespace) -> int:
    handler = HANDLERS.get(args.command)
    if handler is None:
        from lifeboat.agent_commands import HANDLERS as AGENT_HANDLERS
        from lifeboat.observe_commands import HANDLERS as OBSERVE_HANDLERS

        handler = (AGENT_HANDLERS | OBSERVE_HANDLERS)[args.command]
    return handler(args)
