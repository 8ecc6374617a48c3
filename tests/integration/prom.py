"""A real Prometheus (Debian's package) on a loopback port, scraping every second, for
tests that assert on what Lifeboat exports; read through prometheus-api-client."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_api_client import PrometheusConnect

from tests.integration.pg import Workspace, free_port
from tests.integration.servers import served


@contextlib.contextmanager
def prometheus(workspace: Workspace, targets: list[str], rule_files: list[Path] = (),
               lifecycle: bool = False, port: int | None = None) -> Iterator[PrometheusConnect]:
    """``lifecycle``: accept ``POST /-/reload`` (a test that changes the rules files);
    ``port``: listen there (a configuration written before names it), else on a free one."""
    port = port or free_port()
    home = workspace.path(f"prometheus-{port}")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": "lifeboat", "static_configs": [{"targets": targets}]}],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    with served("prometheus", [f"--config.file={home / 'prometheus.yml'}",
                               f"--storage.tsdb.path={home / 'data'}",
                               f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                               *(["--web.enable-lifecycle"] if lifecycle else [])],
                port, home / "prometheus.log") as url:
        yield PrometheusConnect(url=url, disable_ssl=True)


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
