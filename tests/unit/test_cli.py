"""The command line: exit codes and messages for bad input (no server needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lifeboat.cli import main
from tests.unit.conftest import fake_segment


def write_config(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "repo").mkdir(exist_ok=True)
    path = tmp_path / "lifeboat.toml"
    path.write_text(f'os_user = "root"\n{extra}[repository]\npath = "{tmp_path}/repo"\n'
                    f'[clusters.main]\npgdata = "{tmp_path}/pgdata"\nport = 1\n')
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_malformed_config_exits_2_naming_file_and_key(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, extra='jobs = "many"\n')
    code, _, err = run(capsys, "--config", str(path), "info")
    assert code == 2
    assert str(path) in err and "jobs:" in err


def test_toml_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[repository\n")
    code, _, err = run(capsys, "--config", str(path), "backup")
    assert code == 2 and "TOML syntax error" in err


def test_unknown_cluster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--config", str(write_config(tmp_path)), "--cluster", "nope", "check")
    assert code == 2 and "unknown cluster 'nope'" in err and "main" in err


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path))
    assert run(capsys, "--config", config, "restore")[0] == 2  # --pgdata is required
    code, _, err = run(capsys, "--config", config, "restore", "--pgdata", "/x",
                       "--target-time", "soon")
    assert code == 2 and "not a time" in err
    assert run(capsys, "--config", config, "restore", "--pgdata", "/x", "--target-xid", "1",
               "--target-lsn", "0/1")[0] == 2
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys)[0] == 2


def test_wal_get_fails_fatally_on_bad_config(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A broken restore_command must stop recovery, not look like the end of the archive."""
    code, _, err = run(capsys, "--config", str(tmp_path / "missing.toml"), "wal-get",
                       "000000010000000000000001", str(tmp_path / "x"))
    assert code == 128 and "not found" in err


def test_wal_push_get_through_the_cli(tmp_path: Path, storage: object,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    segment = tmp_path / "000000010000000000000001"
    segment.write_bytes(fake_segment(1, 1))
    assert run(capsys, "--config", str(config), "wal-push", str(segment)) == (0, "", "")
    segment.write_bytes(fake_segment(1, 1, fill=9))
    code, _, err = run(capsys, "--config", str(config), "wal-push", str(segment))
    assert code == 1 and "different content" in err
    code, out, err = run(capsys, "--config", str(config), "wal-get", "000000010000000000000002",
                         str(tmp_path / "y"))
    assert (code, out, err) == (1, "", "")  # absent: quiet, as restore_command requires
    code, out, _ = run(capsys, "--config", str(config), "info", "--output", "json")
    report = json.loads(out)["clusters"][0]
    assert code == 0 and report["archive"][0]["first"] == "000000010000000000000001"


def test_wal_push_imports_nothing_heavy_once_validated(tmp_path: Path, storage: object) -> None:
    config = write_config(tmp_path)
    segment = tmp_path / "000000010000000000000001"
    segment.write_bytes(fake_segment(1, 1))
    heavy = ("pydantic", "psycopg", "argparse", "pathlib", "dataclasses", "numpy", "typing", "platform",
             "zstandard", "threading", "hmac", "json", "re", "contextlib")  # zstandard's package: typing
    probe = ("import sys; from lifeboat.cli import main; rc = main(sys.argv[1:]); "
             f"print(rc, 'pydantic' in sys.modules, [m for m in {heavy!r} if m in sys.modules]); "
             "sys.exit(rc)")
    command = [sys.executable, "-c", probe, "--config", str(config), "wal-push", str(segment)]
    env = {"LIFEBOAT_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    first = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    second = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    assert first.stdout.startswith("0 True")  # validated in full once
    assert second.stdout.strip() == "0 False []"  # then nothing heavy: a push stays cheap
    config.write_text(config.read_text() + "bogus = 1\n")  # an edit means validating again
    third = subprocess.run(command, capture_output=True, text=True, env=env)
    assert third.returncode == 2 and "clusters.main.bogus: unknown key" in third.stderr


def test_grafana_and_rules_export_write_what_the_code_generates(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from alerts.alertmanager import render_alertmanager
    from alerts.rules import render_rules
    from collectors.grafana_dashboard import render
    from engine.config import file

    monkeypatch.delenv(file.CONFIG_ENV, raising=False)  # no configuration at all: the defaults
    monkeypatch.setattr(file, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent.toml"))

    board, rules, manager = tmp_path / "board.json", tmp_path / "rules.yml", tmp_path / "am.yml"
    assert run(capsys, "grafana", "export", "--output", str(board))[0] == 0
    assert board.read_text() == render() and json.loads(board.read_text())["uid"] == "lifeboat-overview"
    code, out, _ = run(capsys, "rules", "export")
    assert code == 0 and out == render_rules()
    code, _, err = run(capsys, "rules", "export", "--output", str(rules), "--alertmanager", str(manager),
                       "--runbook-base", "https://runbooks.example/lifeboat.md")
    assert code == 0 and str(rules) in err
    assert "https://runbooks.example/lifeboat.md#" in rules.read_text()
    assert manager.read_text() == render_alertmanager()
    assert yaml.safe_load(rules.read_text())["groups"][0]["name"] == "lifeboat"
    assert run(capsys, "grafana", "export", "--output", str(tmp_path / "no" / "dir.json"))[0] == 2
    assert run(capsys, "grafana")[0] == 2  # the action is required


def test_exporter_refuses_a_bad_port_and_names_a_busy_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    path = write_config(tmp_path, extra=f'[catalog]\npath = "{tmp_path}/catalog.sqlite3"\n')
    code, _, err = run(capsys, "--config", str(path), "exporter", "--port", "70000")
    assert code == 2 and "--port" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run(capsys, "--config", str(path), "exporter", "--port", str(port),
                           "--duration", "1")
    assert code == 1 and f"cannot serve metrics on 127.0.0.1:{port}" in err


def test_copy_brings_a_region_up_to_date_and_names_unknown_regions(
        tmp_path: Path, storage: object, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.repository import layout

    copy = tmp_path / "dr"
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace(
        "[clusters.main]", f'[repository.copies.dr]\npath = "{copy}"\n[clusters.main]'))
    source = tmp_path / "repo" / "wal" / "000000010000000000000001"
    source.parent.mkdir(parents=True)
    source.write_bytes(fake_segment(1, 1))
    assert run(capsys, "--config", str(path), "wal-push", str(source))[0] == 0
    code, out, _ = run(capsys, "--config", str(path), "copy", "--output", "json")
    assert code == 0 and json.loads(out)[0]["wal_copied"] == 1 and json.loads(out)[0]["region"] == "dr"
    assert (copy / layout.cluster_info_key("main")).exists()
    code, out, _ = run(capsys, "--config", str(path), "copy")
    assert code == 0 and "0 WAL files" in out  # nothing left to copy
    code, _, err = run(capsys, "--config", str(path), "copy", "--region", "mars")
    assert code == 2 and "mars" in err and "dr" in err
