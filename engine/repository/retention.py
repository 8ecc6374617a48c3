"""Retention planning: which backups and which WAL ``expire`` removes. Pure: it reads
summaries and rules, touches nothing.

Rules per backup type keep the newest N, or those younger than an age. Since every
backup restores on its own, types are judged independently: an incremental whose full
backup expired still restores (the blocks it references stay until no backup does).
Two backups are never expired: the newest, and the newest that is old enough to start
the point-in-time recovery window. WAL older than the oldest kept backup's start is
removed; nothing a kept backup or the window needs ever is.

A :class:`Policy` is what one repository keeps: a retention section's rules, or, for a copy
in another region whose ``retention = "primary"``, exactly the backups the primary still
holds (``mirror``). The same :func:`plan` decides for both, so a copy is expired by the very
code that expires the primary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from engine.repository.manifest import BackupSummary
from engine.wal.names import parse_lsn, segment_of_lsn

if TYPE_CHECKING:
    from engine.config.retention import RetentionConfig

#: Why a copy's backup goes when the copy keeps what the primary keeps.
NOT_IN_PRIMARY = "the primary no longer holds it (the copy keeps what the primary keeps)"


@dataclass(frozen=True)
class Policy:
    """What a repository keeps: ``rules`` per backup type and a recovery ``window``, or (a
    copy that keeps what the primary keeps) the backups whose ids are in ``mirror``. The
    newest backup is kept either way."""

    rules: dict[str, tuple[str, float]]
    window: float | None
    gc_grace: float
    mirror: frozenset[str] | None = None
    expire_after: bool = True  # expire after each backup (a copy's: after each copy round)

    @classmethod
    def of(cls, section: RetentionConfig) -> Policy:
        return cls(section.rules(), section.max_recovery_window, section.gc_grace,
                   expire_after=section.expire_after_backup)

    @property
    def configured(self) -> bool:
        return bool(self.rules) or self.window is not None or self.mirror is not None

    def plan(self, backups: list[BackupSummary], now: float, segment_size: int) -> ExpirePlan:
        return plan(backups, self.rules, self.window, now, segment_size, self.mirror)


@dataclass
class ExpirePlan:
    expire: list[BackupSummary] = field(default_factory=list)
    keep: list[BackupSummary] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # backup id -> why expired / kept
    wal_before_segno: int | None = None  # archived segments below this are removable


def stopped_at(summary: BackupSummary) -> float:
    """When the backup stopped (seconds since the epoch): ages of retention and tiers count from it."""
    return datetime.fromisoformat(summary.stopped_at.replace("Z", "+00:00")).timestamp()


def plan(backups: list[BackupSummary], rules: dict[str, tuple[str, float]],
         window: float | None, now: float, segment_size: int,
         mirror: frozenset[str] | None = None) -> ExpirePlan:
    """Which of ``backups`` to expire; with ``mirror``, every backup whose id is not in it
    (the newest and the window's anchor are still kept)."""
    result = ExpirePlan()
    if not backups:
        return result
    ordered = sorted(backups, key=lambda b: (stopped_at(b), b.id))
    protected = {ordered[-1].id: "the newest backup"}
    if window is not None:
        old_enough = [b for b in ordered if stopped_at(b) <= now - window]
        if old_enough:
            protected.setdefault(old_enough[-1].id, "starts the recovery window")
    for backup_type, (kind, amount) in rules.items():
        of_type = [b for b in ordered if b.type == backup_type]
        if kind == "count":
            doomed = of_type[:max(0, len(of_type) - int(amount))]
            why = f"more than {int(amount)} {backup_type} backups are kept"
        else:
            doomed = [b for b in of_type if stopped_at(b) < now - amount]
            why = f"older than the {backup_type} retention of {amount / 86400:g} days"
        for backup in doomed:
            result.reasons[backup.id] = why
    if mirror is not None:
        for backup in ordered:
            if backup.id not in mirror:
                result.reasons[backup.id] = NOT_IN_PRIMARY
    for backup in ordered:
        if backup.id in result.reasons and backup.id not in protected:
            result.expire.append(backup)
        else:
            if backup.id in result.reasons:
                result.reasons[backup.id] = f"kept: {protected[backup.id]}"
            result.keep.append(backup)
    result.wal_before_segno = min(segment_of_lsn(parse_lsn(b.start_lsn), segment_size)
                                  for b in result.keep)
    return result
