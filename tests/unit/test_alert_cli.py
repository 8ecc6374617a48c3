"""``lifeboat alerts``: the JSON shape, ack, silence and test, their exit codes, and no
secret in any output (real ``lifeboat`` processes on a temporary catalog)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alerts.lifecycle import Lifecycle, Snapshot
from tests.alerting import PD_KEY, backup_failure, make_ctx, replication_delay

PROM = frozenset({"prometheus", "lifeboat"})


def lifeboat(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lifeboat", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """A catalog with an open alert of main (notified, remediated), an open one of other and
    one resolved two days ago."""
    ctx = make_ctx(tmp_path)
    book = ctx.catalog.alerts
    life = Lifecycle(ctx.config.alerts, book)
    old = time.time() - 2 * 86400
    gone = life.apply(Snapshot([replication_delay()], PROM), old)[0].alert
    life.apply(Snapshot([], PROM), old + 60)
    main = life.apply(Snapshot([backup_failure()], PROM))[0].alert
    other = life.apply(Snapshot([backup_failure(), backup_failure(cluster="other")], PROM))[0].alert
    book.add_notification(main.id, "pagerduty", "firing", "failed", 4, "HTTP 400 invalid key ***")
    book.add_attempt(main.id, 1, "verify_backup_dependencies", time.time() - 5, time.time() - 4, "failed",
                     "repository /srv/repo is not writable")
    book.update(main.id, refs={"slack": "1700000000.0001"})
    ctx.close()
    return ctx.config_path, {"main": main.id, "other": other.id, "gone": gone.id}


def test_list_json_shape_and_filters(seeded: tuple[Path, dict[str, int]]) -> None:
    config, ids = seeded
    done = lifeboat(config, "alerts", "--output", "json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["alerts"]
    assert [a["id"] for a in found] == [ids["other"], ids["main"]]  # newest first; the old one left out
    main = found[1]
    assert {"id", "rule", "alertname", "cluster", "severity", "state", "value", "labels", "first_seen",
            "last_seen", "firing_since", "resolved_at", "acknowledged_by", "silenced_until",
            "notifications", "remediation", "escalated"} <= set(main)
    assert "refs" not in main and PD_KEY not in done.stdout
    assert (main["rule"], main["state"], main["cluster"], main["value"]) == (
        "backup_failure", "firing", "main", 1.0)
    assert main["firing_since"].endswith("Z") or "T" in main["firing_since"]
    assert main["notifications"] == [{"at": main["notifications"][0]["at"], "channel": "pagerduty",
                                      "kind": "firing", "outcome": "failed", "attempts": 4,
                                      "detail": "HTTP 400 invalid key ***"}]
    assert [(r["round"], r["action"], r["result"]) for r in main["remediation"]] == [
        (1, "verify_backup_dependencies", "failed")]
    every = json.loads(lifeboat(config, "alerts", "--output", "json", "--all").stdout)["alerts"]
    assert [a["id"] for a in every][-1] == ids["gone"] and every[-1]["state"] == "resolved"
    only = json.loads(lifeboat(config, "--cluster", "other", "alerts", "--output", "json").stdout)["alerts"]
    assert [a["id"] for a in only] == [ids["other"]]
    text = lifeboat(config, "alerts")
    assert text.returncode == 0 and "backup_failure" in text.stdout and "repository /srv/repo" in text.stdout


def test_ack(seeded: tuple[Path, dict[str, int]]) -> None:
    config, ids = seeded
    done = lifeboat(config, "alerts", "ack", str(ids["main"]), "--by", "alice", "--output", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["alert"]["state"] == "acknowledged" and result["alert"]["acknowledged_by"] == "alice"
    assert result["deliveries"] == []  # no channel had accepted it: nobody to tell
    listed = json.loads(lifeboat(config, "alerts", "--output", "json").stdout)["alerts"]
    assert {a["id"]: a["state"] for a in listed}[ids["main"]] == "acknowledged"
    unknown = lifeboat(config, "alerts", "ack", "4242")
    assert unknown.returncode == 1 and "alert 4242 does not exist" in unknown.stderr
    resolved = lifeboat(config, "alerts", "ack", str(ids["gone"]))
    assert resolved.returncode == 1 and f"alert {ids['gone']} (replication_delay) resolved" in resolved.stderr


def test_silence(seeded: tuple[Path, dict[str, int]]) -> None:
    config, _ = seeded
    done = lifeboat(config, "--cluster", "main", "alerts", "silence", "backup_failure", "--for", "2h",
                    "--reason", "disk swap tonight", "--output", "json")
    assert done.returncode == 0, done.stderr
    silence = json.loads(done.stdout)["silence"]
    assert (silence["rule"], silence["cluster"], silence["reason"]) == ("backup_failure", "main",
                                                                       "disk swap tonight")
    ctx = make_ctx(config.parent)
    [stored] = ctx.catalog.alerts.silences(active_at=time.time())
    assert stored.rule == "backup_failure" and 7100 < stored.until - time.time() <= 7200
    assert stored.cluster == "main" and stored.created_by.endswith("@cli")
    unknown = lifeboat(config, "alerts", "silence", "backup_failed", "--for", "2h", "--reason", "x")
    assert unknown.returncode == 2
    assert "rule 'backup_failed' is not a rule" in unknown.stderr and "backup_failure" in unknown.stderr
    assert "alerting_unavailable" in unknown.stderr
    bad = lifeboat(config, "alerts", "silence", "backup_failure", "--for", "soon", "--reason", "x")
    assert bad.returncode == 2 and "--for" in bad.stderr
    missing = lifeboat(config, "alerts", "silence", "backup_failure", "--for", "2h")
    assert missing.returncode == 2 and "--reason" in missing.stderr


def test_test_channel_usage_errors(seeded: tuple[Path, dict[str, int]]) -> None:
    config, _ = seeded
    unconfigured = lifeboat(config, "alerts", "test", "--channel", "email")
    assert unconfigured.returncode == 2 and "add an [alerts.email] section" in unconfigured.stderr
    unknown = lifeboat(config, "alerts", "test", "--channel", "pager")
    assert unknown.returncode == 2 and "'pager' is not a channel" in unknown.stderr
    assert "pagerduty" in unknown.stderr
