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
    export = actions.add_parser("export", help="write the dashboard JSON (to import into Grafana), with the "
                                               "thresholds of the configuration's alert rules")
    export.add_argument("--output", type=Path, metavar="FILE", help="default: standard output")
    p = command("rules", "the Prometheus alerting rules")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                               parser_class=type(p))
    export = actions.add_parser("export", help="write the Prometheus rules file of the configuration's "
                                               "[alerts] rules (the defaults without a configuration file)")
    export.add_argument("--output", type=Path, metavar="FILE", help="default: standard output")
    export.add_argument("--alertmanager", type=Path, metavar="FILE",
                        help="also write an Alertmanager configuration: receivers of the [alerts] "
                             "channels, routes, the agent's webhook (mode 0600: it holds secrets)")
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


def _write(text: str, output: Path | None, mode: int | None = None) -> None:
    """``text`` to ``output`` (standard output without one); ``mode``: created with it, and
    set on a file that existed (before anything is written to it)."""
    if output is None:
        sys.stdout.write(text)
        return
    import os

    from engine.errors import path_error

    try:
        if mode is None:
            output.write_text(text)
        else:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w") as handle:
                os.fchmod(handle.fileno(), mode)
                handle.write(text)
    except OSError as exc:
        raise path_error(exc, "write", output) from None
    print(f"lifeboat: wrote {output}", file=sys.stderr)


def alerts_settings(args: argparse.Namespace) -> Any:
    """``[alerts]`` of ``--config`` (or ``$LIFEBOAT_CONFIG``); of the default configuration
    file when it exists; else the defaults (the seed's rules), so the files can be exported
    on a machine without a configuration."""
    import os

    from engine.config.alerting import AlertsSettings
    from engine.config.file import CONFIG_ENV, config_path
    from engine.config.schema import load_config

    path = config_path(getattr(args, "config", None))
    if not getattr(args, "config", None) and not os.environ.get(CONFIG_ENV) and not os.path.exists(path):
        return AlertsSettings()
    return load_config(path).alerts


def grafana(args: argparse.Namespace) -> int:
    from collectors.grafana_dashboard import render

    _write(render(alerts_settings(args)), args.output)
    return 0


def rules(args: argparse.Namespace) -> int:
    from alerts.rules import render_rules

    alerts = alerts_settings(args)
    rules_text = render_rules(alerts, args.runbook_base)
    manager_text, secrets = None, False
    if args.alertmanager is not None:  # rendered before anything is written: a bad secret writes nothing
        from alerts.alertmanager import alertmanager_config, holds_secrets, render_alertmanager

        manager_text = render_alertmanager(alerts)
        secrets = holds_secrets(alertmanager_config(alerts))
    _write(rules_text, args.output)
    if manager_text is not None:
        _write(manager_text, args.alertmanager, mode=0o600)
        if secrets:
            print(f"lifeboat: {args.alertmanager} holds secrets (routing key, webhook URL or token, SMTP "
                  "password): it is mode 0600; keep it out of version control", file=sys.stderr)
    return 0


HANDLERS = {"exporter": exporter, "grafana": grafana, "rules": rules}
