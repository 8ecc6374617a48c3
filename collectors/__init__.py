"""Prometheus exporter and readers (the collectors issue builds them on the engine's catalog)."""
