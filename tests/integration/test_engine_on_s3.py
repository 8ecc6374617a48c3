"""The engine with its repository in an S3 bucket (a moto server on loopback), configured as
a user would: ``url = "s3://..."`` and the credentials in ``[repository.s3]``, the secret in a
file. One cluster goes through WAL archiving (archive_command, then the agent's async push),
full, diff and incremental backups, point-in-time and delta restores, a copy to a posix
region, expire, and verify. Nothing in the engine knows it talks to moto.

PostgreSQL runs archive_command with the server's environment: the cluster is started with
no AWS credentials in it (and no AWS configuration files), so every archived segment proves
the configuration's credentials reach wal-push.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.repository.locks import cluster_lock
from engine.repository.storage import open_storage
from tests.integration.agent import agent_settings, running_agent, wait_for
from tests.integration.pg import Cluster, Lifeboat, Workspace
from tests.s3_fake import ACCESS_KEY_ID, SECRET_ACCESS_KEY, new_bucket, s3_url, start_moto
from tests.trees import tree

PREFIX = "prod/db1"


@dataclass
class S3Site:
    env: Lifeboat
    endpoint: str
    bucket: str
    client: Any  # the test's own boto3 client, to look into the bucket
    secret: Path

    def keys(self, under: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{PREFIX}/{under}")
        return sorted(o["Key"][len(PREFIX) + 1:] for p in pages for o in p.get("Contents", ()))

    def json(self, key: str) -> Any:
        return json.loads(self.client.get_object(Bucket=self.bucket, Key=f"{PREFIX}/{key}")["Body"].read())

    def wal(self) -> list[str]:
        return [k.rsplit("/", 1)[-1] for k in self.keys("clusters/main/wal/")
                if "/history/" not in k]


def _no_aws_environment() -> Iterator[None]:
    """No AWS credentials or configuration in this process, nor in what it starts (the
    PostgreSQL server, so archive_command; every lifeboat command)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            patch.delenv(name)
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # fail at once, not after IMDS timeouts
        yield


@pytest.fixture(scope="module")
def site(workspace: Workspace) -> Iterator[S3Site]:
    import boto3

    endpoint, server = start_moto()
    bucket = new_bucket(endpoint)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY)
    secret = workspace.root / "s3-secret"
    secret.write_text(SECRET_ACCESS_KEY + "\n")
    os.chown(secret, 0, pwd.getpwnam("postgres").pw_gid)
    secret.chmod(0o640)  # root's, readable by postgres's group: what the README says to do
    environment = _no_aws_environment()
    next(environment)
    env = Lifeboat.create(workspace)
    env.repository = (f'[repository]\nurl = "{s3_url(endpoint, bucket, PREFIX)}"\n'
                      f'[repository.s3]\naccess_key_id = "{ACCESS_KEY_ID}"\n'
                      f'secret_access_key_file = "{secret}"\n')
    env.write_config(env.cluster, extra=agent_settings(workspace))
    try:
        env.cluster.start()
        done = env.run("init")
        assert f"initialised in s3://{bucket}/{PREFIX}" in done.stdout, done.stdout
        yield S3Site(env, endpoint, bucket, client, secret)
    finally:
        env.cleanup()
        server.stop()
        next(environment, None)


def archiver(cluster: Cluster) -> tuple[int, int]:
    archived, failed = cluster.sql("SELECT archived_count, failed_count FROM pg_stat_archiver")[0]
    return int(archived), int(failed)


def test_archive_command_archives_into_the_bucket(site: S3Site) -> None:
    env = site.env
    assert env.repo.exists() and not any(env.repo.iterdir())  # nothing goes to a local path
    assert "AWS_ACCESS_KEY_ID" not in os.environ
    before, _ = archiver(env.cluster)
    env.cluster.sql("CREATE TABLE t (n int)")
    for _ in range(3):
        env.cluster.sql("INSERT INTO t SELECT generate_series(1, 1000)")
        env.cluster.sql("SELECT pg_switch_wal()")
    env.switch_and_archive()  # lifeboat check: a forced switch that reaches the bucket, waited for
    # the server counts a segment once archive_command has returned: a moment after it is stored
    wait_for(lambda: archiver(env.cluster)[0] >= before + 4, 10, "pg_stat_archiver to count them")
    assert archiver(env.cluster)[1] == 0  # no failure: every push had the configuration's credentials
    last = env.cluster.value("SELECT last_archived_wal FROM pg_stat_archiver")
    assert last in site.wal()
    assert site.keys("lifeboat.repo") == ["lifeboat.repo"]


def test_a_missing_bucket_is_named_and_never_created(site: S3Site) -> None:
    env = site.env
    good = env.config.read_text()  # the file archive_command reads: init and check insist on it
    env.config.write_text(good.replace(f"s3://{site.bucket}/", "s3://no-such-bucket-here/"))
    try:
        for command in ("init", "check"):  # check fails before it switches WAL
            done = env.run(command, check=False)
            assert done.returncode == 1, done.stdout + done.stderr
            assert "the bucket 'no-such-bucket-here' does not exist at " + site.endpoint in done.stderr
            assert "create it" in done.stderr and "Traceback" not in done.stderr
    finally:
        env.config.write_text(good)
    assert "no-such-bucket-here" not in [b["Name"] for b in site.client.list_buckets()["Buckets"]]


def markers(cluster: Cluster) -> list[int]:
    return [r[0] for r in cluster.sql("SELECT id FROM markers ORDER BY id")]


def backups(env: Lifeboat) -> list[dict[str, Any]]:
    return list(json.loads(env.run("info", "--output", "json").stdout)["clusters"][0]["backups"])


def test_full_diff_incr_backups_and_point_in_time_restores(site: S3Site) -> None:
    env, source = site.env, site.env.cluster
    source.sql("CREATE TABLE markers (id int PRIMARY KEY)")
    source.sql("CREATE TABLE items AS SELECT g AS id, md5(g::text) AS name FROM generate_series(1, 50000) g")
    env.run("backup")
    source.sql("INSERT INTO markers VALUES (1)")
    env.run("restore-point", "rp1")
    env.run("backup", "--type", "diff")
    source.sql("UPDATE items SET name = upper(name) WHERE id % 50 = 0")
    source.sql("INSERT INTO markers VALUES (2)")
    env.run("backup", "--type", "incr")
    source.sql("INSERT INTO markers VALUES (3)")
    env.switch_and_archive()
    made = backups(env)
    assert [b["type"] for b in made] == ["full", "diff", "incr"]
    assert site.keys("clusters/main/backups/") == sorted(f"clusters/main/backups/{b['id']}.manifest"
                                                         for b in made)
    assert site.keys("clusters/main/packs/") and not any(env.repo.iterdir())
    leases = site.keys("clusters/main/lock.lease/")  # the newest generation stays, given up
    assert len(leases) == 1 and site.json(leases[0])["released"] is True

    # the lease excludes another backup while it is held, naming its holder
    storage = open_storage(s3_url(site.endpoint, site.bucket, PREFIX),
                           {"access_key_id": ACCESS_KEY_ID, "secret_access_key_file": str(site.secret)})
    with cluster_lock(storage, "main", "expire (the test's)"):
        refused = env.run("backup", "--type", "incr", check=False)
    assert refused.returncode == 1
    assert "cluster 'main' is busy: its lock is held by expire (the test's) (pid" in refused.stderr
    assert "whose lease runs until" in refused.stderr

    restored, done = env.restore("--target-name", "rp1", "--no-validate")
    assert markers(restored) == [1], done.stdout
    restored.stop()
    latest, _ = env.restore()  # validated: row counts of every table and pg_amcheck
    assert markers(latest) == [1, 2, 3]
    assert latest.table_checksums() == source.table_checksums()
    latest.stop()


def test_a_restore_drill_from_the_bucket(site: S3Site) -> None:
    env = site.env
    scratch = env.workspace.path("s3-scratch")
    env.write_config(env.cluster, extra=(f'[clusters.main.drills]\nscratch_dir = "{scratch}"\n'
                                         'critical_tables = ["public.markers"]\n'
                                         + agent_settings(env.workspace)))
    done = env.run("drill", "--kind", "full", "--output", "json", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["passed"] is True, result
    assert not any(scratch.iterdir())  # the scratch cluster is gone


def test_delta_restore_over_an_older_copy(site: S3Site) -> None:
    env = site.env
    full, _diff, incr = backups(env)[:3]
    old = env.workspace.path("s3-old-copy", create=False)
    clean = env.workspace.path("s3-clean", create=False)
    common = ["--port", "5999", "--archive-mode", "off"]
    env.run("restore", "--pgdata", str(old), "--backup", full["id"], *common)
    env.run("restore", "--pgdata", str(clean), "--backup", incr["id"], *common)
    done = env.run("restore", "--pgdata", str(old), "--backup", incr["id"], "--delta", *common)
    assert "delta:" in done.stdout and " rewritten" in done.stdout, done.stdout
    assert tree(old) == tree(clean)


def test_async_archiving_pushes_ahead_into_the_bucket(site: S3Site) -> None:
    env = site.env
    spool = env.workspace.path("s3-spool")
    env.write_config(env.cluster, extra=(f'[clusters.main.archive]\nmode = "async"\nspool = "{spool}"\n'
                                         + agent_settings(env.workspace)))
    env.cluster.sql("ALTER SYSTEM SET archive_command = ''")  # .ready files wait, no failure
    env.cluster.sql("SELECT pg_reload_conf()")
    wait_for(lambda: env.cluster.value("SELECT current_setting('archive_command')") == "", 10, "a pause")
    names = []
    for i in range(3):
        env.cluster.sql("INSERT INTO markers VALUES (%s)", (100 + i,))
        names.append(env.cluster.value("SELECT pg_walfile_name(pg_switch_wal())"))
    archived_before, _ = archiver(env.cluster)
    with running_agent(env) as agent:
        # pushed ahead by the agent while archive_command does nothing
        wait_for(lambda: set(names) <= set(site.wal()), 20, "the agent to push the segments")
        env.cluster.sql("ALTER SYSTEM RESET archive_command")
        env.cluster.sql("SELECT pg_reload_conf()")
        wait_for(lambda: archiver(env.cluster)[0] >= archived_before + 3, 20,
                 "archive_command to confirm them")
    assert agent.returncode == 0, agent.log.read_text()  # type: ignore[attr-defined]
    assert archiver(env.cluster)[1] == 0


def test_copy_to_a_posix_region(site: S3Site) -> None:
    env = site.env
    target = env.workspace.path("s3-copy-dr")
    env.write_config(env.cluster, extra=(agent_settings(env.workspace)
                                         + f'\n[repository.copies.dr]\npath = "{target}"\n'))
    report = json.loads(env.run("copy", "--region", "dr", "--output", "json").stdout)[0]
    made = backups(env)
    needed = {w for w in site.wal() if w >= made[0]["start_wal"]}  # what the backups restore with
    assert report["backups_copied"] == len(made) == 3 and report["wal_copied"] >= len(needed)
    copied = sorted(p.name for p in (target / "clusters/main/backups").iterdir())
    assert copied == sorted(f"{b['id']}.manifest" for b in made)
    wal = {p.name for p in (target / "clusters/main/wal").rglob("0*") if p.parent.name != "history"}
    assert needed <= wal


def test_expire_then_verify_names_a_flipped_object(site: S3Site) -> None:
    env = site.env
    env.write_config(env.cluster, extra=(agent_settings(env.workspace)  # full backups age out
                                         + '\n[retention]\nfull = "1s"\ngc_grace = "0s"\n'))
    first = backups(env)[0]
    wal_before = site.wal()
    report = json.loads(env.run("expire", "--output", "json").stdout)
    assert [b["id"] for b in report["expired"]] == [first["id"]], report
    assert f"clusters/main/backups/{first['id']}.manifest" not in site.keys("clusters/main/backups/")
    assert report["wal_removed"] > 0 and len(site.wal()) == len(wal_before) - report["wal_removed"]

    done = env.run("verify", "--output", "json", check=False)
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["ok"]

    pack = site.keys("clusters/main/packs/")[0]
    body = bytearray(site.client.get_object(Bucket=site.bucket, Key=f"{PREFIX}/{pack}")["Body"].read())
    body[len(body) // 3] ^= 0x10
    site.client.put_object(Bucket=site.bucket, Key=f"{PREFIX}/{pack}", Body=bytes(body))
    done = env.run("verify", "--output", "json", check=False)
    assert done.returncode == 1, done.stdout
    problems = json.loads(done.stdout)["problems"]
    assert problems and {p["key"] for p in problems} == {pack}, problems
