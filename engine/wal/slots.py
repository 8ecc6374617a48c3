"""The streaming receiver's replication slot: its state, and recreating one that is lost.

A physical slot keeps WAL on the primary until the receiver has it. When it is dropped, or
invalidated (``pg_replication_slots.wal_status = 'lost'``: ``max_slot_wal_keep_size`` was
exceeded), the receiver cannot resume: :func:`repair_slot` creates it again (through
:func:`engine.wal.streaming.ensure_slot`, as the receiver's supervisor does). A new slot
starts at the primary's current redo point, so WAL between what the repository holds and
that point can no longer be streamed; :func:`repair_slot` names it (the first missing
segment, the LSN range) and says which of those segments are still in ``pg_wal``, where
``archive_command`` may still archive them, and which are gone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import psycopg

from engine.config.schema import Config
from engine.errors import ClusterSetupError
from engine.postgres import connection as postgres
from engine.repository import layout
from engine.repository.storage import Storage
from engine.wal import names as wal
from engine.wal.streaming import ensure_slot


@dataclass(frozen=True)
class SlotState:
    name: str
    exists: bool
    slot_type: str | None = None
    wal_status: str | None = None  # reserved, extended, unreserved, lost
    restart_lsn: str | None = None
    active_pid: int | None = None

    @property
    def usable(self) -> bool:
        return self.exists and self.slot_type == "physical" and self.wal_status != "lost" \
            and self.restart_lsn is not None


@dataclass
class SlotRepair:
    """What :func:`repair_slot` found and did."""

    cluster: str
    before: SlotState
    recreated: bool = False
    restart_lsn: str | None = None  # where the (new) slot starts
    timeline: int | None = None
    archive_end: str | None = None  # the repository (and streamed directory) hold WAL up to here
    missing: list[str] = field(default_factory=list)  # segments neither streamed nor archived
    in_pg_wal: list[str] = field(default_factory=list)  # of those, still on the primary

    @property
    def missing_range(self) -> tuple[str, str] | None:
        if not self.missing or self.archive_end is None or self.restart_lsn is None:
            return None
        return self.archive_end, self.restart_lsn


def slot_state(conn: psycopg.Connection, slot: str) -> SlotState:
    row = conn.execute("SELECT slot_type, wal_status, restart_lsn::text, active_pid "
                       "FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
    if row is None:
        return SlotState(slot, False)
    return SlotState(slot, True, row[0], row[1], row[2], row[3])


def _held_segments(storage: Storage, config: Config, cluster: str, timeline: int,
                   segment_size: int) -> set[int]:
    """Segment numbers of ``timeline`` the repository or the streaming directory holds."""
    held = set()
    names = [key.rsplit("/", 1)[-1] for key in storage.list(layout.wal_prefix(cluster))]
    try:
        names += os.listdir(config.streaming_directory(cluster))
    except OSError:
        pass
    for name in names:
        if wal.is_segment(name):
            segment = wal.parse_segment(name, segment_size)
            if segment.timeline == timeline:
                held.add(segment.segno)
    return held


def repair_slot(config: Config, cluster: str, storage: Storage, timeout: float = 10.0) -> SlotRepair:
    """Recreate the cluster's streaming slot when it is missing or lost; say what WAL the
    new slot cannot bring back. A usable slot is left alone (``recreated`` False).
    PostgresError when the server cannot be reached; ClusterSetupError when the slot's name
    is taken by a logical slot."""
    settings = config.cluster(cluster)
    slot = settings.streaming.slot
    limit = max(1.0, min(settings.connect_timeout, timeout))
    with postgres.connect(postgres.endpoint_of(settings), cluster, limit, statement_timeout=limit) as conn:
        before = slot_state(conn, slot)
        repair = SlotRepair(cluster, before)
        if before.exists and before.slot_type != "physical":
            raise ClusterSetupError(f"replication slot '{slot}' exists but is {before.slot_type}: "
                                    f"set another slot in [clusters.{cluster}.streaming]")
        if before.usable:
            repair.restart_lsn = before.restart_lsn
            return repair
        if before.exists:  # lost: drop it (ending the walsender that still holds it)
            if before.active_pid is not None:
                conn.execute("SELECT pg_terminate_backend(%s)", (before.active_pid,))
                conn.execute("SELECT pg_sleep(0.2)")
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        repair.recreated = ensure_slot(conn, cluster, slot)
        after = slot_state(conn, slot)
        repair.restart_lsn = after.restart_lsn
        row = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
        repair.timeline = int(row[0]) if row else None
        size = int(postgres.value(conn, "SELECT setting::bigint FROM pg_settings "
                                        "WHERE name = 'wal_segment_size'"))
        in_pg_wal = {str(r[0]) for r in conn.execute("SELECT name FROM pg_ls_waldir()").fetchall()}
    if repair.restart_lsn is None or repair.timeline is None:
        return repair
    start_segno = wal.segment_of_lsn(wal.parse_lsn(repair.restart_lsn), size)
    held = _held_segments(storage, config, cluster, repair.timeline, size)
    below = [n for n in held if n < start_segno]
    if not below:
        repair.archive_end = None
        return repair  # nothing of this timeline before the slot: no gap can be named
    newest = max(below)
    repair.archive_end = wal.format_lsn((newest + 1) * size)
    repair.missing = [wal.segment_name(repair.timeline, n, size) for n in range(newest + 1, start_segno)
                      if n not in held]
    repair.in_pg_wal = [name for name in repair.missing if name in in_pg_wal]
    return repair
