"""The contract of a remediation action.

An action does what its name says through the engine's API (never a shell one-liner),
says what it checked and found in ``output`` (naming each server, path or object), and
honours ``deadline``: the runner abandons an action that overruns and records a timeout.
An action never deletes anything a backup or a restore needs.

``ok`` means the action found nothing wrong or fixed what it found; ``changed`` that it
changed something (restarted a receiver, removed leftovers, queued a job). A failing action
does not stop the round: the next action still runs, as the seed lists them in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from engine.catalog.alerts import AlertRecord, AttemptRecord
    from engine.context import Context


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    output: str
    changed: bool = False
    skipped: bool = False  # the action did not apply (e.g. escalate_to_dba before the last round)


class AgentHooks(Protocol):
    """What only the running agent can do, handed to actions by the wiring."""

    def restart_streaming(self, cluster: str) -> str:
        """Restart the cluster's streaming receiver; say what was done."""
        ...

    def escalate(self, alert: AlertRecord, history: list[AttemptRecord], reason: str) -> str:
        """Page the on-call with the alert and what remediation tried; say where it went."""
        ...


@dataclass
class RemediationContext:
    """Everything an action may use."""

    ctx: Context  # the configuration, the repository's storage, the catalog
    alert: AlertRecord
    round: int  # 1 .. max_attempts
    max_attempts: int
    deadline: float  # time.monotonic() by which the action must return
    hooks: AgentHooks | None = None  # None outside the agent (``lifeboat alerts`` CLI)
    history: list[AttemptRecord] = field(default_factory=list)  # earlier attempts of this alert

    @property
    def cluster(self) -> str | None:
        return self.alert.cluster

    @property
    def last_round(self) -> bool:
        return self.round >= self.max_attempts

    def remaining(self) -> float:
        """Seconds left before the deadline (at least a small positive number)."""
        return max(0.1, self.deadline - time.monotonic())


Action = Callable[[RemediationContext], ActionResult]
