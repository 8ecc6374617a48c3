"""Remediation actions without a server: the registry, escalation's rounds, the runner
bounding a hung action, and what the checks say about real paths and a real catalog."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.remediation.actions import ACTIONS
from alerts.remediation.base import ActionResult, RemediationContext
from alerts.remediation.runner import run_round
from engine import jobs
from engine.catalog.alerts import AlertRecord, AttemptRecord
from engine.catalog.store import FAILED, SUCCEEDED
from engine.config.alerting import DEFAULT_RULES
from engine.context import Context, open_context
from engine.repository import inventory, layout
from engine.repository.storage.posix import PosixStorage
from engine.vocabulary import REMEDIATION_ACTIONS


def write_config(tmp_path: Path, extra: str = "", remediation: str = "") -> Path:
    for name in ("repo", "pgdata/pg_wal", "state"):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
    path = tmp_path / "lifeboat.toml"
    path.write_text(
        f'[repository]\npath = "{tmp_path}/repo"\n{extra}\n'
        f'[clusters.main]\npgdata = "{tmp_path}/pgdata"\nhost = "{tmp_path}/no-socket-here"\n'
        f'connect_timeout = "1s"\n\n'
        f'[catalog]\npath = "{tmp_path}/state/catalog.sqlite3"\n\n'
        f'[alerts.remediation]\n{remediation}\n')
    return path


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Context]:
    with open_context(write_config(tmp_path), "main") as context:
        yield context


def alert(ctx: Context, cluster: str | None = "main", labels: dict[str, str] | None = None) -> AlertRecord:
    book = ctx.catalog.alerts
    alert_id = book.create("fp-1", "backup_failure", "LifeboatBackupFailed", cluster, "critical",
                           labels or {}, {}, "firing", 1.0, "prometheus", time.time(), time.time())
    found = book.get(alert_id)
    assert found is not None
    return found


def rctx(ctx: Context, round_: int = 1, max_attempts: int = 3, hooks: object = None,
         record: AlertRecord | None = None, timeout: float = 10.0) -> RemediationContext:
    return RemediationContext(ctx, record or alert(ctx), round_, max_attempts,
                              time.monotonic() + timeout, hooks)  # type: ignore[arg-type]


class Pager:
    """What the agent's wiring hands actions: records the escalations it was asked for."""

    def __init__(self) -> None:
        self.pages: list[tuple[AlertRecord, list[AttemptRecord], str]] = []

    def restart_streaming(self, cluster: str) -> str:
        return f"restarted {cluster}"

    def escalate(self, alert: AlertRecord, history: list[AttemptRecord], reason: str) -> str:
        self.pages.append((alert, history, reason))
        return "paged pagerduty"


def test_the_registry_has_exactly_the_vocabulary_and_every_default_rules_actions() -> None:
    assert set(ACTIONS) == set(REMEDIATION_ACTIONS)
    assert ACTIONS["check_network_connectivity"] is ACTIONS["verify_network_connectivity"]
    for rule in DEFAULT_RULES.values():
        for name in (rule.get("auto_remediation") or {}).get("actions", []):
            assert name in ACTIONS


def test_escalate_waits_for_the_last_round_then_pages_with_the_history(ctx: Context) -> None:
    pager = Pager()
    record = alert(ctx)
    early = ACTIONS["escalate_to_dba"](rctx(ctx, 1, 3, pager, record))
    assert early.skipped and "escalates after round 3 if the alert persists" in early.output
    assert pager.pages == []

    failing = {"fail": lambda _r: ActionResult(False, "disk full")}
    context = rctx(ctx, 3, 3, pager, record)
    run_round(context, ["fail", "escalate_to_dba"], 5.0, registry=failing | ACTIONS)
    assert len(pager.pages) == 1
    paged, history, reason = pager.pages[0]
    assert paged.id == record.id
    assert [a.action for a in history] == ["fail"] and history[0].output == "disk full"
    assert "persists after 3 round(s)" in reason and "1 failed" in reason
    attempts = ctx.catalog.alerts.attempts(record.id)
    assert [(a.action, a.result) for a in attempts] == [("fail", "failed"), ("escalate_to_dba", "ok")]


def test_escalate_without_the_agent_fails_saying_why(ctx: Context) -> None:
    result = ACTIONS["escalate_to_dba"](rctx(ctx, 3, 3, None))
    assert not result.ok and not result.skipped and "no pager here" in result.output


def test_the_runner_abandons_a_hung_action_records_a_timeout_and_goes_on(ctx: Context) -> None:
    release = threading.Event()

    def hang(_r: RemediationContext) -> ActionResult:
        release.wait(30)
        return ActionResult(True, "too late")

    registry = {"hang": hang, "after": lambda _r: ActionResult(True, "ran after the hung one")}
    context = rctx(ctx)
    started = time.monotonic()
    try:
        done = run_round(context, ["hang", "after"], 0.5, registry=registry)
    finally:
        release.set()
    assert time.monotonic() - started < 5
    assert [(a.action, a.result) for a in done] == [("hang", "timeout"), ("after", "ok")]
    assert "did not finish within 0.5s" in done[0].output
    stored = ctx.catalog.alerts.attempts(context.alert.id)
    assert [(a.action, a.result) for a in stored] == [("hang", "timeout"), ("after", "ok")]


def test_disk_space_names_each_path_and_fails_below_the_threshold(tmp_path: Path) -> None:
    with open_context(write_config(tmp_path, remediation="disk_min_free = 0.999999"), "main") as low:
        result = ACTIONS["check_disk_space"](rctx(low))
    assert not result.ok
    assert f"repository {tmp_path}/repo" in result.output and f"PGDATA {tmp_path}/pgdata" in result.output
    assert f"pg_wal {tmp_path}/pgdata/pg_wal: FAILED" in result.output
    assert "below the minimum 100.0%" in result.output
    with open_context(write_config(tmp_path), "main") as default:
        assert ACTIONS["check_disk_space"](rctx(default)).ok


def test_disk_space_names_a_path_that_cannot_be_read(tmp_path: Path) -> None:
    with open_context(write_config(tmp_path), "main") as context:
        (tmp_path / "pgdata" / "pg_wal").rmdir()
        result = ACTIONS["check_disk_space"](rctx(context))
    assert not result.ok
    assert f"pg_wal {tmp_path}/pgdata/pg_wal: FAILED: cannot be read" in result.output


def test_network_names_the_server_and_a_missing_copy(tmp_path: Path) -> None:
    copy = f'[repository.copies.eu]\npath = "{tmp_path}/copy-eu"\n'
    with open_context(write_config(tmp_path, copy), "main") as context:
        result = ACTIONS["verify_network_connectivity"](rctx(context))
    assert not result.ok
    assert "PostgreSQL server of cluster 'main'" in result.output.splitlines()[0]
    assert f"copy 'eu' {tmp_path}/copy-eu: FAILED: did not answer: {tmp_path}/copy-eu does not exist" \
        in result.output
    assert f"repository {tmp_path}/repo: ok" in result.output


def test_an_alert_for_a_cluster_the_configuration_lacks_fails_cleanly(ctx: Context) -> None:
    record = alert(ctx, cluster="elsewhere")
    for name in ("restart_replication", "verify_backup_dependencies", "retry_backup_operation"):
        result = ACTIONS[name](rctx(ctx, record=record))
        assert not result.ok and "cluster 'elsewhere'" in result.output


def test_restart_replication_is_skipped_without_streaming_or_outside_the_agent(tmp_path: Path) -> None:
    with open_context(write_config(tmp_path), "main") as context:
        result = ACTIONS["restart_replication"](rctx(context, hooks=Pager()))
        assert result.skipped and "no streaming receiver" in result.output
    streaming = '[clusters.main.streaming]\nenabled = true\n'
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("[catalog]", streaming + "\n[catalog]"))
    with open_context(path, "main") as context:
        result = ACTIONS["restart_replication"](rctx(context))
        assert result.skipped and "this is not the agent" in result.output


def test_retry_requeues_the_newest_failed_backup_once(ctx: Context) -> None:
    catalog = ctx.catalog
    old = jobs.enqueue(catalog, ctx.config, "backup", "main", {"type": "diff", "checksum": True}, "cli")
    catalog.mark_running(old, "test", None)
    catalog.finish(old, FAILED, error="repository full")
    result = ACTIONS["retry_backup_operation"](rctx(ctx))
    assert result.ok and result.changed
    queued = catalog.jobs("main", states=("queued",), kind="backup")
    assert len(queued) == 1 and f"queued again as job {queued[0].id}" in result.output
    assert queued[0].params == catalog.job(old).params  # type: ignore[union-attr]
    assert queued[0].requested_by == "lifeboat-remediation"
    again = ACTIONS["retry_backup_operation"](rctx(ctx))
    assert again.ok and not again.changed and f"backup job {queued[0].id} is already queued" in again.output
    assert len(catalog.jobs("main", kind="backup")) == 2
    catalog.mark_running(queued[0].id, "test", None)
    catalog.finish(queued[0].id, SUCCEEDED)
    done = ACTIONS["retry_backup_operation"](rctx(ctx))
    assert not done.changed and "ended succeeded: nothing to retry" in done.output


def test_a_leftover_probe_is_not_an_unknown_object(storage: PosixStorage) -> None:
    key = layout.probe_key("main", "host-1-abcd")
    storage.put(key, b"probe")
    assert layout.classify("main", key) == "probe"
    found = inventory.take(storage, "main")
    assert found.unknown == [] and found.of("probe") == [key]


def test_the_agent_refuses_to_restart_streaming_it_does_not_run(ctx: Context) -> None:
    from engine.agent.loop import Agent, job_command
    from engine.errors import UsageError
    from engine.wal.streaming import StreamingSupervisor

    agent = Agent(ctx.config, ctx.catalog, ctx.storage, job_command(ctx.config_path))
    with pytest.raises(UsageError, match=r"cluster 'main' has no streaming receiver in this agent"):
        agent.restart_streaming("main")
    agent.streamers.append(StreamingSupervisor(ctx.config, "main", ctx.storage))
    with pytest.raises(UsageError, match="is not running in this agent"):
        agent.restart_streaming("main", timeout=0.1)
    result = ACTIONS["restart_replication"](rctx(ctx, hooks=agent))
    assert result.skipped  # the configuration streams nothing: the agent is not even asked
