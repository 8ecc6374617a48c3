"""The ops console in a real browser: Debian's chromium driven by Playwright against
``lifeboat console`` on a loopback port, with a running agent. Screenshots of every page go
to tests/artifacts/console/ (kept by the run, ignored by git)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.agent import running_agent
from tests.integration.console_browser import CHROMIUM, chromium, serving
from tests.integration.console_env import PASSWORDS, ConsoleEnv, make
from tests.integration.pg import Cluster, Workspace, free_port

ARTIFACTS = Path(__file__).parents[1] / "artifacts" / "console"
PAGES = ("Overview", "Backups", "Restore", "Alerts", "Drills", "Metrics", "Audit")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def served(workspace: Workspace) -> Iterator[tuple[ConsoleEnv, str]]:
    console = make(workspace, gap=1.0)  # a whole second between the writes and the time
    try:
        with running_agent(console.env), serving(console, free_port(), workspace.root / "console.log") as url:
            yield console, url
    finally:
        console.env.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as launched:
        yield launched


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


# the restore flow ---------------------------------------------------------------------------

#: Records every text a progress bar shows, however briefly (the page redraws it twice a second).
WATCH_PROGRESS = """() => {
  window.__progress = [];
  const seen = () => document.querySelectorAll('[data-testid="stProgress"]').forEach(bar => {
    const text = bar.innerText.trim();
    if (text && window.__progress[window.__progress.length - 1] !== text) window.__progress.push(text);
  });
  new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""

READ_TABLE = """table => [Array.from(table.querySelectorAll('thead th'), th => th.innerText.trim()),
  Array.from(table.querySelectorAll('tbody tr'),
             tr => Array.from(tr.querySelectorAll('td, th'), td => td.innerText.trim()))]"""


def catalog_job(console: ConsoleEnv, job_id: int) -> object:
    from engine.catalog.store import Catalog
    from engine.config.schema import load_config

    with Catalog.open(load_config(console.config)) as catalog:
        return catalog.job(job_id)


def newest_job(console: ConsoleEnv, kind: str) -> object:
    from engine.catalog.store import Catalog
    from engine.config.schema import load_config

    with Catalog.open(load_config(console.config)) as catalog:
        return catalog.jobs("main", kind=kind, limit=1)[0]


def shot(page: object, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"restore-flow-{name}.png"), full_page=True)  # type: ignore


def type_segments(page: object, group: str, values: list[str]) -> None:
    """Type into a date or time field's segments (year, month ... second), one after another."""
    first = page.get_by_role("group", name=group).get_by_role("spinbutton").first  # type: ignore
    first.click()
    for value in values:
        page.keyboard.type(value)  # type: ignore[attr-defined]
    page.keyboard.press("Tab")  # type: ignore[attr-defined]


def choose_time(page: object, at: datetime) -> None:
    page.get_by_role("combobox", name="Cluster").click()  # type: ignore[attr-defined]
    page.get_by_role("option", name="main").click()  # type: ignore[attr-defined]
    page.get_by_text("A date and time").click()  # type: ignore[attr-defined]
    page.get_by_role("group", name="Time (UTC, to the second)").wait_for()  # type: ignore[attr-defined]
    type_segments(page, "Date (UTC)", [f"{at:%Y}", f"{at:%m}", f"{at:%d}"])
    type_segments(page, "Time (UTC, to the second)", [f"{at:%H}", f"{at:%M}", f"{at:%S}"])
    page.wait_for_timeout(800)  # type: ignore[attr-defined]


def destination(page: object, pgdata: Path, port: int) -> None:
    box = page.get_by_role("textbox", name="New data directory")  # type: ignore[attr-defined]
    box.fill(str(pgdata))
    box.press("Enter")
    port_box = page.get_by_role("spinbutton", name="Port")  # type: ignore[attr-defined]
    port_box.fill(str(port))
    port_box.press("Enter")
    page.wait_for_timeout(800)  # type: ignore[attr-defined]


def errors_shown(page: object) -> list[str]:
    return page.locator('[data-testid="stAlertContentError"]').all_inner_texts()  # type: ignore


def test_operator_restores_to_a_time_between_two_writes(served: tuple[ConsoleEnv, str], browser: object
                                                         ) -> None:
    console, url = served
    env = console.env
    at = datetime.fromisoformat(console.before)
    before_rows = [(i, "first" if i <= 50 else "second") for i in range(1, console.writes[0] + 1)]
    assert env.cluster.value("SELECT count(*) FROM public.t") == console.writes[1]  # the later write is there
    info = json.loads(env.run("info", "--cluster", "main", "--output", "json").stdout)
    backups = next(c for c in info["clusters"] if c["name"] == "main")["backups"]
    expected_backup = [b["id"] for b in backups
                       if datetime.fromisoformat(b["finished_at"].replace("Z", "+00:00")) <= at][-1]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = log_in(browser, url, "otto", PASSWORDS["operator"])
    visit(page, "Restore")

    # 1. the point: a time to the second, between the two writes
    choose_time(page, at)
    shot(page, "1-point")
    assert errors_shown(page) == []

    # 2. a new data directory and port
    target = env.workspace.path("console-restored", create=False)
    port = free_port()
    destination(page, target, port)

    # 3. the plan names the backup before the time and can run
    page.get_by_role("button", name="Plan the restore").click()
    page.get_by_text("Expected duration").wait_for()
    plan = page.locator('[data-testid="stMainBlockContainer"]').inner_text()
    assert expected_backup in plan, plan
    assert f"time {at.isoformat()}" in plan, plan
    assert f"{target} (absent" in plan or f"{target} (missing" in plan or str(target) in plan
    assert errors_shown(page) == [], errors_shown(page)
    shot(page, "3-plan")

    # 4. preview public.t at that point: its row count and first rows are the rows before the time
    page.get_by_text("4. Preview a table at that point").click()
    page.get_by_role("textbox", name="Table (schema.table)").fill("public.t")
    rows_box = page.get_by_role("spinbutton", name="Rows")
    rows_box.fill("100")
    rows_box.press("Enter")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Preview").click()
    page.get_by_text("Preview job").first.wait_for()
    page.get_by_text(re.compile(r"Preview job \d+ finished: 100%")).wait_for(timeout=90_000)
    main = page.locator('[data-testid="stMainBlockContainer"]').inner_text()
    assert re.search(rf"postgres\.public\.t at .*: {console.writes[0]} rows", main), main
    header, shown = page.locator('[data-testid="stTable"] table').first.evaluate(READ_TABLE)
    assert header == ["id", "note"], header
    assert [tuple(row) for row in shown] == [(str(i), note) for i, note in before_rows], shown
    preview = newest_job(console, "preview")
    assert preview.state == "succeeded" and preview.requested_by == "otto@console"
    shot(page, "4-preview")

    # 5. type the name, click, and follow the progress bar through the phases to 100%
    page.get_by_role("textbox", name="Type the cluster's name (main) to confirm").fill("main")
    page.evaluate(WATCH_PROGRESS)
    page.get_by_role("button", name="Restore", exact=True).click()
    page.get_by_text(re.compile(r"Restore job \d+: ")).first.wait_for()
    shot(page, "5-progress")
    page.get_by_text(re.compile(r"Restore job \d+ finished: 100%")).wait_for(timeout=90_000)
    seen = page.evaluate("window.__progress")
    job = newest_job(console, "restore")
    assert job.state == "succeeded" and job.requested_by == "otto@console", job
    assert job.params["target"] == "time" and job.params["target_value"] == at.isoformat()
    order = ["writing files", "starting the server", "replaying WAL", "validating"]
    phases = [p for p in order if any(p in text for text in seen)]
    assert phases, seen  # the bar showed the restore under way, with its phase ...
    assert phases == sorted(phases, key=order.index), seen
    assert any(text.startswith(f"Restore job {job.id}: succeeded, 100%") for text in seen), seen  # to 100%
    # the result panel: the point reached, the gap to the target, the validation
    result = page.locator('[data-testid="stMainBlockContainer"]').inner_text()
    reached = job.result["reached"]
    assert "Point reached" in result and reached["lsn"] in result, result
    gap = job.result["target_gap_seconds"]
    assert gap is not None and 0 < gap < 10, job.result  # the last transaction replayed is before the time
    assert f"Target gap: {gap:,.3f} s from the last transaction recovered to the time asked" in result, result
    assert "Recovery stopped: recovery stopping before commit of transaction" in result, result
    validation = job.result["validation"]
    assert validation["passed"] and validation["row_counts"]["public.t"] == console.writes[0], validation
    assert f"Validation: row_counts: passed: 1 table in postgres, {console.writes[0]} rows" in result, result
    assert "Validation: amcheck: passed: pg_amcheck --heapallindexed: postgres without corruption" in result
    shot(page, "5-done")

    # the restored cluster answers on its port with exactly the rows written before the time
    restored = Cluster(target, port, target.parent / f"{target.name}.log", started=True)
    env.restored.append(restored)
    assert restored.sql("SELECT id, note FROM public.t ORDER BY id") == before_rows
    assert not restored.value("SELECT pg_is_in_recovery()")
    page.close()


def test_operator_cancels_a_running_restore(served: tuple[ConsoleEnv, str], browser: object) -> None:
    """A restore started from the page and cancelled there, while it runs, ends cancelled: its
    process is held (SIGSTOP) as soon as the agent starts it, so the cancel lands mid-run."""
    console, url = served
    page = log_in(browser, url, "otto", PASSWORDS["operator"])
    visit(page, "Restore")
    target = console.env.workspace.path("console-cancelled", create=False)
    destination(page, target, free_port())
    page.get_by_role("button", name="Plan the restore").click()
    page.get_by_text("Expected duration").wait_for()
    page.get_by_role("textbox", name="Type the cluster's name (main) to confirm").fill("main")
    before = 0
    with contextlib.suppress(IndexError):
        before = newest_job(console, "restore").id
    page.get_by_role("button", name="Restore", exact=True).click()
    page.get_by_text(re.compile(r"Restore queued as job \d+")).wait_for()
    deadline = time.monotonic() + 30
    while True:
        job = newest_job(console, "restore")
        if job.id != before and job.state == "running" and job.pid:
            break
        assert time.monotonic() < deadline, "the agent did not start the restore"
        time.sleep(0.01)
    os.kill(job.pid, signal.SIGSTOP)  # the agent's cancel resumes and stops it
    page.get_by_text(re.compile(rf"Restore job {job.id}: running")).wait_for()
    shot(page, "6-cancel")
    page.get_by_role("button", name=f"Cancel job {job.id}", exact=True).click()
    deadline = time.monotonic() + 30
    while True:
        try:
            os.kill(job.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the cancelled restore's process still runs"
        time.sleep(0.1)
    ended = catalog_job(console, job.id)
    assert ended.state == "cancelled" and "otto@console" in (ended.error or ""), ended
    assert not (target / "postmaster.pid").exists()
    page.get_by_text(re.compile(rf"Restore job {job.id}: cancelled")).wait_for()
    shot(page, "6-cancelled")
    page.close()
