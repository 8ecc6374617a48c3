"""``lifeboat drill`` (run a restore drill now) and ``lifeboat drill-report`` (show recorded ones)."""

from __future__ import annotations

import json
import sys
from typing import Any

from engine.errors import UsageError
from engine.vocabulary import DRILL_KINDS
from lifeboat import arguments
from lifeboat.output import show
from lifeboat.wiring import open_for

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def add_arguments(command: Any) -> None:
    p = command("drill", "run a restore drill now: restore the newest backup into a scratch cluster, "
                         "validate it against the source, record the result and report")
    arguments.drill_options(p)
    p.add_argument("--output", choices=["text", "json"], default="text")
    p = command("drill-report", "show a recorded drill's report (default: the newest), or list drills")
    p.add_argument("--id", type=int, metavar="N", help="the drill to show (ids: --list)")
    p.add_argument("--kind", choices=DRILL_KINDS, help="only drills of this kind")
    p.add_argument("--list", action="store_true", help="list recorded drills, newest first")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="with --list (default 20)")
    p.add_argument("--output", choices=["text", "json"], default="text",
                   help="text: the Markdown report; json: the recorded result")


def _say(done: float, total: float, message: str) -> None:
    print(f"lifeboat: drill: {message}", file=sys.stderr, flush=True)


def drill(args: argparse.Namespace) -> int:
    from engine import jobs

    with open_for(args, state=True) as ctx:
        outcome = jobs.perform(ctx, "drill", arguments.params_from("drill", args),
                               _say if sys.stderr.isatty() else None)
    result, drill_id = outcome.value, outcome.detail["drill_id"]
    show(args.output, {"id": drill_id} | result.to_json(), lambda: _text(result, drill_id))
    return 0 if result.passed else 1


def _text(result: Any, drill_id: int) -> str:
    from engine.drill.model import percent
    from engine.drill.report import duration, headline

    lines = [f"drill {drill_id}: {headline(result)}"]
    if result.restore_point:
        lines.append(f"  restore point {result.restore_point} at LSN {result.restore_point_lsn}, "
                     f"backup {result.backup_id}; writers blocked {result.writers_blocked_ms:.0f} ms")
    if result.rto_seconds is not None:
        met = "met" if result.rto_seconds <= result.rto_objective else "MISSED"
        lines.append(f"  restore {duration(result.restore_seconds)}, validation "
                     f"{duration(result.validation_seconds)}: RTO {duration(result.rto_seconds)} "
                     f"(objective {duration(result.rto_objective)}: {met})")
    if result.accuracy is not None and result.completeness is not None:
        limits = result.thresholds
        lines.append(f"  accuracy {percent(result.accuracy)} of {len(result.tables)} tables "
                     f"(threshold {percent(limits['accuracy'])}), completeness "
                     f"{percent(result.completeness)} (threshold {percent(limits['completeness'])})")
    failed = result.failed_checks()
    lines.append(f"  {len(result.checks)} checks, {len(failed)} failed")
    lines += [f"  FAILED {check.name}: {check.detail}" for check in failed]
    lines += [f"  note: {note}" for note in result.notes]
    if result.scratch and not result.scratch_removed:
        lines.append(f"  the scratch directory {result.scratch} was NOT removed")
    lines.append(f"  report: lifeboat --cluster {result.cluster} drill-report --id {drill_id}")
    return "\n".join(lines)


def report(args: argparse.Namespace) -> int:
    from engine.catalog.store import iso

    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    with open_for(args) as ctx:
        catalog, cluster = ctx.catalog, ctx.require_cluster()
        if args.list:
            records = catalog.drills(cluster, args.kind, args.limit)
        elif args.id is not None:
            records = catalog.drills(cluster, args.kind, 1, drill_id=args.id)
            if not records:
                raise UsageError(f"no drill {args.id} of cluster '{cluster}' in the catalog "
                                 "(lifeboat drill-report --list shows them)")
        else:
            records = catalog.drills(cluster, args.kind, 1)
            if not records:
                raise UsageError(f"no drill of cluster '{cluster}' is recorded yet (run: lifeboat drill)")
    if args.list:
        if args.output == "json":
            json.dump([{"id": r.id, "kind": r.kind, "started_at": iso(r.started_at),
                        "finished_at": iso(r.finished_at), "passed": r.passed,
                        "rto_seconds": r.result.get("rto_seconds")} for r in records], sys.stdout, indent=2)
            print()
        else:
            for r in records:
                rto = r.result.get("rto_seconds")
                verdict = "passed" if r.passed else "FAILED"
                print(f"{r.id:>5}  {iso(r.started_at)}  {r.kind:<7}  {verdict:<6}  "
                      f"RTO {'-' if rto is None else f'{rto:.1f}s'}")
        return 0
    record = records[0]
    show(args.output, {"id": record.id} | record.result, lambda: record.report)
    return 0
