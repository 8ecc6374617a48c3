"""The agent's copies of the repository in other regions: one thread per region brings
its copy up to date every ``interval`` (:func:`engine.repository.copies.copy_cluster`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from engine.config.schema import Config
from engine.repository.storage import Storage, open_storage

#: The agent's ``event(cluster)``: an ``on_event(kind, severity, message)`` for that cluster.
EventsFor = Callable[[str | None], Callable[[str, str, str], None]]


class RegionCopier:
    def __init__(self, config: Config, storage: Storage, region: str, event: EventsFor) -> None:
        self.config, self.storage, self.region, self.event = config, storage, region, event
        self.settings = config.repository.copies[region]
        self._failing: dict[str, str] = {}  # cluster -> the failure last recorded

    def round(self) -> None:
        """Copy every cluster once; a failure is recorded when it starts or changes, and
        its end when a later round succeeds."""
        from engine.repository.copies import copy_cluster

        for cluster in self.config.clusters:
            try:  # opening the target fails like a copy (an unmounted path), recorded, retried
                target = open_storage(self.settings.url)
                report = copy_cluster(self.storage, target, cluster, self.region)
            except Exception as exc:
                message = f"copy to region {self.region} failed: {exc.__class__.__name__}: {exc}"
                if self._failing.get(cluster) != message:
                    self._failing[cluster] = message
                    self.event(cluster)("copy_failed", "error", message)
                continue
            if self._failing.pop(cluster, None) is not None:
                self.event(cluster)("copy_recovered", "info",
                                    f"copy to region {self.region} works again ({report.backups_copied} "
                                    f"backups, {report.wal_copied} WAL files copied)")

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.round()
            stop.wait(self.settings.interval)
