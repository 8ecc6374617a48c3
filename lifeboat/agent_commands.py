"""Handlers of ``agent``, ``jobs``, ``enqueue``, ``events``, ``cancel`` and the internal
``run-job``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any

from engine.errors import ConfigError, UsageError
from lifeboat import arguments
from lifeboat.output import show
from lifeboat.privileges import who
from lifeboat.wiring import open_for


def add_arguments(command: Any) -> None:
    p = command("agent", "run the agent: schedules, jobs, async and streaming WAL, objectives")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop after this many seconds (default: until SIGTERM)")
    p = command("jobs", "list jobs from the catalog (newest first)")
    p.add_argument("--active", action="store_true", help="only queued, waiting and running jobs")
    p.add_argument("--limit", type=int, default=50, metavar="N")
    p.add_argument("--output", choices=["text", "json"], default="text")
    p = command("enqueue", "ask the agent to run a job (prints the job id)")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True, parser_class=type(p))
    for kind, options in arguments.OPTIONS.items():
        each = kinds.add_parser(kind, help=f"queue a {kind} (the options of 'lifeboat {kind}')")
        arguments.common_options(each, suppress=True)
        options(each)
        each.add_argument("--priority", type=int, metavar="N",
                          help="higher runs first (default: restore 100, drill 60, backup 50, "
                               "verify 40, expire 30)")
        each.add_argument("--max-duration", metavar="DURATION", help="stop the job if it runs longer")
        each.add_argument("--requested-by", metavar="WHO",
                          help="recorded with the job (default: user@cli)")
        each.add_argument("--wait", action="store_true",
                          help="wait until the job ends; exit 0 if it succeeded, 1 otherwise")
        each.add_argument("--wait-timeout", type=float, metavar="SECONDS")
    p = command("events", "show the agent's events from the catalog (oldest first)")
    p.add_argument("--kind", metavar="KIND", help="only events of this kind (e.g. job_failed)")
    p.add_argument("--job", type=int, metavar="JOB", help="only events of this job")
    p.add_argument("--limit", type=int, default=100, metavar="N")
    p.add_argument("--output", choices=["text", "json"], default="text")
    p = command("cancel", "cancel a queued or running job")
    p.add_argument("job_id", type=int, metavar="JOB")
    p = command("run-job", None)
    p.add_argument("job_id", type=int, metavar="JOB")


def _agent(args: argparse.Namespace) -> int:
    from engine.agent.loop import Agent, job_command
    from lifeboat.observe_commands import start_exporter

    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be positive")
    ctx = open_for(args, need_cluster=False, state=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with ctx:
        agent = Agent(ctx.config, ctx.catalog, ctx.storage, job_command(ctx.config_path),
                      _notifier(ctx.config))
        print(f"lifeboat agent started (pid {os.getpid()}): {len(ctx.config.clusters)} cluster(s), "
              f"catalog {ctx.catalog.db.where}", file=sys.stderr, flush=True)
        exporter = None
        if ctx.config.repository.tiers.enabled:
            from engine.agent.tierer import Tierer

            agent.add_periodic("tiering", ctx.config.repository.tiers.interval,
                               Tierer(ctx.config, ctx.storage, agent.event).round)
        webhook = add_alerts(ctx, agent) if ctx.config.alerts.enabled else None
        if ctx.config.exporter.enabled:
            # the agent measures objectives itself: the exporter only reads them
            exporter = start_exporter(ctx, stop, measure_objectives=False)
        try:
            agent.run(stop, args.duration)
        finally:
            stop.set()
            if exporter is not None:
                exporter.stop()
            if webhook is not None:
                webhook.stop()
    print("lifeboat agent stopped", file=sys.stderr)
    return 0


def add_alerts(ctx: Any, agent: Any) -> Any:
    """The alert loop as one of the agent's periodic parts (every evaluation_interval, in its
    own thread); with ``source = "alertmanager"`` also the webhook server Alertmanager posts
    to (returned, to be stopped; else None). The hooks hand remediation the agent's
    ``restart_streaming`` and escalate through the loop's router."""
    from alerts.channels.factory import build_channels
    from alerts.hooks import AlertHooks
    from alerts.loop import AlertLoop

    settings = ctx.config.alerts
    hooks = AlertHooks(restart_streaming=getattr(agent, "restart_streaming", None))
    source = None
    if settings.source == "prometheus":
        from alerts.prometheus_source import PrometheusSource

        source = PrometheusSource(settings)
    loop = AlertLoop(ctx, build_channels(settings), hooks, source)
    agent.add_periodic("alerts", settings.evaluation_interval, loop.tick, loop.close)
    if settings.source != "alertmanager":
        return None
    from alerts.webhook import AlertmanagerWebhook

    try:
        webhook = AlertmanagerWebhook(loop, settings.webhook_address, settings.webhook_port).start()
    except OSError as exc:
        raise ConfigError(f"[alerts] webhook_address, webhook_port: cannot listen on "
                          f"{settings.webhook_address}:{settings.webhook_port} for Alertmanager's "
                          f"webhook: {exc.strerror or exc}") from None
    print(f"lifeboat agent: Alertmanager webhook at {webhook.url}", file=sys.stderr, flush=True)
    return webhook


def _notifier(config: Any) -> Any:
    """The drill-notice sender from alerts/ (the engine must not import alerts)."""
    from alerts.notifiers import drill_notice

    def notify(cluster: str, entry: Any, when: Any) -> dict[str, str]:
        return {d.channel: str(d.outcome) for d in drill_notice(config, cluster, when)}
    return notify


def _enqueue(args: argparse.Namespace) -> int:
    from engine import jobs
    from engine.catalog.store import FINAL_STATES, SUCCEEDED
    from engine.config.units import parse_duration

    asker = args.requested_by or who()  # before switching to os_user
    params = arguments.params_from(args.kind, args)
    try:
        max_duration = parse_duration(args.max_duration) if args.max_duration else None
    except ValueError as exc:
        raise UsageError(f"--max-duration: {exc}") from None
    with open_for(args, state=True) as ctx:
        catalog = ctx.catalog
        job_id = jobs.enqueue(catalog, ctx.config, args.kind, ctx.require_cluster(), params, asker,
                              args.priority, max_duration)
        args.audit_job = job_id
        print(f"job {job_id} queued: {args.kind} of cluster '{ctx.cluster}'", file=sys.stderr)
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


def _jobs(args: argparse.Namespace) -> int:
    from engine.catalog.store import ACTIVE_STATES
    from lifeboat.output import jobs_text

    with open_for(args, need_cluster=False) as ctx:
        found = ctx.catalog.jobs(cluster=ctx.cluster, states=ACTIVE_STATES if args.active else None,
                                 limit=args.limit)
    show(args.output, {"jobs": [j.to_json() for j in found]}, lambda: jobs_text(found))
    return 0


def _events(args: argparse.Namespace) -> int:
    from engine.catalog.store import iso

    with open_for(args, need_cluster=False) as ctx:
        found = ctx.catalog.events(cluster=ctx.cluster, kind=args.kind, job_id=args.job,
                                   limit=args.limit, with_agent=True)
    found.reverse()  # oldest first, as a log reads
    if args.output == "json":
        json.dump({"events": [e.to_json() for e in found]}, sys.stdout, indent=2)
        print()
    else:
        for e in found:
            print(f"{iso(e.at)}  {e.severity:<7} {e.cluster or '-':<12} {e.kind:<18} {e.message}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from engine import jobs

    asker = who()
    with open_for(args, need_cluster=False) as ctx:
        job = jobs.cancel_job(ctx.catalog, args.job_id, asker)
        args.audit_cluster = job.cluster
    print(f"job {job.id} cancelled" + (" (the agent stops its process)" if job.state == "running"
                                       else ""), file=sys.stderr)
    return 0


def _run_job(args: argparse.Namespace) -> int:
    from engine import jobs

    def stopped(signum: int, _frame: object) -> None:
        # SystemExit unwinds through every finally: a drill stops and removes its scratch
        # cluster, a backup releases its lock; none of it records success
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    with open_for(args, need_cluster=False) as ctx:
        return 0 if jobs.execute(ctx, args.job_id) else 1


HANDLERS = {"agent": _agent, "jobs": _jobs, "enqueue": _enqueue, "cancel": _cancel, "events": _events,
            "run-job": _run_job}
