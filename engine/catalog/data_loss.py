"""Data-loss events: work that was, or would have been, lost, recorded where it is found.

A restore that stopped short of its target, WAL missing or damaged in the archive, a
corrupt block or page, rows a drill's restore lacked. Each is a catalog event of kind
``data_loss`` whose data carries the cause, its severity and the affected service; the
exporter counts them (``lifeboat_data_loss_events_total``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.errors import RecoveryShortfallError

if TYPE_CHECKING:
    from engine.catalog.store import Catalog
    from engine.config.schema import Config

EVENT_KIND = "data_loss"
#: Each cause and the severity it is recorded with.
CAUSES: dict[str, str] = {
    "restore_short_of_target": "critical",  # recovery ended before the requested point
    "wal_gap": "critical",  # a WAL segment missing from, or damaged in, the archive
    "corrupt_block": "critical",  # a block or page that fails its checksum
    "drill_rows_lost": "critical",  # a drill's restore lacks committed rows
}

#: Kinds of verify problems in the WAL archive, and those that lose nothing (an object
#: Lifeboat did not write; verify's own record, written anew by the verify that finds it).
WAL_KINDS = ("wal", "history", "backup-history")
NOT_LOSS = ("unknown", "verify-state")


@dataclass(frozen=True)
class Loss:
    cause: str
    detail: str


def from_error(exc: BaseException) -> list[Loss]:
    """What a failed job's error says was lost."""
    if isinstance(exc, RecoveryShortfallError):
        return [Loss(exc.cause, str(exc).splitlines()[0])]
    return []


def from_result(kind: str, result: dict[str, Any] | None) -> list[Loss]:
    """What a finished job's result says was lost (drills record their own)."""
    if not result:
        return []
    found: list[Loss] = []
    if kind == "backup" and result.get("corrupt_pages"):
        files = ", ".join(result.get("corrupt_files", [])[:5])
        found.append(Loss("corrupt_block", f"{result['corrupt_pages']} corrupt pages read ({files})"))
    if kind == "verify":
        by_cause: dict[str, list[str]] = {}
        for problem in result.get("problems", []):
            if problem.get("kind") in NOT_LOSS:
                continue
            cause = "wal_gap" if problem.get("kind") in WAL_KINDS else "corrupt_block"
            by_cause.setdefault(cause, []).append(f"{problem.get('kind')} {problem.get('item')}")
        for cause, items in by_cause.items():
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            found.append(Loss(cause, f"verify found {len(items)}: {', '.join(items[:3])}{more}"))
    return found


def record(catalog: Catalog, config: Config, cluster: str, losses: list[Loss],
           job_id: int | None = None) -> None:
    """One event per loss: a job's problems of one cause are one event."""
    service = config.service_of(cluster) if cluster in config.clusters else cluster
    for loss in losses:
        severity = CAUSES[loss.cause]
        catalog.add_event(cluster, EVENT_KIND, f"data loss ({loss.cause}): {loss.detail}",
                          severity=severity, job_id=job_id,
                          data={"cause": loss.cause, "severity": severity, "service": service})
