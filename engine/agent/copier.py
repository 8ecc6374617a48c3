"""The agent's copies of the repository in other regions: two threads per region.

- The copy thread, every ``interval``: for each cluster, brings the copy up to date
  (:func:`engine.repository.copies.copy_cluster`), then applies the copy's retention to it
  (:func:`engine.repository.region.expire_copy`, when the policy expires after each round),
  then validates it when ``validate_interval`` has passed since the last validation
  (:func:`engine.repository.copy_validation.validate`).
- The shipping thread, every ``wal_interval``: ships the newest WAL to the copy
  (:func:`engine.repository.copies.ship_wal`) and measures the shipping delay before each
  round (the age of the oldest archived WAL file the copy lacks), so WAL reaches the copy
  within ``max_delay`` while a long backup copy runs.

Both write through one :class:`~engine.repository.throttle.TokenBucket` per region (the
``bandwidth_limit``), so together they stay within it. What they measure is recorded in the
catalog (:meth:`engine.catalog.store.Catalog.set_copy_state`: the bytes copied and the rate
achieved, the shipping delay, the last validation), where the exporter reads it; failures,
recoveries and failed validations are events. Each failure is recorded when it starts or
changes, and its end when a later round succeeds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.config.schema import Config
from engine.repository.encryption import attach, keys_of
from engine.repository.storage import Storage, open_storage
from engine.repository.throttle import Meter, ThrottledStorage, TokenBucket

if TYPE_CHECKING:
    from engine.catalog.store import Catalog
    from engine.repository.copy_validation import ValidationReport
    from engine.repository.retention import Policy

#: The agent's ``event(cluster)``: an ``on_event(kind, severity, message)`` for that cluster.
EventsFor = Callable[[str | None], Callable[[str, str, str], None]]

#: A round must move this much before its rate counts as the throughput achieved (a WAL
#: file or two is mostly latency, not bandwidth).
RATE_MIN_BYTES = 1024 * 1024


class RegionCopier:
    def __init__(self, config: Config, storage: Storage, region: str, event: EventsFor,
                 catalog: Catalog | None = None) -> None:
        self.config, self.storage, self.region, self.event = config, storage, region, event
        self.catalog = catalog
        self.settings = config.repository.copies[region]
        limit = self.settings.bandwidth_limit
        self.bucket = TokenBucket(limit) if limit else None
        self._failing: dict[tuple[str, str], str] = {}  # (cluster, part) -> the failure last recorded
        self._lock = threading.Lock()
        self._meters: dict[str, Meter] = {c: Meter() for c in config.clusters}
        self._transfer: dict[str, dict[str, Any]] = {}
        self._validated: dict[str, float] = {}
        # cluster -> when a shipping round last reached the copy: while it cannot, the delay
        # grows from then (from the agent's start for a copy not reached yet)
        self._shipped_ok: dict[str, float] = dict.fromkeys(config.clusters, time.time())
        self._load()

    # state ----------------------------------------------------------------------------------

    def _load(self) -> None:
        """What an earlier agent recorded: the byte counter goes on, validation stays hourly."""
        if self.catalog is None:
            return
        try:
            states = self.catalog.copy_states()
        except Exception:
            return
        for (cluster, region, part), (at, data) in states.items():
            if region != self.region or cluster not in self.config.clusters:
                continue
            if part == "transfer":
                self._transfer[cluster] = dict(data)
            elif part == "validation":
                self._validated[cluster] = at

    def _record(self, cluster: str, part: str, data: dict[str, Any], at: float | None = None) -> None:
        if self.catalog is None:
            return
        try:
            self.catalog.set_copy_state(cluster, self.region, part, data, at)
        except Exception as exc:  # the copy went on; the measurement is lost, said once
            self._fail(cluster, "record", f"recording the copy's state in the catalog failed: {exc}")

    def _fail(self, cluster: str, part: str, message: str, kind: str = "copy_failed",
              severity: str = "error") -> None:
        if self._failing.get((cluster, part)) != message:
            self._failing[(cluster, part)] = message
            self.event(cluster)(kind, severity, message)

    def _recovered(self, cluster: str, part: str, kind: str, message: str) -> None:
        if self._failing.pop((cluster, part), None) is not None:
            self.event(cluster)(kind, "info", message)

    def _target(self, cluster: str) -> tuple[Storage, ThrottledStorage]:
        """The copy, and the copy behind the region's limit, metered per cluster."""
        raw = attach(open_storage(self.settings.url), keys_of(self.storage))  # sealed alike
        return raw, ThrottledStorage(raw, self.bucket, self._meters.setdefault(cluster, Meter()))

    def _measure(self, cluster: str) -> None:
        """Record the bytes copied since the last call and, when enough moved, the rate."""
        with self._lock:
            moved, seconds = self._meters.setdefault(cluster, Meter()).take()
            state = self._transfer.setdefault(cluster, {"bytes_total": 0, "rate": None})
            state["bytes_total"] = int(state.get("bytes_total") or 0) + moved
            if moved >= RATE_MIN_BYTES and seconds > 0:
                state["rate"] = moved / seconds
                state["rate_at"] = time.time()
            state["limit"] = self.settings.bandwidth_limit or 0
            if moved or "recorded" not in state:
                state["recorded"] = True
                self._record(cluster, "transfer", state)

    # the copy thread ------------------------------------------------------------------------

    def round(self) -> None:
        """Copy every cluster once, then expire and (when due) validate its copy. Without a
        shipping thread (``wal_interval = 0``) the WAL is shipped, and its delay measured, first."""
        from engine.repository.copies import copy_cluster

        if self.settings.wal_interval <= 0:
            self.ship()
        for cluster in self.config.clusters:
            try:  # opening the target fails like a copy (an unmounted path), recorded, retried
                raw, target = self._target(cluster)
                policy = self.policy(cluster, raw)
                report = copy_cluster(self.storage, target, cluster, self.region, policy)
            except Exception as exc:
                self._fail(cluster, "copy", f"copy to region {self.region} failed: "
                                            f"{exc.__class__.__name__}: {exc}")
                continue
            finally:
                self._measure(cluster)
            self._recovered(cluster, "copy", "copy_recovered",
                            f"copy to region {self.region} works again ({report.backups_copied} "
                            f"backups, {report.wal_copied} WAL files copied)")
            self.expire(cluster, raw, policy)
            if self.validation_due(cluster):
                self.validate(cluster, raw, policy)

    def policy(self, cluster: str, copy: Storage) -> Policy | None:
        """The copy's retention (None when the primary cannot say what it keeps: then the
        copy copies everything and expires nothing)."""
        from engine.repository.region import copy_policy

        try:
            return copy_policy(self.config, cluster, self.region, self.storage, copy)
        except Exception:
            return None

    def expire(self, cluster: str, copy: Storage, policy: Policy | None = None) -> None:
        """Apply the copy's retention after a round (when its policy expires after rounds);
        ``policy``: the round's (None: worked out now, saying why when it cannot be)."""
        from engine.errors import LockBusyError
        from engine.repository.manifest import list_backup_ids
        from engine.repository.region import copy_policy, expire_copy

        try:
            if not list_backup_ids(copy, cluster):
                return  # nothing to expire (a new cluster: the primary holds none either)
            policy = policy or copy_policy(self.config, cluster, self.region, self.storage, copy)
            if not policy.expire_after:
                return
            report = expire_copy(self.config, cluster, self.region, self.storage, copy, policy=policy)
        except LockBusyError:
            return  # someone expires or copies it by hand: the next round
        except Exception as exc:
            self._fail(cluster, "expire", f"expire of the copy in region {self.region} did not run: "
                                          f"{exc.__class__.__name__}: {exc}", "copy_expire_failed",
                       "warning")
            return
        self._recovered(cluster, "expire", "copy_expire_recovered",
                        f"expire of the copy in region {self.region} runs again")
        if report.plan.expire or report.wal_removed:
            gone = [f"backups {', '.join(b.id for b in report.plan.expire)}"] if report.plan.expire else []
            if report.wal_removed:
                gone.append(f"{len(report.wal_removed)} WAL files no kept backup needs")
            self.event(cluster)("copy_expired", "info",
                                f"expired {' and '.join(gone)} from the copy in region {self.region}")

    def validation_due(self, cluster: str, now: float | None = None) -> bool:
        every = self.settings.validate_interval
        last = self._validated.get(cluster)
        return every > 0 and (last is None or (time.time() if now is None else now) - last >= every)

    def validate(self, cluster: str, copy: Storage | None = None,
                 policy: Policy | None = None) -> ValidationReport | None:
        """Validate the copy of ``cluster`` now; record the outcome (and an event when it fails
        or recovers)."""
        from engine.repository import copy_validation

        started = time.time()
        self._validated[cluster] = started
        try:
            copy = copy if copy is not None else attach(open_storage(self.settings.url),
                                                        keys_of(self.storage))
            policy = policy or self.policy(cluster, copy)  # None: compared without what it keeps
            report = copy_validation.validate(self.storage, copy, cluster, self.region, policy,
                                              self.settings.validate_sample,
                                              copy_validation.grace(self.settings))
        except Exception as exc:
            message = (f"validation of the copy in region {self.region} could not run: "
                       f"{exc.__class__.__name__}: {exc}")
            self._record(cluster, "validation", {"ok": False, "problems": 1, "details": [message],
                                                 "error": str(exc)}, started)
            self._fail(cluster, "validation", message, "copy_validation_failed")
            return None
        self._record(cluster, "validation", copy_validation.record_of(report), started)
        if report.ok:
            self._recovered(cluster, "validation", "copy_validation_recovered",
                            f"the copy in region {self.region} validates again")
        else:
            self._fail(cluster, "validation", copy_validation.summary_of(report), "copy_validation_failed")
        return report

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.round()
            stop.wait(self.settings.interval)

    # the shipping thread --------------------------------------------------------------------

    def ship(self) -> None:
        """Ship every cluster's newest WAL once, recording the delay found before it."""
        from engine.repository.copies import ship_wal

        for cluster in self.config.clusters:
            now = time.time()
            try:
                _raw, target = self._target(cluster)
                report = ship_wal(self.storage, target, cluster, self.region, now)
            except Exception as exc:
                since = self._shipped_ok.setdefault(cluster, now)
                self._record(cluster, "shipping", {"delay": now - since, "ok": False,
                                                   "error": str(exc)}, now)
                self._fail(cluster, "shipping", f"WAL shipping to region {self.region} failed: "
                                                f"{exc.__class__.__name__}: {exc}",
                           "wal_shipping_failed")
                continue
            finally:
                self._measure(cluster)
            self._shipped_ok[cluster] = now
            self._record(cluster, "shipping", {"delay": report.delay, "ok": True,
                                               "copied": report.wal_copied, "seconds": report.seconds},
                         now)
            self._recovered(cluster, "shipping", "wal_shipping_recovered",
                            f"WAL shipping to region {self.region} works again")

    def run_shipping(self, stop: threading.Event) -> None:
        every = self.settings.wal_interval
        while not stop.is_set():
            started = time.monotonic()
            self.ship()
            stop.wait(max(0.0, every - (time.monotonic() - started)))
