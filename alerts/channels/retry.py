"""Send a notice again while its channel says it may succeed later, with backoff.

Channels make one attempt per ``send`` and classify it; this module owns the when: exponential
backoff with jitter (so many alerts failing together do not retry in lockstep), bounded both by
a number of attempts and by a deadline, because a page that arrives an hour late is its own
incident. ``deliver`` never raises: the router records what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_exponential_jitter

from alerts.channels.base import AlertNotice, Channel, Delivery, Outcome, redact
from alerts.channels.text import shorten


def deliver(channel: Channel, notice: AlertNotice, attempts: int = 4, first_wait: float = 1.0,
            max_wait: float = 30.0, deadline: float = 60.0,
            sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """Send ``notice`` through ``channel``, again only after a RETRYABLE outcome.

    Waits grow as ``first_wait * 2**n`` plus up to ``first_wait`` of jitter, capped at
    ``max_wait``; no wait is started that would end past ``deadline`` seconds from the first
    attempt (sleeping time counts even when ``sleep`` is a test's recorder). The result is
    the last attempt's Delivery, with ``attempts`` set to how many were made.
    """
    name = getattr(channel, "name", type(channel).__name__)
    started, slept, made = time.monotonic(), [0.0], [0]

    def attempt() -> Delivery:
        made[0] += 1
        try:
            return channel.send(notice)
        except Exception as exc:  # a channel bug must not lose the router's loop
            detail = f"channel raised {type(exc).__name__}: {shorten(str(exc), 200)}"
            return Delivery(name, Outcome.FAILED, redact(detail, list(getattr(channel, "secrets", []))))

    def waited(seconds: float) -> None:
        slept[0] += seconds
        sleep(seconds)

    def out_of_time(state: RetryCallState) -> bool:
        elapsed = max(time.monotonic() - started, slept[0])
        return elapsed + state.upcoming_sleep > deadline

    retrying = Retrying(
        retry=retry_if_result(lambda delivery: delivery.outcome is Outcome.RETRYABLE),
        stop=stop_after_attempt(max(attempts, 1)) | out_of_time,
        wait=wait_exponential_jitter(multiplier=first_wait, max=max_wait, jitter=first_wait),
        sleep=waited,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    delivery = retrying(attempt)
    return replace(delivery, attempts=made[0])

