"""An Alertmanager configuration rendered from ``[alerts]``, for teams that run Alertmanager
(``lifeboat rules export --alertmanager FILE``); the embedded router is the default.

Alertmanager delivers to the channels it has integrations for (:data:`ALERTMANAGER_CHANNELS`:
PagerDuty Events API v2, Slack, email), with the same routes as the embedded router:
each severity to the channels of ``[alerts.routes]``, a rule with its own ``channels`` to
those (a child route matching its ``rule`` label). Every alert also goes (``continue``) to
the agent's webhook, ``http://{webhook_address}:{webhook_port}/alertmanager`` with resolved
notices, so remediation, the catalog's lifecycle and Grafana annotations still happen; the
agent sends to the channels Alertmanager does not have (grafana, webhook). A firing
critical inhibits the warning of the same cause and series.

Secrets: Alertmanager reads no environment variables, so the routing key, webhook URL or
token and SMTP password are written into the file, from the configuration or from the
variable its ``*_env`` names (unset: a ConfigError naming it). The caller writes the file
with mode 0600. (Alertmanager 0.25 also reads ``routing_key_file``, ``api_url_file``,
``auth_password_file`` and ``http_config.authorization.credentials_file``; a team that keeps
secrets in files can swap them in.)

Output is deterministic: the same configuration always renders the same YAML.
"""

from __future__ import annotations

from typing import Any

from alerts.rules import dump
from alerts.signals import human_seconds
from engine.config.alerting import AlertsSettings
from engine.errors import ConfigError
from engine.vocabulary import SEVERITIES

#: Channels Alertmanager delivers to itself; the agent (through the webhook) sends the others.
ALERTMANAGER_CHANNELS = ("pagerduty", "slack", "email")
AGENT_RECEIVER = "lifeboat-agent"
NO_RECEIVER = "lifeboat-none"  # a rule routed to no channel Alertmanager has: only the agent
GROUP_BY = ["alertname", "cluster"]
GROUP_INTERVAL = "5m"
INHIBIT_RULE = {
    "source_matchers": ['severity="critical"'],
    "target_matchers": ['severity="warning"'],
    "equal": ["cause", "cluster", "type", "kind", "replica"],  # absent on both: equal
}

_PD_SEVERITY = ('{{ if eq .CommonLabels.severity "critical" }}critical'
                '{{ else if eq .CommonLabels.severity "warning" }}warning{{ else }}info{{ end }}')
_SUMMARY = ("{{ if .CommonAnnotations.summary }}{{ .CommonAnnotations.summary }}{{ else }}"
            "{{ .GroupLabels.alertname }} on {{ .GroupLabels.cluster }}{{ end }}")
_TITLE = "[{{ .Status | toUpper }}] " + _SUMMARY
_TEXT = ("{{ range .Alerts }}{{ .Annotations.description }}\n"
         "Threshold: {{ .Annotations.threshold }} | Runbook: {{ .Annotations.runbook_url }}\n{{ end }}")


def agent_url(alerts: AlertsSettings) -> str:
    """Where Alertmanager reaches the agent's webhook (loopback when it listens on every address)."""
    host = alerts.webhook_address
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{alerts.webhook_port}/alertmanager"


def _secret(value: str | None, section: str, key: str, variable: str | None) -> str:
    if value:
        return value
    if variable:
        raise ConfigError(f"alerts.{section}.{key}_env: ${variable} is not set; Alertmanager needs the "
                          f"{key.replace('_', ' ')} in its file")
    raise ConfigError(f"alerts.{section}.{key}: not set")


def _pagerduty(alerts: AlertsSettings) -> dict[str, Any]:
    pd = alerts.pagerduty
    assert pd is not None
    config: dict[str, Any] = {
        "routing_key": _secret(pd.key(), "pagerduty", "routing_key", pd.routing_key_env),
        "url": pd.api_url.rstrip("/") + "/v2/enqueue",
        "severity": _PD_SEVERITY,
        "description": _SUMMARY,
        "client": "Lifeboat",
        "details": {"cluster": "{{ .GroupLabels.cluster }}", "rule": "{{ .CommonLabels.rule }}",
                    "threshold": "{{ .CommonAnnotations.threshold }}",
                    "runbook_url": "{{ .CommonAnnotations.runbook_url }}"},
        "send_resolved": True,
    }
    if pd.ca_file is not None:
        config["http_config"] = {"tls_config": {"ca_file": str(pd.ca_file)}}
    return config


def _slack(alerts: AlertsSettings) -> dict[str, Any]:
    slack = alerts.slack
    assert slack is not None
    config: dict[str, Any]
    if slack.webhook_url or slack.webhook_url_env:
        config = {"api_url": _secret(slack.webhook(), "slack", "webhook_url", slack.webhook_url_env)}
        if slack.channel:
            config["channel"] = slack.channel
    else:  # a bot token: the Web API's chat.postMessage with the token as a bearer credential
        token = _secret(slack.bot_token(), "slack", "token", slack.token_env)
        config = {"api_url": (slack.api_url or "https://slack.com/api").rstrip("/") + "/chat.postMessage",
                  "channel": slack.channel,
                  "http_config": {"authorization": {"type": "Bearer", "credentials": token}}}
    return config | {"send_resolved": True, "title": _TITLE, "text": _TEXT}


def _email(alerts: AlertsSettings) -> dict[str, Any]:
    mail = alerts.email
    assert mail is not None
    if mail.ssl and mail.port != 465:
        raise ConfigError("alerts.email.ssl: Alertmanager speaks SMTPS only on port 465 "
                          f"(port is {mail.port}); use starttls, or port 465")
    config: dict[str, Any] = {"to": ", ".join(mail.recipients), "from": mail.sender,
                              "smarthost": f"{mail.host}:{mail.port}", "require_tls": mail.starttls}
    if mail.username:
        config["auth_username"] = mail.username
        config["auth_password"] = _secret(mail.secret_password(), "email", "password", mail.password_env)
    return config | {"send_resolved": True, "headers": {"Subject": _TITLE}}


_INTEGRATIONS = {"pagerduty": ("pagerduty_configs", _pagerduty), "slack": ("slack_configs", _slack),
                 "email": ("email_configs", _email)}


def _deliverable(alerts: AlertsSettings, channels: list[str]) -> tuple[str, ...]:
    """The channels of ``channels`` Alertmanager delivers to and ``alerts`` configures, in order."""
    configured = alerts.configured_channels()
    return tuple(c for c in ALERTMANAGER_CHANNELS if c in channels and c in configured)


def receiver_name(channels: tuple[str, ...]) -> str:
    return "lifeboat-" + "-".join(channels) if channels else NO_RECEIVER


def alertmanager_config(alerts: AlertsSettings | None = None) -> dict[str, Any]:
    """The configuration as a plain dict (see the module's docstring). ConfigError when a
    channel's secret is missing (every problem, in one)."""
    alerts = alerts if alerts is not None else AlertsSettings()
    routes: list[dict[str, Any]] = [{"receiver": AGENT_RECEIVER, "continue": True}]
    wanted: list[tuple[str, ...]] = []
    for name, rule in alerts.rules.items():
        if rule.enabled and rule.channels is not None:
            channels = _deliverable(alerts, alerts.channels_of(name))
            routes.append({"receiver": receiver_name(channels), "matchers": [f'rule="{name}"']})
            wanted.append(channels)
    for severity in SEVERITIES:
        channels = _deliverable(alerts, alerts.routes.channels_for(severity))
        if channels:
            routes.append({"receiver": receiver_name(channels), "matchers": [f'severity="{severity}"']})
            wanted.append(channels)
    receivers: list[dict[str, Any]] = [{"name": AGENT_RECEIVER, "webhook_configs": [
        {"url": agent_url(alerts), "send_resolved": True}]}]
    integrations: dict[str, dict[str, Any]] = {}
    problems = []
    for channel in ALERTMANAGER_CHANNELS:
        if any(channel in channels for channels in wanted):
            try:
                integrations[channel] = _INTEGRATIONS[channel][1](alerts)
            except ConfigError as exc:
                problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    for channels in dict.fromkeys(wanted):  # each set of channels once, in the order first routed
        receiver: dict[str, Any] = {"name": receiver_name(channels)}
        for channel in channels:
            receiver[_INTEGRATIONS[channel][0]] = [integrations[channel]]
        receivers.append(receiver)
    return {
        "route": {"receiver": AGENT_RECEIVER, "group_by": list(GROUP_BY),
                  "group_wait": human_seconds(alerts.group_wait), "group_interval": GROUP_INTERVAL,
                  "repeat_interval": human_seconds(alerts.repeat_interval), "routes": routes},
        "receivers": receivers,
        "inhibit_rules": [INHIBIT_RULE],
    }


def holds_secrets(config: dict[str, Any]) -> bool:
    """True when a receiver of ``config`` holds a secret: a PagerDuty routing key, a Slack
    webhook URL or token, an SMTP password."""
    return any(receiver.get("pagerduty_configs") or receiver.get("slack_configs")
               or any("auth_password" in mail for mail in receiver.get("email_configs", []))
               for receiver in config["receivers"])


def render_alertmanager(alerts: AlertsSettings | None = None) -> str:
    """The Alertmanager configuration as YAML (write it with mode 0600: it may hold secrets)."""
    header = ("# Lifeboat's Alertmanager configuration, generated by `lifeboat rules export --alertmanager`\n"
              "# from the [alerts] section of the configuration. It may hold secrets: keep it mode 0600.\n")
    return header + dump(alertmanager_config(alerts))
