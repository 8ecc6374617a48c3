"""The alert loop: a failing part is an event and never stops it; on the Alertmanager path it
routes only to Grafana and the webhook, and resolves alerts Alertmanager stopped repeating."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from alerts.lifecycle import Snapshot
from alerts.loop import AlertLoop
from tests.alerting import Recorder, backup_failure, make_ctx, once


class Flaky:
    def __init__(self) -> None:
        self.broken = True

    def read(self) -> Snapshot:
        if self.broken:
            raise RuntimeError("prometheus said no")
        return Snapshot([backup_failure()], frozenset({"prometheus", "lifeboat"}))


def test_a_failing_part_is_an_event_and_the_loop_goes_on(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, alerts="[alerts.remediation]\nenabled = false\n")
    source, pd = Flaky(), Recorder("pagerduty")
    loop = AlertLoop(ctx, {"pagerduty": pd}, None, source, deliver=once)
    loop.tick()
    loop.tick()  # the same failure again: recorded once
    errors = ctx.catalog.events(kind="alerts_error")
    assert [e.message for e in errors] == ["alerts source: RuntimeError: prometheus said no"]
    source.broken = False
    loop.tick()
    assert loop.router.wait(10)
    assert [a.rule for a in ctx.catalog.alerts.open_alerts()] == ["backup_failure"]
    assert [n.state for n in pd.sent] == ["firing"]
    loop.close()


def test_alertmanager_path_routes_to_its_channels_only_and_expires_silent_alerts(tmp_path: Path) -> None:
    from tests.alerting import CHANNELS

    ctx = make_ctx(tmp_path, alerts='source = "alertmanager"\nrepeat_interval = 100\nresolve_timeout = 50\n'
                   '[alerts.remediation]\nenabled = false\n'
                   '[alerts.rules.backup_failure]\nchannels = ["pagerduty", "slack", "webhook"]\n',
                   channels=CHANNELS + '[alerts.webhook]\nurl = "http://127.0.0.1:1/hook"\n')
    now = [time.time()]
    channels = {name: Recorder(name) for name in ("pagerduty", "slack", "webhook")}
    loop = AlertLoop(ctx, channels, None, None, deliver=once, clock=lambda: now[0])
    t0 = now[0]
    firing = replace(backup_failure(), source="alertmanager")
    loop.ingest(Snapshot([firing]))
    assert loop.router.wait(10)
    assert [n.state for n in channels["webhook"].sent] == ["firing"]
    assert channels["pagerduty"].sent == channels["slack"].sent == []  # Alertmanager's receivers
    now[0] = t0 + 60  # past resolve_timeout, but Alertmanager repeats only every repeat_interval
    loop.tick()
    assert len(ctx.catalog.alerts.open_alerts()) == 1
    now[0] = t0 + 110
    loop.ingest(Snapshot([firing]))  # Alertmanager's repeat
    now[0] = t0 + 200  # past repeat_interval since it was sent: Alertmanager repeats, not the agent
    loop.tick()
    assert loop.router.wait(10)
    assert len(ctx.catalog.alerts.open_alerts()) == 1 and len(channels["webhook"].sent) == 1
    now[0] = t0 + 261  # not reported for repeat_interval + resolve_timeout: it resolved
    loop.tick()
    assert loop.router.wait(10)
    assert ctx.catalog.alerts.open_alerts() == []
    assert [n.state for n in channels["webhook"].sent] == ["firing", "resolved"]
    loop.close()


def test_agent_wiring_adds_the_loop_as_a_periodic_part_with_the_agents_hooks(tmp_path: Path) -> None:
    from lifeboat.agent_commands import add_alerts

    ctx = make_ctx(tmp_path, alerts="evaluation_interval = 7\n", channels="")

    class Agent:
        def __init__(self) -> None:
            self.parts: list[tuple] = []

        def add_periodic(self, name: str, interval: float, tick: object, close: object = None) -> None:
            self.parts.append((name, interval, tick, close))

        def restart_streaming(self, cluster: str) -> str:
            return f"receiver of {cluster} restarted"

    agent = Agent()
    assert add_alerts(ctx, agent) is None  # the Prometheus path serves no webhook
    [(name, interval, tick, close)] = agent.parts
    assert (name, interval) == ("alerts", 7.0)
    loop = tick.__self__  # type: ignore[attr-defined]
    assert isinstance(loop, AlertLoop) and close == loop.close
    hooks = loop.scheduler.hooks
    assert hooks.restart_streaming("main") == "receiver of main restarted"
    assert hooks.router is loop.router  # escalation goes through the loop's router
    loop.close()


def test_the_agent_runs_a_periodic_part_records_its_failures_and_closes_it(tmp_path: Path) -> None:
    import threading

    from engine.agent.loop import Agent

    ctx = make_ctx(tmp_path)
    agent = Agent(ctx.config, ctx.catalog, None, ["true"])  # type: ignore[arg-type]
    ticks: list[float] = []
    closed = threading.Event()

    def tick() -> None:
        ticks.append(time.monotonic())
        if len(ticks) == 2:
            raise RuntimeError("one bad tick")

    stop = threading.Event()
    worker = threading.Thread(target=agent._run_periodic, args=(stop, "alerts", 0.05, tick, closed.set))
    worker.start()
    deadline = time.monotonic() + 5
    while len(ticks) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    worker.join(5)
    assert len(ticks) >= 4 and closed.is_set()  # it went on after the failure, and closed
    [error] = ctx.catalog.events(kind="agent_error")
    assert error.message == "alerts: RuntimeError: one bad tick"
