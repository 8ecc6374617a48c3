"""One JSON POST for every channel that speaks plain HTTP (the alert webhook, drill notices)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from alerts.channels.base import Outcome, outcome_of_status


def post_json(url: str, body: dict[str, Any], timeout: float) -> tuple[Outcome, str]:
    """POST ``body`` as JSON to ``url``; the outcome and a detail for the delivery record.

    Never raises for a delivery problem: a refused connection, a timeout or a TLS failure is
    ``retryable``; an HTTP status is judged by :func:`outcome_of_status`.
    """
    request = urllib.request.Request(url, data=json.dumps(body, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "lifeboat"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:  # refused, timed out, TLS
        reason = getattr(exc, "reason", exc)
        return Outcome.RETRYABLE, f"not delivered: {type(reason).__name__}: {reason}"
    return outcome_of_status(status), f"HTTP {status}"
