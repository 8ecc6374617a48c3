"""PagerDuty through its Events API v2, with the official ``pagerduty`` client (v7).

firing -> ``trigger``, acknowledged -> ``acknowledge``, resolved -> ``resolve``; all three carry
``dedup_key=notice.key`` so PagerDuty folds them into one incident.

The client retries by itself (5xx a few times, 429 without limit, network errors three times,
sleeping in between). Here retries belong to the caller (:mod:`alerts.channels.retry`), so the
channel clears the client's retry table, allows no extra network attempt and turns a 429 into
an error at once: one ``send`` is one HTTP request.
"""

from __future__ import annotations

import ssl
from typing import Any

from httpx2 import Response
from pagerduty import EventsApiV2Client, UrlError
from pagerduty.errors import Error, HttpError, ServerHttpError

from alerts.channels.base import AlertNotice, Delivery, Outcome, outcome_of_status, redact
from alerts.channels.text import FULL_OUTPUT, RECENT_STEPS, shorten, step_dict, when

SUMMARY_LIMIT = 1024  # the Events API rejects a longer payload.summary
SEVERITIES = {"critical": "critical", "warning": "warning", "info": "info"}


class _SingleShotClient(EventsApiV2Client):
    """The Events API client minus its own 429 loop (which would wait without limit)."""

    def postprocess(self, response: Response) -> None:
        if response.status_code == 429:
            raise HttpError("rate limited by the Events API (HTTP 429)", response)


class PagerDutyChannel:
    """Pages through one PagerDuty service, identified by its integration's routing key."""

    name = "pagerduty"

    def __init__(self, routing_key: str, api_url: str = "https://events.pagerduty.com",
                 ca_file: str | None = None, timeout: float = 10.0, source: str = "lifeboat") -> None:
        self.routing_key, self.source = routing_key, source
        self.secrets = [routing_key]  # what no Delivery.detail may show
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        try:
            self.client = _SingleShotClient(routing_key, base_url=api_url.rstrip("/"), verify=verify)
        except UrlError as exc:  # the client refuses anything but https://
            raise ValueError(f"PagerDuty api_url must be an https:// URL, not {api_url!r}") from exc
        self.client.timeout = timeout
        self.client.retry = {}
        self.client.max_network_attempts = 0

    def send(self, notice: AlertNotice) -> Delivery:
        try:
            if notice.state == "firing":
                self.client.trigger(**self.trigger_event(notice))
            elif notice.state == "acknowledged":
                self.client.acknowledge(notice.key)
            else:
                self.client.resolve(notice.key)
        except ServerHttpError as exc:
            status = exc.response.status_code
            if 200 <= status < 300:  # accepted by something that is not the Events API: a wrong URL
                return self._delivery(Outcome.FAILED, f"HTTP {status} but not an Events API reply")
            return self._delivery(outcome_of_status(status), f"HTTP {status}: {_body(exc.response)}")
        except HttpError as exc:
            status = exc.response.status_code
            return self._delivery(outcome_of_status(status), f"HTTP {status}: {_body(exc.response)}")
        except Error as exc:  # no HTTP answer: refused, timed out, TLS
            return self._delivery(*_network_outcome(exc))
        return self._delivery(Outcome.OK, f"{notice.state}: event accepted", ref=notice.key)

    def trigger_event(self, notice: AlertNotice) -> dict[str, Any]:
        """The keyword arguments of ``EventsApiV2Client.trigger`` for a firing notice."""
        where = f"[{notice.cluster}] " if notice.cluster else ""
        details: dict[str, Any] = {
            "cluster": notice.cluster, "rule": notice.rule, "description": notice.description,
            "value": notice.value, "threshold": notice.threshold, "runbook_url": notice.runbook_url,
            "started_at": when(notice.started_at), "labels": dict(notice.labels),
            "remediation": [step_dict(step) for step in notice.remediation[-RECENT_STEPS:]],
        }
        if notice.escalated:
            details["escalated"] = True
            details["history"] = [step_dict(step, FULL_OUTPUT) for step in notice.remediation]
        if notice.group:
            details["grouped_alerts"] = list(notice.group)
        details.update({key: value for key, value in notice.details.items() if key not in details})
        payload: dict[str, Any] = {"timestamp": when(notice.started_at), "group": notice.rule,
                                   "class": notice.alertname}
        if notice.cluster:
            payload["component"] = notice.cluster
        links = [{"href": notice.runbook_url, "text": "Runbook"}] if notice.runbook_url else None
        return {"summary": shorten(where + notice.summary, SUMMARY_LIMIT), "source": self.source,
                "dedup_key": notice.key, "severity": SEVERITIES.get(notice.severity, "error"),
                "payload": payload, "custom_details": details, "links": links}

    def _delivery(self, outcome: Outcome, detail: str, ref: str | None = None) -> Delivery:
        return Delivery(self.name, outcome, redact(detail, self.secrets), ref)


def _body(response: Response) -> str:
    return shorten(" ".join(response.text.split()), 200)


def _network_outcome(exc: BaseException) -> tuple[Outcome, str]:
    """A refused or timed-out connection may heal; a certificate that fails verification will not."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return Outcome.FAILED, f"TLS certificate not trusted: {cause.verify_message}"
        cause = cause.__cause__ or cause.__context__
    reason = exc.__cause__ or exc
    return Outcome.RETRYABLE, f"not delivered: {type(reason).__name__}: {shorten(str(reason), 200)}"
