"""A real Prometheus (Debian's package) on a loopback port, scraping every second, for
tests that assert on what Lifeboat exports; read through prometheus-api-client."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_api_client import PrometheusConnect

from tests.integration.pg import Workspace, free_port


@contextlib.contextmanager
def prometheus(workspace: Workspace, targets: list[str], rule_files: list[Path] = (),
               lifecycle: bool = False, port: int | None = None) -> Iterator[PrometheusConnect]:
    """``lifecycle``: accept ``POST /-/reload`` (a test that changes the rules files);
    ``port``: listen there (a configuration written before names it), else on a free one."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (scripts/setup installs Debian's package)"
    port = port or free_port()
    home = workspace.path(f"prometheus-{port}")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": "lifeboat", "static_configs": [{"targets": targets}]}],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = home / "prometheus.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [binary, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
             *(["--web.enable-lifecycle"] if lifecycle else [])],
            stdout=handle, stderr=handle)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"prometheus exited: {log.read_text()}"
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"prometheus not ready: {log.read_text()}"
            time.sleep(0.2)
        yield PrometheusConnect(url=url, disable_ssl=True)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def values(prom: PrometheusConnect, query: str) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant query's samples: labels (without __name__, job, instance) -> value."""
    found = {}
    for sample in prom.custom_query(query):
        labels = tuple(sorted((k, v) for k, v in sample["metric"].items()
                              if k not in ("__name__", "job", "instance")))
        found[labels] = float(sample["value"][1])
    return found


def value(prom: PrometheusConnect, query: str) -> float | None:
    """The single value of a query that returns one series (None: no series)."""
    found = values(prom, query)
    assert len(found) <= 1, f"{query} returned {len(found)} series: {found}"
    return next(iter(found.values()), None)


def eventually(prom: PrometheusConnect, query: str, check: Callable[[float], bool],
               timeout: float = 45, what: str = "") -> float:
    """Wait until ``query`` has one value for which ``check`` holds; that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = value(prom, query)
        if last is not None and check(last):
            return last
        assert time.monotonic() < deadline, f"{what or query}: last value {last}"
        time.sleep(0.5)
