"""Slack, through slack-sdk: an incoming webhook, or a bot token and ``chat.postMessage``.

A webhook is the simplest to set up but cannot thread: every notice is a new message. With a
bot token the firing message's ``ts`` is the channel's ref, and the acknowledgement and the
resolution are posted as replies in that message's thread, so the whole story of one alert
stays in one place.

slack-sdk's retry handlers are disabled: the outcome says whether to retry, the caller
(:mod:`alerts.channels.retry`) decides when.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.webhook import WebhookClient

from alerts.channels.base import AlertNotice, Delivery, Outcome, outcome_of_status, redact
from alerts.channels.text import shorten, step_line, steps, value_text, when

EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
STATE_EMOJI = {"acknowledged": ":eyes:", "resolved": ":white_check_mark:"}
# Slack Web API errors (HTTP 200, ok=false) that a later attempt may get past; any other is a
# configuration a person must fix (invalid_auth, channel_not_found, not_in_channel, token_revoked...).
TRANSIENT_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}

_quiet = logging.getLogger("lifeboat.alerts.slack")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False  # slack-sdk logs request bodies and URLs at debug level


class SlackChannel:
    """Posts notices to Slack: ``webhook_url``, or ``token`` with ``channel``."""

    name = "slack"

    def __init__(self, webhook_url: str | None = None, token: str | None = None, channel: str | None = None,
                 api_url: str | None = None, timeout: float = 10.0) -> None:
        if bool(webhook_url) == bool(token):
            raise ValueError("SlackChannel needs either webhook_url or token (with channel), not both")
        if token and not channel:
            raise ValueError("SlackChannel with a bot token needs the channel to post to")
        self.webhook_url, self.token, self.channel = webhook_url, token, channel
        seconds = max(round(timeout), 1)  # slack-sdk's urllib timeouts are whole seconds
        self.webhook = (WebhookClient(webhook_url, timeout=seconds, retry_handlers=[], logger=_quiet)
                        if webhook_url else None)
        self.web = (WebClient(token, base_url=api_url or WebClient.BASE_URL, timeout=seconds,
                              retry_handlers=[], logger=_quiet) if token else None)
        # A webhook URL's path is its secret: an error message may show it without the host.
        self.secrets = [token, webhook_url, urlsplit(webhook_url).path if webhook_url else None]

    def send(self, notice: AlertNotice) -> Delivery:
        blocks, text = message(notice), fallback_text(notice)
        try:
            if self.webhook is not None:
                return self._by_webhook(blocks, text)
            return self._by_api(notice, blocks, text)
        except SlackRequestError as exc:  # slack-sdk refused the URL or proxy: configuration
            return self._delivery(Outcome.FAILED, f"not sent: {exc}")
        except OSError as exc:  # URLError, refused, timed out
            return self._delivery(Outcome.RETRYABLE, f"not delivered: {type(exc).__name__}: {exc}")

    def _by_webhook(self, blocks: list[dict[str, Any]], text: str) -> Delivery:
        assert self.webhook is not None
        response = self.webhook.send(text=text, blocks=blocks)
        detail = f"HTTP {response.status_code} {shorten(str(response.body), 200)}"
        return self._delivery(outcome_of_status(response.status_code), detail)

    def _by_api(self, notice: AlertNotice, blocks: list[dict[str, Any]], text: str) -> Delivery:
        assert self.web is not None
        thread = notice.refs.get(self.name) if notice.state != "firing" else None
        try:
            response = self.web.chat_postMessage(channel=self.channel, blocks=blocks, text=text,
                                                 thread_ts=thread)
        except SlackApiError as exc:
            status, error = exc.response.status_code, str(exc.response.get("error", "unknown"))
            transient = status == 429 or status >= 500 or error in TRANSIENT_ERRORS
            outcome = Outcome.RETRYABLE if transient else Outcome.FAILED
            return self._delivery(outcome, f"HTTP {status} {error}")
        ts = str(response.get("ts"))
        # A reply's handle is the thread it went to: that is what later follow-ups need.
        detail = f"posted {ts} in thread {thread}" if thread else f"posted {ts}"
        return self._delivery(Outcome.OK, detail, ref=thread or ts)

    def _delivery(self, outcome: Outcome, detail: str, ref: str | None = None) -> Delivery:
        return Delivery(self.name, outcome, redact(detail, self.secrets), ref)


def fallback_text(notice: AlertNotice) -> str:
    """The notification text (phone banners, screen readers), shown where blocks are not."""
    where = f" on {notice.cluster}" if notice.cluster else ""
    return shorten(f"{notice.state.upper()} {notice.severity}{where}: {notice.summary}", 3000)


def message(notice: AlertNotice) -> list[dict[str, Any]]:
    """The Block Kit blocks of a notice: header, description, fields, runbook, remediation, group."""
    emoji = STATE_EMOJI.get(notice.state, EMOJI.get(notice.severity, ":white_circle:"))
    label = "" if notice.state == "firing" else f"{notice.state.capitalize()}: "
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": shorten(f"{emoji} {label}{notice.summary}", 150)}}]
    if notice.description:
        blocks.append(_section(shorten(notice.description, 3000)))
    fields = [("Cluster", notice.cluster or "-"), ("Severity", notice.severity),
              ("Value", value_text(notice)), ("Threshold", notice.threshold or "-"),
              ("Started", when(notice.started_at)), ("Rule", f"`{notice.rule}` ({notice.alertname})")]
    if notice.state == "resolved":
        fields.append(("Resolved", when(notice.ended_at)))
    if notice.acknowledged_by:
        fields.append(("Acknowledged by", notice.acknowledged_by))
    blocks.append({"type": "section", "fields": [
        {"type": "mrkdwn", "text": f"*{name}*\n{shorten(value, 500)}"} for name, value in fields[:10]]})
    if notice.runbook_url:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Runbook"},
             "url": notice.runbook_url, "action_id": "runbook"}]})
    if notice.remediation:
        title = "*Remediation gave up* - full history:" if notice.escalated else "*Remediation so far:*"
        blocks += [_section(text) for text in _chunks([title] + [f"• {step_line(s)}" for s in steps(notice)])]
    if notice.group:
        listed = "\n".join(f"• `{key}`" for key in notice.group[:20])
        more = f"\n… and {len(notice.group) - 20} more" if len(notice.group) > 20 else ""
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": shorten(f"Fired together with:\n{listed}{more}", 3000)}]})
    return blocks


def _chunks(lines: list[str], limit: int = 3000, most: int = 10) -> list[str]:
    """Lines joined into texts of at most ``limit`` characters (Slack's per-section cap)."""
    texts: list[str] = []
    for line in lines:
        if texts and len(texts[-1]) + 1 + len(line) <= limit:
            texts[-1] += "\n" + line
        else:
            texts.append(shorten(line, limit))
    return texts[:most]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}
