"""The Prometheus exporter: a refresher thread caches each part's state, and a scrape
renders the cache (prometheus-client's ``Collector``), so a scrape costs the same whether
the database is up, slow or down.

The agent serves it beside its job loop; ``lifeboat exporter`` serves it alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from collectors import sources
from collectors.host import HostMonitor
from collectors.metrics import METRICS
from collectors.snapshot import Snapshot
from engine.errors import LifeboatError
from engine.version import VERSION

if TYPE_CHECKING:
    from engine.config.schema import Config
    from engine.repository.storage.base import Storage

log = logging.getLogger(__name__)
PARTS = ("postgres", "catalog", "repository", "host")


class Refresher:
    """Keeps the newest snapshot of every part; :meth:`refresh` is one bounded round."""

    def __init__(self, config: Config, storage: Storage, measure_objectives: bool = True) -> None:
        self.config, self.storage = config, storage
        self.measure_objectives = measure_objectives
        self.parts: dict[str, Snapshot] = {}
        self.errors: dict[str, int] = dict.fromkeys(PARTS, 0)
        self.up = {"catalog": 0, "repository": 0}
        self.last_refresh = 0.0
        self.last_duration = 0.0
        self._lock = threading.Lock()
        self._host = HostMonitor()
        self._catalog: Any = None
        self._monitor: Any = None
        self._repository_at = 0.0
        self._jobs_ended: int | None = None  # jobs ended, at the last catalog refresh
        self._problems: dict[str, str | None] = {}
        self._static = Snapshot()
        sources.drill_periods(self._static, config, time.time())
        self._static.set("lifeboat_build_info", 1, version=VERSION)

    def snapshot(self) -> Snapshot:
        merged = Snapshot()
        with self._lock:
            merged.merge(self._static)
            for part in self.parts.values():
                merged.merge(part)
            merged.set("lifeboat_exporter_last_refresh_timestamp_seconds", self.last_refresh)
            merged.set("lifeboat_exporter_refresh_duration_seconds", self.last_duration)
            for part, count in self.errors.items():
                merged.set("lifeboat_exporter_refresh_errors_total", count, part=part)
            merged.set("lifeboat_catalog_up", self.up["catalog"])
            merged.set("lifeboat_repository_up", self.up["repository"])
        return merged

    def refresh(self) -> None:
        started = time.monotonic()
        now = time.time()
        timeout = self.config.exporter.query_timeout
        def servers(snapshot: Snapshot) -> None:
            for cluster in self.config.clusters:
                self._note(f"postgres {cluster}", sources.postgres(snapshot, self.config, cluster, timeout))

        self._run("postgres", servers)
        catalog_changed = self._run_catalog(now)
        due = time.monotonic() >= self._repository_at or catalog_changed
        if due:
            ok = self._run("repository", lambda s: [sources.repository(s, self.config, self.storage, c)
                                                    for c in self.config.clusters])
            self.up["repository"] = int(ok)
            self._repository_at = time.monotonic() + self.config.exporter.repository_interval
        self._run("host", lambda s: sources.host(s, self._host))
        with self._lock:
            self.last_refresh = time.time()
            self.last_duration = time.monotonic() - started

    def _run_catalog(self, now: float) -> bool:
        """Refresh the catalog part; True when a job ended since the last round (so the
        repository is read again now rather than at its interval)."""
        from engine.catalog.store import Catalog

        changed = False

        def read(snapshot: Snapshot) -> None:
            nonlocal changed
            if self._catalog is None:
                self._catalog = Catalog.open(self.config)
            if self.measure_objectives:
                self._measure_objectives(now)
            ended = sources.catalog(snapshot, self.config, self._catalog, now)
            changed = ended != self._jobs_ended
            self._jobs_ended = ended

        ok = self._run("catalog", read)
        self.up["catalog"] = int(ok)
        if not ok and self._catalog is not None:
            try:
                self._catalog.close()
            finally:
                self._catalog = None
        return changed

    def _measure_objectives(self, now: float) -> None:
        """Measure objectives the agent has not measured lately (an exporter on its own)."""
        from engine.catalog.objectives import ObjectivesMonitor
        from engine.errors import LifeboatError

        interval = self.config.agent.objectives_interval
        for cluster in self.config.clusters:
            record = self._catalog.latest_objectives(cluster)
            if record is None or now - record.at > 2 * interval:
                if self._monitor is None:
                    self._monitor = ObjectivesMonitor(self.config, self._catalog, self.storage)
                try:
                    self._monitor.measure(cluster, now)
                    self._note(f"objectives {cluster}", None)
                except LifeboatError as exc:  # not initialised yet, say: the rest goes on
                    self._note(f"objectives {cluster}", str(exc))

    def _run(self, part: str, fill: Any) -> bool:
        snapshot = Snapshot()
        try:
            fill(snapshot)
        except Exception as exc:  # a part that fails is exported as such; the others go on
            self._note(part, f"{exc.__class__.__name__}: {exc}")
            with self._lock:
                self.errors[part] += 1
                self.parts.pop(part, None)
            return False
        self._note(part, None)
        with self._lock:
            self.parts[part] = snapshot
        return True

    def _note(self, what: str, problem: str | None) -> None:
        """Log a problem when it appears or changes, and its end (not every refresh)."""
        before = self._problems.get(what)
        if problem != before:
            if problem is not None:
                log.warning("exporter: %s: %s", what, problem)
            elif before is not None:
                log.warning("exporter: %s: answers again", what)
            self._problems[what] = problem

    def run(self, stop: threading.Event) -> None:
        """Refresh every ``refresh_interval`` until ``stop`` is set."""
        while not stop.is_set():
            self.refresh()
            stop.wait(self.config.exporter.refresh_interval)

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None


class LifeboatCollector(Collector):
    """Renders the refresher's cached snapshot (no I/O during a scrape)."""

    def __init__(self, refresher: Refresher) -> None:
        self.refresher = refresher

    def collect(self) -> Iterator[Metric]:
        snapshot = self.refresher.snapshot()
        for metric in METRICS:
            if metric.kind == "histogram":
                family: Any = HistogramMetricFamily(metric.name, metric.help, labels=metric.labels)
                for labels, hist in snapshot.histograms.get(metric.name, {}).items():
                    buckets = [(_le(b), float(c)) for b, c in zip(hist.bounds, hist.buckets, strict=True)]
                    family.add_metric(list(labels), [*buckets, ("+Inf", float(hist.count))], hist.total)
            else:
                cls = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
                family = cls(metric.name, metric.help, labels=metric.labels)
                for labels, value in snapshot.values.get(metric.name, {}).items():
                    family.add_metric(list(labels), value)
            yield family


def _le(bound: float) -> str:
    return repr(float(bound))


def registry_for(refresher: Refresher) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LifeboatCollector(refresher))
    return registry


class ListenError(LifeboatError):
    """The exporter's address could not be bound (taken, or not an address of this host)."""


class Exporter:
    """The refresher thread and the HTTP server on ``/metrics``."""

    def __init__(self, config: Config, storage: Storage, address: str | None = None,
                 port: int | None = None, measure_objectives: bool = True) -> None:
        self.config = config
        self.address = address or config.exporter.address
        self.port = config.exporter.port if port is None else port
        self.refresher = Refresher(config, storage, measure_objectives)
        self.registry = registry_for(self.refresher)
        self._server: Any = None
        self._threads: list[threading.Thread] = []

    def start(self, stop: threading.Event) -> None:
        """Refresh once (so the first scrape has data), then serve and refresh in threads;
        ListenError when the address cannot be served."""
        from prometheus_client import start_http_server

        self.refresher.refresh()
        try:
            self._server, server_thread = start_http_server(self.port, self.address, self.registry)
        except OSError as exc:
            raise ListenError(f"cannot serve metrics on {self.address}:{self.port}: "
                              f"{exc.strerror or exc} (set [exporter] port, or --port)") from None
        refresh_thread = threading.Thread(target=self.refresher.run, args=(stop,), daemon=True,
                                          name="exporter-refresh")
        refresh_thread.start()
        self._threads = [server_thread, refresh_thread]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for thread in self._threads:
            thread.join(timeout=10)
        self.refresher.close()
