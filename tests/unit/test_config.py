from pathlib import Path

import pytest

from engine.config.schema import load_config, parse_config
from engine.config.units import parse_duration, parse_size
from engine.errors import ConfigError

MINIMAL = b'[repository]\npath = "/srv/repo"\n[clusters.main]\npgdata = "/srv/pg"\n'


def test_minimal_file_gets_documented_defaults() -> None:
    config = parse_config(MINIMAL, "f.toml")
    assert config.compression.algorithm == "zstd" and config.compression.level == 3
    assert config.repository.block_size == 8 * 1024
    cluster = config.cluster("main")
    assert cluster.port == 5432 and cluster.archive_timeout == 60
    assert config.cluster(None) is cluster  # the only cluster needs no --cluster


def test_every_error_is_reported_with_key_and_file() -> None:
    raw = b"""
stray = 1
[repository]
path = "relative/repo"
block_size = "10KiB"
[compression]
algorithm = "lz4"
level = 99
[clusters.main]
pgdata = "/srv/pg"
port = "five"
colour = "blue"
[clusters."bad name"]
pgdata = "/x"
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, "/etc/lifeboat/lifeboat.toml")
    text = str(caught.value)
    assert text.startswith("/etc/lifeboat/lifeboat.toml: invalid configuration")
    for key in ("stray: unknown key", "repository.path: must be an absolute path",
                "repository.block_size: must be a multiple of 8KiB", "compression.level:",
                "clusters.main.port:", "clusters.main.colour: unknown key", "clusters.bad name"):
        assert key in text, key


def test_missing_required_key_and_wrong_algorithm() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(b'[compression]\nalgorithm = "gzip"\n', "x.toml")
    assert "repository: required key is missing" in str(caught.value)
    assert "compression.algorithm" in str(caught.value)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[repository\npath = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and "line 1" in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.toml")


def test_unknown_cluster_lists_the_known_ones() -> None:
    config = parse_config(MINIMAL, "f.toml")
    with pytest.raises(ConfigError, match="unknown cluster 'other'.*main"):
        config.cluster("other", "f.toml")


def test_cluster_required_when_several() -> None:
    config = parse_config(MINIMAL + b'[clusters.b]\npgdata = "/srv/b"\n', "f.toml")
    with pytest.raises(ConfigError, match="--cluster is required"):
        config.cluster(None)


@pytest.mark.parametrize(("text", "seconds"), [
    ("60s", 60), ("15m", 900), ("4h", 14400), ("7d", 604800), ("1h30m", 5400),
    ("250ms", 0.25), (90, 90),
])
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7 days", "h", "-5", "1x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_sizes() -> None:
    assert parse_size("64KiB") == 65536
    assert parse_size("16MB") == 16_000_000
    assert parse_size("1 GiB") == 1024**3
    with pytest.raises(ValueError):
        parse_size("lots")


def test_exporter_and_metrics_labels_are_checked() -> None:
    config = parse_config(MINIMAL, "f.toml")
    exporter = config.exporter
    assert (exporter.address, exporter.port, exporter.enabled) == ("127.0.0.1", 9887, True)
    assert config.service_of("main") == "main" and config.repository.region == "local"
    raw = MINIMAL + b"""service = "shop"
replica_datacenters = { standby1 = 2 }
[exporter]
port = 0
refresh_interval = "0s"
success_rate_window = "a week"
scrape = true
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(raw.replace(b'[repository]\npath = "/srv/repo"\n',
                                 b'[repository]\npath = "/srv/repo"\nregion = "eu west"\n'), "f.toml")
    text = str(caught.value)
    for key in ("exporter.port:", "exporter.refresh_interval: ", "exporter.success_rate_window:",
                "exporter.scrape: unknown key", "repository.region:",
                "clusters.main.replica_datacenters.standby1:"):
        assert key in text, key


@pytest.mark.parametrize("section, value", [
    ('[console.users.ann]\nrole = "admin"\npassword_hash = "hunter2-plain"\n', "hunter2-plain"),
    ('[alerts.pagerduty]\nrouting_key = 12345678\n', "12345678"),
    ('[alerts.slack]\nwebhook_url = "ftp://hooks.example/T0/B0/s3cr3tXYZ"\n', "s3cr3tXYZ"),
])
def test_a_bad_secret_is_named_but_never_repeated(section: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(b'[repository]\npath = "/r"\n' + section.encode(), "lifeboat.toml")
    message = str(raised.value)
    assert "lifeboat.toml" in message and section.split("]")[0].strip("[").split(".")[0] in message
    assert value not in message
