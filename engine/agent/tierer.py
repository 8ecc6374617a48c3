"""The agent's tiering: every ``[repository.tiers] interval``, each cluster's backups are moved
to the tier their age says and each tier's copies repaired
(:func:`engine.repository.tiers.job.run`), and what happened is recorded as events: each move
and repair, a failure when it starts or changes, backups below their tier's replication."""

from __future__ import annotations

from engine.agent.copier import EventsFor
from engine.config.schema import Config
from engine.repository.storage import Storage


class Tierer:
    def __init__(self, config: Config, storage: Storage, event: EventsFor) -> None:
        self.config, self.storage, self.event = config, storage, event
        self._tiers: object | None = None
        self._failing: dict[str, str] = {}  # cluster -> the failure last recorded
        self._below: dict[str, str] = {}  # cluster -> the shortfall last recorded

    def round(self) -> None:
        from engine.repository.tiers import open_tiers
        from engine.repository.tiers.job import run

        if self._tiers is None:
            self._tiers = open_tiers(self.config, self.storage)
        for cluster in self.config.clusters:
            record = self.event(cluster)
            try:
                report = run(self._tiers, cluster, self.config.retention_for(cluster).gc_grace)  # type: ignore[arg-type]
            except Exception as exc:
                self._once(self._failing, cluster, record, "tiering_failed", "error",
                           f"tiering failed: {exc.__class__.__name__}: {exc}")
                continue
            for moved in report.moved:
                record("backup_tiered", "info", f"backup {moved['backup']} moved from {moved['from']} to "
                       f"{moved['to']} ({moved['copies']} copies verified)")
            for repaired in report.repaired:
                record("tier_repaired", "info", f"backup {repaired['backup']} copied again in "
                       f"{repaired['tier']}: {repaired['copies']} of {repaired['replication']} copies")
            problems = report.failed + report.waiting
            if problems:
                self._once(self._failing, cluster, record, "tiering_failed", "warning",
                           "tiering: " + "; ".join(problems))
            elif self._failing.pop(cluster, None) is not None:
                record("tiering_recovered", "info", "tiering works again")
            below = "; ".join(f"backup {b['backup']} has {b['copies']} of the {b['replication']} copies "
                              f"{b['tier']} needs" for b in report.below_replication)
            if below:
                self._once(self._below, cluster, record, "below_replication", "warning", below)
            else:
                self._below.pop(cluster, None)

    @staticmethod
    def _once(seen: dict[str, str], cluster: str, record: object, kind: str, severity: str,
              message: str) -> None:
        if seen.get(cluster) != message:
            seen[cluster] = message
            record(kind, severity, message)  # type: ignore[operator]
