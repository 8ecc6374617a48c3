"""The ops console in a real browser: Debian's chromium driven by Playwright against
``lifeboat console`` on a loopback port, with a running agent. Screenshots of every page go
to tests/artifacts/console/ (kept by the run, ignored by git)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agent import running_agent
from tests.integration.console_env import PASSWORDS, ConsoleEnv, make
from tests.integration.pg import LIFEBOAT, Workspace, free_port

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parents[1] / "artifacts" / "console"
PAGES = ("Overview", "Backups", "Restore", "Alerts", "Drills", "Metrics", "Audit")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def served(workspace: Workspace) -> Iterator[tuple[ConsoleEnv, str]]:
    console = make(workspace, gap=0.5)
    port = free_port()
    log = workspace.root / "console.log"
    with running_agent(console.env), open(log, "w") as out:
        process = subprocess.Popen([str(LIFEBOAT), "--config", str(console.config), "console",
                                    "--port", str(port)], stdout=out, stderr=out, start_new_session=True)
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
            yield console, url
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(20)
            console.env.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


def log_in(browser: object, url: str, user: str, password: str) -> object:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page.set_default_timeout(30_000)
    page.goto(url)
    page.get_by_role("textbox", name="User").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_text(f"Logged in as {user}").wait_for()
    return page


def visit(page: object, title: str) -> None:
    page.get_by_role("link", name=title).first.click()  # type: ignore[attr-defined]
    page.get_by_role("heading", name=title).first.wait_for()  # type: ignore[attr-defined]
    page.wait_for_timeout(1500)  # let charts and tables draw  # type: ignore[attr-defined]


def jobs_count(console: ConsoleEnv) -> int:
    from engine.catalog.store import Catalog
    from engine.config.schema import load_config

    with Catalog.open(load_config(console.config)) as catalog:
        return len(catalog.jobs(limit=10_000))


def test_operator_sees_every_page(served: tuple[ConsoleEnv, str], browser: object) -> None:
    _console, url = served
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = log_in(browser, url, "otto", PASSWORDS["operator"])
    for title in PAGES:
        visit(page, title)
        assert page.get_by_text("Traceback").count() == 0, title
        page.screenshot(path=str(ARTIFACTS / f"operator-{title.lower()}.png"), full_page=True)
    visit(page, "Backups")
    assert page.get_by_role("button", name="Start backup").count() == 1
    visit(page, "Metrics")
    assert page.get_by_text("cannot be read").count() >= 1  # no Prometheus in this test
    page.close()


def test_viewer_has_no_action_and_cannot_forge_one(served: tuple[ConsoleEnv, str], browser: object) -> None:
    console, url = served
    page = log_in(browser, url, "vera", PASSWORDS["viewer"])
    before = jobs_count(console)
    for title in PAGES:
        visit(page, title)
        for label in ("Restore", "Plan the restore", "Start backup", "Start verify", "Start drill",
                      "Acknowledge", "Silence", "Cancel"):
            assert page.get_by_role("button", name=label, exact=True).count() == 0, (title, label)
        page.screenshot(path=str(ARTIFACTS / f"viewer-{title.lower()}.png"), full_page=True)
    # a crafted link that fills in a restore's choices starts nothing for a viewer
    page.goto(f"{url}/restore?restore_cluster=main&restore_point=latest&restore_pgdata=/var/tmp/forged")
    page.wait_for_timeout(2000)
    assert page.get_by_role("button", name="Restore", exact=True).count() == 0
    assert jobs_count(console) == before
    page.close()
