"""One round of a rule's remediation: its actions in order, each bounded in time and
recorded in the catalog with what it said.

An action runs in a worker thread; one that overruns ``action_timeout`` is abandoned (it
was told its deadline) and recorded as a timeout, so a hung check never holds the agent.
One that raises is recorded as failed with the error, never as a traceback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from alerts.remediation.base import Action, ActionResult, RemediationContext
from engine.catalog.alerts import AttemptRecord

OUTPUT_LIMIT = 4000  # characters of an action's output kept in the catalog


def _run_bounded(action: Action, rctx: RemediationContext, timeout: float) -> tuple[str, str]:
    """(result, output) of one action: ok, failed, skipped or timeout."""
    box: dict[str, ActionResult | BaseException] = {}

    def call() -> None:
        try:
            box["result"] = action(rctx)
        except BaseException as exc:  # recorded, never raised into the agent
            box["result"] = exc

    worker = threading.Thread(target=call, daemon=True, name="remediation-action")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return "timeout", f"did not finish within {timeout:g}s; abandoned"
    found = box.get("result")
    if isinstance(found, BaseException):
        return "failed", f"{found.__class__.__name__}: {found}"
    assert isinstance(found, ActionResult)
    if found.skipped:
        return "skipped", found.output
    return ("ok" if found.ok else "failed"), found.output


def run_round(rctx: RemediationContext, actions: list[str], timeout: float,
              registry: Mapping[str, Action] | None = None) -> list[AttemptRecord]:
    """Run ``actions`` in order for ``rctx.alert`` and record each attempt; return them."""
    if registry is None:
        from alerts.remediation.actions import ACTIONS as registry
    book = rctx.ctx.catalog.alerts
    done: list[AttemptRecord] = []
    for name in actions:
        action = registry.get(name)
        started = time.time()
        rctx.deadline = time.monotonic() + timeout
        if action is None:
            result, output = "failed", f"no action named {name}"
        else:
            result, output = _run_bounded(action, rctx, timeout)
        output = output[:OUTPUT_LIMIT]
        attempt_id = book.add_attempt(rctx.alert.id, rctx.round, name, started, time.time(), result,
                                      output)
        record = AttemptRecord(attempt_id, rctx.alert.id, rctx.round, name, started, time.time(),
                               result, output)
        done.append(record)
        rctx.history.append(record)
    return done
