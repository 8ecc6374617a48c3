"""The configured channels, built from ``[alerts.<channel>]`` (each module imported only when
its channel is configured, so a configuration without Slack never loads slack-sdk)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from engine.errors import ConfigError

if TYPE_CHECKING:
    from alerts.channels.base import Channel
    from engine.config.alerting import AlertsSettings


def build_channels(settings: AlertsSettings, only: Iterable[str] | None = None) -> dict[str, Channel]:
    """name -> Channel for every configured channel (of ``only``, when given). A channel
    whose secret is missing (its ``*_env`` variable is unset) or whose settings its client
    refuses is a ConfigError naming it; every such problem is reported at once."""
    channels: dict[str, Channel] = {}
    problems: list[str] = []
    if only is not None:
        wanted = set(only)
        settings = settings.model_copy(update={name: None for name in settings.configured_channels()
                                               if name not in wanted})

    def missing(section: str, what: str, env: str | None) -> None:
        where = f"environment variable {env} is not set" if env else "it is not set"
        problems.append(f"[alerts.{section}] {what}: {where}")

    if (pd := settings.pagerduty) is not None:
        if not pd.key():
            missing("pagerduty", "routing_key", pd.routing_key_env)
        else:
            try:
                from alerts.channels.pagerduty import PagerDutyChannel

                channels["pagerduty"] = PagerDutyChannel(
                    pd.key() or "", api_url=pd.api_url, ca_file=str(pd.ca_file) if pd.ca_file else None,
                    timeout=pd.timeout)
            except ValueError as exc:
                problems.append(f"[alerts.pagerduty] {exc}")
    if (slack := settings.slack) is not None:
        webhook, token = slack.webhook(), slack.bot_token()
        if not webhook and not token:
            if slack.webhook_url_env:
                missing("slack", "webhook_url", slack.webhook_url_env)
            else:
                missing("slack", "token", slack.token_env)
        else:
            try:
                from alerts.channels.slack import SlackChannel

                channels["slack"] = SlackChannel(webhook_url=webhook, token=token, channel=slack.channel,
                                                 api_url=slack.api_url, timeout=slack.timeout)
            except ValueError as exc:
                problems.append(f"[alerts.slack] {exc}")
    if (grafana := settings.grafana) is not None:
        if grafana.token_env and not grafana.api_token():
            missing("grafana", "token", grafana.token_env)
        else:
            from alerts.channels.grafana import GrafanaChannel

            channels["grafana"] = GrafanaChannel(
                grafana.url, token=grafana.api_token(), dashboard_uid=grafana.dashboard_uid,
                timeout=grafana.timeout, ca_file=str(grafana.ca_file) if grafana.ca_file else None)
    if (email := settings.email) is not None:
        if email.password_env and not email.secret_password():
            missing("email", "password", email.password_env)
        else:
            from alerts.channels.email import EmailChannel

            channels["email"] = EmailChannel(
                email.host, email.port, email.sender, list(email.recipients), username=email.username,
                password=email.secret_password(), starttls=email.starttls, ssl=email.ssl,
                timeout=email.timeout)
    if (hook := settings.webhook) is not None:
        try:
            from alerts.channels.webhook import WebhookChannel

            channels["webhook"] = WebhookChannel(hook.url, hook.timeout)
        except ValueError as exc:
            problems.append(f"[alerts.webhook] {exc}")
    if problems:
        raise ConfigError("alert channels: " + "; ".join(problems))
    return channels
