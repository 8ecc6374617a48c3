"""Grafana annotations: an alert shows on the dashboards as a mark, then as a region.

firing -> ``POST /api/annotations`` at the alert's start; the annotation id is the ref.
resolved -> ``PATCH /api/annotations/{id}`` with ``timeEnd``, turning the mark into a region
that spans the incident; without a ref (Grafana was down when it fired), a whole region is
posted instead. acknowledged -> the annotation's text is updated to say who took it.
Plain ``requests``: the API is four fields, a client library would add nothing.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from alerts.channels.base import AlertNotice, Delivery, Outcome, outcome_of_status, redact
from alerts.channels.text import shorten, value_text


class GrafanaChannel:
    """Annotates Grafana (all dashboards, or only ``dashboard_uid``'s) with alerts."""

    name = "grafana"

    def __init__(self, url: str, token: str | None = None, dashboard_uid: str | None = None,
                 timeout: float = 10.0, ca_file: str | None = None) -> None:
        self.url, self.token, self.dashboard_uid = url.rstrip("/"), token, dashboard_uid
        self.timeout, self.secrets = timeout, [token]  # what no Delivery.detail may show
        self.session = requests.Session()
        self.session.verify = str(ca_file) if ca_file else True  # the config hands a Path
        self.session.headers.update({"Content-Type": "application/json", "User-Agent": "lifeboat"})
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def send(self, notice: AlertNotice) -> Delivery:
        ref = notice.refs.get(self.name)
        if notice.state == "firing":
            return self._request("POST", "/api/annotations", self.annotation(notice), ref_from_reply=True)
        if notice.state == "acknowledged":
            if not ref:
                return Delivery(self.name, Outcome.OK, "nothing to update: no annotation for this alert")
            return self._request("PATCH", f"/api/annotations/{ref}", {"text": text(notice)}, ref=ref)
        ended = _ms(notice.ended_at if notice.ended_at is not None else time.time())
        if ref:
            body = {"timeEnd": ended, "isRegion": True, "text": text(notice)}
            return self._request("PATCH", f"/api/annotations/{ref}", body, ref=ref)
        region = {**self.annotation(notice), "timeEnd": ended, "isRegion": True}
        return self._request("POST", "/api/annotations", region, ref_from_reply=True)

    def annotation(self, notice: AlertNotice) -> dict[str, Any]:
        """The body of a new annotation at the alert's start."""
        body: dict[str, Any] = {"time": _ms(notice.started_at), "text": text(notice), "tags": [
            f"cluster:{notice.cluster or '-'}", f"rule:{notice.rule}", f"severity:{notice.severity}",
            "lifeboat"]}
        if self.dashboard_uid:
            body["dashboardUID"] = self.dashboard_uid
        return body

    def _request(self, method: str, path: str, body: dict[str, Any], ref: str | None = None,
                 ref_from_reply: bool = False) -> Delivery:
        try:
            response = self.session.request(method, self.url + path, json=body, timeout=self.timeout)
        except requests.exceptions.SSLError as exc:  # verification fails the same way next time
            return self._delivery(Outcome.FAILED, f"TLS error: {shorten(str(exc), 200)}")
        except requests.RequestException as exc:  # refused, timed out
            return self._delivery(Outcome.RETRYABLE, f"not delivered: {type(exc).__name__}")
        outcome = outcome_of_status(response.status_code)
        detail = f"{method} {path}: HTTP {response.status_code} {shorten(response.text, 200)}"
        if outcome is Outcome.OK and ref_from_reply:
            try:
                ref = str(response.json()["id"])
            except (ValueError, KeyError, TypeError):  # 2xx from something that is not Grafana
                return self._delivery(Outcome.FAILED, f"{detail} (no annotation id in the reply)")
        return self._delivery(outcome, detail, ref if outcome is Outcome.OK else None)

    def _delivery(self, outcome: Outcome, detail: str, ref: str | None = None) -> Delivery:
        return Delivery(self.name, outcome, redact(detail, self.secrets), ref)


def text(notice: AlertNotice) -> str:
    """The annotation's text: short, it shows in a tooltip over a graph."""
    parts = [f"{notice.state.upper()} {notice.severity}: {notice.summary}",
             f"value {value_text(notice)} (threshold {notice.threshold or '-'})"]
    if notice.acknowledged_by:
        parts.append(f"acknowledged by {notice.acknowledged_by}")
    if notice.runbook_url:
        parts.append(f'<a href="{notice.runbook_url}">runbook</a>')
    return shorten(" · ".join(parts), 1000)


def _ms(epoch: float) -> int:
    return round(epoch * 1000)
