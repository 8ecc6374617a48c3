"""Recovery targets: which backup can reach them, and the settings PostgreSQL needs.

Pure logic, except :func:`write_settings` which writes into the restored directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from engine import durable
from engine.errors import RestoreError, UsageError
from engine.repository.manifest import BackupSummary
from engine.vocabulary import TARGET_ACTIONS, TARGET_KINDS, TARGETS_WITHOUT_VALUE
from engine.wal.names import parse_lsn

RECOVERY_KEYS = frozenset({
    "restore_command", "recovery_target", "recovery_target_time", "recovery_target_xid",
    "recovery_target_lsn", "recovery_target_name", "recovery_target_inclusive",
    "recovery_target_action", "recovery_target_timeline", "recovery_end_command",
})
MARKER = "# lifeboat restore"
_SETTING = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?")


@dataclass(frozen=True)
class RecoveryTarget:
    """Where recovery should stop, and what the server does there."""

    kind: str = "latest"
    value: str | None = None
    exclusive: bool = False
    action: str = "promote"
    timeline: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise UsageError(f"unknown recovery target '{self.kind}'")
        if self.action not in TARGET_ACTIONS:
            raise UsageError(f"--target-action must be one of {', '.join(TARGET_ACTIONS)}")
        if self.kind in TARGETS_WITHOUT_VALUE:
            if self.exclusive:
                raise UsageError("--target-exclusive needs a time, xid or LSN target")
            return
        if not self.value:
            raise UsageError(f"a {self.kind} target needs a value")
        if self.kind == "time":
            self.moment()
        elif self.kind == "xid" and not self.value.isdigit():
            raise UsageError(f"--target-xid must be a transaction id (a number), got '{self.value}'")
        elif self.kind == "lsn":
            try:
                parse_lsn(self.value)
            except ValueError as exc:
                raise UsageError(f"--target-lsn: {exc}") from None
        if self.timeline is not None and self.timeline not in ("latest", "current") and \
                not self.timeline.isdigit():
            raise UsageError("--target-timeline must be 'latest', 'current' or a number")

    def moment(self) -> datetime:
        try:
            parsed = datetime.fromisoformat(str(self.value).strip().replace(" ", "T", 1))
        except ValueError:
            raise UsageError(
                f"--target-time '{self.value}' is not a time (use ISO 8601 with a zone, "
                "e.g. '2026-11-25 06:40:00+00')") from None
        if parsed.tzinfo is None:
            raise UsageError(
                f"--target-time '{self.value}' has no time zone: add one, e.g. '+00' for UTC")
        return parsed

    def describe(self) -> str:
        if self.kind in TARGETS_WITHOUT_VALUE:
            return self.kind
        return f"{self.kind} {self.value}" + (" (exclusive)" if self.exclusive else "")


def _stopped(summary: BackupSummary) -> datetime:
    return datetime.fromisoformat(summary.stopped_at.replace("Z", "+00:00"))


def choose_backup(backups: list[BackupSummary], target: RecoveryTarget,
                  restore_point_lsn: int | None = None) -> BackupSummary:
    """The newest backup that can reach ``target`` (``backups`` in any order)."""
    if not backups:
        raise RestoreError("the repository holds no backup of this cluster")
    newest_first = sorted(backups, key=lambda b: (b.stopped_at, b.id), reverse=True)
    if target.kind == "time":
        moment = target.moment()
        fits = [b for b in newest_first if _stopped(b) <= moment]
        reason = f"finished before {moment.isoformat()}"
    elif target.kind == "lsn":
        lsn = parse_lsn(str(target.value))
        fits = [b for b in newest_first if parse_lsn(b.stop_lsn) <= lsn]
        reason = f"ends before LSN {target.value}"
    elif target.kind == "xid":
        xid = int(str(target.value))
        fits = [b for b in newest_first if _xid_reachable(b.stop_next_xid, xid)]
        reason = f"ends before transaction {xid} began"
    elif target.kind == "name" and restore_point_lsn is not None:
        fits = [b for b in newest_first if parse_lsn(b.stop_lsn) <= restore_point_lsn]
        reason = f"ends before restore point '{target.value}'"
    else:
        return newest_first[0]
    if not fits:
        oldest = newest_first[-1]
        raise RestoreError(f"no backup {reason}: the oldest backup, {oldest.id}, "
                           f"stopped at {oldest.stopped_at} (LSN {oldest.stop_lsn})")
    return fits[0]


def _xid_reachable(stop_next_xid: int, xid: int) -> bool:
    """True when transaction ``xid`` began after the backup stopped (so it commits later)."""
    if xid > 0xFFFFFFFF:
        return stop_next_xid <= xid
    return (stop_next_xid & 0xFFFFFFFF) <= xid


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def settings_for(target: RecoveryTarget, restore_command: str) -> dict[str, str]:
    """The recovery settings (name -> quoted value) for ``target``."""
    found = {"restore_command": _quote(restore_command)}
    if target.kind == "immediate":
        found["recovery_target"] = "'immediate'"
    elif target.kind != "latest":
        found[f"recovery_target_{target.kind}"] = _quote(str(target.value))
        if target.exclusive:
            found["recovery_target_inclusive"] = "false"
    if target.kind != "latest":
        found["recovery_target_action"] = _quote(target.action)
    found["recovery_target_timeline"] = _quote(target.timeline or "latest")
    return found


def write_settings(pgdata: Path, settings: dict[str, str], backup_id: str,
                   signal: str = "recovery.signal") -> None:
    """Put ``settings`` into postgresql.auto.conf (dropping stale recovery settings of an
    earlier restore that the backup carried) and create the signal file."""
    auto = pgdata / "postgresql.auto.conf"
    try:
        lines = auto.read_text().splitlines()
    except FileNotFoundError:
        lines = ["# Do not edit this file manually!",
                 "# It will be overwritten by the ALTER SYSTEM command."]
    replaced = RECOVERY_KEYS | set(settings)
    kept = []
    for line in lines:
        match = _SETTING.match(line)
        if line.startswith(MARKER) or (match and match.group(1) in replaced):
            continue
        kept.append(line)
    kept.append(f"{MARKER} of backup {backup_id}")
    kept.extend(f"{name} = {value}" for name, value in settings.items())
    durable.write_atomic(auto, ("\n".join(kept) + "\n").encode(), 0o600)
    durable.write_atomic(pgdata / signal, b"", 0o600)
