"""The ``[alerts]`` section: alert rules as data, where they are routed, the channels'
settings, silences and auto-remediation.

The seed's alert definitions are the defaults (:data:`DEFAULT_RULES`). A section
``[alerts.rules.<name>]`` for a default rule changes only the keys it sets (a threshold, a
route, ``enabled = false``); a new name adds a rule. The Prometheus rules file, the
Grafana thresholds and the router all read the merged result, so they stay one definition.
Secrets (a routing key, a token, a password) come from the file or from an environment
variable named by ``*_env``; they are never shown back.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from engine.config.units import parse_duration
from engine.vocabulary import (
    ALERT_SIGNALS,
    CHANNEL_NAMES,
    SEVERITIES,
    ChannelName,
    RemediationAction,
    Severity,
)

Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
RuleName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
_ALERTNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _secret(section: BaseModel, name: str) -> str | None:
    """A secret from the file, else from the environment variable ``<name>_env`` names."""
    value = getattr(section, name)
    if value:
        return value
    variable = getattr(section, f"{name}_env", None)
    return os.environ.get(variable) or None if variable else None


def _check_env(value: str | None) -> str | None:
    if value is not None and not _ENV.match(value):
        raise ValueError("must be the name of an environment variable (letters, digits, _)")
    return value


def _check_url(value: str | None, schemes: tuple[str, ...] = ("http://", "https://")) -> str | None:
    if value is not None and not value.startswith(schemes):
        raise ValueError(f"must be a URL starting with {' or '.join(schemes)}")
    return value


class PagerDutySettings(_Section):
    """PagerDuty Events API v2: an integration's routing key."""

    routing_key: str | None = None
    routing_key_env: str | None = None
    api_url: str = "https://events.pagerduty.com"
    ca_file: Path | None = None  # a CA bundle for a proxy or a private endpoint
    timeout: Duration = 10.0

    _env = field_validator("routing_key_env")(_check_env)

    @field_validator("api_url")
    @classmethod
    def _https(cls, value: str) -> str:
        return _check_url(value, ("https://",)) or value  # the client refuses plain http

    def key(self) -> str | None:
        return _secret(self, "routing_key")


class SlackSettings(_Section):
    """Slack: an incoming webhook, or a bot token and a channel (replies in threads)."""

    webhook_url: str | None = None
    webhook_url_env: str | None = None
    token: str | None = None
    token_env: str | None = None
    channel: str | None = None
    api_url: str | None = None  # Slack's Web API base, e.g. for a proxy
    timeout: Duration = 10.0

    _env = field_validator("webhook_url_env", "token_env")(_check_env)
    _url = field_validator("webhook_url", "api_url")(_check_url)

    @model_validator(mode="after")
    def _one_way(self) -> SlackSettings:
        webhook = self.webhook_url or self.webhook_url_env
        token = self.token or self.token_env
        if bool(webhook) == bool(token):
            raise ValueError("set either webhook_url (or webhook_url_env), or token (or token_env) "
                             "with channel")
        if token and not self.channel:
            raise ValueError("channel: a bot token needs the channel to post in (e.g. '#oncall')")
        return self

    def webhook(self) -> str | None:
        return _secret(self, "webhook_url")

    def bot_token(self) -> str | None:
        return _secret(self, "token")


class GrafanaSettings(_Section):
    """Grafana's annotation API: an annotation per alert, closed when it resolves."""

    url: str
    token: str | None = None
    token_env: str | None = None
    dashboard_uid: str | None = None  # annotate this dashboard (default: an organisation annotation)
    ca_file: Path | None = None
    timeout: Duration = 10.0

    _env = field_validator("token_env")(_check_env)
    _url = field_validator("url")(_check_url)

    def api_token(self) -> str | None:
        return _secret(self, "token")


class EmailSettings(_Section):
    """Mail over SMTP, for rules that name ``email``."""

    host: str
    port: int = Field(default=25, ge=1, le=65535)
    sender: str
    recipients: list[str] = Field(min_length=1)
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    starttls: bool = False
    ssl: bool = False
    timeout: Duration = 10.0

    _env = field_validator("password_env")(_check_env)

    @field_validator("sender", "recipients")
    @classmethod
    def _addresses(cls, value: str | list[str]) -> str | list[str]:
        for address in [value] if isinstance(value, str) else value:
            if "@" not in address:
                raise ValueError(f"'{address}' is not an email address")
        return value

    @model_validator(mode="after")
    def _tls(self) -> EmailSettings:
        if self.ssl and self.starttls:
            raise ValueError("set ssl (SMTPS) or starttls, not both")
        return self

    def secret_password(self) -> str | None:
        return _secret(self, "password")


class WebhookSettings(_Section):
    """A JSON POST of every notice, for a receiver of your own."""

    url: str
    timeout: Duration = 10.0

    _url = field_validator("url")(_check_url)


class RoutesSettings(_Section):
    """Which channels get an alert of each severity (the seed's diagram), unless its rule
    names its own."""

    critical: list[ChannelName] = Field(default_factory=lambda: ["pagerduty"])
    warning: list[ChannelName] = Field(default_factory=lambda: ["slack"])
    info: list[ChannelName] = Field(default_factory=lambda: ["grafana"])

    def channels_for(self, severity: str) -> list[str]:
        return list(getattr(self, severity))


class RetrySettings(_Section):
    """How a channel that fails for now (timeout, 5xx, 429) is sent to again."""

    attempts: int = Field(default=4, ge=1, le=20)
    first_wait: Duration = 1.0
    max_wait: Duration = 30.0
    deadline: Duration = 120.0  # give up on one notice after this long


class RemediationRule(_Section):
    """Auto-remediation of one rule: its actions run in order, each bounded in time, until
    the alert resolves; after ``max_attempts`` rounds it escalates."""

    enabled: bool = True
    max_attempts: int = Field(default=3, ge=1, le=100)
    actions: list[RemediationAction] = Field(min_length=1)


class RemediationSettings(_Section):
    """What every remediation shares."""

    enabled: bool = True  # off: no rule remediates (per cluster: [clusters.X] auto_remediation)
    action_timeout: Duration = 120.0
    retry_interval: Duration = 60.0  # between two rounds of a rule's actions
    disk_min_free: Annotated[float, Field(gt=0, lt=1)] = 0.10  # check_disk_space: free share below this
    stale_after: Duration = 3600.0  # cleanup_staging_area: leftovers older than this are stale
    escalate_to: list[ChannelName] = Field(default_factory=lambda: ["pagerduty"])


class Silence(_Section):
    """Alerts of ``rule`` (of ``cluster``, or every cluster) are not sent until ``until``."""

    rule: str
    cluster: str | None = None
    until: datetime
    reason: str = Field(min_length=1)

    @field_validator("until")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)


def _threshold(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be a number, a duration such as '300s' or a share such as '95%'")
    return value


class AlertRule(_Section):
    """One alert. ``signal`` (see :data:`engine.vocabulary.ALERT_SIGNALS`) with a
    ``threshold`` (and a ``window`` for signals that count events); or ``expr``, a PromQL
    expression of your own."""

    signal: str | None = None
    expr: str | None = None
    threshold: Annotated[float | str | None, BeforeValidator(_threshold)] = None
    window: Duration | None = None
    for_: Duration = Field(default=0.0, alias="for")
    match: dict[str, str] = Field(default_factory=dict)  # label matchers added to the signal
    severity: Severity
    channels: list[ChannelName] | None = None  # default: the route of its severity
    alertname: str | None = None  # the Prometheus alert name (default: from the rule's name)
    summary: str | None = None
    description: str | None = None
    runbook_url: str | None = None
    cause: str | None = None  # rules of one cause: a critical one silences the warning one
    enabled: bool = True
    auto_remediation: RemediationRule | None = None

    @field_validator("alertname")
    @classmethod
    def _alertname(cls, value: str | None) -> str | None:
        if value is not None and not _ALERTNAME.match(value):
            raise ValueError("must be a Prometheus alert name (letters, digits and _)")
        return value

    @field_validator("match")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for label in value:
            if not _ALERTNAME.match(label):
                raise ValueError(f"'{label}' is not a label name")
        return value

    @model_validator(mode="after")
    def _signal_or_expr(self) -> AlertRule:
        if (self.signal is None) == (self.expr is None):
            raise ValueError("give either signal (one of " + ", ".join(ALERT_SIGNALS) + ") or expr")
        if self.expr is not None:
            if self.threshold is not None or self.window is not None or self.match:
                raise ValueError("threshold, window and match go with signal; expr states its own")
            return self
        if self.signal not in ALERT_SIGNALS:
            raise ValueError(f"signal: '{self.signal}' is not one of " + ", ".join(ALERT_SIGNALS))
        unit, windowed = ALERT_SIGNALS[self.signal]
        if unit == "none":
            if self.threshold is not None:
                raise ValueError(f"threshold: signal {self.signal} has none")
        else:
            if self.threshold is None:
                raise ValueError(f"threshold: signal {self.signal} needs one")
            object.__setattr__(self, "threshold", _in_unit(self.threshold, unit))
        if windowed and not self.window:
            raise ValueError(f"window: signal {self.signal} counts events over a window (e.g. '24h')")
        if not windowed and self.window is not None:
            raise ValueError(f"window: signal {self.signal} has none (use 'for' to wait)")
        return self

    @property
    def unit(self) -> str:
        return ALERT_SIGNALS[self.signal][0] if self.signal else "none"


def _in_unit(value: float | str, unit: str) -> float:
    """A threshold as a number in its signal's unit: '300s' -> 300, '95%' -> 0.95."""
    if unit == "seconds":
        return parse_duration(value)
    if isinstance(value, str):
        text = value.strip()
        if unit == "ratio" and text.endswith("%"):
            number = float(text[:-1]) / 100.0
        else:
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"'{value}' is not a number") from None
    else:
        number = float(value)
    if unit == "ratio" and not 0 < number <= 1:
        raise ValueError("a share must be above 0 and at most 1 (or 100%)")
    if number <= 0:
        raise ValueError("must be more than 0")
    return number


_RUNBOOK = "alerts/runbooks.md"


def _default(signal: str | None, severity: str, alertname: str, cause: str, **more: Any) -> dict[str, Any]:
    return {"signal": signal, "severity": severity, "alertname": alertname, "cause": cause, **more}


#: The seed's alert definitions (``monitoring_framework.alerts``, the recovery and testing
#: alerts, ``remediation_integration``) and the conditions Lifeboat's metrics watch besides.
DEFAULT_RULES: dict[str, dict[str, Any]] = {
    "backup_failure": _default(
        "backup_failures", "critical", "LifeboatBackupFailed", "backup_failed",
        threshold=1, window="24h", channels=["pagerduty", "slack"],
        auto_remediation={"max_attempts": 3, "actions": [
            "verify_backup_dependencies", "cleanup_staging_area", "retry_backup_operation"]}),
    "backup_success_rate_low": _default(
        "backup_success_rate", "warning", "LifeboatBackupSuccessRateLow", "backup_success_rate",
        threshold=0.95, **{"for": "5m"}),
    "backup_success_rate_critical": _default(
        "backup_success_rate", "critical", "LifeboatBackupSuccessRateCritical", "backup_success_rate",
        threshold=0.90, **{"for": "5m"}),
    "backup_too_old": _default(
        "backup_age", "warning", "LifeboatBackupTooOld", "backup_age", threshold="2d", **{"for": "15m"}),
    "wal_archive_failing": _default(
        "wal_archive_failures", "critical", "LifeboatWALArchiveFailing", "wal_archive_failing",
        threshold=1, window="10m", channels=["pagerduty", "slack"],
        auto_remediation={"max_attempts": 3, "actions": [
            "check_disk_space", "verify_backup_dependencies", "cleanup_staging_area", "escalate_to_dba"]}),
    "wal_archive_lag_high": _default(
        "wal_archive_lag", "warning", "LifeboatWALArchiveLagHigh", "wal_archive_lag",
        threshold="10m", **{"for": "1m"}),
    "wal_archive_lag_critical": _default(
        "wal_archive_lag", "critical", "LifeboatWALArchiveLagCritical", "wal_archive_lag",
        threshold="30m", **{"for": "1m"}),
    "replication_delay": _default(
        "replication_lag", "warning", "LifeboatReplicationDelay", "replication_lag",
        threshold="300s", channels=["slack", "email"], **{"for": "5m"},
        auto_remediation={"max_attempts": 3, "actions": [
            "check_network_connectivity", "restart_replication", "escalate_to_dba"]}),
    "streaming_receiver_down": _default(
        "streaming_receiver_down", "warning", "LifeboatStreamingReceiverDown", "streaming_receiver",
        channels=["slack", "email"], **{"for": "1m"},
        auto_remediation={"max_attempts": 3, "actions": [
            "check_network_connectivity", "restart_replication", "escalate_to_dba"]}),
    "data_loss": _default(
        "data_loss_events", "critical", "LifeboatDataLoss", "data_loss", threshold=1, window="24h"),
    "recovery_delays": _default(
        "recovery_over_sla", "warning", "LifeboatRecoveryOverSLA", "recovery_sla",
        threshold="15m", window="24h"),
    "validation_failures": _default(
        "drill_failed_checks", "critical", "LifeboatRestoreValidationFailed", "validation",
        threshold=1, match={"kind": "full"}),
    "performance_issues": _default(
        "rto_at_risk", "warning", "LifeboatRTOAtRisk", "rto", threshold=1, **{"for": "15m"}),
    "rpo_breached": _default(
        "rpo_breach", "critical", "LifeboatRPOBreached", "rpo", threshold=1, **{"for": "1m"}),
    "copy_lag_high": _default(
        "copy_lag", "warning", "LifeboatCopyLagHigh", "copy_lag", threshold="1h", **{"for": "15m"}),
    "copy_lag_critical": _default(
        "copy_lag", "critical", "LifeboatCopyLagCritical", "copy_lag", threshold="6h", **{"for": "15m"}),
    "copy_validation_failed": _default(
        "copy_validation_failed", "critical", "LifeboatCopyValidationFailed", "copy_validation"),
    "wal_shipping_delayed": _default(
        "wal_shipping_delay", "warning", "LifeboatWALShippingDelayed", "wal_shipping",
        threshold=1, **{"for": "1m"}),
    "backups_below_replication": _default(
        "below_replication", "warning", "LifeboatBackupsBelowReplication", "below_replication",
        threshold=1, **{"for": "2h"}),
    "postgres_down": _default(
        "postgres_down", "critical", "LifeboatPostgresDown", "postgres_down", **{"for": "2m"},
        auto_remediation={"max_attempts": 3, "actions": ["check_network_connectivity", "escalate_to_dba"]}),
    "metrics_absent": _default(
        "metrics_absent", "critical", "LifeboatMetricsAbsent", "metrics_absent", **{"for": "5m"}),
    "cluster_metrics_absent": _default(
        "cluster_metrics_absent", "critical", "LifeboatClusterMetricsAbsent", "cluster_metrics_absent",
        **{"for": "5m"}),
    "test_failures": _default("drill_failed", "warning", "LifeboatDrillFailed", "drill_failed"),
    "validation_errors": _default(
        "drill_failed_checks", "warning", "LifeboatDrillValidationErrors", "validation", threshold=1),
    "performance_degradation": _default(
        "drill_slower_than_rto", "warning", "LifeboatDrillSlowerThanRTO", "drill_duration", threshold=1),
    "drill_overdue": _default(
        "drill_overdue", "warning", "LifeboatDrillOverdue", "drill_overdue", threshold="4h"),
}


def _merge_rules(user: object) -> dict[str, Any]:
    """The default rules with the file's sections laid over them, key by key."""
    if user is None:
        user = {}
    if not isinstance(user, dict):
        raise ValueError("must be a table of rules ([alerts.rules.<name>])")
    merged: dict[str, Any] = {name: dict(rule) for name, rule in DEFAULT_RULES.items()}
    for name, fields in user.items():
        if not isinstance(fields, dict):
            raise ValueError(f"{name}: must be a table ([alerts.rules.{name}])")
        base = merged.get(name, {})
        combined = {**base, **fields}
        remedy, override = base.get("auto_remediation"), fields.get("auto_remediation")
        if isinstance(remedy, dict) and isinstance(override, dict):
            combined["auto_remediation"] = {**remedy, **override}
        if "expr" in fields and "signal" not in fields:  # an expression replaces the default's signal
            for key in ("signal", "threshold", "window", "match"):
                combined.pop(key, None)
        merged[name] = combined
    return merged


class AlertsSettings(_Section):
    """``[alerts]``: the agent reads the alerts' state from Prometheus (or receives them
    from Alertmanager), keeps their lifecycle in the catalog, routes and remediates."""

    enabled: bool = True
    source: str = Field(default="prometheus", pattern="^(prometheus|alertmanager)$")
    prometheus_url: str = "http://127.0.0.1:9090"
    evaluation_interval: Duration = 30.0
    query_timeout: Duration = 5.0
    repeat_interval: Duration = 4 * 3600.0  # a firing alert is sent again this often
    group_wait: Duration = 30.0  # alerts of one cluster that start this close go out together
    resolve_timeout: Duration = 300.0  # an Alertmanager alert not seen again for this long resolved
    runbook_base: str = _RUNBOOK
    webhook_address: str = "127.0.0.1"  # where the agent listens for Alertmanager's webhook
    webhook_port: int = Field(default=9888, ge=1, le=65535)
    routes: RoutesSettings = RoutesSettings()
    retry: RetrySettings = RetrySettings()
    remediation: RemediationSettings = RemediationSettings()
    pagerduty: PagerDutySettings | None = None
    slack: SlackSettings | None = None
    grafana: GrafanaSettings | None = None
    email: EmailSettings | None = None
    webhook: WebhookSettings | None = None
    silences: list[Silence] = Field(default_factory=list)
    rules: Annotated[dict[RuleName, AlertRule], BeforeValidator(_merge_rules)] = Field(
        default_factory=dict, validate_default=True)

    _url = field_validator("prometheus_url")(_check_url)

    @field_validator("evaluation_interval", "query_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0")
        return value

    @model_validator(mode="after")
    def _known_names(self) -> AlertsSettings:
        names = [rule.alertname for rule in self.rules.values() if rule.alertname]
        if len(set(names)) != len(names):
            raise ValueError("rules: two rules have the same alertname")
        for silence in self.silences:
            if silence.rule not in self.rules:
                raise ValueError(f"silences: rule '{silence.rule}' is not a rule "
                                 f"(rules: {', '.join(self.rules)})")
        for name, rule in self.rules.items():
            for channel in rule.channels or []:
                if self.channel_settings(channel) is None and channel not in _default_channels(name):
                    raise ValueError(f"rules.{name}.channels: channel '{channel}' is not configured "
                                     f"(add an [alerts.{channel}] section)")
        for severity in self.routes.model_fields_set:
            for channel in self.routes.channels_for(severity):
                if self.channel_settings(channel) is None:
                    raise ValueError(f"routes.{severity}: channel '{channel}' is not configured "
                                     f"(add an [alerts.{channel}] section)")
        return self

    def channel_settings(self, name: str) -> BaseModel | None:
        """The settings of a channel, or None when it is not configured."""
        if name not in CHANNEL_NAMES:
            return None
        return getattr(self, name)

    def configured_channels(self) -> list[str]:
        return [name for name in CHANNEL_NAMES if getattr(self, name) is not None]

    def channels_of(self, rule: str) -> list[str]:
        """Where an alert of ``rule`` goes: its own channels, else its severity's route;
        channels without settings are left out (the alert still shows in the catalog)."""
        settings = self.rules[rule]
        wanted = settings.channels if settings.channels is not None else self.routes.channels_for(
            settings.severity)
        return [name for name in wanted if name in self.configured_channels()]

    def alertname_of(self, rule: str) -> str:
        return self.rules[rule].alertname or "Lifeboat" + "".join(
            part.capitalize() for part in rule.split("_"))


def _default_channels(rule: str) -> list[str]:
    """The channels a default rule names: left out quietly when not configured, so the
    defaults work on a file that configures only some channels."""
    return list(DEFAULT_RULES.get(rule, {}).get("channels") or [])


assert set(SEVERITIES) == set(RoutesSettings.model_fields)
