"""The audit trail of the CLI: every command that changes something is recorded once, here
(:func:`audited` wraps the command's handler), and ``lifeboat audit`` lists the trail.

Recorded: who asked (``--requested-by``, else the OS user), the command, the cluster, its
parameters (no secrets: the CLI takes none as options, and any option named like one is left
out), and how it ended: ``ok``, ``queued`` (enqueue), ``refused`` (bad usage or configuration,
a lock held, a job that had already ended) or ``failed``. A catalog that cannot be opened or
written never fails the command: a notice says the command is not in the trail.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, EncryptionKeyError, JobError, LifeboatError, LockBusyError, UsageError
from lifeboat.output import notice, show

#: Commands that change something (``alerts`` only with ack or silence; ``restore`` not with --plan).
AUDITED = ("backup", "restore", "expire", "verify", "drill", "enqueue", "cancel", "preview", "alerts")
_REFUSALS = (UsageError, ConfigError, LockBusyError, JobError, EncryptionKeyError)
_NOT_PARAMS = {"config", "cluster", "command", "requested_by_user", "opened_context", "output",
               "audit_cluster", "audit_job", "requested_by", "alerts_action", "by"}
_SECRET_WORDS = ("password", "secret", "token", "routing_key", "webhook_url", "access_key")


def add_arguments(command: Any) -> None:
    p = command("audit", "list the audit trail: who asked for what, through the console or the CLI, "
                         "and how it ended (newest first)")
    p.add_argument("--limit", type=int, default=50, metavar="N")
    p.add_argument("--output", choices=["text", "json"], default="text")


def action_of(args: argparse.Namespace) -> str | None:
    """The audited action of a parsed command line, or None when it changes nothing."""
    command = getattr(args, "command", None)
    if command not in AUDITED:
        return None
    if command == "alerts":
        action = getattr(args, "alerts_action", None)
        return f"alerts.{action}" if action in ("ack", "silence") else None
    if command == "restore" and getattr(args, "plan", False):
        return None
    return command


def _params(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in vars(args).items():
        if name in _NOT_PARAMS or any(word in name for word in _SECRET_WORDS):
            continue
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, list):
            value = [str(v) for v in value]
        elif not isinstance(value, str | int | float | bool | type(None)):
            continue
        found[name] = value
    if getattr(args, "audit_job", None) is not None:
        found["job"] = args.audit_job
    return found


def audited(args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    """Run the command's handler and record it in the audit trail when it changes something."""
    action = action_of(args)
    if action is None:
        return run(args)
    from lifeboat.privileges import who

    actor = getattr(args, "requested_by", None) or getattr(args, "by", None) or who()
    try:
        code = run(args)
    except BaseException as exc:
        result = "refused" if isinstance(exc, _REFUSALS) else "failed"
        _record(args, action, actor, result, str(exc) or exc.__class__.__name__)
        raise
    result = ("queued" if action == "enqueue" else "ok") if code == 0 else "failed"
    _record(args, action, actor, result, "" if code == 0 else f"exit code {code}")
    return code


def _record(args: argparse.Namespace, action: str, actor: str, result: str, detail: str) -> None:
    try:
        ctx = getattr(args, "opened_context", None)
        if ctx is None:  # it failed before opening anything: open the configuration now
            from engine.context import open_context
            from lifeboat.privileges import become

            ctx = open_context(getattr(args, "config", None), None)
            become(ctx.config.os_user)  # never create the catalog as root
        cluster = getattr(args, "audit_cluster", None) or ctx.cluster or getattr(args, "cluster", None)
        ctx.catalog.audit.record(actor, "cli", action, result, cluster, _params(args), detail[:2000])
        ctx.close()
    except (LifeboatError, OSError) as exc:
        notice(f"this {action} is not in the audit trail: {exc}")


def audit(args: argparse.Namespace) -> int:
    from engine.catalog.store import iso
    from lifeboat.wiring import open_for

    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    with open_for(args, need_cluster=False) as ctx:
        found = ctx.catalog.audit.entries(cluster=ctx.cluster, limit=args.limit)

    def text() -> str:
        if not found:
            return "no audit entries"
        return "\n".join(f"{iso(e.at)}  {e.source:<7} {e.actor:<20} {e.action:<14} {e.cluster or '-':<12} "
                         f"{e.result:<8}" + (f" {e.detail}" if e.detail else "") for e in found)

    show(args.output, {"entries": [e.to_json() for e in found]}, text)
    return 0


HANDLERS = {"audit": audit}
