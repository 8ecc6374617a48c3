"""Text renderings for the terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.config.units import format_size

if TYPE_CHECKING:
    from engine.repository.copy_validation import ValidationReport
    from engine.repository.expire import ExpireReport
    from engine.repository.info import ClusterReport
    from engine.repository.verify import VerifyReport

def show(output: str, data: object, text: Callable[[], str]) -> None:
    """A command's result on stdout: JSON (``--output json``) or the text ``text()`` makes."""
    if output == "json":
        json.dump(data, sys.stdout, indent=2)
        print()
    else:
        print(text())


def notice(text: str) -> None:
    """Something the operator should read, on stderr (results go to stdout)."""
    print(f"lifeboat: notice: {text}", file=sys.stderr)


def info_text(repository: str, reports: list[ClusterReport]) -> str:
    lines = [f"repository {repository}"]
    for report in reports:
        if report.info is None:
            lines.append(f"cluster {report.name}: {report.status}")
            continue
        version = f"{report.info.pg_version // 10000}.{report.info.pg_version % 10000}"
        lines.append(f"cluster {report.name}: PostgreSQL {version}, "
                     f"system {report.info.system_identifier}")
        if not report.archive:
            lines.append("  wal archive: empty")
        for rng in report.archive:
            lines.append(f"  wal archive timeline {rng.timeline}: {rng.first} .. {rng.last} "
                         f"({rng.count} segments)")
        if not report.backups and not report.damaged:
            lines.append("  backups: none")
        for b in report.backups:
            lines.append(f"  backup {b.id} {b.type}: {b.started_at} .. {b.finished_at}, "
                         f"LSN {b.start_lsn} .. {b.stop_lsn} (timeline {b.timeline}), "
                         f"{format_size(b.size_bytes)}, {format_size(b.stored_bytes)} stored"
                         + _placement(report.placements.get(b.id))
                         + (f"; HOLDS {b.corrupt_pages} CORRUPT PAGES in {', '.join(b.corrupt_files)}"
                            if b.corrupt_pages else ""))
        for backup_id, error in report.damaged:
            lines.append(f"  backup {backup_id}: DAMAGED: {error}")
        if report.objectives:
            lines.append(objectives_text(report.objectives))
    return "\n".join(lines)


def tier_text(report: Any) -> str:
    """What a tiering run did (``lifeboat tier``)."""
    head = "would" if report.dry_run else "did"
    lines = [f"tiering of cluster '{report.cluster}' ({head}): {len(report.moved)} moved, "
             f"{len(report.repaired)} repaired, {format_size(report.bytes_copied)} copied in "
             f"{report.seconds:.1f}s" + ("" if report.ok else ": NOT ALL IN PLACE")]
    lines += [f"  moved {m['backup']}: {m['from']} -> {m['to']} ({m['copies']} copies verified)"
              for m in report.moved]
    lines += [f"  repaired {r['backup']} in {r['tier']}: {r['copies']}/{r['replication']} copies"
              for r in report.repaired]
    lines += [f"  would {p['action']} {p['backup']}: {p['from']} -> {p['to']}"
              + (f" into {', '.join(p['storages'])}" if p["storages"] else "") for p in report.planned]
    lines += [f"  below replication: {b['backup']} in {b['tier']} has {b['copies']}/{b['replication']} "
              "copies" for b in report.below_replication]
    lines += [f"  failed: {f}" for f in report.failed]
    lines += [f"  waiting: {w}" for w in report.waiting]
    if report.past_last_tier:
        lines.append(f"  past the last tier's age (retention decides): {', '.join(report.past_last_tier)}")
    lines += [f"  collected in {where}: {c['packs']} packs, {c['lists']} lists, {c['wal']} WAL files "
              f"({format_size(c['bytes'])})" for where, c in report.collected.items()]
    lines += [f"  notice: {n}" for n in report.notices]
    return "\n".join(lines)


def _placement(placement: dict | None) -> str:
    """``; tier warm, 2/2 copies`` (and what is below its replication count)."""
    if not placement:
        return ""
    text = f"; tier {placement['tier']}, {placement['copies']}/{placement['replication']} copies"
    if placement["below_replication"]:
        text += " (BELOW REPLICATION)"
    others = [f"{n} {c}" for n, c in placement["tiers"].items() if n != placement["tier"]]
    return text + (f" (also in {', '.join(others)}: being moved)" if others else "")


def objectives_text(o: dict) -> str:
    from engine.config.units import format_duration

    def measured(value: float | None, objective: float, met: bool | None, what: str) -> str:
        if value is None:
            return f"{what} objective {format_duration(objective)}"
        verdict = "met" if met else "MISSED"
        return f"{what} {format_duration(value)} / objective {format_duration(objective)} ({verdict})"

    head = f"  objectives ({o['class']}): "
    body = (measured(o["rpo_exposure_seconds"], o["rpo_objective_seconds"], o["rpo_met"], "RPO exposure")
            + "; " + measured(o["rto_expected_seconds"], o["rto_objective_seconds"], o["rto_met"],
                              "expected RTO"))
    tail = f"; measured {o['measured_at']}" if o["measured_at"] else f"; {o['note']}"
    return head + body + tail


def verify_text(report: VerifyReport) -> str:
    skipped = ""
    if report.mode == "since-last":
        skipped = (f" ({report.skipped_manifests} manifests, {report.skipped_packs} packs, "
                   f"{report.skipped_lists} block lists and {report.skipped_wal} WAL files proven "
                   "earlier, skipped)")
    lines = [f"verify cluster '{report.cluster}' ({report.mode}): {report.backups} backups; checked "
             f"{report.manifests} manifests, {report.lists} block lists, {report.packs} packs "
             f"({report.frames} frames, {report.blocks} blocks, {format_size(report.bytes)}), "
             f"{report.wal_segments} WAL files and {report.documents} documents in "
             f"{report.seconds:.1f}s{skipped}"]
    if report.ok:
        lines.append("ok: nothing missing, damaged or unknown")
    else:
        lines.append(f"{len(report.problems)} problems:")
        lines.extend(f"  {problem}" for problem in report.problems)
    return "\n".join(lines)


def expire_text(report: ExpireReport) -> str:
    would = "would be " if report.dry_run else ""
    lines = [f"expire{' (dry run)' if report.dry_run else ''}: "
             f"{len(report.plan.expire)} backups {would}expired, {len(report.plan.keep)} kept; "
             f"{len(report.packs_removed)} packs ({format_size(report.pack_bytes)}), "
             f"{report.lists_removed} block lists ({format_size(report.list_bytes)}) and "
             f"{len(report.wal_removed)} WAL files ({format_size(report.wal_bytes)}) {would}removed"]
    for backup in report.plan.expire:
        lines.append(f"  expire {backup.id} ({backup.type}): {report.plan.reasons[backup.id]}")
    for backup in report.plan.keep:
        reason = report.plan.reasons.get(backup.id)
        if reason:
            lines.append(f"  keep {backup.id} ({backup.type}): {reason.removeprefix('kept: ')}")
    return "\n".join(lines)


def validation_text(report: ValidationReport) -> str:
    """``lifeboat copy --validate``: one region's validation."""
    state = "OK" if report.ok else f"FAILED ({len(report.problems)} problems)"
    compared = (f"manifests compared with the primary ({report.primary})" if report.compared
                else f"manifests {report.primary}")
    lines = [f"copy of cluster '{report.cluster}' in region {report.region}: {state}",
             f"  {report.backups} backups; {compared}; {report.packs} packs, {report.lists} block lists "
             f"and {report.wal} WAL files the backups need present; {len(report.sampled)} objects "
             f"re-hashed ({report.seconds:.1f}s)"]
    if report.extra:
        lines.append(f"  only in the copy (kept longer than the primary keeps them): "
                     f"{', '.join(report.extra)}")
    lines += [f"  problem: {p}" for p in report.problems]
    return "\n".join(lines)


def jobs_text(jobs: list) -> str:  # list[engine.catalog.store.Job]
    from engine.catalog.store import iso

    if not jobs:
        return "no jobs"
    lines = [f"{'ID':>5}  {'KIND':<8} {'CLUSTER':<12} {'STATE':<10} {'PROG':>4}  {'PRIO':>4}  "
             f"{'CREATED':<20}  {'DURATION':>8}  REQUESTED BY / MESSAGE"]
    for job in jobs:
        duration = "" if job.duration is None else f"{job.duration:.1f}s"
        note = job.error or job.message
        lines.append(f"{job.id:>5}  {job.kind:<8} {job.cluster:<12} {job.state:<10} "
                     f"{job.progress:>3}%  {job.priority:>4}  {iso(job.created_at):<20}  "
                     f"{duration:>8}  {job.requested_by}" + (f": {note}" if note else ""))
    return "\n".join(lines)


def preview_text(result: object) -> str:  # engine.restore.preview.PreviewResult
    data = result.to_json()  # type: ignore[attr-defined]
    point = data["point_reached"] or {}
    lines = [f"preview of {data['database']}.{data['table']} at {data['target']} (backup {data['backup']}): "
             f"recovery reached LSN {point.get('lsn')}, last transaction at {point.get('time') or 'unknown'}",
             f"{data['row_count']} rows" + (f"; first {len(data['rows'])} by {', '.join(data['ordered_by'])}"
                                            if data["ordered_by"] else f"; first {len(data['rows'])}")]
    rows = [data["columns"], *[["NULL" if v is None else v for v in row] for row in data["rows"]]]
    widths = [min(40, max(len(str(r[i])) for r in rows)) for i in range(len(data["columns"]))]
    for row in rows:
        lines.append("  " + "  ".join(str(v)[:40].ljust(w) for v, w in zip(row, widths, strict=True)))
    lines.append("the scratch cluster was removed" if data["scratch_removed"]
                 else f"the scratch cluster {data['scratch']} was NOT removed")
    return "\n".join(lines)
