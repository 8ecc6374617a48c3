"""The alerts' state, read from Prometheus through ``prometheus-api-client``.

Prometheus evaluates Lifeboat's rules (the file ``lifeboat rules export`` writes); this
module reads ``/api/v1/alerts`` (what is pending or firing, with its value and labels) and
``/api/v1/rules`` (whether Lifeboat's rules are loaded at all). The library has no call for
either endpoint, so they are requested through its own session, URL, headers, TLS and
authentication settings, bounded by ``query_timeout``.

When Prometheus cannot be read, or has not loaded every enabled rule, the snapshot holds the
synthetic alert ``alerting_unavailable`` (source "lifeboat"): a broken alerting path is an
alert, never silence. It resolves when Prometheus answers with the rules loaded.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from alerts.known import ALERTING_UNAVAILABLE, SYNTHETIC_RULES, rule_for
from alerts.lifecycle import ObservedAlert, Snapshot
from engine.config.alerting import AlertsSettings


def parse_time(text: str | None) -> float | None:
    """RFC 3339 (as Prometheus and Alertmanager write it, with nanoseconds) -> epoch seconds."""
    if not text or text.startswith("0001-01-01"):
        return None
    text = text.replace("Z", "+00:00")
    head, _, tail = text.partition(".")
    if tail:  # Python reads at most microseconds
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


#: What a connection error's text says, as the on-call engineer should read it.
_CONNECT_FAILURES = {
    "Connection refused": "connection refused: is Prometheus running, and is [alerts] "
                          "prometheus_url its address?",
    "Name or service not known": "the host name does not resolve ([alerts] prometheus_url)",
    "No route to host": "no route to the host ([alerts] prometheus_url)",
    "Network is unreachable": "the network is unreachable",
}


def _reason(exc: Exception, timeout: float) -> str:
    """One line for a failed request, not requests' nested exception text."""
    import requests

    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g}s ([alerts] query_timeout)"
    if isinstance(exc, requests.exceptions.SSLError):
        return "the TLS handshake failed (certificate or protocol)"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        return next((said for known, said in _CONNECT_FAILURES.items() if known in text),
                    "cannot connect")
    return f"{exc.__class__.__name__}: {exc}"


def parse_value(text: object) -> float | None:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class PrometheusUnavailable(Exception):
    pass


class PrometheusSource:
    """Reads a :class:`Snapshot` of Lifeboat's alerts from one Prometheus."""

    def __init__(self, settings: AlertsSettings, client: Any = None) -> None:
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        self.settings = settings
        self.client = client or PrometheusConnect(
            url=settings.prometheus_url.rstrip("/"), disable_ssl=False,
            retry=Retry(total=0), timeout=settings.query_timeout)

    def _get(self, path: str) -> Any:
        c = self.client
        try:
            response = c._session.request(
                method="GET", url=f"{c.url}{path}", verify=c._session.verify, headers=c.headers,
                auth=c.auth, cert=c._session.cert, timeout=self.settings.query_timeout)
        except Exception as exc:  # refused, timed out, TLS: requests' errors and urllib3's
            raise PrometheusUnavailable(f"{c.url}{path}: {_reason(exc, self.settings.query_timeout)}"
                                        ) from None
        if response.status_code != 200:
            raise PrometheusUnavailable(f"{c.url}{path}: HTTP {response.status_code} "
                                        f"{response.text[:200]}")
        try:
            body = response.json()
        except ValueError:
            raise PrometheusUnavailable(f"{c.url}{path}: the answer is not JSON") from None
        if body.get("status") != "success":
            raise PrometheusUnavailable(f"{c.url}{path}: {body.get('error', body.get('status'))}")
        return body.get("data")

    def expected_alertnames(self) -> dict[str, str]:
        """alertname -> rule, of every enabled configured rule."""
        return {self.settings.alertname_of(name): name for name, rule in self.settings.rules.items()
                if rule.enabled}

    def loaded_alertnames(self) -> set[str]:
        data = self._get("/api/v1/rules?type=alert")
        return {rule.get("name") for group in data.get("groups", []) for rule in group.get("rules", [])
                if rule.get("type", "alerting") == "alerting"}

    def read(self, now: float | None = None) -> Snapshot:
        now = time.time() if now is None else now
        try:
            loaded = self.loaded_alertnames()
            raw = self._get("/api/v1/alerts").get("alerts", [])
        except PrometheusUnavailable as exc:
            return Snapshot([self.unavailable(f"Prometheus cannot be read: {exc}", now)],
                            frozenset({"lifeboat"}))
        observed = [found for found in (self.observe(item) for item in raw) if found is not None]
        missing = sorted(set(self.expected_alertnames()) - loaded)
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            observed.append(self.unavailable(
                f"Prometheus at {self.settings.prometheus_url} has not loaded {len(missing)} of "
                f"Lifeboat's rules ({shown}): load the file 'lifeboat rules export' writes", now))
        return Snapshot(observed, frozenset({"prometheus", "lifeboat"}))

    def observe(self, item: dict[str, Any]) -> ObservedAlert | None:
        labels = {str(k): str(v) for k, v in (item.get("labels") or {}).items()}
        rule = rule_for(self.settings, labels)
        if rule is None or rule in SYNTHETIC_RULES:
            return None  # another team's alert in the same Prometheus
        state = item.get("state")
        if state not in ("pending", "firing"):
            return None
        return ObservedAlert(rule, labels, state, "prometheus", parse_value(item.get("value")),
                             parse_time(item.get("activeAt")),
                             {str(k): str(v) for k, v in (item.get("annotations") or {}).items()})

    def unavailable(self, reason: str, now: float) -> ObservedAlert:
        rule = SYNTHETIC_RULES[ALERTING_UNAVAILABLE]
        assert rule.alertname
        labels = {"alertname": rule.alertname, "rule": ALERTING_UNAVAILABLE, "severity": rule.severity,
                  "prometheus": self.settings.prometheus_url}
        return ObservedAlert(ALERTING_UNAVAILABLE, labels, "firing", "lifeboat", None, now,
                             {"summary": rule.summary or "", "description": reason,
                              "runbook_url": rule.runbook_url or ""})

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass
