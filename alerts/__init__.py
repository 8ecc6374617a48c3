"""Alert rules, routing and auto-remediation (on the roadmap; they read the collectors' metrics),
the alert channels (:mod:`alerts.channels`: PagerDuty, Slack, Grafana, email, JSON webhook) and the
drill-notice notifiers (:mod:`alerts.notifiers`: Slack, JSON webhook)."""
