"""The agent's side of remediation (:class:`alerts.remediation.base.AgentHooks`): what only
the running agent can do, for the actions to call.

``restart_streaming`` is delegated to the agent (``Agent.restart_streaming``, handed in by the
wiring as a plain callable, so alerts never import the agent); ``escalate`` pages through the
router that the alert loop attaches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alerts.router import Router
    from engine.catalog.alerts import AlertRecord, AttemptRecord


class AlertHooks:
    def __init__(self, restart_streaming: Callable[[str], str] | None = None,
                 router: Router | None = None) -> None:
        self._restart, self.router = restart_streaming, router

    def attach(self, router: Router) -> None:
        self.router = router

    def restart_streaming(self, cluster: str) -> str:
        if self._restart is None:
            raise RuntimeError("this process runs no streaming receivers (only the agent does)")
        return self._restart(cluster)

    def escalate(self, alert: AlertRecord, history: list[AttemptRecord], reason: str) -> str:
        if self.router is None:
            raise RuntimeError("no router to escalate through")
        return self.router.escalate(alert, history, reason)
