"""The ops console's pages (streamlit.testing AppTest) against a real catalog and repository
made by real backups, as each role; actions refused on the server side and audited."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import actions, auth, ui
from engine.catalog.store import Catalog
from engine.config.schema import load_config
from engine.context import open_context
from tests.integration.console_env import MAX_FAILED, PASSWORDS, USERS, ConsoleEnv, make
from tests.integration.pg import Workspace

APP = str(Path(__file__).parents[2] / "dashboard" / "app.py")
PAGES = ("overview", "backups", "restore", "alerts", "drills", "metrics", "audit")
ACTION_BUTTONS = ("Start backup", "Start verify", "Start drill", "Restore", "Acknowledge", "Silence",
                  "Cancel", "Preview", "Plan the restore")
NAME_OF = {role: name for name, role in USERS.items()}


@pytest.fixture(scope="module")
def console(workspace: Workspace) -> Iterator[ConsoleEnv]:
    made = make(workspace)
    old = os.environ.get("LIFEBOAT_CONFIG")
    os.environ["LIFEBOAT_CONFIG"] = str(made.config)
    try:
        yield made
    finally:
        if old is None:
            os.environ.pop("LIFEBOAT_CONFIG", None)
        else:
            os.environ["LIFEBOAT_CONFIG"] = old
        made.env.cleanup()


def session(role: str, idle: float = 0.0) -> auth.Session:
    now = time.time()
    return auth.Session(NAME_OF[role], role, "password", now - idle - 1, now - idle)


def app(role: str | None = None, idle: float = 0.0) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if role is not None:
        at.session_state[ui.SESSION_KEY] = session(role, idle)
    return at


def page(at: AppTest, name: str) -> AppTest:
    at.run()
    at.switch_page(f"pages/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def labels(at: AppTest) -> set[str]:
    return {b.label for b in at.button}


def catalog(console: ConsoleEnv) -> Catalog:
    return Catalog.open(load_config(console.config))


def newest_job(console: ConsoleEnv) -> int:
    with catalog(console) as c:
        return max((j.id for j in c.jobs(limit=1)), default=0)


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_every_page_renders_for_each_role(console: ConsoleEnv, role: str) -> None:
    shown: dict[str, set[str]] = {}
    for name in PAGES:
        at = page(app(role), name)
        text = " ".join(str(m.value) for m in (*at.markdown, *at.caption, *at.subheader, *at.title))
        assert "Unknown user" not in text
        shown[name] = labels(at)
        if name == "overview":
            assert any(m.label == "RPO exposure" for m in at.metric)
            assert "main" in [s.value for s in at.subheader]
            assert any(m.label == "Firing alerts" and "1" in m.value for m in at.metric)
            assert any(m.label == "Last drill" and "failed" in m.value for m in at.metric)
            # each state also as a coloured word (the emoji are boxes without an emoji font)
            badges = {m.value for m in at.markdown if "-badge[" in str(m.value)}
            assert {":red-badge[firing]", ":red-badge[failed]"} <= badges, badges
            assert len([b for b in badges if "objective]" in b or "unknown]" in b]) >= 1, badges
        if name == "backups":
            assert len(at.dataframe) >= 1 and len(at.dataframe[0].value) == 2  # the full and the incremental
        if name == "drills":
            assert any("row_counts" in e.value for e in at.error)
        if name == "audit":
            assert len(at.dataframe) == 1 or at.info
    everything = set().union(*shown.values())
    if role == "viewer":
        assert not everything & set(ACTION_BUTTONS), everything & set(ACTION_BUTTONS)
    else:
        assert {"Start backup", "Start verify", "Start drill", "Acknowledge", "Silence"} <= everything


def test_no_secret_is_shown(console: ConsoleEnv) -> None:
    config_text = console.config.read_text()
    hashes = [line.split('"')[1] for line in config_text.splitlines() if line.startswith("password_hash")]
    for name in PAGES:
        at = page(app("admin"), name)
        rendered = str([e.proto for e in at.main]) + str([e.proto for e in at.sidebar])
        assert not any(h in rendered or h.split("$")[-1] in rendered for h in hashes), name


def test_viewer_forged_actions_are_refused_and_audited(console: ConsoleEnv) -> None:
    ctx = open_context(console.config, "main")
    before = newest_job(console)
    viewer = session("viewer")
    forged = [
        lambda: actions.start_job(ctx, viewer, "backup", "main", {"type": "full"}),
        lambda: actions.start_job(ctx, viewer, "drill", "main", {"kind": "full"}),
        lambda: actions.start_restore(ctx, viewer, {"pgdata": "/var/tmp/forged", "start": True}, "main"),
        lambda: actions.start_preview(ctx, viewer, {"table": "public.t"}),
        lambda: actions.cancel(ctx, viewer, before),
        lambda: actions.acknowledge(ctx, viewer, 1),
        lambda: actions.silence(ctx, viewer, "backup_failure", None, 60, "forged"),
    ]
    for attempt in forged:
        with pytest.raises(actions.Refused, match="viewer may not"):
            attempt()
    assert newest_job(console) == before
    entries = ctx.catalog.audit.entries(actor="vera", limit=20)
    refused = {e.action for e in entries if e.result == "refused" and e.source == "console"}
    assert refused >= {"backup", "drill", "restore", "preview", "cancel", "alerts.ack", "alerts.silence"}
    with catalog(console) as c:
        assert c.alerts.get(1).state == "firing"  # not acknowledged
    # an expired session is refused too, whatever its role
    with pytest.raises(actions.Refused, match="expired"):
        actions.start_job(ctx, session("admin", idle=301), "backup", "main", {"type": "full"})


def test_operator_starts_a_backup_from_the_page(console: ConsoleEnv) -> None:
    at = page(app("operator"), "backups")
    at.selectbox(key="backup_type").set_value("incr")
    next(b for b in at.button if b.label == "Start backup").click()
    at.run()
    assert not at.exception
    assert any("queued as job" in s.value for s in at.success), [e.value for e in at.error]
    with catalog(console) as c:
        job = c.jobs(kind="backup", limit=1)[0]
        assert (job.state, job.params["type"], job.requested_by) == ("queued", "incr", "otto@console")
        entry = c.audit.entries(actor="otto", limit=1)[0]
        assert (entry.action, entry.result, entry.source, entry.detail) == ("backup", "queued", "console",
                                                                           f"job {job.id}")
        c.finish(job.id, "cancelled", error="not run by this test")


needs_planner = pytest.mark.skipif(ui.data.planner() is None, reason="the engine's restore planner "
                                   "(console-engine) is not merged yet")


def restore_page(role: str, console: ConsoleEnv, pgdata: str, port: int) -> AppTest:
    at = page(app(role), "restore")
    at.radio(key="restore_point").set_value("latest").run()
    at.text_input(key="restore_pgdata").set_value(pgdata)
    at.number_input(key="restore_port").set_value(port).run()
    next(b for b in at.button if b.label == "Plan the restore").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@needs_planner
def test_operator_enqueues_a_restore_into_a_new_directory(console: ConsoleEnv) -> None:
    from tests.integration.pg import free_port

    target, port = str(console.env.workspace.root / "console-restore"), free_port()
    at = restore_page("operator", console, target, port)
    assert not at.error, [e.value for e in at.error]
    assert [o for o in at.radio(key="restore_place").options] == ["A new data directory"]  # no in place
    at.text_input(key="restore_confirm").set_value("main")
    next(b for b in at.button if b.label == "Restore").click()
    at.run()
    assert any("Restore queued as job" in s.value for s in at.success), [e.value for e in at.error]
    with catalog(console) as c:
        job = c.jobs(kind="restore", limit=1)[0]
        assert job.requested_by == "otto@console" and job.state == "queued"
        assert (job.params["pgdata"], job.params["port"], job.params["start"], job.params["archive_mode"],
                job.params["target"]) == (target, port, True, "off", "latest")
        entry = c.audit.entries(actor="otto", limit=1)[0]
        assert (entry.action, entry.result, entry.detail) == ("restore", "queued", f"job {job.id}")
        c.finish(job.id, "cancelled", error="not run by this test")


@needs_planner
def test_admin_may_choose_in_place(console: ConsoleEnv) -> None:
    at = page(app("admin"), "restore")
    assert "In place (replaces the cluster's data)" in at.radio(key="restore_place").options
    at.radio(key="restore_place").set_value("in_place").run()
    assert at.checkbox(key="restore_in_place_ok")  # the extra confirmation
    ctx = open_context(console.config, "main")
    settings = ctx.config.clusters["main"]
    before = newest_job(console)
    params = {"pgdata": str(settings.pgdata), "port": settings.port, "start": True, "stop_server": True}
    with pytest.raises(actions.Refused, match="operator may not restore in place"):
        actions.start_restore(ctx, session("operator"), params, "main", in_place_confirmed=True)
    with pytest.raises(actions.Refused, match="confirm it first"):
        actions.start_restore(ctx, session("admin"), params, "main", in_place_confirmed=False)
    assert newest_job(console) == before


@needs_planner
def test_bad_restore_input_is_refused_before_anything_is_queued(console: ConsoleEnv) -> None:
    from tests.integration.pg import free_port

    before = newest_job(console)
    # a wrong confirmation name, through the page
    at = restore_page("operator", console, str(console.env.workspace.root / "bad-confirm"), free_port())
    at.text_input(key="restore_confirm").set_value("mian")
    next(b for b in at.button if b.label == "Restore").click()
    at.run()
    assert any("confirmation does not match" in e.value for e in at.error)
    # a destination that exists and is not empty: the plan says so, the page shows it
    full = console.env.workspace.path("not-empty")
    (full / "file").write_text("x")
    at = restore_page("operator", console, str(full), free_port())
    assert at.error, "the plan of a non-empty destination shows a problem"
    ctx = open_context(console.config, "main")
    operator = session("operator")
    with pytest.raises(actions.Refused, match="the plan cannot run"):
        actions.start_restore(ctx, operator, {"pgdata": str(full), "port": free_port(), "start": True},
                              "main")
    # a port in use (the cluster's own)
    with pytest.raises(actions.Refused, match="the plan cannot run"):
        actions.start_restore(ctx, operator, {"pgdata": str(console.env.workspace.root / "p"),
                                              "port": console.env.cluster.port, "start": True}, "main")
    # a time outside the recovery window
    with pytest.raises(actions.Refused, match="the plan cannot run"):
        actions.start_restore(ctx, operator, {"pgdata": str(console.env.workspace.root / "old"),
                                              "port": free_port(), "start": True, "target": "time",
                                              "target_value": "2001-01-01T00:00:00+00:00"}, "main")
    assert newest_job(console) == before
    refused = [e for e in ctx.catalog.audit.entries(actor="otto", limit=10) if e.action == "restore"]
    assert len([e for e in refused if e.result == "refused"]) >= 4


def test_login_form_and_rate_limit(console: ConsoleEnv) -> None:
    def attempt(user: str, password: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        at.text_input(key="login_user").set_value(user)
        at.text_input(key="login_password").set_value(password)
        at.button[0].click()
        at.run()
        assert not at.exception
        return at

    at = attempt("otto", PASSWORDS["operator"])
    assert isinstance(at.session_state[ui.SESSION_KEY], auth.Session)
    assert at.session_state[ui.SESSION_KEY].role == "operator"
    for _ in range(MAX_FAILED):
        at = attempt("ada", "wrong")
        assert any("wrong password" in e.value for e in at.error)
    at = attempt("ada", PASSWORDS["admin"])  # the right password, but locked out
    assert any("Too many failed logins" in e.value for e in at.error)
    assert ui.SESSION_KEY not in at.session_state
    ctx = open_context(console.config)
    entries = [e for e in ctx.catalog.audit.entries(actor="ada", limit=10) if e.action == "login"]
    assert [e.result for e in entries[: MAX_FAILED + 1]] == ["refused"] * (MAX_FAILED + 1)
    assert entries[0].detail.startswith("locked out")
    # per client: failures of several users from one address lock that address out
    settings = ctx.config.console
    for name in ("nobody-1", "nobody-2", "nobody-3"):
        assert auth.login(ctx.catalog, settings, name, "x", "192.0.2.7").session is None
    locked = auth.login(ctx.catalog, settings, "vera", PASSWORDS["viewer"], "192.0.2.7")
    assert locked.session is None and "this address" in locked.message
    assert auth.login(ctx.catalog, settings, "vera", PASSWORDS["viewer"], "192.0.2.8").session is not None


def test_session_expires_after_idle_time(console: ConsoleEnv) -> None:
    at = app("operator", idle=301)
    at.run()
    assert not at.exception
    assert any("expired" in w.value for w in at.warning)
    assert at.text_input(key="login_password")
    at = app("operator", idle=200)  # within the timeout: still logged in
    at.run()
    assert ui.SESSION_KEY in at.session_state and not any("expired" in w.value for w in at.warning)


def test_prometheus_unreachable_shows_a_message_and_catalog_figures(console: ConsoleEnv) -> None:
    at = page(app("viewer"), "metrics")
    assert any("cannot be read" in w.value and str(console.prometheus_port) in w.value for w in at.warning)
    assert len(at.dataframe) == 1  # the catalog's own figures
    table = at.dataframe[0].value
    assert "Backups (count)" in set(table["figure"])
    values = dict(zip(zip(table["figure"], table["labels"], strict=True), table["value"], strict=True))
    assert values[("Backups (count)", "main, full, succeeded")] == "1"  # figures, not raw floats
    assert values[("Backup success rate", "main, diff")] == "—"  # no diff backup yet, not "None"


def charts(at: AppTest) -> dict[str, dict]:
    """The page's plotly figures by title."""
    import json

    figures = [json.loads(e.proto.spec) for e in at.get("plotly_chart")]
    return {f["layout"]["title"]["text"]: f for f in figures}


def series(figure: dict) -> dict[str, list[float]]:
    """Each trace's name and its finite y values (plotly may send them base64 encoded)."""
    import base64
    import math

    import numpy as np

    found = {}
    for trace in figure["data"]:
        y = trace["y"]
        if isinstance(y, dict):
            y = np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]).tolist()
        found[trace["name"]] = [float(v) for v in y if v is not None and not math.isnan(float(v))]
    return found


def x_span(figure: dict) -> float:
    from datetime import datetime

    low, high = (datetime.fromisoformat(str(t)) for t in figure["layout"]["xaxis"]["range"])
    return (high - low).total_seconds()


def test_metrics_page_charts_a_real_prometheus(console: ConsoleEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real exporter (``lifeboat exporter`` on the cluster with its backups and archived
    WAL) scraped by a real Prometheus on the console's configured port: every chart has
    data, and the time-range selector changes what is asked of Prometheus and the x axis."""
    import subprocess

    from prometheus_api_client import PrometheusConnect

    from engine.catalog import data_loss
    from engine.catalog.store import Catalog
    from tests.integration.agent import wait_for
    from tests.integration.pg import LIFEBOAT
    from tests.integration.prom import eventually, prometheus

    config = load_config(console.config)
    goals = config.clusters["main"]
    with Catalog.open(config) as catalog:  # a data-loss event to chart (the drill fills recovery times)
        data_loss.record(catalog, config, "main", [data_loss.Loss("wal_gap", "a segment gone")])
    asked: list[tuple[str, float]] = []
    original = PrometheusConnect.custom_query_range

    def recording(self, query, start_time, end_time, step, params=None):
        asked.append((query, (end_time - start_time).total_seconds()))
        return original(self, query, start_time, end_time, step, params)

    monkeypatch.setattr(PrometheusConnect, "custom_query_range", recording)
    log = console.env.workspace.root / "console-exporter.log"
    with open(log, "w") as handle:
        exporter = subprocess.Popen([str(LIFEBOAT), "--config", str(console.config), "exporter",
                                     "--duration", "120"], stdout=handle, stderr=handle)
    try:
        with prometheus(console.env.workspace, [f"127.0.0.1:{config.exporter.port}"],
                        port=console.prometheus_port) as prom:
            for query in ('lifeboat_backup_success_ratio{type="full"}', "lifeboat_wal_archive_lag_seconds",
                          "lifeboat_rpo_exposure_seconds", "lifeboat_rto_expected_seconds",
                          "sum(lifeboat_repository_bytes)"):
                eventually(prom, query, lambda v: v == v, what=f"{query} ({log})")  # not NaN
            began = time.time()

            def loaded() -> AppTest | None:
                at = page(app("viewer"), "metrics")
                found = charts(at)
                # the page asks up to the last 5 s boundary: wait until that holds samples
                return at if time.time() - began > 6 and all(
                    any(series(found.get(t, {"data": []})).values()) for t in (
                        "Backup success rate", "WAL archive lag", "RPO exposure against the objective",
                        "Expected RTO against the objective", "Repository bytes per tier",
                        "Data-loss events", "Recovery time (cumulative buckets, s)")) else None

            at = wait_for(loaded, 45, "the metrics page to chart Prometheus's samples")
            assert not at.warning, [w.value for w in at.warning]  # Prometheus answered every query
            assert any(str(console.prometheus_port) in c.value for c in at.caption)
            found = charts(at)
            rate = {name: values for name, values in series(found["Backup success rate"]).items() if values}
            full = next(values for name, values in rate.items() if "type=full" in name)
            assert set(full) == {1.0}  # the full backup succeeded (the incremental's series too)
            assert all(v >= 0 for values in series(found["WAL archive lag"]).values() for v in values)
            for title, measured, objective in (
                    ("RPO exposure against the objective", "series=exposure", goals.rpo_objective),
                    ("Expected RTO against the objective", "series=expected", goals.rto_objective)):
                lines = series(found[title])
                assert any(measured in name and values for name, values in lines.items()), (title, lines)
                goal = [values for name, values in lines.items() if "series=objective" in name]
                assert goal and set(goal[0]) == {objective}, (title, lines)
            tiers = series(found["Repository bytes per tier"])
            assert tiers and all("tier=" in name and values and min(values) > 0
                                 for name, values in tiers.items())
            losses = series(found["Data-loss events"])
            assert any("cause=wal_gap" in name and max(values) >= 1
                       for name, values in losses.items()), losses
            # the drill's 60 s restore: counted in every bucket from 1m up, in none below
            histogram = found["Recovery time (cumulative buckets, s)"]
            [bars] = histogram["data"]
            [heights] = series(histogram).values()
            counted = dict(zip(bars["x"], heights, strict=True))
            assert counted["30.0"] == 0 and counted["60.0"] >= 1 and counted["+Inf"] >= 1, counted
            timed = [title for title in found if not title.startswith("Recovery time")]
            assert all(x_span(found[t]) == 86400 for t in timed)  # the default range: 24 hours
            assert {span for query, span in asked if "_bucket" not in query} == {86400.0}
            asked.clear()
            at.button_group(key="metrics_range").set_value("1 hour").run()
            assert not at.exception
            assert {span for query, span in asked if "_bucket" not in query} == {3600.0}
            assert len({query for query, _ in asked}) >= 7  # every chart asked again, for the hour
            assert all(x_span(charts(at)[t]) == 3600 for t in timed)
    finally:
        exporter.terminate()
        exporter.wait(30)


def test_operator_acknowledges_and_silences_from_the_alerts_page(console: ConsoleEnv) -> None:
    with catalog(console) as c:
        alert = next(a for a in c.alerts.open_alerts() if a.rule == "backup_failure")
        assert alert.state == "firing"
    at = page(app("operator"), "alerts")
    at.button(key=f"ack_{alert.id}").click().run()
    assert not at.exception and any(f"Alert {alert.id} acknowledged" in s.value for s in at.success), [
        e.value for e in at.error]
    at = page(app("operator"), "alerts")  # as the next visit shows it
    assert any("acknowledged by otto" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key == f"ack_{alert.id}"]  # nothing left to acknowledge
    at.selectbox(key="silence_rule").set_value("backup_failure")
    at.selectbox(key="silence_cluster").set_value("main")
    at.text_input(key="silence_for").set_value("30m")
    at.text_input(key="silence_reason").set_value("storage maintenance")
    next(b for b in at.button if b.label == "Silence").click().run()
    assert not at.exception and any("Silenced." in s.value for s in at.success), [e.value for e in at.error]
    shown = at.dataframe[-1].value
    assert ("backup_failure", "main", "otto@console", "storage maintenance") in set(
        shown[["rule", "cluster", "by", "reason"]].itertuples(index=False, name=None))
    with catalog(console) as c:
        acked = c.alerts.get(alert.id)
        assert acked.state == "acknowledged" and acked.acknowledged_by.startswith("otto")
        silence = next(s for s in c.alerts.silences(active_at=time.time())
                       if s.reason == "storage maintenance")
        assert (silence.rule, silence.cluster) == ("backup_failure", "main")
        assert 1790 < silence.until - time.time() <= 1800 and silence.created_by == "otto@console"
        entries = {e.action: e for e in reversed(c.audit.entries(actor="otto", limit=20))}
        assert (entries["alerts.ack"].result, entries["alerts.ack"].params["alert"]) == ("ok", alert.id)
        assert (entries["alerts.silence"].result, entries["alerts.silence"].cluster,
                entries["alerts.silence"].detail) == ("ok", "main", f"silence {silence.id}")
        assert entries["alerts.silence"].params["reason"] == "storage maintenance"


def test_operator_starts_a_drill_from_the_drills_page(console: ConsoleEnv) -> None:
    at = page(app("operator"), "drills")
    at.selectbox(key="drill_kind").set_value("partial")
    next(b for b in at.button if b.label == "Start drill").click().run()
    assert not at.exception and any("Drill queued as job" in s.value for s in at.success), [
        e.value for e in at.error]
    with catalog(console) as c:
        job = c.jobs(kind="drill", limit=1)[0]
        try:
            assert (job.state, job.cluster, job.params["kind"], job.requested_by) == (
                "queued", "main", "partial", "otto@console")
            entry = c.audit.entries(actor="otto", limit=1)[0]
            assert (entry.action, entry.result, entry.source, entry.cluster, entry.detail) == (
                "drill", "queued", "console", "main", f"job {job.id}")
            assert entry.params["kind"] == "partial"
        finally:
            c.finish(job.id, "cancelled", error="not run by this test")


@needs_planner
def test_finished_restores_are_listed_with_who_the_point_and_the_log(console: ConsoleEnv) -> None:
    """A restore to a time, queued as an operator and run by the real agent: the Restore
    page lists it with who started it, the point reached, its events and its log."""
    from tests.integration.agent import running_agent, wait_job
    from tests.integration.pg import Cluster, free_port

    target, port = console.env.workspace.path("listed-restore", create=False), free_port()
    ctx = open_context(console.config, "main")
    job_id = actions.start_restore(ctx, session("operator"), {
        "pgdata": str(target), "port": port, "start": True, "target": "time",
        "target_value": console.before}, "main")
    console.env.restored.append(Cluster(target, port, target.parent / f"{target.name}.log", started=True))
    with running_agent(console.env) as agent:
        done = wait_job(console.env, job_id, timeout=180)
    assert done["state"] == "succeeded", (done, agent.log.read_text()[-3000:])
    with catalog(console) as c:
        reached = c.job(job_id).result["reached"]
    at = page(app("viewer"), "restore")  # anyone may read them
    listed = next(e for e in at.expander if e.label.startswith(f"Job {job_id} "))
    assert "succeeded" in listed.label and "by otto@console" in listed.label
    assert f"time {console.before}" in listed.label and str(target) in listed.label
    assert f"reached {ui.data.point_text(reached, short=True)}" in listed.label
    text = [m.value for m in listed.markdown]
    assert f"**Point reached**: {ui.data.point_text(reached)}" in text, text
    assert any(t.startswith("**Validation: ") for t in text), text
    events = listed.dataframe[0].value
    kinds = list(events["kind"])
    assert kinds.index("job_started") < kinds.index("job_succeeded"), events  # oldest first
    assert f"restore job {job_id} succeeded" in list(events["message"])
    log = listed.code[0].value  # what the job's process wrote: each phase, then how it ended
    assert f"restore job {job_id} of main started, asked by otto@console" in log, log
    assert "writing files" in log and "starting the server" in log, log
    assert log.rstrip().endswith(f"restore job {job_id} succeeded"), log
    assert "Warning" not in log, log
    assert not [b for b in listed.button if b.label == "Cancel"]  # it has ended
