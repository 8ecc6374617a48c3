"""Alert channels: where on-call alerts are delivered, one module per destination.

Every channel takes plain constructor arguments and has ``send(notice) -> Delivery``, which
makes one attempt and never raises for a delivery problem (see :mod:`alerts.channels.base`);
:func:`alerts.channels.retry.deliver` sends again, with backoff, while the outcome is
``retryable``. The modules are imported on demand, so a deployment that only mails does not
load the PagerDuty or Slack clients:

- :mod:`~alerts.channels.pagerduty`: ``PagerDutyChannel``, Events API v2 (trigger/ack/resolve);
- :mod:`~alerts.channels.slack`: ``SlackChannel``, incoming webhook or bot token (threads);
- :mod:`~alerts.channels.grafana`: ``GrafanaChannel``, annotations that become regions;
- :mod:`~alerts.channels.email`: ``EmailChannel``, SMTP mails threaded per incident;
- :mod:`~alerts.channels.webhook`: ``WebhookChannel``, the notice as JSON to any receiver.
"""
