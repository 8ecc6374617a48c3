"""Real Prometheus-family servers (Debian's packages) on loopback ports for the tests: one
way to start one, wait until it is ready and stop it; Alertmanager and its alerts API."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration.pg import free_port


@contextlib.contextmanager
def served(package: str, command: list[str], port: int, log: Path) -> Iterator[str]:
    """Run ``package``'s binary with ``command`` (listening on 127.0.0.1:``port``) until its
    ``/-/ready`` answers 200; yield its URL; terminate it on the way out."""
    binary = shutil.which(package) or shutil.which(package.removeprefix("prometheus-"))
    assert binary, f"{package} is not installed (scripts/setup installs Debian's package)"
    with open(log, "w") as handle:
        process = subprocess.Popen([binary, *command], stdout=handle, stderr=handle)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"{package} exited: {log.read_text()}"
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{package} not ready: {log.read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def alertmanager(home: Path, config_text: str) -> Iterator[str]:
    """Alertmanager with ``config_text`` as its configuration, its state under ``home``."""
    port = free_port()
    config = home / "alertmanager.yml"
    config.write_text(config_text)
    with served("prometheus-alertmanager",
                [f"--config.file={config}", f"--storage.path={home / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                 "--log.level=warn"], port, home / "alertmanager.log") as url:
        yield url


def post_alerts(url: str, alerts: list[dict[str, Any]]) -> None:
    """Post ``alerts`` to Alertmanager's API as Prometheus would."""
    request = urllib.request.Request(f"{url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
