"""How long the console's Overview takes to render with a long history: 10,000 jobs in the
catalog and 1,000 backups in the repository (issue 19: under 1 s).

What it builds (as root; PostgreSQL runs as ``postgres``):

- a real cluster, ``lifeboat init`` and one real full backup (the tests' helpers);
- the repository's other 999 backups are written with the repository's own manifest writer
  (:class:`engine.repository.manifest.ManifestWriter`, stored with ``put_stream_if_absent``
  under :func:`engine.repository.layout.manifest_key`, as ``backup`` stores them): each is a
  copy of the real backup's manifest (same file entries and packs: an incremental with
  nothing changed) with its own id, type and times, one every 10 minutes back in time, so
  ``list`` + ``read_summary`` cost what they cost with 1,000 real manifests. Taking 1,000
  real backups would take an hour and not change what the page reads;
- the catalog's jobs through the catalog's own API (``enqueue`` then ``finish``), of every
  kind and end state, plus one event each.

Then it renders the Overview with ``streamlit.testing.v1.AppTest`` as a logged-in viewer:
``cold`` runs clear ``st.cache_data`` first (the page after its reads expired, what someone
paged at 3 a.m. gets), ``warm`` runs do not. With ``--profile`` it prints cProfile's top
functions of one cold render. With ``--browser`` it also times the page in chromium (log in,
then reload until the first cluster card is drawn).

    .venv/bin/python bench/console_load.py [--jobs 10000] [--backups 1000] [--runs 7]
        [--profile] [--browser] [--out bench/results/console-load.md]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KINDS = ("backup", "verify", "expire", "drill", "restore", "preview")
STATES = ("succeeded", "succeeded", "succeeded", "failed", "cancelled")


def fill_catalog(config_path: Path, jobs: int) -> float:
    from engine.catalog.store import Catalog
    from engine.config.schema import load_config

    started = time.monotonic()
    with Catalog.open(load_config(config_path)) as catalog:
        for n in range(jobs):
            kind = KINDS[n % len(KINDS)]
            params = {"type": ("full", "incr", "diff")[n % 3]} if kind == "backup" else {}
            job_id = catalog.enqueue(kind, "main", params, "cron@agent" if n % 4 else "otto@console", 50)
            state = STATES[n % len(STATES)]
            catalog.finish(job_id, state, {"seconds": 1.0} if state == "succeeded" else None,
                           None if state == "succeeded" else "benchmark")
            catalog.add_event("main", f"job_{state}", f"{kind} job {job_id} {state}", job_id=job_id)
    return time.monotonic() - started


def fill_repository(config_path: Path, backups: int) -> float:
    """``backups - 1`` more manifests beside the real one (see the module's docstring)."""
    from datetime import UTC, datetime, timedelta

    from engine.context import open_context
    from engine.repository import layout
    from engine.repository.manifest import ManifestWriter, list_backup_ids, read_manifest

    started = time.monotonic()
    ctx = open_context(str(config_path))
    storage = ctx.storage
    real = list_backup_ids(storage, "main")[-1]
    manifest = read_manifest(storage, "main", real)
    entries = list(manifest.entries())
    newest = datetime.fromisoformat(manifest.summary.started_at.replace("Z", "+00:00")).astimezone(UTC)
    for n in range(1, backups):
        at = newest - timedelta(minutes=10 * n)
        kind = "full" if n % 50 == 0 else "diff" if n % 7 == 0 else "incr"
        backup_id = at.strftime("%Y%m%d-%H%M%S") + {"full": "F", "diff": "D", "incr": "I"}[kind]
        summary = dataclasses.replace(
            manifest.summary, id=backup_id, type=kind, base=None if kind == "full" else real,
            started_at=at.isoformat(), finished_at=(at + timedelta(seconds=40)).isoformat(),
            stopped_at=(at + timedelta(seconds=40)).isoformat())
        writer = ManifestWriter()
        for entry in entries:
            writer.add(entry)
        storage.put_stream_if_absent(layout.manifest_key("main", backup_id), writer.finish(summary))
    assert len(list_backup_ids(storage, "main")) == backups
    return time.monotonic() - started


def render_overview(at_class: object, warm: bool) -> float:
    import streamlit as st

    from dashboard import ui
    from dashboard.auth import Session

    if not warm:
        st.cache_data.clear()
    at = at_class.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)  # type: ignore
    now = time.time()
    at.session_state[ui.SESSION_KEY] = Session("vera", "viewer", "password", now, now)
    started = time.perf_counter()
    at.run()  # the default page: the Overview
    seconds = time.perf_counter() - started
    assert not at.exception, [e.value for e in at.exception]
    assert any(t.value == "Overview" for t in at.title), "the Overview did not render"
    assert any(s.value == "main" for s in at.subheader), "no cluster card on the Overview"
    return seconds


def browser_times(config_path: Path, runs: int) -> list[float]:
    """Seconds from a reload of the Overview to its first cluster card, in chromium."""
    import contextlib
    import signal
    import subprocess
    import urllib.request

    from playwright.sync_api import sync_playwright

    from tests.integration.console_env import PASSWORDS
    from tests.integration.pg import LIFEBOAT, free_port

    port = free_port()
    process = subprocess.Popen([str(LIFEBOAT), "--config", str(config_path), "console", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    found = []
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            time.sleep(0.3)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-dev-shm-usage"])
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_role("textbox", name="User").fill("vera")
            page.get_by_role("textbox", name="Password").fill(PASSWORDS["viewer"])
            page.get_by_role("button", name="Log in").click()
            page.get_by_text("Logged in as vera").wait_for()
            for _ in range(runs):
                time.sleep(11)  # past the Overview's cache (ttl 10 s): a cold read each time
                started = time.perf_counter()
                page.get_by_role("link", name="Overview").first.click()
                page.get_by_text("Last backup:").first.wait_for()
                found.append(time.perf_counter() - started)
                page.get_by_role("link", name="Audit").first.click()
                page.get_by_role("heading", name="Audit").first.wait_for()
            browser.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--backups", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    import logging

    from streamlit.testing.v1 import AppTest

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    os.environ.setdefault("STREAMLIT_LOGGER_LEVEL", "error")

    from tests.integration.agent import configure
    from tests.integration.console_env import console_settings
    from tests.integration.pg import Lifeboat, Workspace, free_port

    workspace = Workspace()
    env = Lifeboat.create(workspace)
    try:
        configure(env, top_extra=console_settings(free_port()))
        env.cluster.start()
        env.run("init")
        env.cluster.sql("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 10000) g")
        env.run("backup", "--type", "full")
        repo_seconds = fill_repository(env.config, args.backups)
        catalog_seconds = fill_catalog(env.config, args.jobs)
        print(f"filled: {args.backups} backups in {repo_seconds:.1f}s, {args.jobs} jobs in "
              f"{catalog_seconds:.1f}s", file=sys.stderr)
        os.environ["LIFEBOAT_CONFIG"] = str(env.config)
        render_overview(AppTest, warm=False)  # imports, the context (st.cache_resource)
        cold = [render_overview(AppTest, warm=False) for _ in range(args.runs)]
        warm = [render_overview(AppTest, warm=True) for _ in range(args.runs)]
        profile = ""
        if args.profile:
            # AppTest runs the page in a thread of its own: profile the page's reads here
            import streamlit as st

            from dashboard import data

            st.cache_data.clear()
            profiler = cProfile.Profile()
            profiler.enable()
            data.overview()
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
            profile = out.getvalue()
            print(profile, file=sys.stderr)
        browser = browser_times(env.config, min(args.runs, 3)) if args.browser else []
    finally:
        env.cleanup()
        workspace.remove()
    lines = [f"- jobs in the catalog: {args.jobs:,}; backups in the repository: {args.backups:,}",
             f"- Overview, cold (st.cache_data cleared), AppTest: median {statistics.median(cold):.3f} s "
             f"(min {min(cold):.3f}, max {max(cold):.3f}, {len(cold)} runs)",
             f"- Overview, warm (cached reads), AppTest: median {statistics.median(warm):.3f} s "
             f"(min {min(warm):.3f}, max {max(warm):.3f}, {len(warm)} runs)"]
    if browser:
        lines.append(f"- Overview in chromium, cold, click to first cluster card: median "
                     f"{statistics.median(browser):.3f} s ({', '.join(f'{b:.2f}' for b in browser)})")
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
