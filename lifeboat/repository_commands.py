"""Handlers of the repository's commands: init, check, backup, restore, verify, expire,
copy, restore-point, info and version. Each opens its context, asks the engine, prints."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from engine.context import Context
from lifeboat import arguments
from lifeboat.output import notice, show
from lifeboat.wiring import open_for


def add_arguments(command: Any) -> None:
    command("init", "create the cluster's place in the repository and Lifeboat's directories, "
                    "checking the server's settings")
    command("check", "check the connection and that a forced WAL switch reaches the archive")
    arguments.backup_options(command("backup", "take a physical backup"))
    p = command("restore", "restore a backup into a data directory, to a point in time")
    arguments.restore_options(p)
    p.add_argument("--plan", action="store_true",
                   help="print the plan (backup, WAL range, expected duration, checks) and run "
                        "nothing; exit 0 if it can run, 1 if not")
    p.add_argument("--output", choices=["text", "json"], default="text", help="with --plan")
    p = command("preview", "restore to a point into a scratch cluster, show a table's row count and "
                           "first rows there, and remove the scratch cluster")
    arguments.preview_options(p)
    p.add_argument("--output", choices=["text", "json"], default="text")
    p = command("expire", "apply retention: remove expired backups, unreferenced blocks and WAL")
    arguments.expire_options(p)
    p.add_argument("--output", choices=["text", "json"], default="text")
    p = command("verify", "re-read and re-hash everything in the repository; name what is damaged")
    arguments.verify_options(p)
    p.add_argument("--output", choices=["text", "json"], default="text")
    p = command("copy", "bring the repository's copies in other regions up to date for the cluster")
    p.add_argument("--region", metavar="REGION", help="only this region's copy (default: all)")
    p.add_argument("--validate", action="store_true",
                   help="copy nothing: validate the copies (manifests against the primary's, every "
                        "pack, list and WAL file present, a sample re-hashed); exit 1 naming what "
                        "is wrong")
    p.add_argument("--output", choices=["text", "json"], default="text")
    p = command("tier", "move backups to the tier their age says, repair copies below a tier's "
                        "replication and collect what moved backups left (the agent does this every "
                        "[repository.tiers] interval); exit 0 when all is in place, 1 when not")
    p.add_argument("--dry-run", action="store_true", help="say what would be moved or repaired")
    p.add_argument("--output", choices=["text", "json"], default="text")
    p = command("restore-point", "create a named restore point (pg_create_restore_point)")
    p.add_argument("name", metavar="NAME")
    p = command("info", "list backups and the WAL archive")
    p.add_argument("--output", choices=["text", "json"], default="text")
    command("version", "print the version")


def _init(args: argparse.Namespace) -> int:
    from engine.directories import ensure, lifeboat_directories
    from engine.postgres import cluster_setup

    ctx = open_for(args, state=True)
    result = cluster_setup.init(ctx.config, ctx.require_cluster(), ctx.create_storage(),
                                ctx.config_path)
    for problem in ensure(lifeboat_directories(ctx.config)):
        notice(f"{problem}; Lifeboat keeps its catalog and job logs there: run this init once "
               f"as root (it creates them, owned by {ctx.config.os_user}), or set the paths "
               "([catalog] path, [agent] state_dir) to directories you may write")
    verb = "initialised" if result.created else "already initialised (settings checked)"
    version = f"{result.info.pg_version // 10000}.{result.info.pg_version % 10000}"
    print(f"cluster '{ctx.cluster}' {verb} in {ctx.storage.describe()}: PostgreSQL {version}, "
          f"system {result.info.system_identifier}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from engine.postgres import cluster_setup

    ctx = open_for(args)
    result = cluster_setup.check(ctx.config, ctx.require_cluster(), ctx.storage, ctx.config_path)
    print(f"cluster '{ctx.cluster}': ok (WAL segment {result.segment} archived in "
          f"{result.seconds:.2f}s)")
    return 0


def _perform(args: argparse.Namespace, ctx: Context, kind: str, params: dict[str, Any],
             progress_label: str | None = None) -> Any:
    """Run ``kind`` now through the engine's one request path, recorded in the catalog as
    a job with exactly these parameters; notices are printed even when it fails."""
    from engine import jobs
    from lifeboat.progress import byte_progress

    notices: list[str] = []
    label = progress_label if progress_label is not None else f"{kind} {ctx.cluster}"
    try:
        with jobs.recorded_run(ctx.config, kind, ctx.require_cluster(), params,
                               args.requested_by_user, notice, ctx.config_path) as run, \
                byte_progress(label) as update:
            def progress(done: float, total: float, phase: str) -> None:
                run.progress(done, total, phase)
                if update is not None:
                    update(int(done), int(total), phase)
            run.outcome = jobs.perform(ctx, kind, params, progress, notices)
    finally:
        for text in notices:
            notice(text)
    return run.outcome


def _backup(args: argparse.Namespace) -> int:
    from engine.config.units import format_size
    from lifeboat.output import expire_text

    params = arguments.params_from("backup", args)
    ctx = open_for(args, state=True)
    started = time.monotonic()
    outcome = _perform(args, ctx, "backup", params)
    summary = outcome.value
    new = summary.size_bytes - summary.reused_bytes
    base = f" on {summary.base}" if summary.base else ""
    print(f"backup {summary.id} ({summary.type}{base}) of cluster '{ctx.cluster}' complete in "
          f"{time.monotonic() - started:.1f}s: {format_size(summary.size_bytes)} in "
          f"{summary.file_count} files; {format_size(new)} new, stored in "
          f"{format_size(summary.stored_bytes)}; WAL {summary.start_wal}..{summary.stop_wal}")
    if outcome.detail.get("expired") is not None:
        print(expire_text(outcome.detail["expired"]))
    return 0


def _restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from engine.config.units import format_size
    from engine.directories import check_writable

    params = arguments.params_from("restore", args)
    if args.plan:
        return _plan(args, params)
    destinations = [Path(params["pgdata"]), *(Path(d) for d in params["tablespace_map"].values())]
    ctx = open_for(args, state=True, directories=destinations)
    for directory in destinations:
        check_writable(directory, "the restore")
    outcome = _perform(args, ctx, "restore", params)
    result = outcome.value
    delta = (f"; delta: {format_size(result.written_bytes)} rewritten, "
             f"{format_size(result.unread_bytes)} compared without reading (untouched since the last "
             "restore), "
             f"{result.removed} extra files removed") if args.delta else ""
    print(f"restored backup {result.backup.id} of cluster '{ctx.cluster}' into {result.pgdata}: "
          f"{format_size(result.bytes)} in {result.files} files "
          f"({result.seconds:.1f}s), target {result.target.describe()}{delta}")
    if result.reached is not None:
        point = result.reached
        print(f"recovery {point.state}: reached LSN {point.lsn}, last transaction at "
              f"{point.time or 'unknown'}, timeline {point.timeline}"
              + (f"; {point.stop_message}" if point.stop_message else ""))
        if result.archive_end:
            print(f"archive end was {result.archive_end}")
    if result.log_file is not None:
        print(f"server log: {result.log_file}")
    return 0


def _plan(args: argparse.Namespace, params: dict[str, Any]) -> int:
    from engine import jobs
    from engine.restore.plan import plan_restore, plan_text

    ctx = open_for(args)  # creates nothing: a plan only reads
    plan = plan_restore(ctx, jobs.restore_params(params))
    show(args.output, plan.to_json(), lambda: plan_text(plan))
    return 0 if plan.runnable else 1


def _preview(args: argparse.Namespace) -> int:
    from lifeboat.output import preview_text

    params = arguments.params_from("preview", args)
    ctx = open_for(args, state=True)
    result = _perform(args, ctx, "preview", params).value
    show(args.output, result.to_json(), lambda: preview_text(result))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from lifeboat.output import verify_text

    params = arguments.params_from("verify", args)
    ctx = open_for(args, state=True)
    report = _perform(args, ctx, "verify", params).value
    show(args.output, report.to_json(), lambda: verify_text(report))
    return 0 if report.ok else 1


def _expire(args: argparse.Namespace) -> int:
    from lifeboat.output import expire_text

    params = arguments.params_from("expire", args)
    ctx = open_for(args, state=True)
    report = _perform(args, ctx, "expire", params).value
    show(args.output, report.to_json(), lambda: expire_text(report))
    return 0


def _copy(args: argparse.Namespace) -> int:
    from engine.config.units import format_size
    from engine.errors import LifeboatError, UsageError
    from engine.repository.copies import copy_cluster
    from engine.repository.encryption import attach, keys_of
    from engine.repository.region import copy_policy, open_copy, settings_of
    from engine.repository.throttle import ThrottledStorage, TokenBucket

    ctx = open_for(args)
    copies = ctx.config.repository.copies
    if not copies:
        raise UsageError("no copies configured: add [repository.copies.REGION] path = \"...\" "
                         "(or url = \"s3://...\")")
    regions = [args.region] if args.region else sorted(copies)
    for region in regions:
        settings_of(ctx.config, region)  # an unknown region is refused, naming those there are
    cluster = ctx.require_cluster()
    if args.validate:
        return _validate_copies(args, ctx, cluster, regions)
    reports, rates = [], []
    for region in regions:
        settings = copies[region]
        copy = attach(open_copy(ctx.config, region), keys_of(ctx.storage))  # it may be empty yet
        try:
            policy = copy_policy(ctx.config, cluster, region, ctx.storage, copy)
        except LifeboatError:
            policy = None  # the primary cannot say what it keeps: everything is copied
        limit = settings.bandwidth_limit
        target = ThrottledStorage(copy, TokenBucket(limit) if limit else None)
        reports.append(copy_cluster(ctx.storage, target, cluster, region, policy))
        moved, seconds = target.meter.take()
        rates.append((moved / seconds if seconds > 0 else 0.0, limit))
    out = [r.to_json() | {"bytes_per_second": round(rate), "bandwidth_limit": limit or None}
           for r, (rate, limit) in zip(reports, rates, strict=True)]
    show(args.output, out, lambda: "\n".join(
        f"copy of cluster '{ctx.cluster}' to region {r.region}: {r.backups_copied} backups, "
        f"{r.packs_copied} packs, {r.wal_copied} WAL files ({format_size(r.bytes_copied)}) "
        f"in {r.seconds:.1f}s" + (f" at {format_size(rate)}/s" if rate else "")
        + (f" (limit {format_size(limit)}/s)" if limit else "")
        + "".join(f"\n  not copied: {why}" for why in r.skipped)
        for r, (rate, limit) in zip(reports, rates, strict=True)))
    return 0


def _validate_copies(args: argparse.Namespace, ctx: Context, cluster: str, regions: list[str]) -> int:
    """``lifeboat copy --validate``: validate each region's copy now, record the outcome as the
    agent does (the metrics show it), exit 1 naming what is wrong."""
    from engine.errors import LifeboatError
    from engine.repository import copy_validation
    from engine.repository.region import copy_policy
    from lifeboat.output import validation_text

    try:
        primary = ctx.primary_storage
    except LifeboatError:
        primary = None
    reports = []
    for region in regions:
        settings = ctx.config.repository.copies[region]
        copy = ctx.copy_storage(region)
        try:
            policy = copy_policy(ctx.config, cluster, region, primary, copy)
        except LifeboatError:
            policy = None
        report = copy_validation.validate(primary, copy, cluster, region, policy,
                                          settings.validate_sample, copy_validation.grace(settings))
        reports.append(report)
        try:
            ctx.catalog.set_copy_state(cluster, region, "validation", copy_validation.record_of(report),
                                       report.at)
        except LifeboatError as exc:
            notice(f"the validation of region {region} is not recorded in the catalog: {exc}")
    show(args.output, [r.to_json() for r in reports],
         lambda: "\n".join(validation_text(r) for r in reports))
    for report in reports:
        if not report.ok:
            print(f"lifeboat: {copy_validation.summary_of(report)}", file=sys.stderr)
    return 0 if all(r.ok for r in reports) else 1


def _tier(args: argparse.Namespace) -> int:
    from engine.errors import UsageError
    from engine.repository.tiers.job import run
    from lifeboat.output import tier_text

    ctx = open_for(args, need_cluster=False)
    if not ctx.config.repository.tiers.enabled:
        raise UsageError(f"{ctx.config_path}: no tiers configured: add [repository.tiers.hot] age = \"7d\" "
                         "and [repository.tiers.warm] age = \"30d\" storage = \"/path\" (see README: Tiers)")
    reports = [run(ctx.tiers, cluster, ctx.config.retention_for(cluster).gc_grace, dry_run=args.dry_run)
               for cluster in ctx.clusters()]
    show(args.output, [r.to_json() for r in reports], lambda: "\n".join(tier_text(r) for r in reports))
    return 0 if all(r.ok for r in reports) else 1


def _restore_point(args: argparse.Namespace) -> int:
    from engine.restore import points

    ctx = open_for(args)
    point = points.create(ctx.config, ctx.require_cluster(), ctx.storage, args.name)
    print(f"restore point '{point.name}' created at LSN {point.lsn} (WAL {point.wal})")
    return 0


def _info(args: argparse.Namespace) -> int:
    from engine.catalog.objectives import recorded
    from engine.repository.info import cluster_report
    from lifeboat.output import info_text

    ctx = open_for(args, need_cluster=False)
    names = ctx.clusters()
    reports = [cluster_report(ctx.storage, name, tiers=ctx.tiers) for name in names]
    for report, objectives in zip(reports, recorded(ctx.config, names).values(), strict=True):
        report.objectives = objectives
    show(args.output, {"repository": ctx.storage.describe(), "clusters": [r.to_json() for r in reports]},
         lambda: info_text(ctx.storage.describe(), reports))
    failed = [r for r in reports if r.failed]
    for report in failed:
        print(f"lifeboat: cluster '{report.name}': {report.status}", file=sys.stderr)
    return 1 if failed else 0


def _version(args: argparse.Namespace) -> int:
    from engine.version import VERSION

    print(f"lifeboat {VERSION}")
    return 0


HANDLERS = {
    "init": _init, "check": _check, "backup": _backup, "restore": _restore, "preview": _preview,
    "restore-point": _restore_point, "copy": _copy, "tier": _tier, "info": _info, "verify": _verify,
    "expire": _expire, "version": _version,
}
