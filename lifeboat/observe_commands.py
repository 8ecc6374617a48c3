"""Handlers of the observability subcommands: ``exporter``, ``grafana export`` and
``rules export``. The work is in collectors/ and alerts/; these only wire and print."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from engine.context import Context
from engine.errors import UsageError
from lifeboat.wiring import open_for


def add_arguments(command: Any) -> None:
    p = command("exporter", "serve the Prometheus metrics on /metrics without the agent")
    p.add_argument("--address", metavar="ADDR", help="listen address (default: [exporter] address)")
    p.add_argument("--port", type=int, metavar="PORT", help="listen port (default: [exporter] port)")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop after this many seconds (default: until SIGTERM)")
    p = command("grafana", "the Grafana dashboard")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                               parser_class=type(p))
    export = actions.add_parser("export", help="write the dashboard JSON (to import into Grafana)")
    export.add_argument("--output", type=Path, metavar="FILE", help="default: standard output")
    p = command("rules", "the Prometheus alerting rules")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                               parser_class=type(p))
    export = actions.add_parser("export", help="write the Prometheus rules file")
    export.add_argument("--output", type=Path, metavar="FILE", help="default: standard output")
    export.add_argument("--alertmanager", type=Path, metavar="FILE",
                        help="also write an Alertmanager configuration with the inhibition rules")
    export.add_argument("--runbook-base", metavar="URL", help="where the runbooks are published")


def start_exporter(ctx: Context, stop: threading.Event, address: str | None = None,
                   port: int | None = None, measure_objectives: bool = True) -> Any:
    """Start the exporter (collectors.exporter) and say where it listens."""
    import logging

    from collectors.exporter import Exporter

    logging.basicConfig(format="lifeboat: %(message)s", level=logging.WARNING, stream=sys.stderr)
    exporter = Exporter(ctx.config, ctx.storage, address, port, measure_objectives)
    exporter.start(stop)
    print(f"lifeboat: metrics on http://{exporter.address}:{exporter.port}/metrics",
          file=sys.stderr, flush=True)
    return exporter


def exporter(args: argparse.Namespace) -> int:
    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError("--port must be within 1..65535")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be positive")
    ctx = open_for(args, need_cluster=False, state=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    running = start_exporter(ctx, stop, args.address, args.port)
    try:
        stop.wait(args.duration)
    finally:
        stop.set()
        running.stop()
    return 0


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    from engine.errors import path_error

    try:
        output.write_text(text)
    except OSError as exc:
        raise path_error(exc, "write", output) from None
    print(f"lifeboat: wrote {output}", file=sys.stderr)


def grafana(args: argparse.Namespace) -> int:
    from collectors.grafana_dashboard import render

    _write(render(), args.output)
    return 0


def rules(args: argparse.Namespace) -> int:
    from alerts import rules as alert_rules

    kwargs = {"runbook_base": args.runbook_base} if args.runbook_base else {}
    _write(alert_rules.render_rules(**kwargs), args.output)
    if args.alertmanager is not None:
        _write(alert_rules.render_alertmanager(), args.alertmanager)
    return 0


HANDLERS = {"exporter": exporter, "grafana": grafana, "rules": rules}
