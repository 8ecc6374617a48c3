"""The alert channels with their real client libraries against local receivers (tests/receivers.py):
what each service receives, how each answer is classified, retries with backoff, and that no
secret ever shows in a Delivery's detail."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest

from alerts.channels.base import AlertNotice, Delivery, Outcome, RemediationStep
from alerts.channels.email import EmailChannel
from alerts.channels.grafana import GrafanaChannel
from alerts.channels.pagerduty import PagerDutyChannel
from alerts.channels.retry import deliver
from alerts.channels.slack import SlackChannel
from alerts.channels.webhook import WebhookChannel
from tests.receivers import HangUpReceiver, HttpReceiver, HttpsReceiver, SmtpReceiver, free_port

ROUTING_KEY = "R0UTINGKEY0123456789abcdefabcdef"
SLACK_TOKEN = "xoxb-1111-2222-SeCrEtToKeN"
SLACK_HOOK = "/services/T0000/B0000/XXXXwebhooksecretXXXX"
GRAFANA_TOKEN = "glsa_GrafanaServiceAccountSecret_0123"
SMTP_PASSWORD = "smtp-PaSsWoRd-42"
STARTED, ENDED = 1764720000.5, 1764723600.25
RUNBOOK = "https://runbooks.example.com/lifeboat/backup_failure"
LONG_OUTPUT = "pg_basebackup: error: could not connect to server: Connection refused " * 20


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overrides the unit tests' ban on connections: loopback only, for the local receivers."""
    real_connect = socket.socket.connect

    def loopback_only(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not (
                isinstance(address, tuple) and address[0] in ("127.0.0.1", "::1", "localhost")):
            raise ConnectionRefusedError(f"unit tests may not connect to {address!r}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def https() -> Iterator[HttpsReceiver]:
    with HttpsReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver(users={"lifeboat": SMTP_PASSWORD}) as receiver:
        yield receiver


def nobody(scheme: str = "http") -> str:
    """The URL of a loopback port nothing listens on: connections are refused."""
    return f"{scheme}://127.0.0.1:{free_port()}"


def step(attempt: int, result: str = "failed", output: str = LONG_OUTPUT) -> RemediationStep:
    return RemediationStep(attempt, "retry_backup", result, output, STARTED + 60 * attempt)


def notice(**changes: object) -> AlertNotice:
    base = AlertNotice(
        key="backup_failure:7f3a9c", rule="backup_failure", alertname="LifeboatBackupFailed",
        state="firing", severity="critical", cluster="orders", summary="Backups of orders failed 3 times",
        description="The last three scheduled backups of orders failed; PITR is at risk.",
        started_at=STARTED, value=3.0, threshold="1 in 24h",
        runbook_url=RUNBOOK,
        labels={"cluster": "orders", "instance": "db1:9187"}, remediation=(step(1), step(2, "timeout")))
    return replace(base, **changes)  # type: ignore[arg-type]


def pagerduty(receiver: HttpsReceiver) -> PagerDutyChannel:
    return PagerDutyChannel(ROUTING_KEY, api_url=receiver.url, ca_file=receiver.ca_file, timeout=5)


# PagerDuty


def test_pagerduty_trigger_acknowledge_resolve_one_incident(https: HttpsReceiver) -> None:
    channel = pagerduty(https)
    sent = [channel.send(notice(state=state)) for state in ("firing", "acknowledged", "resolved")]
    assert [d.outcome for d in sent] == [Outcome.OK] * 3, [d.detail for d in sent]
    assert https.paths() == ["POST /v2/enqueue"] * 3
    events = [r.json for r in https.requests]
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {"backup_failure:7f3a9c"}
    assert {e["routing_key"] for e in events} == {ROUTING_KEY}
    trigger = events[0]
    payload, details = trigger["payload"], trigger["payload"]["custom_details"]
    assert payload["summary"] == "[orders] Backups of orders failed 3 times"
    assert (payload["severity"], payload["source"]) == ("critical", "lifeboat")
    assert payload["component"] == "orders"
    assert (payload["group"], payload["class"]) == ("backup_failure", "LifeboatBackupFailed")
    assert payload["timestamp"] == "2025-12-03T00:00:00+00:00"
    assert (details["cluster"], details["rule"], details["value"], details["threshold"]) == (
        "orders", "backup_failure", 3.0, "1 in 24h")
    assert details["runbook_url"] == RUNBOOK
    assert details["labels"] == {"cluster": "orders", "instance": "db1:9187"}
    assert [(s["attempt"], s["action"], s["result"]) for s in details["remediation"]] == [
        (1, "retry_backup", "failed"), (2, "retry_backup", "timeout")]
    outputs = [s["output"] for s in details["remediation"]]
    assert all(len(output) <= 200 and output.startswith("pg_basebackup") for output in outputs)
    assert "history" not in details
    assert trigger["links"] == [{"href": RUNBOOK, "text": "Runbook"}]
    assert "payload" not in events[1] and "payload" not in events[2]


def test_pagerduty_escalated_notice_carries_the_full_history(https: HttpsReceiver) -> None:
    history = tuple(step(n) for n in range(1, 8))
    long = notice(escalated=True, remediation=history, severity="warning", summary="x" * 2000)
    assert pagerduty(https).send(long).outcome is Outcome.OK
    payload = https.requests[0].json["payload"]
    assert payload["severity"] == "warning" and len(payload["summary"]) == 1024
    details = payload["custom_details"]
    assert details["escalated"] is True
    assert [s["attempt"] for s in details["history"]] == [1, 2, 3, 4, 5, 6, 7]
    assert details["history"][0]["output"] == LONG_OUTPUT.strip()  # full output, not shortened
    assert [s["attempt"] for s in details["remediation"]] == [3, 4, 5, 6, 7]


def test_pagerduty_answers_are_classified_with_one_request_each(https: HttpsReceiver) -> None:
    https.script(500, 503, 429, 400, 401, 403, 404)
    channel = pagerduty(https)
    outcomes = [channel.send(notice()).outcome for _ in range(7)]
    assert outcomes == [Outcome.RETRYABLE] * 3 + [Outcome.FAILED] * 4
    assert len(https.requests) == 7  # the client's own retries are off: the caller decides


def test_pagerduty_unreachable_is_retryable_and_untrusted_tls_failed(https: HttpsReceiver) -> None:
    refused = PagerDutyChannel(ROUTING_KEY, api_url=nobody("https"), timeout=2).send(notice())
    assert refused.outcome is Outcome.RETRYABLE and "not delivered" in refused.detail
    untrusted = PagerDutyChannel(ROUTING_KEY, api_url=https.url, timeout=2).send(notice())  # no ca_file
    assert untrusted.outcome is Outcome.FAILED and "certificate" in untrusted.detail
    assert https.requests == []
    with pytest.raises(ValueError, match="https"):
        PagerDutyChannel(ROUTING_KEY, api_url="http://events.example.com")


# Slack


def test_slack_webhook_posts_a_block_kit_message(http: HttpReceiver) -> None:
    channel = SlackChannel(webhook_url=http.url + SLACK_HOOK, timeout=5)
    delivery = channel.send(notice(group=("replication_lag:11aa", "wal_archive_failing:22bb")))
    assert delivery.outcome is Outcome.OK and delivery.ref is None, delivery.detail
    [request] = http.requests
    assert request.path == SLACK_HOOK and request.json["text"].startswith("FIRING critical on orders")
    blocks = request.json["blocks"]
    header = blocks[0]["text"]["text"]
    assert blocks[0]["type"] == "header" and header == ":red_circle: Backups of orders failed 3 times"
    assert blocks[1]["text"]["text"].startswith("The last three scheduled backups")
    fields = [f["text"] for f in blocks[2]["fields"]]
    for expected in ("*Cluster*\norders", "*Value*\n3", "*Threshold*\n1 in 24h",
                     "*Started*\n2025-12-03T00:00:00+00:00",
                     "*Rule*\n`backup_failure` (LifeboatBackupFailed)"):
        assert expected in fields
    assert blocks[3]["elements"][0]["url"] == RUNBOOK
    assert "*Remediation so far:*" in blocks[4]["text"]["text"] and "#2" in blocks[4]["text"]["text"]
    assert "replication_lag:11aa" in blocks[5]["elements"][0]["text"]


def test_slack_bot_threads_the_resolution_under_the_alert(http: HttpReceiver) -> None:
    channel = SlackChannel(token=SLACK_TOKEN, channel="#oncall", api_url=http.url + "/api/", timeout=5)
    first = channel.send(notice())
    assert first.outcome is Outcome.OK and first.ref, first.detail
    resolved = channel.send(notice(state="resolved", ended_at=ENDED, refs={"slack": first.ref}))
    assert resolved.outcome is Outcome.OK and resolved.ref == first.ref
    post, reply = http.requests
    assert post.path == reply.path == "/api/chat.postMessage"
    assert post.header("Authorization") == f"Bearer {SLACK_TOKEN}"
    assert post.json["channel"] == "#oncall" and "thread_ts" not in post.json
    assert first.ref == "1700000000.000001"  # the ts the API answered
    assert reply.json["thread_ts"] == first.ref
    header = reply.json["blocks"][0]["text"]["text"]
    assert header == ":white_check_mark: Resolved: Backups of orders failed 3 times"
    assert "*Resolved*\n2025-12-03T01:00:00+00:00" in [f["text"] for f in reply.json["blocks"][2]["fields"]]


def test_slack_errors_are_classified(http: HttpReceiver) -> None:
    http.script("invalid_auth", "channel_not_found", "not_in_channel", "token_revoked", 429, 500,
                (503, "upstream connect error"), (429, "Too Many Requests"))  # from a proxy: not JSON
    bot = SlackChannel(token=SLACK_TOKEN, channel="#oncall", api_url=http.url + "/api/", timeout=5)
    found = [bot.send(notice()) for _ in range(8)]
    assert [d.outcome for d in found] == [Outcome.FAILED] * 4 + [Outcome.RETRYABLE] * 4
    assert "invalid_auth" in found[0].detail and "ratelimited" in found[4].detail
    http.script(500, 404)
    hook = SlackChannel(webhook_url=http.url + SLACK_HOOK, timeout=5)
    assert [hook.send(notice()).outcome for _ in range(2)] == [Outcome.RETRYABLE, Outcome.FAILED]
    assert len(http.requests) == 10  # slack-sdk's retry handlers are off
    for channel in (SlackChannel(webhook_url=nobody() + "/x", timeout=2),
                    SlackChannel(token=SLACK_TOKEN, channel="#c", api_url=nobody() + "/api/",
                                 timeout=2)):
        assert channel.send(notice()).outcome is Outcome.RETRYABLE


def test_slack_escalated_history_is_split_into_sections_slack_accepts(http: HttpReceiver) -> None:
    history = tuple(step(n) for n in range(1, 31))
    hook = SlackChannel(webhook_url=http.url + SLACK_HOOK, timeout=5)
    assert hook.send(notice(escalated=True, remediation=history)).outcome is Outcome.OK
    blocks = http.requests[0].json["blocks"]
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    history_texts = [text for text in texts if "retry_backup" in text]
    assert texts[1].startswith("*Remediation gave up*") and len(history_texts) > 1
    assert all(len(text) <= 3000 for text in texts)
    assert [f"#{n} " in "".join(history_texts) for n in range(1, 31)] == [True] * 30


# Grafana


def test_grafana_annotates_the_start_and_closes_the_region(http: HttpReceiver) -> None:
    channel = GrafanaChannel(http.url, token=GRAFANA_TOKEN, dashboard_uid="lifeboat-overview", timeout=5)
    fired = channel.send(notice())
    assert fired.outcome is Outcome.OK and fired.ref == "1", fired.detail
    resolved = channel.send(notice(state="resolved", ended_at=ENDED, refs={"grafana": fired.ref}))
    assert resolved.outcome is Outcome.OK and resolved.ref == "1"
    post, patch = http.requests
    assert (post.method, post.path) == ("POST", "/api/annotations")
    assert post.header("Authorization") == f"Bearer {GRAFANA_TOKEN}"
    assert post.json["time"] == 1764720000500 and post.json["dashboardUID"] == "lifeboat-overview"
    assert post.json["tags"] == ["cluster:orders", "rule:backup_failure", "severity:critical", "lifeboat"]
    assert "Backups of orders failed 3 times" in post.json["text"]
    assert "threshold 1 in 24h" in post.json["text"]
    assert (patch.method, patch.path) == ("PATCH", "/api/annotations/1")
    assert patch.json["timeEnd"] == 1764723600250 and patch.json["isRegion"] is True


def test_grafana_resolution_without_ref_posts_a_region(http: HttpReceiver) -> None:
    delivery = GrafanaChannel(http.url, timeout=5).send(notice(state="resolved", ended_at=ENDED))
    assert delivery.outcome is Outcome.OK and delivery.ref == "1"
    [post] = http.requests
    assert (post.method, post.path, post.header("Authorization")) == ("POST", "/api/annotations", None)
    region = (post.json["time"], post.json["timeEnd"], post.json["isRegion"])
    assert region == (1764720000500, 1764723600250, True)
    assert "dashboardUID" not in post.json


def test_grafana_errors_are_classified(http: HttpReceiver) -> None:
    http.script(500, 401, 403)
    channel = GrafanaChannel(http.url, token=GRAFANA_TOKEN, timeout=5)
    found = [channel.send(notice()) for _ in range(3)]
    assert [d.outcome for d in found] == [Outcome.RETRYABLE, Outcome.FAILED, Outcome.FAILED]
    assert all(d.ref is None for d in found)
    refused = GrafanaChannel(nobody(), timeout=2).send(notice())
    assert refused.outcome is Outcome.RETRYABLE


# Email


def email(receiver: SmtpReceiver, password: str = SMTP_PASSWORD) -> EmailChannel:
    return EmailChannel(receiver.host, receiver.port, "lifeboat@db.example.com",
                        ["oncall@example.com", "dba@example.com"], username="lifeboat", password=password,
                        timeout=5)


def test_email_threads_the_resolution_under_the_alert(smtp: SmtpReceiver) -> None:
    channel = email(smtp)
    fired = channel.send(notice())
    assert fired.outcome is Outcome.OK and fired.ref, fired.detail
    resolved = channel.send(notice(state="resolved", ended_at=ENDED, refs={"email": fired.ref}))
    assert resolved.outcome is Outcome.OK and resolved.ref == fired.ref
    first, second = smtp.messages
    assert first.sender == "lifeboat@db.example.com"
    assert first.recipients == ["oncall@example.com", "dba@example.com"]
    assert first.message["Subject"] == "[FIRING critical] Backups of orders failed 3 times"
    assert first.message["Message-ID"] == fired.ref and fired.ref.endswith("@db.example.com>")
    for expected in ("Cluster:", "orders", "Value:", "3", "1 in 24h", "2025-12-03T00:00:00+00:00",
                     RUNBOOK, "Label instance:",
                     "Remediation so far:", "#2 2025-12-03T00:02:00+00:00 retry_backup: timeout"):
        assert expected in first.text
    assert second.message["Subject"] == "[RESOLVED] Backups of orders failed 3 times"
    assert second.message["In-Reply-To"] == second.message["References"] == fired.ref
    assert second.message["Message-ID"] != fired.ref and "Resolved:" in second.text


def test_email_thread_id_is_stable_without_a_ref(smtp: SmtpReceiver) -> None:
    channel = email(smtp)
    fired = channel.send(notice())
    again = channel.send(notice(state="acknowledged", acknowledged_by="alice"))  # the router lost the ref
    assert again.ref == fired.ref and smtp.messages[1].message["In-Reply-To"] == fired.ref
    assert channel.send(notice(key="other:1")).ref != fired.ref
    output = "FATAL:  archive command failed\nDETAIL:  exit code 1"
    channel.send(notice(escalated=True, remediation=(step(1, output=output),)))
    assert "Remediation gave up; full history:" in smtp.messages[-1].text
    assert "      FATAL:  archive command failed\n      DETAIL:  exit code 1\n" in smtp.messages[-1].text


def test_email_errors_are_classified(smtp: SmtpReceiver) -> None:
    smtp.script("451 4.3.0 Try again later", "554 5.7.1 Message rejected")
    channel = email(smtp)
    assert [channel.send(notice()).outcome for _ in range(2)] == [Outcome.RETRYABLE, Outcome.FAILED]
    wrong = email(smtp, password="not-the-password").send(notice())
    assert wrong.outcome is Outcome.FAILED and "authentication" in wrong.detail
    assert smtp.messages == []
    nobody_there = EmailChannel("127.0.0.1", free_port(), "a@example.com", ["b@example.com"], timeout=2)
    refused = nobody_there.send(notice())
    assert refused.outcome is Outcome.RETRYABLE


def test_a_reset_connection_is_retryable_and_tried_once() -> None:
    """One send is one connection: the client libraries' own retries on network errors are off."""
    for make in (lambda url: PagerDutyChannel(ROUTING_KEY, api_url=url.replace("http:", "https:"), timeout=2),
                 lambda url: SlackChannel(token=SLACK_TOKEN, channel="#c", api_url=url + "/api/", timeout=2),
                 lambda url: SlackChannel(webhook_url=url + SLACK_HOOK, timeout=2),
                 lambda url: GrafanaChannel(url, timeout=2), lambda url: WebhookChannel(url, timeout=2),
                 lambda url: EmailChannel("127.0.0.1", int(url.rsplit(":", 1)[1]), "a@x.org", ["b@x.org"])):
        with HangUpReceiver() as peer:
            delivery = make(peer.url).send(notice())
            assert delivery.outcome is Outcome.RETRYABLE, delivery
            assert peer.connections == 1, delivery


# Webhook


def test_webhook_posts_the_notice_as_json(http: HttpReceiver) -> None:
    delivery = WebhookChannel(http.url + "/hooks/lifeboat", timeout=5).send(notice(escalated=True))
    assert delivery.outcome is Outcome.OK
    body = http.requests[0].json
    assert body["version"] == 1 and body["key"] == "backup_failure:7f3a9c" and body["escalated"] is True
    assert body["remediation"][1] == {"attempt": 2, "action": "retry_backup", "result": "timeout",
                                      "output": LONG_OUTPUT, "at": STARTED + 120}
    http.script(502, 410)
    channel = WebhookChannel(http.url + "/hooks/lifeboat", timeout=5)
    assert [channel.send(notice()).outcome for _ in range(2)] == [Outcome.RETRYABLE, Outcome.FAILED]


# Retries


class Sleeps(list[float]):
    """Stands for time.sleep: records each wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_retry_sends_again_until_accepted_with_growing_backoff(https: HttpsReceiver) -> None:
    https.script(500, 500)  # then 202
    sleeps = Sleeps()
    delivery = deliver(pagerduty(https), notice(), attempts=4, first_wait=1.0, sleep=sleeps)
    assert delivery.outcome is Outcome.OK and delivery.attempts == 3, delivery.detail
    assert len(https.requests) == 3 and [r.json["event_action"] for r in https.requests] == ["trigger"] * 3
    assert len(sleeps) == 2 and 1.0 <= sleeps[0] <= 2.0 and 2.0 <= sleeps[1] <= 3.0 and sleeps[1] > sleeps[0]


def test_retry_stops_at_attempts_deadline_or_a_failure(http: HttpReceiver) -> None:
    channel = GrafanaChannel(http.url, timeout=5)
    http.default = 500
    sleeps = Sleeps()
    exhausted = deliver(channel, notice(), attempts=4, first_wait=0.5, max_wait=1.5, sleep=sleeps)
    assert exhausted.outcome is Outcome.RETRYABLE and exhausted.attempts == 4 == len(http.requests)
    assert len(sleeps) == 3 and max(sleeps) <= 1.5
    sleeps.clear()
    late = deliver(channel, notice(), attempts=10, first_wait=10, max_wait=100, deadline=25, sleep=sleeps)
    assert late.attempts == 2 and len(sleeps) == 1  # a second wait (>= 20 s) would end past 25 s
    http.default = 401
    sleeps.clear()
    failed = deliver(channel, notice(), sleep=sleeps)
    assert failed.outcome is Outcome.FAILED and failed.attempts == 1 and sleeps == []


def test_retry_turns_a_raising_channel_into_a_failed_delivery() -> None:
    class Broken:
        name = "broken"
        secrets = ["hunter2-secret"]

        def send(self, notice: AlertNotice) -> Delivery:
            raise KeyError("lookup of hunter2-secret failed")

    delivery = deliver(Broken(), notice(), sleep=Sleeps())
    assert delivery.outcome is Outcome.FAILED and delivery.attempts == 1
    assert delivery.channel == "broken" and "KeyError" in delivery.detail and "hunter2" not in delivery.detail


# Secrets


def test_no_secret_ever_shows_in_a_detail(http: HttpReceiver, https: HttpsReceiver,
                                          smtp: SmtpReceiver) -> None:
    # Receivers that echo the secret in their error replies, as real services sometimes do.
    https.script((400, {"status": "invalid event", "message": f"routing key {ROUTING_KEY} unknown"}), 202)
    http.script((404, f"no_service {SLACK_HOOK}"), (401, {"message": f"invalid key {GRAFANA_TOKEN}"}),
                (401, {"ok": False, "error": f"invalid_auth {SLACK_TOKEN}"}))
    smtp.script(f"554 5.7.1 rejected for {SMTP_PASSWORD}")
    found = [pagerduty(https).send(notice()), pagerduty(https).send(notice()),
             SlackChannel(webhook_url=http.url + SLACK_HOOK, timeout=5).send(notice()),
             GrafanaChannel(http.url, token=GRAFANA_TOKEN, timeout=5).send(notice()),
             SlackChannel(token=SLACK_TOKEN, channel="#c", api_url=f"{http.url}/api/").send(notice()),
             email(smtp).send(notice()), email(smtp, password="wrong-" + SMTP_PASSWORD).send(notice()),
             PagerDutyChannel(ROUTING_KEY, api_url=nobody("https"), timeout=2).send(notice()),
             SlackChannel(webhook_url=nobody() + SLACK_HOOK, timeout=2).send(notice()),
             WebhookChannel(nobody() + SLACK_HOOK, timeout=2).send(notice())]
    assert [d.outcome for d in found][:2] == [Outcome.FAILED, Outcome.OK]
    assert all("***" in found[n].detail for n in (0, 2, 3, 4, 5))  # echoed by the receiver, redacted
    for delivery in found:
        for secret in (ROUTING_KEY, SLACK_TOKEN, SLACK_HOOK, GRAFANA_TOKEN, SMTP_PASSWORD, "webhooksecret"):
            assert secret not in delivery.detail, (delivery.channel, delivery.detail)
