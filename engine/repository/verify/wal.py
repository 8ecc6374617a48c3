"""The WAL archive: every archived file is decoded and checked (segments, partial
segments, backup and timeline history files), whether a backup needs it or not; a file a
backup needs that the archive lacks is named too. Each problem says what it breaks: the
backups that need the file to reach consistency, the point-in-time recovery window it
cuts short for the backups that read it on their way to the archive's end, or that no
backup needs it (still damage).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from engine.errors import LifeboatError, NotFoundError
from engine.repository import layout
from engine.repository.manifest import BackupSummary
from engine.repository.storage import Storage
from engine.repository.verify.report import NOT_NEEDED, Problem
from engine.wal import archive, timelines
from engine.wal import names as wal

KIND_OF = {"segment": "wal", "partial": "wal", "backup": "backup-history", "history": "history"}


def check_file(storage: Storage, cluster: str, name: str) -> Problem | None:
    """Decode one archived file (its SHA-256, that it decompresses to its size)."""
    key = layout.wal_key(cluster, name)
    kind = KIND_OF[wal.wal_file_kind(name) or "segment"]
    try:
        archive.check(storage, cluster, name)
    except NotFoundError:
        return None  # expired meanwhile
    except LifeboatError as exc:
        return Problem(kind, name, str(exc), key)
    return None


@dataclass(frozen=True)
class _Backup:
    id: str
    timeline: int
    first: int  # its own segments, start to stop: needed to reach consistency
    last: int
    spans: list[timelines.Span]  # what recovery to the archive's end reads
    history_file: str  # its backup history file's name


class WalNeeds:
    """What each backup needs of the archive, for the missing files and what damage breaks."""

    def __init__(self, storage: Storage, cluster: str, summaries: list[BackupSummary],
                 segment_size: int, archived: dict[int, list[int]]) -> None:
        self._storage = storage
        self._cluster = cluster
        self._size = segment_size
        self._archived = archived
        self.backups: list[_Backup] = []
        for summary in summaries:
            start, stop = wal.parse_lsn(summary.start_lsn), wal.parse_lsn(summary.stop_lsn)
            try:
                spans = timelines.recovery_path(storage, cluster, summary.timeline, start, stop,
                                                segment_size)
            except LifeboatError:  # a damaged history file: reported as such
                spans = [timelines.Span(summary.timeline, wal.segment_of_lsn(start, segment_size), None)]
            self.backups.append(_Backup(
                summary.id, summary.timeline, wal.segment_of_lsn(start, segment_size),
                wal.segment_before_lsn(stop, segment_size), spans,
                f"{summary.start_wal}.{start % segment_size:08X}.backup"))

    def required(self, backup: str | None = None) -> dict[str, str]:
        """Segment name -> the first backup needing it, for the backups' recovery to the
        archive's end (of one backup only, when given)."""
        needed: dict[str, str] = {}
        for b in self.backups:
            if backup is not None and b.id != backup:
                continue
            own = [(b.timeline, s) for s in range(b.first, b.last + 1)]
            for timeline, segno in own + timelines.required_segments(b.spans, self._archived):
                needed.setdefault(wal.segment_name(timeline, segno, self._size), b.id)
        return needed

    def affects(self, name: str) -> str:
        kind = wal.wal_file_kind(name)
        if kind == "partial":
            return f"{NOT_NEEDED} (a partial segment: recovery does not read it)"
        if kind == "backup":
            owner = next((b.id for b in self.backups if b.history_file == name), None)
            what = f"the backup history file of backup {owner}" if owner else "a backup history file"
            return f"{NOT_NEEDED} ({what}; recovery does not read it)"
        if kind == "history":
            timeline = wal.history_timeline(name)
            readers = [b.id for b in self.backups if b.timeline <= timeline]
            if not readers:
                return NOT_NEEDED
            return (f"recovery of {_backups(readers)} reads it (to follow timeline {timeline} or find "
                    "the newest timeline) and stops at it")
        segment = wal.parse_segment(name, self._size)
        tl, segno = segment.timeline, segment.segno
        consistency = [b.id for b in self.backups if b.timeline == tl and b.first <= segno <= b.last]
        later = [b.id for b in self.backups if b.id not in consistency and any(
            s.timeline == tl and s.first <= segno and (s.last is None or segno <= s.last) for s in b.spans)]
        said = []
        if consistency:
            said.append(f"{_backups(consistency)} cannot be restored (this segment is needed to reach "
                        "consistency)")
        if later:
            said.append(f"point-in-time recovery on timeline {tl} past "
                        f"{wal.format_lsn(segno * self._size)}{self._when(tl, segno)} is lost for "
                        f"{_backups(later)}: recovery stops there")
        return "; ".join(said) or NOT_NEEDED

    def _when(self, timeline: int, segno: int) -> str:
        """When the WAL before ``segno`` ended, about: the archiving of the segment before."""
        before = wal.segment_name(timeline, segno - 1, self._size)
        try:
            at = self._storage.mtime(layout.wal_key(self._cluster, before))
        except LifeboatError:
            return ""
        shown = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return f" (after about {shown}, when {before} was archived)"


def _backups(ids: list[str]) -> str:
    return f"backup{'s' if len(ids) > 1 else ''} {', '.join(ids)}"


def archived_segments(names: set[str], segment_size: int) -> dict[int, list[int]]:
    """Segment numbers per timeline, sorted, of the archived file names ``names``."""
    found: dict[int, list[int]] = {}
    for name in names:
        if wal.is_segment(name):
            segment = wal.parse_segment(name, segment_size)
            found.setdefault(segment.timeline, []).append(segment.segno)
    return {tl: sorted(segnos) for tl, segnos in sorted(found.items())}
