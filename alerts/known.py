"""The rules the router knows: the configuration's, plus the alerts Lifeboat raises about
its own alerting, which no Prometheus evaluates.

``alerting_unavailable`` (``LifeboatAlertingUnavailable``, critical) fires when Prometheus
cannot be read or has not loaded Lifeboat's rules: without it, a broken alerting path would
look exactly like a quiet night. It is not in the exported rules file; it is routed like any
other rule, by its severity's route (``[alerts.routes] critical``), so a configuration routes
it without naming it.
"""

from __future__ import annotations

from engine.config.alerting import AlertRule, AlertsSettings

ALERTING_UNAVAILABLE = "alerting_unavailable"

#: Rules raised by Lifeboat itself (source "lifeboat"), never exported to Prometheus.
SYNTHETIC_RULES: dict[str, AlertRule] = {
    ALERTING_UNAVAILABLE: AlertRule.model_construct(
        signal=None, expr=None, threshold=None, window=None, for_=0.0, match={},
        severity="critical", channels=None, alertname="LifeboatAlertingUnavailable",
        summary="Lifeboat cannot read its alerts from Prometheus",
        description="Prometheus is unreachable or has not loaded Lifeboat's rules: no other alert "
                    "can fire until this is fixed.",
        runbook_url="alerts/runbooks.md#alerting_unavailable", cause="alerting", enabled=True,
        auto_remediation=None),
}


def rule_settings(settings: AlertsSettings, name: str) -> AlertRule | None:
    """The rule ``name``: the configuration's, else a synthetic one; None if unknown."""
    found = settings.rules.get(name)
    return found if found is not None else SYNTHETIC_RULES.get(name)


def known_rules(settings: AlertsSettings) -> dict[str, AlertRule]:
    """Every rule the router routes: the enabled configured rules and the synthetic ones."""
    rules = {name: rule for name, rule in settings.rules.items() if rule.enabled}
    for name, rule in SYNTHETIC_RULES.items():
        rules.setdefault(name, rule)
    return rules


def alertname_of(settings: AlertsSettings, name: str) -> str:
    if name in settings.rules:
        return settings.alertname_of(name)
    synthetic = SYNTHETIC_RULES[name]
    assert synthetic.alertname
    return synthetic.alertname


def channels_of(settings: AlertsSettings, name: str) -> list[str]:
    """Where an alert of rule ``name`` goes (configured channels only)."""
    if name in settings.rules:
        return settings.channels_of(name)
    rule = SYNTHETIC_RULES[name]
    wanted = rule.channels if rule.channels is not None else settings.routes.channels_for(rule.severity)
    return [channel for channel in wanted if channel in settings.configured_channels()]


def rule_for(settings: AlertsSettings, labels: dict[str, str]) -> str | None:
    """The rule an alert from Prometheus or Alertmanager belongs to: its ``rule`` label,
    else the rule whose alertname it carries; None for an alert that is not Lifeboat's."""
    named = labels.get("rule")
    if named and named in settings.rules:
        return named
    alertname = labels.get("alertname")
    for name in settings.rules:
        if settings.alertname_of(name) == alertname:
            return name
    for name, rule in SYNTHETIC_RULES.items():
        if rule.alertname == alertname:
            return name
    return None
