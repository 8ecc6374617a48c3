"""Handlers of ``alerts`` (list), ``alerts ack``, ``alerts silence`` and ``alerts test``.

Exit codes: 0 done; 1 the operation failed (an unknown or resolved alert, a notice not
delivered); 2 bad usage or configuration (an unknown rule, an unconfigured channel).
Secrets never appear: deliveries' details are redacted before they are recorded or shown.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from engine.errors import UsageError
from lifeboat.output import show
from lifeboat.privileges import who
from lifeboat.wiring import open_for

RECENT = 24 * 3600.0  # resolved alerts shown without --all


def add_arguments(command: Any) -> None:
    p = command("alerts", "alerts: open and recent (with notifications and remediation), ack, "
                          "silence, test a channel")
    p.add_argument("--output", choices=["text", "json"], default="text")
    p.add_argument("--all", action="store_true", help="every alert, not only open and resolved in 24h")
    p.add_argument("--limit", type=int, default=100, metavar="N")
    actions = p.add_subparsers(dest="alerts_action", metavar="[ack|silence|test]", parser_class=type(p))
    ack = actions.add_parser("ack", help="acknowledge an open alert (and PagerDuty's incident)")
    ack.add_argument("alert_id", type=int, metavar="ID")
    ack.add_argument("--by", metavar="WHO", help="recorded as who acknowledged (default: user@host)")
    silence = actions.add_parser("silence", help="send nothing for a rule's alerts for a while")
    silence.add_argument("rule", metavar="RULE")
    silence.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                         help="how long, e.g. 2h or 30m")
    silence.add_argument("--reason", required=True, metavar="TEXT")
    silence.add_argument("--by", metavar="WHO")
    test = actions.add_parser("test", help="send a test notice through a channel (the real path)")
    test.add_argument("--channel", required=True, metavar="NAME")
    from lifeboat.arguments import common_options

    for each in (ack, silence, test):
        common_options(each, suppress=True)
        each.add_argument("--output", choices=["text", "json"], default=argparse.SUPPRESS)


def alerts(args: argparse.Namespace) -> int:
    action = getattr(args, "alerts_action", None)
    if action == "ack":
        return _ack(args)
    if action == "silence":
        return _silence(args)
    if action == "test":
        return _test(args)
    return _list(args)


def _say(message: str) -> None:
    print(f"lifeboat: {message}", file=sys.stderr)


def alert_json(book: Any, alert: Any) -> dict[str, Any]:
    from engine.catalog.store import iso

    data = alert.to_json()
    data["notifications"] = [
        {"at": iso(n.at), "channel": n.channel, "kind": n.kind, "outcome": n.outcome,
         "attempts": n.attempts, "detail": n.detail} for n in book.notifications(alert.id)]
    data["remediation"] = [
        {"round": a.round, "action": a.action, "result": a.result, "started_at": iso(a.started_at),
         "finished_at": iso(a.finished_at), "output": a.output} for a in book.attempts(alert.id)]
    return data


def _list(args: argparse.Namespace) -> int:
    if args.limit <= 0:
        raise UsageError("--limit must be positive")
    with open_for(args, need_cluster=False) as ctx:
        book = ctx.catalog.alerts
        since = 0.0 if args.all else time.time() - RECENT
        found = [alert_json(book, a) for a in book.recent(since=since, cluster=ctx.cluster, limit=args.limit)]
    show(args.output, {"alerts": found}, lambda: alerts_text(found))
    return 0


def alerts_text(found: list[dict[str, Any]]) -> str:
    if not found:
        return "no alerts"
    lines = [f"{'ID':>5}  {'STATE':<12} {'SEVERITY':<8} {'RULE':<28} {'CLUSTER':<12} {'VALUE':>10}  "
             f"{'SINCE':<20}  RESOLVED"]
    for a in found:
        value = "" if a["value"] is None else f"{a['value']:g}"
        lines.append(f"{a['id']:>5}  {a['state']:<12} {a['severity']:<8} {a['rule']:<28} "
                     f"{a['cluster'] or '-':<12} {value:>10}  {a['firing_since'] or a['first_seen']:<20}  "
                     f"{a['resolved_at'] or '-'}")
        if a["acknowledged_by"]:
            lines.append(f"       acknowledged by {a['acknowledged_by']} at {a['acknowledged_at']}")
        if a["silence_reason"]:
            lines.append(f"       silenced until {a['silenced_until']}: {a['silence_reason']}")
        for n in a["notifications"]:
            lines.append(f"       {n['at']}  {n['kind']:<12} -> {n['channel']:<10} {n['outcome']}"
                         f" ({n['attempts']} attempt{'s' if n['attempts'] != 1 else ''}): {n['detail']}")
        for r in a["remediation"]:
            said = r["output"].splitlines() or [""]
            lines.append(f"       {r['finished_at']}  round {r['round']} {r['action']}: {r['result']}: "
                         f"{said[0][:200]}")
            lines.extend(f"           {line[:200]}" for line in said[1:8])
            if len(said) > 8:
                lines.append(f"           ... {len(said) - 8} more line(s): --output json has them all")
    return "\n".join(lines)


def _ack(args: argparse.Namespace) -> int:
    from alerts.lifecycle import AlertClosed, UnknownAlert
    from alerts.operations import acknowledge

    by = args.by or who()
    output = getattr(args, "output", "text")
    with open_for(args, need_cluster=False) as ctx:
        try:
            done = acknowledge(ctx, args.alert_id, by)
        except (UnknownAlert, AlertClosed) as exc:
            _say(str(exc))
            return 1
        alert, deliveries, problem = done.alert, done.deliveries, done.problem
        result = alert_json(ctx.catalog.alerts, alert)
    show(output, {"alert": result, "deliveries": [
        {"channel": d.channel, "outcome": str(d.outcome), "detail": d.detail, "attempts": d.attempts}
        for d in deliveries]}, lambda: f"alert {alert.id} ({alert.rule}) acknowledged by {by}" + "".join(
            f"\n  {d.channel}: {d.outcome}: {d.detail}" for d in deliveries))
    if problem:
        _say(f"alert {alert.id} is acknowledged in the catalog, but the channels were not told: {problem}")
        return 1
    if done.failed:
        _say(f"alert {alert.id} is acknowledged in the catalog, but "
             + ", ".join(f"{d.channel} was not told ({d.outcome})" for d in done.failed))
        return 1
    return 0


def _silence(args: argparse.Namespace) -> int:
    from alerts.operations import silence
    from engine.catalog.store import iso
    from engine.config.units import parse_duration

    by = args.by or who()
    try:
        seconds = parse_duration(args.duration)
    except ValueError as exc:
        raise UsageError(f"--for: {exc}") from None
    if seconds <= 0:
        raise UsageError("--for must be more than 0 (e.g. 2h)")
    if not args.reason.strip():
        raise UsageError("--reason must say why (it is shown with every silenced alert)")
    with open_for(args, need_cluster=False) as ctx:
        done = silence(ctx, args.rule, ctx.cluster, seconds, args.reason, by)
    data = {"silence": {"id": done.id, "rule": done.rule, "cluster": done.cluster, "until": iso(done.until),
                        "reason": done.reason, "created_by": by}}
    show(getattr(args, "output", "text"), data, lambda: (
        f"silence {done.id}: rule {done.rule} on {done.cluster or 'every cluster'} until {iso(done.until)}: "
        f"{done.reason}"))
    return 0


def test_notice(channel: str) -> Any:
    from alerts.channels.base import AlertNotice

    now = time.time()
    return AlertNotice(
        key=f"lifeboat-test-{int(now)}", rule="test", alertname="LifeboatTest", state="firing",
        severity="info", cluster=None, summary="Test notification from Lifeboat",
        description=f"Sent by 'lifeboat alerts test --channel {channel}' to check the channel; "
                    "no action needed.", started_at=now)


def _test(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from alerts.channels.base import redact
    from alerts.channels.factory import build_channels
    from alerts.router import settings_secrets
    from engine.vocabulary import CHANNEL_NAMES

    name = args.channel
    if name not in CHANNEL_NAMES:
        raise UsageError(f"--channel: '{name}' is not a channel (channels: {', '.join(CHANNEL_NAMES)})")
    with open_for(args, need_cluster=False) as ctx:
        settings = ctx.config.alerts
        if settings.channel_settings(name) is None:
            raise UsageError(f"channel {name} is not configured: add an [alerts.{name}] section to "
                             f"{ctx.config_path}")
        channel = build_channels(settings, only=[name])[name]
        from alerts.channels.retry import deliver

        retry = settings.retry
        notice = test_notice(name)
        results = [deliver(channel, notice, retry.attempts, retry.first_wait, retry.max_wait, retry.deadline)]
        if results[0].outcome == "ok" and name == "pagerduty":  # close the test incident again
            closing = replace(notice, state="resolved", ended_at=time.time(),
                              refs={name: results[0].ref} if results[0].ref else {})
            results.append(deliver(channel, closing, retry.attempts, retry.first_wait, retry.max_wait,
                                   retry.deadline))
        secrets = settings_secrets(settings) + list(getattr(channel, "secrets", []) or [])
        shown = [{"channel": d.channel, "state": state, "outcome": str(d.outcome),
                  "detail": redact(d.detail, secrets), "attempts": d.attempts}
                 for d, state in zip(results, ("firing", "resolved"), strict=False)]
        ok = all(d.outcome == "ok" for d in results)
        ctx.catalog.add_event(None, "alert_test", f"test notice to {name}: " + "; ".join(
            f"{s['state']} {s['outcome']} ({s['detail']})" for s in shown),
            severity="info" if ok else "warning")
    show(getattr(args, "output", "text"), {"delivered": ok, "deliveries": shown}, lambda: "\n".join(
        f"{s['channel']} {s['state']}: {s['outcome']} after {s['attempts']} attempt"
        f"{'s' if s['attempts'] != 1 else ''}: {s['detail']}" for s in shown))
    return 0 if ok else 1


HANDLERS = {"alerts": alerts}
