"""Recovery objectives measured by the agent against a real cluster, shown by ``info``."""

from __future__ import annotations

import calendar
import json
import time
from typing import Any

from tests.integration.agent import configure, running_agent, wait_for
from tests.integration.pg import Lifeboat


def _objectives(env: Lifeboat) -> dict[str, Any]:
    info = json.loads(env.run("info", "--output", "json").stdout)
    return dict(info["clusters"][0]["objectives"])


def _measured_after(env: Lifeboat, moment: float) -> dict[str, Any]:
    def fresh() -> dict[str, Any] | None:
        o = _objectives(env)
        at = o["measured_at"]
        if at and calendar.timegm(time.strptime(at, "%Y-%m-%dT%H:%M:%SZ")) >= moment:
            return o
        return None
    return wait_for(fresh, 30, "a new objectives measurement")


def test_rpo_exposure_and_expected_rto_against_the_class(lifeboat: Lifeboat) -> None:
    env = lifeboat
    configure(env, cluster_extra='class = "critical"\n[clusters.main.objectives]\nrpo = "5s"\n')
    before = _objectives(env)
    assert before["class"] == "critical" and before["rpo_exposure_seconds"] is None
    assert before["rpo_objective_seconds"] == 5 and before["rto_objective_seconds"] == 3600
    assert "not measured" in before["note"]
    assert "objectives (critical)" in env.run("info").stdout
    env.run("backup")
    with running_agent(env):
        env.run("check")  # everything written so far is archived
        healthy = _measured_after(env, time.time() + 1)
        assert healthy["rpo_exposure_seconds"] is not None and healthy["rpo_exposure_seconds"] < 5
        assert healthy["rpo_met"] is True
        assert healthy["rto_expected_seconds"] > 0 and healthy["rto_met"] is True
        assert healthy["details"]["backup_bytes"] > 0
        assert "assumed" in healthy["details"]["rto_basis"]

        env.cluster.sql("ALTER SYSTEM SET archive_command = '/bin/false'")
        env.cluster.sql("SELECT pg_reload_conf()")
        env.cluster.sql("CREATE TABLE at_risk AS SELECT generate_series(1, 1000) AS id")
        env.cluster.sql("SELECT pg_switch_wal()")
        broken = time.time()
        time.sleep(7)
        exposed = _measured_after(env, time.time())
        assert exposed["rpo_exposure_seconds"] >= 6, exposed
        assert exposed["rpo_exposure_seconds"] <= time.time() - broken + 3
        assert exposed["rpo_met"] is False and exposed["details"]["unsafe_bytes"] > 0
        text = env.run("info").stdout
        assert "RPO exposure" in text and "MISSED" in text

        env.cluster.sql(f"ALTER SYSTEM SET archive_command = '{env.archive_command()}'")
        env.cluster.sql("SELECT pg_reload_conf()")
        env.run("check")
        recovered = _measured_after(env, time.time() + 1)
        assert recovered["rpo_exposure_seconds"] < 5 and recovered["rpo_met"] is True
