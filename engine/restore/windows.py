"""What a restore can reach: the recovery window of each timeline, and named restore points.

A time target is reachable from the end of the oldest backup that can recover along the
timeline (an earlier point is before consistency) up to the last transaction the archive
holds on it: PostgreSQL stops at a time target at the first commit or abort after it, and a
target after the last one ends recovery with "recovery ended before configured recovery
target was reached". The last transaction's time is read from the archived WAL itself
(``pg_waldump`` over the newest segments of the timeline); when that cannot be done, the
time the newest segment was archived stands in, and ``end_basis`` says so.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import LifeboatError
from engine.repository import clusterinfo, layout
from engine.repository.manifest import BackupSummary
from engine.repository.storage import Storage
from engine.wal import archive
from engine.wal.names import format_lsn, parse_lsn, segment_name

if TYPE_CHECKING:
    from engine.context import Context

SEGMENTS_SCANNED = 16  # newest segments of a timeline searched for its last transaction
_XACT = re.compile(r"desc: (?:COMMIT|ABORT)(?:_PREPARED)? (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC")


@dataclass(frozen=True)
class RecoveryWindow:
    """The earliest and latest moment a time target can name on ``timeline``."""

    timeline: int
    start: datetime
    end: datetime
    first_backup: str = ""  # the backup whose end is ``start``
    last_segment: str = ""  # the newest archived segment of the timeline
    end_basis: str = ""  # how ``end`` was found

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment <= self.end

    def to_json(self) -> dict[str, object]:
        return {"timeline": self.timeline, "start": self.start.isoformat(), "end": self.end.isoformat(),
                "first_backup": self.first_backup, "last_segment": self.last_segment,
                "end_basis": self.end_basis}


@dataclass(frozen=True)
class NamedPoint:
    name: str
    time: datetime | None
    lsn: str

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "time": self.time.isoformat() if self.time else None, "lsn": self.lsn}


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def stopped(backup: BackupSummary) -> datetime:
    return _moment(backup.stopped_at)


def _ancestors(storage: Storage, cluster: str, timeline: int) -> dict[int, int]:
    """Parent timeline -> the LSN where ``timeline``'s history left it."""
    return {s.parent: s.switch_lsn for s in archive.read_history(storage, cluster, timeline) or []}


def _reaches(backup: BackupSummary, timeline: int, parents: dict[int, int]) -> bool:
    if backup.timeline == timeline:
        return True
    switch = parents.get(backup.timeline)
    return switch is not None and switch >= parse_lsn(backup.stop_lsn)


def waldump(ctx: Context, cluster: str) -> Path | None:
    """pg_waldump of the cluster's major version, if installed."""
    from engine.postgres import server

    try:
        info = clusterinfo.read(ctx.tiered, cluster)
        found = server.bin_dir_for(info.pg_version, ctx.config.clusters[cluster].bin_dir) / "pg_waldump"
    except LifeboatError:
        return None
    return found if found.exists() else None


def last_transaction(storage: Storage, cluster: str, timeline: int, segnos: list[int], size: int,
                     tool: Path | None) -> datetime | None:
    """The commit or abort time of the newest transaction in the newest archived segments of
    ``timeline`` (None: none found in the last :data:`SEGMENTS_SCANNED`, or no tool)."""
    if tool is None:
        return None
    with tempfile.TemporaryDirectory(prefix="lifeboat-waldump-") as scratch:
        for segno in reversed(segnos[-SEGMENTS_SCANNED:]):
            name = segment_name(timeline, segno, size)
            path = os.path.join(scratch, name)
            try:
                if not archive.get(storage, cluster, name, path):
                    continue
            except LifeboatError:
                return None  # a damaged segment: recovery stops before it in any case
            done = subprocess.run([str(tool), "--rmgr=Transaction", path], capture_output=True,
                                  text=True, env={**os.environ, "TZ": "UTC", "LC_ALL": "C"})
            os.unlink(path)
            times = _XACT.findall(done.stdout)
            if times:
                return max(_moment(t + "+00:00") for t in times)
    return None


def recovery_windows(ctx: Context, cluster: str) -> list[RecoveryWindow]:
    """Per timeline of the archive, the span of time a time target can name (oldest first);
    a timeline with no backup that recovers along it, or no transaction after its oldest such
    backup, has none."""
    storage = ctx.tiered
    size = clusterinfo.read(storage, cluster).wal_segment_size
    from engine.restore.physical import list_backups

    backups = list_backups(storage, cluster)
    tool = waldump(ctx, cluster)
    windows = []
    for timeline, segnos in archive.segments_by_timeline(storage, cluster, size).items():
        parents = _ancestors(storage, cluster, timeline)
        usable = sorted((b for b in backups if _reaches(b, timeline, parents)), key=stopped)
        if not usable or not segnos:
            continue
        last = segment_name(timeline, segnos[-1], size)
        end = last_transaction(storage, cluster, timeline, segnos, size, tool)
        basis = f"the last transaction in the archived WAL of timeline {timeline} (pg_waldump)"
        if end is None:
            end = datetime.fromtimestamp(storage.mtime(layout.wal_key(cluster, last)), UTC)
            basis = (f"the time {last} was archived (no transaction found by pg_waldump in the "
                     f"newest {SEGMENTS_SCANNED} segments" + ("" if tool else ": pg_waldump not found")
                     + ")")
        start = stopped(usable[0])
        if start <= end:
            windows.append(RecoveryWindow(timeline, start, end, usable[0].id, last, basis))
    return windows


def named_points(ctx: Context, cluster: str) -> list[NamedPoint]:
    """The restore points ``lifeboat restore-point`` (and drills) recorded, oldest first."""
    from engine.restore import points

    found = []
    storage = ctx.tiered
    for key in storage.list(layout.restore_points_prefix(cluster)):
        try:
            point = points.parse(storage.get(key), key)
        except LifeboatError:
            continue
        try:
            at: datetime | None = _moment(point.created_at)
        except ValueError:
            at = None
        found.append(NamedPoint(point.name, at, point.lsn))
    return sorted(found, key=lambda p: (parse_lsn(p.lsn), p.name))


def lsn_text(value: int) -> str:
    return format_lsn(value)
