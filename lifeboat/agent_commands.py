"""Handlers of ``agent``, ``jobs``, ``enqueue``, ``cancel`` and the internal ``run-job``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from engine.errors import UsageError
from lifeboat.commands import load_context, restore_target
from lifeboat.privileges import who


def _agent(args: argparse.Namespace) -> int:
    from engine.agent.loop import Agent, job_command
    from engine.catalog.store import Catalog

    _prepare_directories(args)
    config, path, _cluster, storage = load_context(args, need_cluster=False)
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be positive")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Catalog.open(config) as catalog:
        agent = Agent(config, catalog, storage, job_command(path), _notifier(config))
        print(f"lifeboat agent started (pid {os.getpid()}): {len(config.clusters)} cluster(s), "
              f"catalog {catalog.db.where}", file=sys.stderr, flush=True)
        exporter = None
        if config.exporter.enabled:
            from lifeboat.observe_commands import start_exporter

            # the agent measures objectives itself: the exporter only reads them
            exporter = start_exporter(config, storage, stop, measure_objectives=False)
        try:
            agent.run(stop, args.duration)
        finally:
            stop.set()
            if exporter is not None:
                exporter.stop()
    print("lifeboat agent stopped", file=sys.stderr)
    return 0


def _prepare_directories(args: argparse.Namespace) -> None:
    """Started as root: make the agent's directories and give them to os_user (who cannot
    create them under /var/lib or /var/spool), before switching to that user."""
    if os.geteuid() != 0:
        return
    import pwd

    from engine.config.file import config_path
    from engine.config.schema import load_config

    config = load_config(config_path(args.config))
    if config.os_user == "root":
        return
    try:
        entry = pwd.getpwnam(config.os_user)
    except KeyError:
        return  # become() reports it
    wanted = [config.agent.state_dir, *(copy.path for copy in config.repository.copies.values())]
    if config.catalog.dsn is None:
        wanted.append(config.catalog.path.parent)
    for name, cluster in config.clusters.items():
        if cluster.archive.mode == "async":
            wanted.append(config.spool_directory(name))
        if cluster.streaming.enabled:
            wanted.append(config.streaming_directory(name))
    for directory in wanted:
        missing = [d for d in (directory, *directory.parents) if not d.exists()]
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        for made in missing:
            os.chown(made, entry.pw_uid, entry.pw_gid)


def _notifier(config: Any) -> Any:
    """The drill-notice sender from alerts/ (the engine must not import alerts)."""
    try:
        from alerts.notifiers import drill_notice
    except ImportError:
        return None

    def notify(cluster: str, entry: Any, when: Any) -> dict[str, str]:
        return {d.channel: str(d.outcome) for d in drill_notice(config, cluster, when)}
    return notify


def _enqueue(args: argparse.Namespace) -> int:
    from engine import jobs
    from engine.catalog.store import FINAL_STATES, SUCCEEDED, Catalog
    from engine.config.units import parse_duration

    asker = args.requested_by or who()  # before load_context switches to os_user
    config, _path, cluster, _storage = load_context(args)
    params = _job_params(args)
    try:
        max_duration = parse_duration(args.max_duration) if args.max_duration else None
    except ValueError as exc:
        raise UsageError(f"--max-duration: {exc}") from None
    with Catalog.open(config) as catalog:
        job_id = jobs.enqueue(catalog, config, args.kind, cluster, params, asker, args.priority,
                              max_duration)
        print(f"job {job_id} queued: {args.kind} of cluster '{cluster}'", file=sys.stderr)
        print(job_id)
        if not args.wait:
            return 0
        deadline = None if args.wait_timeout is None else time.monotonic() + args.wait_timeout
        while True:
            job = catalog.job(job_id)
            assert job is not None
            if job.state in FINAL_STATES:
                print(f"job {job_id} {job.state}" + (f": {job.error}" if job.error else ""),
                      file=sys.stderr)
                return 0 if job.state == SUCCEEDED else 1
            if deadline is not None and time.monotonic() > deadline:
                print(f"job {job_id} still {job.state} after {args.wait_timeout:g}s", file=sys.stderr)
                return 1
            time.sleep(0.5)


def _job_params(args: argparse.Namespace) -> dict[str, Any]:
    if args.kind == "backup":
        return {"type": args.type, "checksum": args.checksum}
    if args.kind == "verify":
        return {"backup": args.backup, "since_last": args.since_last}
    if args.kind == "drill":
        return {"kind": args.drill_kind}
    if args.kind == "expire":
        return {"dry_run": args.dry_run}
    if args.pgdata is None:
        raise UsageError("enqueue restore: --pgdata is required")
    target = restore_target(args)  # the restore command's own reading of the target options
    return {"pgdata": str(Path(args.pgdata).absolute()), "backup": args.backup, "target": target.kind,
            "target_value": target.value, "target_exclusive": target.exclusive,
            "target_timeline": target.timeline,
            "target_action": target.action, "delta": args.delta, "force": args.force,
            "archive_mode": args.archive_mode, "start": args.start, "port": args.port}


def _jobs(args: argparse.Namespace) -> int:
    from engine.catalog.store import ACTIVE_STATES, Catalog
    from lifeboat.output import jobs_text

    config, path, cluster, _storage = load_context(args, need_cluster=False)
    if cluster:
        config.cluster_name(cluster, path)
    with Catalog.open(config) as catalog:
        found = catalog.jobs(cluster=cluster, states=ACTIVE_STATES if args.active else None,
                             limit=args.limit)
    if args.output == "json":
        json.dump({"jobs": [j.to_json() for j in found]}, sys.stdout, indent=2)
        print()
    else:
        print(jobs_text(found))
    return 0


def _events(args: argparse.Namespace) -> int:
    from engine.catalog.store import Catalog, iso

    config, path, cluster, _storage = load_context(args, need_cluster=False)
    if cluster:
        config.cluster_name(cluster, path)
    with Catalog.open(config) as catalog:
        found = catalog.events(cluster=cluster, kind=args.kind, job_id=args.job, limit=args.limit,
                               with_agent=True)
    found.reverse()  # oldest first, as a log reads
    if args.output == "json":
        json.dump({"events": [e.to_json() for e in found]}, sys.stdout, indent=2)
        print()
    else:
        for e in found:
            print(f"{iso(e.at)}  {e.severity:<7} {e.cluster or '-':<12} {e.kind:<18} {e.message}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from engine.catalog.store import CANCELLED, Catalog

    asker = who()
    config, _path, _cluster, _storage = load_context(args, need_cluster=False)
    with Catalog.open(config) as catalog:
        job = catalog.job(args.job_id)
        if job is None:
            raise UsageError(f"job {args.job_id} does not exist")
        if not catalog.finish(job.id, CANCELLED, error=f"cancelled by {asker}"):
            print(f"job {job.id} had already ended ({job.state})", file=sys.stderr)
            return 1
        catalog.add_event(job.cluster, "job_cancelled", f"{job.kind} job {job.id} cancelled by "
                          f"{asker}", severity="warning", job_id=job.id)
    print(f"job {job.id} cancelled" + (" (the agent stops its process)" if job.state == "running"
                                       else ""), file=sys.stderr)
    return 0


def _run_job(args: argparse.Namespace) -> int:
    from engine import jobs
    from engine.catalog.store import Catalog

    def stopped(signum: int, _frame: object) -> None:
        # SystemExit unwinds through every finally: a drill stops and removes its scratch
        # cluster, a backup releases its lock; none of it records success
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    config, path, _cluster, storage = load_context(args, need_cluster=False)
    with Catalog.open(config) as catalog:
        return 0 if jobs.execute(config, path, catalog, storage, args.job_id) else 1


HANDLERS = {"agent": _agent, "jobs": _jobs, "enqueue": _enqueue, "cancel": _cancel, "events": _events,
            "run-job": _run_job}
