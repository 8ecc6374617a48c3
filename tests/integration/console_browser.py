"""The console as a browser sees it: ``lifeboat console`` served on a loopback port, and
Debian's chromium driven by Playwright (``playwright install`` cannot download here)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration.console_env import ConsoleEnv
from tests.integration.pg import LIFEBOAT

CHROMIUM = Path("/usr/bin/chromium")


@contextlib.contextmanager
def serving(console: ConsoleEnv, port: int, log: Path, cwd: Path | None = None) -> Iterator[str]:
    """``lifeboat console`` on 127.0.0.1:``port`` until its health check answers; its URL."""
    with open(log, "w") as out:
        process = subprocess.Popen([str(LIFEBOAT), "--config", str(console.config), "console",
                                    "--port", str(port)], stdout=out, stderr=out, cwd=cwd,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian chromium under Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield launched
        finally:
            launched.close()
