"""The exporter under a real Prometheus: real work (a backup, a point-in-time restore, a
partial drill, archiving stopped, the server stopped and a backup that fails), then the
series Prometheus scraped every second must hold what happened; every panel of the
Grafana dashboard must answer; the alert rules must fire on what they watch."""

from __future__ import annotations

import json
import math
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agent import configure, receiver_pids, running_agent, wait_for
from tests.integration.pg import Lifeboat, free_port
from tests.integration.prom import eventually, prometheus, value, values

CLUSTER = {"cluster": "main"}


@pytest.fixture
def monitored(lifeboat: Lifeboat) -> Iterator[tuple[Lifeboat, int, Path]]:
    """The cluster with the agent (streaming on, so a WAL receiver is a replica; a copy of
    the repository in region dr), its exporter on a free port refreshing twice a second,
    and a table for a drill."""
    port = free_port()
    scratch = lifeboat.workspace.path("metrics-scratch")
    stream = lifeboat.workspace.path("metrics-stream")
    copy = lifeboat.workspace.path("metrics-copy-dr")
    configure(lifeboat,
              cluster_extra=(f'service = "shop"\nreplica_datacenters = {{ standby1 = "dc2" }}\n'
                             f'[clusters.main.streaming]\nenabled = true\ndirectory = "{stream}"\n'
                             f'[clusters.main.drills]\nscratch_dir = "{scratch}"\n'
                             'critical_tables = ["public.orders"]\n'),
              top_extra=(f'\n[exporter]\nport = {port}\nrefresh_interval = "0.5s"\n'
                         'repository_interval = "2s"\n'
                         f'[repository.copies.dr]\npath = "{copy}"\ninterval = "1s"\n'))
    lifeboat.cluster.sql("CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL)")
    lifeboat.cluster.sql("INSERT INTO orders SELECT g, g FROM generate_series(1, 1000) g")
    yield lifeboat, port, stream


def wal_position(env: Lifeboat) -> int:
    return int(env.cluster.value("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))


def refreshed_after(prom: Any, moment: float) -> None:
    """Wait until Prometheus holds a scrape of an exporter refresh that began after ``moment``."""
    eventually(prom, "lifeboat_exporter_last_refresh_timestamp_seconds"
                     " - lifeboat_exporter_refresh_duration_seconds", lambda began: began > moment)


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return answer.read().decode()
    except OSError:
        return ""  # not listening yet


def test_prometheus_sees_backups_restores_drills_archive_lag_and_a_failure(
        monitored: tuple[Lifeboat, int, Path], tmp_path) -> None:
    from alerts.rules import render_rules
    from collectors.grafana_dashboard import build_dashboard, panel_queries, resolve

    env, port, stream = monitored
    rules = tmp_path / "rules.yml"
    rules.write_text(render_rules())
    agent_started = time.time()
    with running_agent(env) as agent, prometheus(env.workspace, [f"127.0.0.1:{port}"], [rules]) as prom:
        wait_for(lambda: "lifeboat_up" in _scrape(port), 60, f"the agent's exporter ({agent.log})")
        # every known series exists from the start, at 0
        assert eventually(prom, 'lifeboat_backups_total{type="full",result="failed"}', lambda v: True) == 0
        assert value(prom, 'lifeboat_drill_last_success_timestamp_seconds{kind="partial"}') == 0
        assert value(prom, 'lifeboat_data_loss_events_total{cause="wal_gap"}') == 0
        assert eventually(prom, "lifeboat_up", lambda v: v == 1) == 1
        assert value(prom, "lifeboat_rpo_objective_seconds") == 3600
        assert value(prom, "lifeboat_rto_objective_seconds") == 4 * 3600

        # a backup (the CLI's run is recorded like an agent's job)
        started = time.time()
        env.run("backup")
        eventually(prom, 'lifeboat_backups_total{type="full",result="succeeded"}', lambda v: v == 1)
        assert value(prom, 'lifeboat_backup_success_ratio{type="full"}') == 1.0
        finished = eventually(prom, 'lifeboat_backup_last_success_timestamp_seconds{type="full"}',
                              lambda v: v > 0)
        assert started - 1 <= finished <= time.time()
        assert 0 < value(prom, 'lifeboat_backup_last_duration_seconds{type="full"}') < time.time() - started
        assert value(prom, 'lifeboat_repository_backups{type="full"}') == 1
        [backup] = json.loads(env.run("info", "--output", "json").stdout)["clusters"][0]["backups"]
        assert value(prom, 'lifeboat_repository_bytes{region="local"}') >= backup["stored_bytes"]
        assert value(prom, "lifeboat_compression_ratio") == pytest.approx(
            (backup["size_bytes"] - backup["reused_bytes"]) / backup["stored_bytes"])
        assert value(prom, 'count(lifeboat_backup_info{type="full"})') == 1
        # the agent copies the repository to region dr: the copy catches up
        eventually(prom, 'lifeboat_repository_bytes{region="dr"}', lambda v: v > 0)
        eventually(prom, 'lifeboat_copy_lag_seconds{region="dr"}', lambda v: v == 0)
        # it validates the copy, ships WAL between rounds and says how fast and how late
        eventually(prom, 'lifeboat_copy_validation_ok{region="dr"}', lambda v: v == 1)
        assert value(prom, 'lifeboat_copy_validation_last_timestamp_seconds{region="dr"}') >= agent_started
        eventually(prom, 'lifeboat_copy_bytes_total{region="dr"}', lambda v: v >= backup["stored_bytes"])
        assert value(prom, 'lifeboat_wal_shipping_max_delay_seconds{region="dr"}') == 30
        assert value(prom, 'lifeboat_copy_bandwidth_limit_bytes_per_second{region="dr"}') == 0
        eventually(prom, 'lifeboat_wal_shipping_delay_seconds{region="dr"}', lambda v: 0 <= v < 30)

        # the WAL receiver is a replica, with its lag and datacenter: held (SIGSTOP), it
        # falls behind by at least what is written meanwhile, and at most by what the
        # primary wrote past the last position it reported
        receiver = 'replica="lifeboat_receiver",datacenter="local"'
        eventually(prom, f"lifeboat_replication_lag_bytes{{{receiver}}}", lambda v: True)
        assert values(prom, f"lifeboat_replica_info{{{receiver}}}")
        [pid] = receiver_pids(stream)
        os.kill(pid, signal.SIGSTOP)
        try:
            held_at = wal_position(env)
            reported = env.cluster.value(
                "SELECT least(sent_lsn - '0/0'::pg_lsn, write_lsn - '0/0'::pg_lsn, "
                "flush_lsn - '0/0'::pg_lsn, replay_lsn - '0/0'::pg_lsn) FROM pg_stat_replication "
                "WHERE application_name = 'lifeboat_receiver'")
            env.cluster.sql("SELECT pg_logical_emit_message(true, 'lifeboat-test', repeat('x', 200000))")
            written = wal_position(env) - held_at
            assert written >= 200000
            refreshed_after(prom, time.time())
            behind = value(prom, f"lifeboat_replication_lag_bytes{{{receiver}}}")
            assert behind is not None and written <= behind <= wal_position(env) - int(reported)
            seconds = value(prom, f"lifeboat_replication_lag_seconds{{{receiver}}}")
            assert seconds is not None and 0 < seconds <= time.time() - agent_started
        finally:
            os.kill(pid, signal.SIGCONT)

        # a point-in-time restore: recovery time histogram and the gap to its target
        env.cluster.sql("INSERT INTO orders VALUES (1001, 1)")
        time.sleep(1.1)
        target = datetime.now(UTC).isoformat(sep=" ", timespec="milliseconds")
        time.sleep(1.1)
        env.cluster.sql("INSERT INTO orders VALUES (1002, 1)")
        env.switch_and_archive()
        restored, done = env.restore("--target-time", target)
        assert restored.value("SELECT max(id) FROM orders") == 1001, done.stdout
        restored.stop()
        pitr = 'type="pitr",size_class="small"'
        eventually(prom, f"lifeboat_recovery_duration_seconds_count{{{pitr}}}", lambda v: v == 1)
        assert value(prom, f'lifeboat_recovery_duration_seconds_bucket{{{pitr},le="900.0"}}') == 1
        assert value(prom, f'lifeboat_recovery_duration_seconds_bucket{{{pitr},le="30.0"}}') == 1
        gap = value(prom, "lifeboat_restore_target_gap_seconds")
        assert gap is not None and 1.0 <= gap < 60, gap  # the last commit before the target was ~1 s earlier

        # a restore to a restore point ends exactly on its record: a gap of 0 bytes
        env.run("restore-point", "metrics")
        env.switch_and_archive()
        restored, done = env.restore("--target-name", "metrics")
        restored.stop()
        eventually(prom, f"lifeboat_recovery_duration_seconds_count{{{pitr}}}", lambda v: v == 2)
        assert value(prom, "lifeboat_restore_target_gap_bytes") == 0
        assert value(prom, "lifeboat_restore_target_gap_seconds") == gap  # still the time target's

        # a partial drill
        drill = env.run("drill", "--kind", "partial", check=False)
        assert drill.returncode == 0, drill.stdout + drill.stderr
        eventually(prom, 'lifeboat_drills_total{kind="partial",result="passed"}', lambda v: v == 1)
        assert value(prom, 'lifeboat_drill_last_passed{kind="partial"}') == 1
        assert value(prom, 'lifeboat_drill_last_failed_checks{kind="partial"}') == 0
        assert value(prom, 'lifeboat_drill_last_success_timestamp_seconds{kind="partial"}') > started
        drills = 'type="drill_partial",size_class="small"'
        assert value(prom, f"lifeboat_recovery_duration_seconds_count{{{drills}}}") == 1
        assert value(prom, 'lifeboat_drill_period_seconds{kind="partial"}') == 7 * 86400

        # objectives measured by the agent against the class's
        eventually(prom, "lifeboat_rto_expected_seconds", lambda v: v > 0)
        exposure = eventually(prom, "lifeboat_rpo_exposure_seconds", lambda v: not math.isnan(v))
        assert 0 <= exposure <= time.time() - agent_started  # the agent's history starts with it

        # archiving stopped: .ready files pile up, failures count, the lag grows
        env.cluster.sql("ALTER SYSTEM SET archive_command = '/bin/false'")
        env.cluster.sql("SELECT pg_reload_conf()")
        for i in range(3):
            env.cluster.sql(f"INSERT INTO orders VALUES ({2000 + i}, 1)")
            env.cluster.sql("SELECT pg_switch_wal()")
        eventually(prom, "lifeboat_wal_ready_files", lambda v: v >= 3)
        assert value(prom, "lifeboat_wal_archive_lag_segments") >= 3
        eventually(prom, "lifeboat_wal_archive_failures_total", lambda v: v >= 1)
        eventually(prom, "lifeboat_wal_archive_lag_seconds", lambda v: v >= 2)
        assert value(prom, "lifeboat_wal_directory_bytes") >= 4 * 16 * 2**20
        eventually(prom, 'ALERTS{alertname="LifeboatWALArchiveFailing",alertstate="firing"}',
                   lambda v: v == 1)

        # every panel of the dashboard answers, with data
        failures = []
        for title, expr in panel_queries(build_dashboard()):
            query = resolve(expr, "main")
            try:
                if not prom.custom_query(query):
                    failures.append(f"{title}: no data: {query}")
            except Exception as exc:
                failures.append(f"{title}: {exc}: {query}")
        assert not failures, "\n".join(failures)

        # the server stops: the scrape still answers, lifeboat_up 0, and a backup fails
        env.cluster.stop()
        eventually(prom, "lifeboat_up", lambda v: v == 0)
        failed = env.run("backup", check=False)
        assert failed.returncode == 1, failed.stderr
        eventually(prom, 'lifeboat_backups_total{type="full",result="failed"}', lambda v: v == 1)
        assert value(prom, 'lifeboat_backup_success_ratio{type="full"}') == 0.5
        assert value(prom, "lifeboat_exporter_last_refresh_timestamp_seconds") > time.time() - 10
        eventually(prom, 'ALERTS{alertname="LifeboatBackupFailed",alertstate="firing"}', lambda v: v == 1)
        # (pending: it fires after its 5 minutes)
        eventually(prom, 'ALERTS{alertname="LifeboatBackupSuccessRateCritical"}', lambda v: v == 1)


def test_the_exporter_alone_measures_objectives_and_survives_a_stopped_server(lifeboat: Lifeboat) -> None:
    """``lifeboat exporter`` without an agent: it measures the objectives itself, and a
    scrape while the server is down answers at once with lifeboat_up 0."""
    import subprocess

    from tests.integration.pg import LIFEBOAT

    port = free_port()
    configure(lifeboat, top_extra=f'\n[exporter]\nport = {port}\nrefresh_interval = "0.5s"\n')
    lifeboat.run("backup")
    log = lifeboat.workspace.root / f"exporter-{port}.log"
    exporter_started = time.time()
    with open(log, "w") as handle:
        process = subprocess.Popen([str(LIFEBOAT), "--config", str(lifeboat.config), "exporter",
                                    "--duration", "60"], stdout=handle, stderr=handle)
    try:
        def sample(name: str) -> float | None:
            for line in _scrape(port).splitlines():
                if line.startswith(name + "{") or line.startswith(name + " "):
                    return float(line.rsplit(" ", 1)[1])
            return None

        def measured(name: str) -> bool:
            found = sample(name)
            return found is not None and not math.isnan(found)

        assert wait_for(lambda: sample("lifeboat_up") == 1, 30, f"lifeboat_up 1 ({log.read_text()})")
        wait_for(lambda: measured("lifeboat_rpo_exposure_seconds"), 30,
                 "the exporter's own objectives measurement")
        # a commit in a segment not archived yet: the exposure grows with its age (measured
        # every 2 s here, twice objectives_interval) and is never older than the exporter
        lifeboat.cluster.sql("CREATE TABLE at_risk (id int)")
        exposure = wait_for(lambda: (lambda v: v if v is not None and v >= 3 else None)(
            sample("lifeboat_rpo_exposure_seconds")), 30, "the exposure to grow")
        assert exposure <= time.time() - exporter_started
        assert sample("lifeboat_rto_expected_seconds") > 0
        lifeboat.cluster.stop()
        assert wait_for(lambda: sample("lifeboat_up") == 0, 30, "lifeboat_up 0")
        started = time.monotonic()
        text = _scrape(port)
        assert time.monotonic() - started < 1.0 and "lifeboat_backups_total" in text
    finally:
        process.terminate()
        assert process.wait(30) == 0, log.read_text()
