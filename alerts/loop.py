"""The agent's alert loop: every ``evaluation_interval``, read the alerts' state, update
their lifecycle in the catalog, route the changes and start the remediation due.

With ``source = "prometheus"`` the loop reads Prometheus (:class:`PrometheusSource`). With
``source = "alertmanager"`` it has no source: Alertmanager's webhook (:mod:`alerts.webhook`)
feeds :meth:`AlertLoop.ingest`, and each tick only resolves alerts Alertmanager stopped
reporting (:func:`alertmanager_expiry`), sends groups that waited and starts remediation.

A failing part is recorded as an event (the same failure at most every 5 minutes) and never
stops the loop or the agent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from alerts.channels.base import Channel
from alerts.lifecycle import Lifecycle, Snapshot, Transition
from alerts.remediation.base import Action, AgentHooks
from alerts.remediation.scheduler import RemediationScheduler
from alerts.router import Deliver, Router

ERROR_REPEAT = 300.0
#: The channels Lifeboat itself sends to on the Alertmanager path (the others are
#: Alertmanager's own receivers).
ALERTMANAGER_CHANNELS = ("grafana", "webhook")


def alertmanager_expiry(settings: Any) -> float:
    """How long an alert from Alertmanager stays open without being reported again: the
    generated Alertmanager configuration repeats a firing alert to the agent every
    ``repeat_interval``, so one not heard of for ``repeat_interval + resolve_timeout`` has
    resolved without its resolved notice reaching the agent (which Alertmanager normally sends)."""
    return float(settings.repeat_interval + settings.resolve_timeout)


class Source(Protocol):
    def read(self) -> Snapshot: ...


class AlertLoop:
    """``ctx``: the agent's :class:`engine.context.Context`; ``channels``: name -> Channel;
    ``hooks``: the agent's hooks (an :class:`alerts.hooks.AlertHooks` gets this loop's router
    attached for escalation); ``source``: a :class:`Source`, or None on the Alertmanager path."""

    def __init__(self, ctx: Any, channels: Mapping[str, Channel], hooks: AgentHooks | None,
                 source: Source | None, registry: Mapping[str, Action] | None = None,
                 deliver: Deliver | None = None, clock: Callable[[], float] = time.time) -> None:
        self.ctx, self.source, self.clock = ctx, source, clock
        settings = ctx.config.alerts
        self.alertmanager = settings.source == "alertmanager"
        book = ctx.catalog.alerts
        self.lifecycle = Lifecycle(settings, book)
        self.router = Router(settings, book, dict(channels), deliver=deliver,
                             only=ALERTMANAGER_CHANNELS if self.alertmanager else None,
                             repeat=not self.alertmanager, clock=clock)
        if hooks is not None and hasattr(hooks, "attach"):
            hooks.attach(self.router)
        self.scheduler = RemediationScheduler(ctx, hooks, registry, clock=clock)
        self._lock = threading.Lock()  # ticks and webhook deliveries take turns
        self._errors: dict[str, tuple[str, float]] = {}

    def tick(self) -> None:
        snapshot = None
        if self.source is not None:  # outside the lock: Prometheus may take query_timeout
            snapshot = self._guard("source", self.source.read)
        with self._lock:
            now = self.clock()
            changes: list[Transition] = []
            if snapshot is not None:
                changes = self._guard("lifecycle", lambda: self.lifecycle.apply(snapshot, now)) or []
            elif self.source is None:
                settings = self.ctx.config.alerts
                changes = self._guard("lifecycle", lambda: self.lifecycle.expire(
                    "alertmanager", alertmanager_expiry(settings), now)
                    + self.lifecycle.sweep_silences(now)) or []
            self._guard("router", lambda: self.router.route(changes, now))
            self._guard("remediation", lambda: self.scheduler.tick(now))

    def ingest(self, snapshot: Snapshot) -> list[Transition]:
        """Alerts pushed to the agent (Alertmanager's webhook): lifecycle, routing, remediation."""
        now = self.clock()
        with self._lock:
            changes = self.lifecycle.apply(snapshot, now)
            self._guard("router", lambda: self.router.route(changes, now))
            self._guard("remediation", lambda: self.scheduler.tick(now))
        return changes

    def run(self, stop: threading.Event) -> None:
        """Tick every ``evaluation_interval`` until ``stop`` is set."""
        interval = self.ctx.config.alerts.evaluation_interval
        try:
            while not stop.is_set():
                started = time.monotonic()
                self._guard("tick", self.tick)
                stop.wait(max(0.0, interval - (time.monotonic() - started)))
        finally:
            self.close()

    def close(self) -> None:
        self.router.close()
        self.scheduler.close()
        closer = getattr(self.source, "close", None)
        if closer is not None:
            closer()

    def _guard(self, part: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            message = f"alerts {part}: {exc.__class__.__name__}: {exc}"
            now = time.monotonic()
            last = self._errors.get(part)
            if last is None or last[0] != message or now - last[1] > ERROR_REPEAT:
                self._errors[part] = (message, now)
                try:
                    self.ctx.catalog.add_event(None, "alerts_error", message, severity="error")
                except Exception:
                    pass
            return None
