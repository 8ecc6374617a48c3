"""The agent's main loop: one process that fires schedules, runs jobs, pushes WAL ahead
(async archiving), supervises streaming receivers and measures recovery objectives.

Each part is ticked from here and its failures are recorded as events; one part
failing never stops the others. Collaborators come in as arguments (the wiring in
``lifeboat/agent_command.py`` builds them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.agent.executor import Executor
from engine.agent.scheduler import Notify, Scheduler
from engine.catalog.objectives import ObjectivesMonitor
from engine.catalog.store import Catalog
from engine.config.schema import Config
from engine.repository.storage.base import Storage

ERROR_REPEAT = 300.0  # the same failure of a part is recorded at most every 5 minutes


class Agent:
    def __init__(self, config: Config, catalog: Catalog, storage: Storage, job_command: list[str],
                 notify: Notify | None = None) -> None:
        self.config, self.catalog, self.storage = config, catalog, storage
        self.executor = Executor(config, catalog, job_command, config.agent.state_dir / "jobs")
        self.scheduler = Scheduler(config, catalog, notify)
        self.objectives = ObjectivesMonitor(config, catalog, storage)
        self.streamers: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._errors: dict[str, tuple[str, float]] = {}
        self._periodic: list[tuple[str, float, Callable[[], object], Callable[[], object] | None]] = []

    def add_periodic(self, name: str, interval: float, tick: Callable[[], object],
                     close: Callable[[], object] | None = None) -> None:
        """Run ``tick()`` every ``interval`` seconds in a thread of its own, from ``start`` until
        the agent stops, then ``close()``. Failures are recorded as the agent's other parts'
        are and never stop it. The wiring adds parts the engine does not know this way (the
        alert loop: engine code never imports alerts)."""
        self._periodic.append((name, interval, tick, close))

    def event(self, cluster: str | None) -> Callable[[str, str, str], None]:
        """An ``on_event(kind, severity, message)`` callback recording into the catalog."""
        def record(kind: str, severity: str, message: str) -> None:
            self.catalog.add_event(cluster, kind, message, severity=severity)
        return record

    def start(self, stop: threading.Event) -> None:
        interrupted = self.executor.recover_interrupted()
        self.catalog.add_event(None, "agent_started", f"agent {self.executor.agent} started"
                               + (f"; jobs {interrupted} had been interrupted" if interrupted else ""))
        for cluster, settings in self.config.clusters.items():
            if settings.archive.mode == "async":
                from engine.wal.async_archive import AsyncArchiver

                archiver = AsyncArchiver(self.config, cluster, self.storage, self.event(cluster))
                thread = threading.Thread(target=archiver.run, args=(stop,), daemon=True,
                                          name=f"wal-async-{cluster}")
                thread.start()
                self._threads.append(thread)
            if settings.streaming.enabled:
                from engine.wal.streaming import StreamingSupervisor

                streamer = StreamingSupervisor(self.config, cluster, self.storage, self.event(cluster))
                self._guard(f"streaming {cluster}", cluster, streamer.start)
                self.streamers.append(streamer)
        self._start_copies(stop)
        for name, interval, tick, close in self._periodic:
            thread = threading.Thread(target=self._run_periodic, args=(stop, name, interval, tick, close),
                                      daemon=True, name=name)
            thread.start()
            self._threads.append(thread)

    def _run_periodic(self, stop: threading.Event, name: str, interval: float, tick: Callable[[], object],
                      close: Callable[[], object] | None) -> None:
        try:
            while not stop.is_set():
                started = time.monotonic()
                self._guard(name, None, tick)
                stop.wait(max(0.0, interval - (time.monotonic() - started)))
        finally:
            if close is not None:
                self._guard(name, None, close)

    def restart_streaming(self, cluster: str, timeout: float = 30.0) -> str:
        """Restart ``cluster``'s streaming receiver (stop it, start it again with its slot);
        what was done. Called from another thread (remediation): the receiver is started by
        the agent's loop, which ticks the supervisor, so this waits for it up to ``timeout``
        seconds. UsageError when the cluster has no streaming in this agent; ClusterSetupError
        when the receiver did not start again in time (the error says why)."""
        for streamer in self.streamers:
            if streamer.cluster == cluster:
                return str(streamer.restart(timeout))
        from engine.errors import UsageError

        raise UsageError(f"cluster '{cluster}' has no streaming receiver in this agent "
                         f"([clusters.{cluster}.streaming] enabled = true starts one)")

    def _start_copies(self, stop: threading.Event) -> None:
        from engine.agent.copier import RegionCopier

        for region, settings in self.config.repository.copies.items():
            copier = RegionCopier(self.config, self.storage, region, self.event, self.catalog)
            runs = [(copier.run, f"copy-{region}")]
            if settings.wal_interval > 0:  # WAL between the full rounds, within max_delay
                runs.append((copier.run_shipping, f"ship-{region}"))
            for target, name in runs:
                thread = threading.Thread(target=target, args=(stop,), daemon=True, name=name)
                thread.start()
                self._threads.append(thread)

    def run(self, stop: threading.Event, duration: float | None = None) -> None:
        """Loop until ``stop`` is set (or ``duration`` seconds passed)."""
        self.start(stop)
        ends = None if duration is None else time.monotonic() + duration
        next_objectives = 0.0
        try:
            while not stop.is_set() and (ends is None or time.monotonic() < ends):
                self.tick()
                if time.monotonic() >= next_objectives:
                    next_objectives = time.monotonic() + self.config.agent.objectives_interval
                    for cluster in self.config.clusters:
                        self._guard(f"objectives {cluster}", cluster,
                                    lambda c=cluster: self.objectives.measure(c))
                stop.wait(self.config.agent.poll_interval)
        finally:
            stop.set()  # the agent's threads (async WAL, copies) end with it
            self.shutdown()

    def tick(self) -> None:
        self._guard("scheduler", None, self.scheduler.tick)
        self._guard("executor", None, self.executor.tick)
        for streamer in self.streamers:
            self._guard(f"streaming {streamer.cluster}", streamer.cluster, streamer.tick)

    def shutdown(self) -> None:
        self._guard("executor", None, self.executor.stop)
        for streamer in self.streamers:
            self._guard(f"streaming {streamer.cluster}", streamer.cluster, streamer.stop)
        for thread in self._threads:
            thread.join(timeout=10)
        self.catalog.add_event(None, "agent_stopped", f"agent {self.executor.agent} stopped")

    def _guard(self, part: str, cluster: str | None, call: Callable[[], object]) -> None:
        try:
            call()
        except Exception as exc:
            message = f"{part}: {exc.__class__.__name__}: {exc}"
            last = self._errors.get(part)
            now = time.monotonic()
            if last is None or last[0] != message or now - last[1] > ERROR_REPEAT:
                self._errors[part] = (message, now)
                try:
                    self.catalog.add_event(cluster, "agent_error", message, severity="error")
                except Exception:
                    pass


def job_command(config_path: Path) -> list[str]:
    """How the agent starts ``lifeboat run-job`` with the same interpreter and file."""
    import sys

    return [sys.executable, "-m", "lifeboat", "--config", str(config_path)]
