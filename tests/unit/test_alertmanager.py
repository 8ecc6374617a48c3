"""The Alertmanager configuration rendered from ``[alerts]``: amtool (Debian's
prometheus-alertmanager) accepts it with each channel, its receivers carry the channels'
settings and secrets, its routes follow the severity routes and the rules' own channels,
and everything also goes to the agent's webhook."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.alertmanager import (
    AGENT_RECEIVER,
    INHIBIT_RULE,
    NO_RECEIVER,
    agent_url,
    alertmanager_config,
    render_alertmanager,
)
from engine.config.alerting import AlertsSettings
from engine.errors import ConfigError
from lifeboat.cli import main
from tests.unit.test_rules import run, tool

PAGERDUTY = {"routing_key": "R0UT1NGKEY", "api_url": "https://pd.example:8443/"}
SLACK_HOOK = {"webhook_url": "https://hooks.slack.example/services/T/B/secret"}
SLACK_BOT = {"token": "xoxb-secret", "channel": "#oncall", "api_url": "https://slack.example/api/"}
EMAIL = {"host": "smtp.example", "port": 587, "sender": "lifeboat@example.com",
         "recipients": ["dba@example.com", "oncall@example.com"], "username": "lifeboat",
         "password": "hunter2", "starttls": True}
ALL = {"pagerduty": PAGERDUTY, "slack": SLACK_HOOK, "email": EMAIL,
       "grafana": {"url": "https://grafana.example"}}


def settings(**fields: Any) -> AlertsSettings:
    return AlertsSettings.model_validate(fields)


def amtool_check(tmp_path: Path, text: str) -> str:
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    result = run(tool("amtool"), "check-config", path)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def receivers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in config["receivers"]}


def routes(config: dict[str, Any]) -> list[tuple[str, list[str], bool]]:
    return [(r["receiver"], r.get("matchers", []), r.get("continue", False))
            for r in config["route"]["routes"]]


def test_defaults_without_channels_send_everything_to_the_agent(tmp_path: Path) -> None:
    out = amtool_check(tmp_path, render_alertmanager())
    assert "1 inhibit rules" in out and "2 receivers" in out
    config = alertmanager_config()
    # the seed's rules that name their own channels keep them (none configured: no receiver)
    own = [{"receiver": NO_RECEIVER, "matchers": [f'rule="{rule}"']}
           for rule in ("backup_failure", "wal_archive_failing", "replication_delay",
                        "streaming_receiver_down")]
    assert config["route"] == {"receiver": AGENT_RECEIVER, "group_by": ["alertname", "cluster"],
                               "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h",
                               "routes": [{"receiver": AGENT_RECEIVER, "continue": True}, *own]}
    assert config["receivers"] == [{"name": AGENT_RECEIVER, "webhook_configs": [
        {"url": "http://127.0.0.1:9888/alertmanager", "send_resolved": True}]}, {"name": NO_RECEIVER}]
    assert config["inhibit_rules"] == [INHIBIT_RULE] == [{
        "source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
        "equal": ["cause", "cluster", "type", "kind", "replica"]}]
    assert render_alertmanager() == render_alertmanager()


def test_every_channel_routes_by_severity_and_by_rule(tmp_path: Path) -> None:
    alerts = settings(**ALL, group_wait="45s", repeat_interval="2h", webhook_address="0.0.0.0",
                      webhook_port=9999, routes={"critical": ["pagerduty", "slack"], "warning": ["slack"],
                                                 "info": ["grafana"]},
                      rules={"data_loss": {"channels": ["pagerduty", "email"]},
                             "drill_overdue": {"channels": ["grafana"]},
                             "copy_lag_high": {"channels": ["email"], "enabled": False}})
    out = amtool_check(tmp_path, render_alertmanager(alerts))
    assert "1 inhibit rules" in out
    config = alertmanager_config(alerts)
    assert (config["route"]["group_wait"], config["route"]["repeat_interval"]) == ("45s", "2h")
    assert routes(config) == [
        (AGENT_RECEIVER, [], True),  # everything also reaches the agent: remediation, Grafana, catalog
        ("lifeboat-pagerduty-slack", ['rule="backup_failure"'], False),  # the seed's own channels
        ("lifeboat-pagerduty-slack", ['rule="wal_archive_failing"'], False),
        ("lifeboat-slack-email", ['rule="replication_delay"'], False),
        ("lifeboat-slack-email", ['rule="streaming_receiver_down"'], False),
        ("lifeboat-pagerduty-email", ['rule="data_loss"'], False),
        (NO_RECEIVER, ['rule="drill_overdue"'], False),  # grafana only: the agent annotates
        ("lifeboat-pagerduty-slack", ['severity="critical"'], False),
        ("lifeboat-slack", ['severity="warning"'], False),
    ]
    found = receivers(config)
    assert list(found) == [AGENT_RECEIVER, "lifeboat-pagerduty-slack", "lifeboat-slack-email",
                           "lifeboat-pagerduty-email", NO_RECEIVER, "lifeboat-slack"]
    assert found[AGENT_RECEIVER]["webhook_configs"] == [
        {"url": "http://127.0.0.1:9999/alertmanager", "send_resolved": True}]
    assert set(found[NO_RECEIVER]) == {"name"}
    [pd] = found["lifeboat-pagerduty-slack"]["pagerduty_configs"]
    assert pd["routing_key"] == "R0UT1NGKEY" and pd["url"] == "https://pd.example:8443/v2/enqueue"
    assert 'eq .CommonLabels.severity "critical" }}critical' in pd["severity"] and pd["send_resolved"]
    assert set(pd["details"]) == {"cluster", "rule", "threshold", "runbook_url"}
    [slack] = found["lifeboat-slack"]["slack_configs"]
    assert slack["api_url"] == SLACK_HOOK["webhook_url"] and "channel" not in slack and slack["send_resolved"]
    assert "runbook_url" in slack["text"] and "threshold" in slack["text"]
    [mail] = found["lifeboat-slack-email"]["email_configs"]
    keys = ("to", "from", "smarthost", "auth_username", "auth_password", "require_tls")
    assert {k: mail[k] for k in keys} == {
        "to": "dba@example.com, oncall@example.com", "from": "lifeboat@example.com",
        "smarthost": "smtp.example:587", "auth_username": "lifeboat", "auth_password": "hunter2",
        "require_tls": True}
    assert "webhook_configs" not in found["lifeboat-pagerduty-slack"]


def test_slack_bot_token_uses_the_web_api_with_a_bearer_token(tmp_path: Path) -> None:
    alerts = settings(slack=SLACK_BOT)
    amtool_check(tmp_path, render_alertmanager(alerts))
    [slack] = receivers(alertmanager_config(alerts))["lifeboat-slack"]["slack_configs"]
    assert slack["api_url"] == "https://slack.example/api/chat.postMessage"
    assert slack["channel"] == "#oncall"
    assert slack["http_config"] == {"authorization": {"type": "Bearer", "credentials": "xoxb-secret"}}
    default_api = settings(slack={"token": "xoxb-1", "channel": "#x"})
    [slack] = receivers(alertmanager_config(default_api))["lifeboat-slack"]["slack_configs"]
    assert slack["api_url"] == "https://slack.com/api/chat.postMessage"


def test_pagerduty_ca_file_and_smtps_on_465(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")  # amtool does not read it
    alerts = settings(pagerduty={"routing_key": "k", "ca_file": str(ca)},
                      email=EMAIL | {"port": 465, "starttls": False, "ssl": True},
                      routes={"critical": ["pagerduty", "email"]})
    amtool_check(tmp_path, render_alertmanager(alerts))
    found = receivers(alertmanager_config(alerts))["lifeboat-pagerduty-email"]
    assert found["pagerduty_configs"][0]["http_config"] == {"tls_config": {"ca_file": str(ca)}}
    assert found["pagerduty_configs"][0]["url"] == "https://events.pagerduty.com/v2/enqueue"
    assert found["email_configs"][0]["smarthost"] == "smtp.example:465"
    assert found["email_configs"][0]["require_tls"] is False
    with pytest.raises(ConfigError, match="alerts.email.ssl: Alertmanager speaks SMTPS only on port 465"):
        alertmanager_config(settings(email=EMAIL | {"port": 2465, "starttls": False, "ssl": True},
                                     routes={"critical": ["email"]}))


def test_secrets_from_the_environment_are_written_in_and_missing_ones_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    alerts = settings(pagerduty={"routing_key_env": "LB_PD_KEY"}, slack={"webhook_url_env": "LB_SLACK"},
                      email=EMAIL | {"password": None, "password_env": "LB_SMTP"})
    monkeypatch.delenv("LB_PD_KEY", raising=False)
    monkeypatch.delenv("LB_SMTP", raising=False)
    monkeypatch.setenv("LB_SLACK", "https://hooks.example/env")
    with pytest.raises(ConfigError) as raised:
        alertmanager_config(alerts)
    assert "alerts.pagerduty.routing_key_env: $LB_PD_KEY is not set" in str(raised.value)
    assert "alerts.email.password_env: $LB_SMTP is not set" in str(raised.value)  # every problem at once
    monkeypatch.setenv("LB_PD_KEY", "from-env")
    monkeypatch.setenv("LB_SMTP", "smtp-from-env")
    text = render_alertmanager(alerts)
    assert "routing_key: from-env" in text and "api_url: https://hooks.example/env" in text
    assert "auth_password: smtp-from-env" in text


def test_holds_secrets() -> None:
    from alerts.alertmanager import holds_secrets

    assert not holds_secrets(alertmanager_config())
    plain_mail = EMAIL | {"username": None, "password": None}
    assert not holds_secrets(alertmanager_config(settings(email=plain_mail, routes={"critical": ["email"]})))
    assert holds_secrets(alertmanager_config(settings(email=EMAIL, routes={"critical": ["email"]})))
    assert holds_secrets(alertmanager_config(settings(slack=SLACK_HOOK)))
    assert holds_secrets(alertmanager_config(settings(pagerduty=PAGERDUTY)))


def test_agent_url_for_each_listen_address() -> None:
    assert agent_url(settings(webhook_address="10.0.0.5", webhook_port=9000)) == "http://10.0.0.5:9000/alertmanager"
    assert agent_url(settings(webhook_address="::")) == "http://127.0.0.1:9888/alertmanager"
    assert agent_url(settings(webhook_address="::1")) == "http://[::1]:9888/alertmanager"


# the command ----------------------------------------------------------------------------------


def _config_file(tmp_path: Path, alerts: str) -> Path:
    (tmp_path / "repo").mkdir(exist_ok=True)
    path = tmp_path / "lifeboat.toml"
    path.write_text(f'os_user = "root"\n[repository]\npath = "{tmp_path}/repo"\n'
                    f'[clusters.main]\npgdata = "{tmp_path}/pgdata"\nport = 1\n{alerts}')
    return path


def test_rules_export_with_a_config_writes_its_rules_and_a_secret_alertmanager_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config_file(tmp_path, '[alerts.pagerduty]\nrouting_key = "TOPSECRET"\n'
                                  '[alerts.rules.replication_delay]\nthreshold = "120s"\n'
                                  '[alerts.rules.drill_overdue]\nenabled = false\n')
    rules_file, manager = tmp_path / "rules.yml", tmp_path / "am.yml"
    manager.write_text("old")
    manager.chmod(0o644)  # an existing file is made private before the secrets go in
    code = main(["--config", str(path), "rules", "export", "--output", str(rules_file),
                 "--alertmanager", str(manager)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "TOPSECRET" not in out + err
    assert f"{manager} holds secrets" in err and "0600" in err
    assert stat.S_IMODE(manager.stat().st_mode) == 0o600
    config = yaml.safe_load(manager.read_text())
    assert receivers(config)["lifeboat-pagerduty"]["pagerduty_configs"][0]["routing_key"] == "TOPSECRET"
    rules = {r["labels"]["rule"]: r for r in yaml.safe_load(rules_file.read_text())["groups"][0]["rules"]}
    assert rules["replication_delay"]["expr"] == "lifeboat_replication_lag_seconds > 120"
    assert "drill_overdue" not in rules
    amtool_check(tmp_path, manager.read_text())


def test_rules_export_without_any_configuration_renders_the_defaults(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from alerts.rules import render_rules
    from engine.config import file

    monkeypatch.delenv(file.CONFIG_ENV, raising=False)
    monkeypatch.setattr(file, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent.toml"))
    manager = tmp_path / "am.yml"
    assert main(["rules", "export", "--alertmanager", str(manager)]) == 0
    out, err = capsys.readouterr()
    assert out == render_rules() and "holds secrets" not in err
    assert manager.read_text() == render_alertmanager()
    monkeypatch.setenv(file.CONFIG_ENV, str(tmp_path / "missing.toml"))  # named, so it must exist
    assert main(["rules", "export"]) == 2
    assert "missing.toml: configuration file not found" in capsys.readouterr().err


def test_a_missing_secret_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LB_NOT_SET", raising=False)
    path = _config_file(tmp_path, '[alerts.pagerduty]\nrouting_key_env = "LB_NOT_SET"\n')
    rules_file, manager = tmp_path / "rules.yml", tmp_path / "am.yml"
    code = main(["--config", str(path), "rules", "export", "--output", str(rules_file),
                 "--alertmanager", str(manager)])
    assert code == 2 and "$LB_NOT_SET is not set" in capsys.readouterr().err
    assert not rules_file.exists() and not manager.exists()


def test_grafana_export_takes_the_configurations_thresholds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path = _config_file(tmp_path, '[alerts.rules.replication_delay]\nthreshold = "77s"\n')
    board = tmp_path / "board.json"
    assert main(["--config", str(path), "grafana", "export", "--output", str(board)]) == 0
    [panel] = [p for p in json.loads(board.read_text())["panels"] if p.get("title") == "Replication lag"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [[s["value"], s["color"]] for s in steps] == [[None, "green"], [77, "orange"]]
