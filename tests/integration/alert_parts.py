"""Parts of the alert integration tests: a receiver of JSON posts, a channel that posts each
notice to it, a metrics target whose value a test sets, and a configuration that enables
only the rules a test loads into Prometheus."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from alerts.channels.base import AlertNotice, Delivery, Outcome
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


class Receiver(_Server):
    """Records every JSON body POSTed to it; answers 200."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.bodies.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        super().__init__(Handler)

    def states(self, rule: str) -> list[str]:
        return [b["state"] for b in self.bodies if b["rule"] == rule]


class JsonChannel:
    """A channel (the protocol's) that POSTs each notice as JSON; ``name`` as configured."""

    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url

    def send(self, notice: AlertNotice) -> Delivery:
        body = json.dumps(dataclasses.asdict(notice), default=str).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return Delivery(self.name, Outcome.OK, f"HTTP {answer.status}",
                                ref=f"{self.name}-{notice.key[:8]}" if notice.state == "firing" else None)
        except (urllib.error.URLError, OSError) as exc:
            return Delivery(self.name, Outcome.RETRYABLE, f"{exc.__class__.__name__}: {exc}")


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
