"""A JSON webhook: the notice as JSON, POSTed to a team's own receiver.

For teams that route alerts themselves (a chat bot, a ticketing bridge). The body is the
:class:`AlertNotice` as it is, plus ``version`` and ``sent_at``; receivers should ignore fields
they do not know, so that new fields with defaults do not break them.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from alerts.channels.base import AlertNotice, Delivery, Outcome, redact
from alerts.channels.http import post_json

VERSION = 1  # of the body's shape


class WebhookChannel:
    """POSTs each notice as JSON to ``url`` (the URL may carry a token: it never shows in details)."""

    name = "webhook"

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"WebhookChannel needs an http(s) URL, not {urlsplit(url).scheme!r}")
        self.url, self.timeout = url, timeout
        parts = urlsplit(url)
        self.secrets = [url, parts.path + (f"?{parts.query}" if parts.query else ""), parts.query]

    def send(self, notice: AlertNotice) -> Delivery:
        return self._delivery(*post_json(self.url, payload(notice), self.timeout))

    def _delivery(self, outcome: Outcome, detail: str) -> Delivery:
        return Delivery(self.name, outcome, redact(detail, self.secrets))


def payload(notice: AlertNotice) -> dict[str, Any]:
    """The JSON body: every field of the notice (``remediation`` as a list of objects)."""
    body = dataclasses.asdict(notice)
    return {"version": VERSION, "sent_at": datetime.now(UTC).isoformat(timespec="seconds"), **body}
