"""Issue 18 end to end: each test makes a real fault, then lets the real parts find it and cure it.

The chain in every test: a real cluster archiving with ``lifeboat wal-push`` (and streaming
to the agent's ``pg_receivewal``) -> ``lifeboat agent`` (a subprocess, as postgres) with its
exporter -> a real Prometheus scraping it, loaded with the rules file ``lifeboat rules export``
writes from this module's configuration -> the agent's alert loop reading Prometheus -> the
real channels (PagerDuty over HTTPS with the ``pagerduty`` client, a Slack webhook with
``slack-sdk``, SMTP) to local receivers, and auto-remediation. The tests assert on what the
receivers got and on ``lifeboat alerts --output json``.

The issue's "a receiver that answers 500 twice then 202 gets the notification once" is proved
in-process by test_alert_delivery (the router and retry.deliver); here it is part of the first
test, through the agent: PagerDuty refuses the first page twice and gets one trigger accepted.

The streaming receiver is frozen (SIGSTOP), not killed: the agent's supervisor restarts a
receiver that exits within 1-10 s by design, so a killed one is back before any alert could
fire; a frozen one is alive to the supervisor but dropped by the primary after
``wal_sender_timeout``, the fault the supervisor cannot see and remediation must cure.

One cluster, one agent, one Prometheus and the receivers serve every test (module scope);
windows, ``for`` and intervals are short through the configuration. Each test starts with no
alert open and leaves none open.

The rules (every other default rule is off):

- ``wal_archive_failing`` (default: pagerduty + slack; check_disk_space,
  verify_backup_dependencies, cleanup_staging_area, escalate_to_dba), window 10s;
- ``streaming_receiver_down`` (default: slack + email, as the seed routes replication_delay;
  check_network_connectivity, restart_replication, escalate_to_dba), ``for = "3s"``. A
  receiver that is gone leaves ``pg_stat_replication``, so the lag series of
  ``replication_delay`` vanish with it and that rule cannot fire: the exporter's
  ``lifeboat_streaming_receiver_up`` (0 while the server answers without the receiver) can;
- ``backup_failure`` (default: pagerduty + slack; verify_backup_dependencies,
  cleanup_staging_area, retry_backup_operation);
- ``postgres_down`` (default: the critical route, pagerduty; check_network_connectivity,
  escalate_to_dba), ``for = "0s"``, ``max_attempts = 2``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agent import agent_settings, enqueue, receiver_pids, running_agent, wait_job
from tests.integration.alert_parts import only_rules
from tests.integration.pg import PG_USER, Lifeboat, Workspace, free_port
from tests.integration.prom import prometheus, value
from tests.receivers import HttpReceiver, HttpsReceiver, SmtpReceiver

RECEIVER = "lifeboat_receiver"
PD_KEY = "e2e-routing-key-0123456789abcdef"
SLACK_PATH = "/services/T000/B000/E2E"


def alerts_config(prometheus_url: str, pd: HttpsReceiver, slack: HttpReceiver, smtp: SmtpReceiver,
                  exporter_port: int) -> str:
    return f"""
[exporter]
port = {exporter_port}
refresh_interval = "1s"
query_timeout = "2s"

[alerts]
prometheus_url = "{prometheus_url}"
evaluation_interval = "1s"
query_timeout = "3s"
group_wait = "0s"

[alerts.retry]
attempts = 4
first_wait = "0.2s"
max_wait = "0.5s"
deadline = "20s"

[alerts.remediation]
retry_interval = "3s"
action_timeout = "40s"

[alerts.pagerduty]
routing_key = "{PD_KEY}"
api_url = "{pd.url}"
ca_file = "{pd.ca_file}"

[alerts.slack]
webhook_url = "{slack.url}{SLACK_PATH}"

[alerts.email]
host = "{smtp.host}"
port = {smtp.port}
sender = "lifeboat@db1.example"
recipients = ["dba@example.com"]

[alerts.rules.wal_archive_failing]
window = "10s"
auto_remediation = {{ max_attempts = 20 }}

[alerts.rules.backup_failure]
window = "10m"

[alerts.rules.postgres_down]
for = "0s"
auto_remediation = {{ max_attempts = 2 }}

[alerts.rules.streaming_receiver_down]
for = "3s"

{only_rules("wal_archive_failing", "backup_failure", "postgres_down", "streaming_receiver_down")}
"""


@dataclass
class Site:
    env: Lifeboat
    stream: Path
    pd: HttpsReceiver
    slack: HttpReceiver
    smtp: SmtpReceiver
    prom: Any
    agent: subprocess.Popen[str]

    @property
    def cluster(self):  # type: ignore[no-untyped-def]
        return self.env.cluster

    def log_tail(self, lines: int = 40) -> str:
        log = Path(self.agent.log)  # type: ignore[attr-defined]
        text = log.read_text(errors="replace").splitlines() if log.exists() else []
        return "\n".join(text[-lines:]) or "(the agent printed nothing)"

    def alerts(self) -> list[dict[str, Any]]:
        """``lifeboat alerts --output json --all``: every alert, newest first."""
        done = self.env.run("alerts", "--output", "json", "--all", timeout=60)
        return list(json.loads(done.stdout)["alerts"])

    def alert(self, rule: str) -> dict[str, Any] | None:
        """The newest alert of ``rule``."""
        found = [a for a in self.alerts() if a["rule"] == rule]
        return max(found, key=lambda a: a["id"]) if found else None

    def until(self, check: Callable[[], Any], timeout: float, what: str, pause: float = 0.5) -> Any:
        """Wait for ``check()`` to be truthy; on time out, fail naming ``what``, the last value
        and the agent's log tail."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            assert self.agent.poll() is None, f"the agent exited ({self.agent.returncode}) while " \
                                              f"waiting for {what}:\n{self.log_tail()}"
            last = check()
            if last:
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}\n"
                                     f"open alerts: {self.open_alerts()}\nagent log:\n{self.log_tail()}")
            time.sleep(pause)

    def open_alerts(self) -> list[tuple[str, str]]:
        return [(a["rule"], a["state"]) for a in self.alerts() if a["resolved_at"] is None]

    def quiet(self) -> None:
        """No alert open (what a test starts from and leaves behind)."""
        self.until(lambda: not self.open_alerts(), 60, "no alert open")

    def firing(self, rule: str) -> dict[str, Any]:
        return self.until(lambda: (lambda a: a if a and a["resolved_at"] is None and a["state"] == "firing"
                                   else None)(self.alert(rule)), 60, f"{rule} firing")

    def resolved(self, alert_id: int, timeout: float = 60) -> dict[str, Any]:
        return self.until(lambda: next((a for a in self.alerts() if a["id"] == alert_id
                                        and a["resolved_at"] is not None), None), timeout,
                          f"alert #{alert_id} resolved")

    def attempts(self, alert_id: int, check: Callable[[list[dict[str, Any]]], bool], what: str,
                 timeout: float = 60) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]] | None:
            alert = next(a for a in self.alerts() if a["id"] == alert_id)
            return alert["remediation"] if check(alert["remediation"]) else None
        return self.until(found, timeout, what)

    def pd_events(self, key: str) -> list[dict[str, Any]]:
        return [r.json for r in list(self.pd.requests) if r.path == "/v2/enqueue" and isinstance(r.json, dict)
                and r.json.get("dedup_key") == key]

    def slack_messages(self, summary: str) -> list[dict[str, Any]]:
        return [r.json for r in list(self.slack.requests) if r.path == SLACK_PATH
                and isinstance(r.json, dict) and summary in json.dumps(r.json)]

    def mails(self, rule: str) -> list[Any]:
        return [m for m in list(self.smtp.messages) if rule in m.text]


def write_wal(cluster: Any, switches: int = 1) -> None:
    for _ in range(switches):
        cluster.sql("INSERT INTO t SELECT generate_series(1, 1000)")
        cluster.sql("SELECT pg_switch_wal()")


def streaming(cluster: Any) -> bool:
    return cluster.value("SELECT state FROM pg_stat_replication WHERE application_name = %s",
                         (RECEIVER,)) == "streaming"


@pytest.fixture(scope="module")
def site(workspace: Workspace) -> Iterator[Site]:
    # wal_sender_timeout: the primary drops a receiver that stops answering within 2 s
    env = Lifeboat.create(workspace, settings={"wal_sender_timeout": "'2s'"})
    stream = workspace.path("stream")
    rules = workspace.path("rules") / "lifeboat.rules.yml"
    exporter_port = free_port()
    cluster_extra = (f'connect_timeout = "2s"\n[clusters.main.streaming]\nenabled = true\n'
                     f'directory = "{stream}"\nsynchronous = false\n')
    state = agent_settings(workspace, isolate=False)  # alerts_config writes both sections

    def configure(prometheus_url: str) -> None:
        env.write_config(env.cluster, extra=cluster_extra + state + alerts_config(
            prometheus_url, pd, slack, smtp, exporter_port))

    with HttpsReceiver(certs_dir=workspace.path("certs")) as pd, HttpReceiver() as slack, \
            SmtpReceiver() as smtp, contextlib.ExitStack() as stack:
        stack.callback(env.cleanup)
        configure(f"http://127.0.0.1:{free_port()}")  # the rules file does not depend on it
        env.cluster.start()
        env.cluster.sql("CREATE TABLE t (id int)")
        env.run("init")
        done = env.run("rules", "export", "--output", str(rules))
        assert rules.exists(), done.stderr
        exported = rules.read_text()
        assert "LifeboatStreamingReceiverDown" in exported and "LifeboatPostgresDown" in exported
        prom = stack.enter_context(prometheus(workspace, [f"127.0.0.1:{exporter_port}"], [rules]))
        configure(prom.url)
        agent = stack.enter_context(running_agent(env, duration=900))
        site = Site(env, stream, pd, slack, smtp, prom, agent)
        site.until(lambda: streaming(env.cluster), 30, "the receiver to stream")
        site.until(lambda: value(prom, f'lifeboat_replica_info{{replica="{RECEIVER}"}}') == 1, 30,
                   "Prometheus to scrape the agent's exporter")
        site.quiet()
        yield site


# 1. archiving fails ----------------------------------------------------------------------

def test_archiving_fails_pages_remediates_and_resolves(site: Site) -> None:
    """The cluster's part of the repository is made root-only, so ``wal-push`` (run by
    postgres) fails: wal_archive_failing fires, PagerDuty (which answers 500 twice first) gets
    one trigger, Slack a Block Kit message, check_disk_space and verify_backup_dependencies say
    why; the permission comes back, archiving catches up, the alert resolves and both get the
    resolve."""
    site.quiet()
    part = site.env.repo / "clusters" / "main"
    before = part.stat()
    site.pd.script(500, 500)  # the first page is refused twice: retried, delivered once
    os.chown(part, 0, 0)
    os.chmod(part, 0o700)
    try:
        write_wal(site.cluster)
        alert = site.firing("wal_archive_failing")
        failed_wal = site.cluster.value("SELECT last_failed_wal FROM pg_stat_archiver")
        assert failed_wal, "pg_stat_archiver shows no failure"
        attempts = site.attempts(alert["id"], lambda found: {"check_disk_space", "verify_backup_dependencies"}
                                 <= {a["action"] for a in found}, "the first remediation round")
        site.until(lambda: site.pd_events(alert["fingerprint"]), 30, "the page")
    finally:
        os.chown(part, before.st_uid, before.st_gid)
        os.chmod(part, before.st_mode)
    write_wal(site.cluster)  # wakes the archiver, which archives the backlog
    site.until(lambda: (site.cluster.value("SELECT last_archived_wal FROM pg_stat_archiver") or "")
               >= failed_wal, 60, f"{failed_wal} archived after the fix")
    site.resolved(alert["id"])
    site.until(lambda: [e["event_action"] for e in site.pd_events(alert["fingerprint"])][-1:] == ["resolve"],
               30, "the resolve at PagerDuty")
    summary = "archive_command fails on main"
    site.until(lambda: len(site.slack_messages(summary)) >= 2, 30, "the resolved message in Slack")

    # PagerDuty: 500, 500, then the trigger accepted; the resolve with the same dedup key
    events = site.pd_events(alert["fingerprint"])
    assert [e["event_action"] for e in events] == ["trigger"] * 3 + ["resolve"], events
    trigger = events[-2]
    assert trigger["routing_key"] == PD_KEY and trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"] == f"[main] {summary}"
    assert trigger["payload"]["custom_details"]["rule"] == "wal_archive_failing"
    assert trigger["payload"]["custom_details"]["runbook_url"].endswith("#wal_archive_failing")
    shown = site.alert("wal_archive_failing")
    assert shown is not None and shown["id"] == alert["id"]
    notes = [(n["channel"], n["kind"], n["outcome"], n["attempts"]) for n in shown["notifications"]]
    assert ("pagerduty", "firing", "ok", 3) in notes and ("pagerduty", "resolved", "ok", 1) in notes
    assert ("slack", "firing", "ok", 1) in notes and ("slack", "resolved", "ok", 1) in notes

    # Slack: a Block Kit message, then a resolved one
    firing, resolved = site.slack_messages(summary)
    header = firing["blocks"][0]
    assert header["type"] == "header" and summary in header["text"]["text"]
    fields = json.dumps(firing["blocks"])
    assert "*Cluster*\\nmain" in fields and "*Threshold*\\n1" in fields
    assert any(b["type"] == "actions" and b["elements"][0]["url"].endswith("#wal_archive_failing")
               for b in firing["blocks"])
    assert "Resolved: " in resolved["blocks"][0]["text"]["text"]
    assert "*Resolved*" in json.dumps(resolved["blocks"])

    # remediation said why: the disk is not the cause; the repository is not writable and
    # archiving fails for the segment PostgreSQL reports
    by_action = {a["action"]: a for a in attempts if a["round"] == 1}
    disk = by_action["check_disk_space"]
    assert disk["result"] == "ok", disk
    assert f"repository {site.env.repo}: ok" in disk["output"]
    assert f"PGDATA {site.cluster.pgdata}: ok" in disk["output"]
    deps = by_action["verify_backup_dependencies"]
    assert deps["result"] == "failed", deps
    assert f"WAL archiving of cluster 'main': FAILED: failing: archive_command failed for {failed_wal}" \
        in deps["output"]
    assert f"repository {site.env.repo} (writing clusters/main/probes/" in deps["output"]
    assert re.search(r"FAILED: not writable: .*[Pp]ermission denied", deps["output"]), deps["output"]
    assert str(part) in deps["output"]
    site.quiet()


# 2. the streaming receiver stops ----------------------------------------------------------

def test_stopped_receiver_is_restarted_by_remediation_and_the_alert_resolves(site: Site) -> None:
    """The receiver is frozen (SIGSTOP): alive, so the agent's supervisor (which restarts a
    receiver that exits, within 1-10 s by itself) leaves it alone, but the primary drops it
    after wal_sender_timeout. streaming_receiver_down fires, goes to Slack and email,
    check_network_connectivity says the replica is not connected and restart_replication
    brings a new receiver back; the alert resolves and the resolve goes out."""
    site.quiet()
    [frozen] = receiver_pids(site.stream)
    os.kill(frozen, signal.SIGSTOP)
    try:
        site.until(lambda: not streaming(site.cluster), 30, "the primary to drop the frozen receiver")
        alert = site.firing("streaming_receiver_down")
        assert alert["severity"] == "warning" and alert["labels"]["cluster"] == "main"
        site.resolved(alert["id"], timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(frozen, signal.SIGCONT)
    assert streaming(site.cluster)
    [back] = receiver_pids(site.stream)
    assert back != frozen

    shown = site.alert("streaming_receiver_down")
    assert shown is not None and shown["id"] == alert["id"]
    attempts = shown["remediation"]
    assert [(a["round"], a["action"]) for a in attempts] == [
        (1, "check_network_connectivity"), (1, "restart_replication"), (1, "escalate_to_dba")], attempts
    network, restart, escalate = attempts
    assert escalate["result"] == "skipped"  # round 1 of 3: the restart cured it before escalation
    assert network["result"] == "failed"
    assert f"replica '{RECEIVER}' of cluster 'main'" in network["output"]
    assert "not connected" in network["output"]
    assert restart["result"] == "ok", restart
    assert f"pg_receivewal (pid {frozen}) was running; restarted as pid {back}" in restart["output"]
    assert f"pg_stat_replication shows '{RECEIVER}' streaming" in restart["output"]

    summary = "The streaming WAL receiver of main is not connected"
    site.until(lambda: len(site.slack_messages(summary)) >= 2
               and len(site.mails("streaming_receiver_down")) >= 2, 30, "the resolve in Slack and by mail")
    firing, resolved = site.slack_messages(summary)
    assert "Resolved" not in firing["blocks"][0]["text"]["text"]
    assert "Resolved: " in resolved["blocks"][0]["text"]["text"]
    subjects = [m.message["Subject"] for m in site.mails("streaming_receiver_down")]
    assert subjects == [f"[FIRING warning] {summary}", f"[RESOLVED] {summary}"], subjects
    assert not site.pd_events(alert["fingerprint"])  # a warning: nobody is paged
    site.quiet()


# 3. a backup fails once -------------------------------------------------------------------

HOLD_LOCK = """
import sys
from engine.repository.locks import cluster_lock
from engine.repository.storage import open_storage
with cluster_lock(open_storage(sys.argv[1]), "main", "a test holding the lock"):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def lock_held(repo: Path) -> Iterator[None]:
    """The cluster's lock held by another process (as postgres, who owns the repository)."""
    holder = subprocess.Popen(["runuser", "-u", PG_USER, "--", sys.executable, "-c", HOLD_LOCK, str(repo)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=Path(__file__).parents[2])
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held", holder.stderr.read()
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)


def test_failed_backup_is_retried_by_remediation_and_the_alert_resolves(site: Site) -> None:
    """A backup enqueued while another process holds the cluster's lock fails (busy):
    backup_failure fires and pages; retry_backup_operation queues the same backup again, the
    agent runs it, it succeeds, and the alert resolves (a success after the newest failure)."""
    site.quiet()
    with lock_held(site.env.repo):
        failed_id = enqueue(site.env, "backup", "--type", "full")
        failed = wait_job(site.env, failed_id)
    assert failed["state"] == "failed" and "busy" in (failed["error"] or ""), failed
    alert = site.firing("backup_failure")
    attempts = site.attempts(alert["id"], lambda found: any(
        a["action"] == "retry_backup_operation" and "queued again as job" in a["output"] for a in found),
        "retry_backup_operation to queue the backup again")
    retry = next(a for a in attempts
                 if a["action"] == "retry_backup_operation" and "queued again" in a["output"])
    assert retry["result"] == "ok" and f"backup job {failed_id} failed" in retry["output"], retry
    retried_id = int(re.search(r"queued again as job (\d+)", retry["output"]).group(1))  # type: ignore[union-attr]
    retried = wait_job(site.env, retried_id, timeout=120)
    assert retried["state"] == "succeeded", retried
    assert retried["requested_by"] == "lifeboat-remediation" and retried["params"] == failed["params"]
    site.resolved(alert["id"])
    site.until(lambda: [e["event_action"] for e in site.pd_events(alert["fingerprint"])][-1:] == ["resolve"],
               30, "the resolve at PagerDuty")
    events = site.pd_events(alert["fingerprint"])
    assert [e["event_action"] for e in events] == ["trigger", "resolve"], events
    assert events[0]["payload"]["custom_details"]["rule"] == "backup_failure"
    summary = "A backup of main failed"
    site.until(lambda: len(site.slack_messages(summary)) >= 2, 30, "the resolve in Slack")
    site.quiet()


# 4. a fault no action can fix --------------------------------------------------------------

def test_server_down_escalates_after_max_attempts_with_the_history(site: Site) -> None:
    """PostgreSQL stopped: postgres_down fires and pages; two remediation rounds fail
    (check_network_connectivity cannot reach the server; escalate_to_dba waits for the last
    round), then the escalation reaches PagerDuty with the history of what was tried, and
    ``lifeboat alerts`` shows the attempts and ``escalated``. The server started again, the
    alert resolves."""
    site.quiet()
    site.cluster.stop()
    try:
        alert = site.firing("postgres_down")
        shown = site.until(lambda: (lambda a: a if a and a["escalated"] and len(a["remediation"]) >= 4
                                    else None)(site.alert("postgres_down")), 60, "the escalation")
        site.until(lambda: len(site.pd_events(alert["fingerprint"])) >= 2, 30, "the escalation at PagerDuty")
    finally:
        site.cluster.start()
    attempts = [(a["round"], a["action"], a["result"]) for a in shown["remediation"]]
    assert attempts == [(1, "check_network_connectivity", "failed"), (1, "escalate_to_dba", "skipped"),
                        (2, "check_network_connectivity", "failed"), (2, "escalate_to_dba", "ok")], attempts
    endpoint = f"PostgreSQL server of cluster 'main' (127.0.0.1:{site.cluster.port})"
    for attempt in shown["remediation"]:
        if attempt["action"] == "check_network_connectivity":
            assert f"{endpoint}: FAILED: did not answer" in attempt["output"], attempt
    escalated = shown["remediation"][-1]["output"]
    assert "escalated: alert LifeboatPostgresDown persists after 2 round(s)" in escalated, escalated

    page, escalation = site.pd_events(alert["fingerprint"])[:2]
    assert page["event_action"] == escalation["event_action"] == "trigger"
    assert "escalated" not in page["payload"]["custom_details"]
    details = escalation["payload"]["custom_details"]
    assert details["escalated"] is True
    assert [(h["action"], h["result"]) for h in details["history"]] == [
        ("check_network_connectivity", "failed"), ("escalate_to_dba", "skipped"),
        ("check_network_connectivity", "failed")], details["history"]
    assert all(endpoint in h["output"] for h in details["history"] if h["action"] != "escalate_to_dba")

    site.resolved(alert["id"])
    site.until(lambda: [e["event_action"] for e in site.pd_events(alert["fingerprint"])][-1:] == ["resolve"],
               30, "the resolve at PagerDuty")
    notes = [(n["channel"], n["kind"], n["outcome"]) for n in site.alert("postgres_down")["notifications"]]
    assert notes == [("pagerduty", "firing", "ok"), ("pagerduty", "escalation", "ok"),
                     ("pagerduty", "resolved", "ok")], notes
