"""Alert rules, routing and auto-remediation (on the roadmap; they read the collectors' metrics),
and the notifiers that deliver notices (:mod:`alerts.notifiers`: Slack, JSON webhook)."""
