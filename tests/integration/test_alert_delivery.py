"""The real delivery path end to end, with the real channels (alerts/channels) and the local
receivers (tests/receivers.py): the router through retry.deliver to a PagerDuty receiver
that fails twice, ``lifeboat alerts test`` and ``lifeboat alerts ack`` (PagerDuty's
acknowledge). Skipped where the channels are not installed yet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("alerts.channels.retry")
pytest.importorskip("alerts.channels.pagerduty")
receivers = pytest.importorskip("tests.receivers")

from alerts.channels.factory import build_channels  # noqa: E402
from alerts.lifecycle import Lifecycle, Snapshot  # noqa: E402
from alerts.router import Router  # noqa: E402
from tests.alerting import PD_KEY, backup_failure, make_ctx  # noqa: E402

RETRY = "[alerts.retry]\nattempts = 4\nfirst_wait = 0.05\nmax_wait = 0.2\ndeadline = 20\n"


def lifeboat(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lifeboat", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60)


def pagerduty(receiver: object) -> str:
    return (f'[alerts.pagerduty]\nrouting_key = "{PD_KEY}"\napi_url = "{receiver.url}"\n'  # type: ignore[attr-defined]
            f'ca_file = "{receiver.ca_file}"\n')  # type: ignore[attr-defined]


def test_router_retries_a_failing_receiver_and_delivers_once(tmp_path: Path) -> None:
    with receivers.HttpsReceiver(script=[500, 500, 202]) as pd:
        ctx = make_ctx(tmp_path, alerts=RETRY, channels=pagerduty(pd))
        book = ctx.catalog.alerts
        router = Router(ctx.config.alerts, book, build_channels(ctx.config.alerts))
        router.route(Lifecycle(ctx.config.alerts, book).apply(Snapshot([backup_failure()])))
        assert router.wait(30)
        alert = book.open_alerts()[0]
        [note] = book.notifications(alert.id)
        assert (note.channel, note.kind, note.outcome, note.attempts) == ("pagerduty", "firing", "ok", 3)
        events = [r.json for r in pd.requests if r.path == "/v2/enqueue"]
        assert len(events) == 3 and {e["dedup_key"] for e in events} == {alert.fingerprint}
        assert all(PD_KEY not in n.detail for n in book.notifications(alert.id))
        router.close()


def test_cli_test_channel_delivers_or_exits_1(tmp_path: Path) -> None:
    with receivers.HttpReceiver() as hook:
        channels = f'[alerts.webhook]\nurl = "{hook.url}/hook?token=s3cr3t"\n'
        ctx = make_ctx(tmp_path, alerts=RETRY, channels=channels)
        done = lifeboat(ctx.config_path, "alerts", "test", "--channel", "webhook", "--output", "json")
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["delivered"] and result["deliveries"][0]["outcome"] == "ok"
        assert [r.method for r in hook.requests] == ["POST"] and "s3cr3t" not in done.stdout + done.stderr
        hook.script(500, 500, 500, 500)
        failed = lifeboat(ctx.config_path, "alerts", "test", "--channel", "webhook")
        assert failed.returncode == 1 and "retryable" in failed.stdout and "s3cr3t" not in failed.stdout


def test_cli_ack_acknowledges_the_pagerduty_incident(tmp_path: Path) -> None:
    with receivers.HttpsReceiver() as pd:
        ctx = make_ctx(tmp_path, alerts=RETRY, channels=pagerduty(pd))
        book = ctx.catalog.alerts
        router = Router(ctx.config.alerts, book, build_channels(ctx.config.alerts))
        router.route(Lifecycle(ctx.config.alerts, book).apply(Snapshot([backup_failure()])))
        assert router.wait(30)
        router.close()
        alert = book.open_alerts()[0]
        ctx.close()
        done = lifeboat(ctx.config_path, "alerts", "ack", str(alert.id), "--by", "alice")
        assert done.returncode == 0, done.stderr
        events = [r.json for r in pd.requests if r.path == "/v2/enqueue"]
        assert [(e["event_action"], e["dedup_key"]) for e in events] == [
            ("trigger", alert.fingerprint), ("acknowledge", alert.fingerprint)]
        ctx = make_ctx(tmp_path, alerts=RETRY, channels=pagerduty(pd))
        kinds = [(n.channel, n.kind, n.outcome) for n in ctx.catalog.alerts.notifications(alert.id)]
        assert kinds == [("pagerduty", "firing", "ok"), ("pagerduty", "acknowledged", "ok")]
