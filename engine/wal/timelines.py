"""Which timelines recovery from a backup follows, and which archived segments it reads.

With recovery_target_timeline 'latest', PostgreSQL follows the newest timeline whose
history descends from the backup's timeline after the backup's end. Each timeline is
read from the segment holding its switch point (its first segment) up to the segment
before the next switch; the last one to the end of the archive.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.repository.storage import Storage
from engine.wal import archive
from engine.wal.names import segment_of_lsn


@dataclass(frozen=True)
class Span:
    """Segments ``first``..``last`` are read from ``timeline`` (``last`` None: to the end)."""

    timeline: int
    first: int
    last: int | None


def recovery_path(storage: Storage, cluster: str, backup_timeline: int, start_lsn: int,
                  stop_lsn: int, segment_size: int, wanted: str | None = None) -> list[Span]:
    """The spans recovery reads, oldest first."""
    if wanted == "current":
        candidates = [backup_timeline]
    elif wanted and wanted.isdigit():
        candidates = [int(wanted)]
    else:
        candidates = [*sorted(archive.archived_histories(storage, cluster), reverse=True),
                      backup_timeline]
    start = segment_of_lsn(start_lsn, segment_size)
    for timeline in candidates:
        if timeline == backup_timeline:
            return [Span(timeline, start, None)]
        history = archive.read_history(storage, cluster, timeline) or []
        parents = [s.parent for s in history]
        if backup_timeline not in parents or history[parents.index(backup_timeline)].switch_lsn < stop_lsn:
            continue
        switches = history[parents.index(backup_timeline):]
        spans, first = [], start
        for switch in switches:
            begins = segment_of_lsn(switch.switch_lsn, segment_size)
            spans.append(Span(switch.parent, first, begins - 1))
            first = begins
        spans.append(Span(timeline, first, None))
        return spans
    return [Span(backup_timeline, start, None)]


def required_segments(spans: list[Span], archived: dict[int, list[int]]) -> list[tuple[int, int]]:
    """Every (timeline, segment number) recovery to the end of the archive reads."""
    final = spans[-1]
    on_final = [s for s in archived.get(final.timeline, []) if s >= final.first]
    end = max(on_final) if on_final else final.first - 1
    needed = []
    for span in spans:
        last = end if span.last is None else span.last
        needed.extend((span.timeline, segno) for segno in range(span.first, last + 1))
    return needed
