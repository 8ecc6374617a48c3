"""Alert rules, routing and auto-remediation (on the roadmap; they read the collectors' metrics)."""
