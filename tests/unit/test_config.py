import os
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


S3_URL = "s3://lifeboat-backups/prod/db1?endpoint=http://127.0.0.1:9000&region=eu-west-1&addressing=path"


def _repository(body: str, source: str = "/etc/lifeboat/lifeboat.toml") -> object:
    return parse_config(f"[repository]\n{body}\n[clusters.main]\npgdata = \"/srv/pg\"\n".encode(),
                        source)


def test_the_repository_is_a_path_or_a_url() -> None:
    by_path = _repository('path = "/srv/repo"').repository  # type: ignore[attr-defined]
    assert (by_path.url, by_path.path, by_path.credentials) == ("/srv/repo", Path("/srv/repo"), None)
    by_url = _repository('url = "file:///srv/repo"').repository  # type: ignore[attr-defined]
    assert (by_url.url, by_url.path) == ("file:///srv/repo", Path("/srv/repo"))
    on_s3 = _repository(f'url = "{S3_URL}"').repository  # type: ignore[attr-defined]
    assert (on_s3.url, on_s3.path, on_s3.credentials) == (S3_URL, None, None)


@pytest.mark.parametrize("body, wanted", [
    ('path = "/srv/repo"\nurl = "s3://bucket-a/x"', "repository: path and url are both set: give one"),
    ('block_size = "8KiB"', "repository: path (a directory) or url (e.g. s3://bucket/prefix"),
    ('url = "s3://Bad_Bucket/x"', "repository.url: 'Bad_Bucket' is not a bucket name"),
    ('url = "s3://bucket-a/x?colour=blue"', "repository.url: unknown option(s) colour"),
    ('url = "s3://bucket-a/x?retries=0"', "repository.url: retries must be between 1 and 20"),
    ('url = "relative/repo"', "repository.url: 'relative/repo': a posix repository must be an absolute"),
    ('url = "ftp://host/x"', "repository.url: unknown storage 'ftp://'"),
    ('path = "/srv/repo"\n[repository.s3]\nprofile = "p"', "repository: [repository.s3] holds credentials "
                                                          "for an s3:// url; this repository is /srv/repo"),
    (f'url = "{S3_URL}"\n[repository.s3]\naccess_key_id = "AKIA1"',
     "repository.s3: access_key_id needs exactly one of secret_access_key_file and secret_access_key_env"),
    (f'url = "{S3_URL}"\n[repository.s3]\nsecret_access_key_env = "S"',
     "secret_access_key_env needs access_key_id"),
    (f'url = "{S3_URL}"\n[repository.s3]\naccess_key_id = "AKIA1"\nsecret_access_key_env = "S"\n'
     'profile = "p"', "give access_key_id or profile, not both"),
    (f'url = "{S3_URL}"\n[repository.s3]\naccess_key_id = "AKIA1"\nsecret_access_key_file = "/no/such/file"',
     "repository.s3.secret_access_key_file: /no/such/file does not exist or is not a file"),
    (f'url = "{S3_URL}"\n[repository.s3]\nsecret_access_key_env = "1-bad"',
     "repository.s3.secret_access_key_env:"),
])
def test_repository_location_errors_name_the_key_and_the_file(body: str, wanted: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _repository(body)
    text = str(caught.value)
    assert text.startswith("/etc/lifeboat/lifeboat.toml: invalid configuration"), text
    assert wanted in text, text


@pytest.mark.parametrize("body", [
    'url = "s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket-a/x"',
    f'url = "{S3_URL}"\n[repository.s3]\naccess_key_id = "AKIA1"\nsecret_access_key = "wJalrXUtnFEMI"',
])
def test_a_secret_in_the_repository_is_refused_and_never_repeated(body: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _repository(body)
    text = str(caught.value)
    assert "wJalrXUtnFEMI" not in text
    assert "[repository.s3]" in text or "secret_access_key_file" in text


def test_s3_credentials_reach_the_wal_path(tmp_path: Path) -> None:
    from engine.config.cache import archive_settings

    secret = tmp_path / "secret"
    secret.write_text("s\n")
    config = tmp_path / "lifeboat.toml"
    config.write_text(f'os_user = "root"\n[repository]\nurl = "{S3_URL}"\n[repository.s3]\n'
                      f'access_key_id = "AKIA1"\nsecret_access_key_file = "{secret}"\n'
                      '[clusters.main]\npgdata = "/srv/pg"\n')
    for _ in range(2):  # validated, then from the cache
        settings = archive_settings(str(config), "main")
        assert settings.repository == S3_URL
        assert settings.credentials == {"access_key_id": "AKIA1", "secret_access_key_file": str(secret)}


@pytest.mark.skipif(os.geteuid() != 0, reason="checks, as root, what os_user may read")
def test_a_secret_file_os_user_cannot_read_is_refused_on_load() -> None:
    import pwd
    import shutil
    import tempfile

    user = "postgres"
    try:
        pwd.getpwnam(user)
    except KeyError:
        pytest.skip("no postgres user")
    directory = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        directory.chmod(0o755)
        secret = directory / "s3-secret"
        secret.write_text("s\n")
        body = (f'url = "{S3_URL}"\n[repository.s3]\naccess_key_id = "AKIA1"\n'
                f'secret_access_key_file = "{secret}"')
        raw = f'os_user = "{user}"\n[repository]\n{body}\n'.encode()
        secret.chmod(0o600)  # root's alone
        with pytest.raises(ConfigError) as caught:
            parse_config(raw, "lifeboat.toml")
        assert (f"repository: s3.secret_access_key_file: {secret} is not readable by os_user postgres"
                in str(caught.value))
        secret.chmod(0o644)
        assert parse_config(raw, "lifeboat.toml").repository.credentials is not None
    finally:
        shutil.rmtree(directory)
