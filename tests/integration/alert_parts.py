"""Parts of the alert integration tests: what a receiver got, a metrics target whose value a
test sets, and a configuration that enables only the rules a test loads into Prometheus."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from engine.config.alerting import DEFAULT_RULES


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def bodies(receiver: Any) -> list[dict[str, Any]]:
    """The JSON bodies a :class:`tests.receivers.HttpReceiver` got (the webhook channel's notices)."""
    return [r.json for r in receiver.requests if isinstance(r.json, dict)]


def states(receiver: Any, rule: str) -> list[str]:
    """The states of the notices of ``rule`` a receiver got, in order."""
    return [b["state"] for b in bodies(receiver) if b.get("rule") == rule]


class Target(_Server):
    """A metrics endpoint serving ``lifeboat_test_lag`` with the value a test sets."""

    def __init__(self, lag: float) -> None:
        self.lag = lag
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                data = f"# TYPE lifeboat_test_lag gauge\nlifeboat_test_lag {owner.lag}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")


ALWAYS = {"alert": "LifeboatBackupFailed", "expr": "vector(1)",
          "labels": {"severity": "critical", "rule": "backup_failure", "cause": "backup_failed",
                     "cluster": "main"},
          "annotations": {"summary": "backup failed on main", "threshold": "1 in 24h"}}
LAG = {"alert": "LifeboatReplicationDelay", "expr": "lifeboat_test_lag > 300",
       "labels": {"severity": "warning", "rule": "replication_delay", "cause": "replication_lag",
                  "cluster": "main"},
       "annotations": {"summary": "replication lag {{ $value }}s", "threshold": "300s"}}


def write_rules(path: Path, *rules: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"groups": [{"name": "lifeboat", "rules": list(rules)}]}))
    return path


def only_rules(*keep: str) -> str:
    """TOML turning off every default rule but ``keep``."""
    return "".join(f"[alerts.rules.{name}]\nenabled = false\n" for name in DEFAULT_RULES if name not in keep)


def until(check: Callable[[], Any], timeout: float, what: str, step: Callable[[], None] | None = None,
          pause: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if step is not None:
            step()
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(pause)
