"""Restoring from a copy in another region when the primary repository is gone: a backup and
archived WAL are copied to the region, the primary repository is deleted, and a point-in-time
restore from the region (its WAL fetched there by ``wal-get --region``) gives back exactly
what was committed before the point. A region that is unknown, or holds no copy, is named."""

from __future__ import annotations

import json
import shutil

from tests.integration.agent import configure
from tests.integration.pg import Lifeboat
from tests.integration.test_pitr import commit_marker, markers


def test_a_pitr_restore_from_a_region_after_the_primary_repository_is_deleted(lifeboat: Lifeboat) -> None:
    dr, gone = lifeboat.workspace.path("dr"), lifeboat.workspace.path("never-copied")
    configure(lifeboat, top_extra=f'\n[repository.copies.dr]\npath = "{dr}"\n'
                                  f'\n[repository.copies.gone]\npath = "{gone}"\n')
    cluster = lifeboat.cluster
    cluster.sql("CREATE TABLE markers (id int primary key)")
    commit_marker(cluster, 1)
    lifeboat.run("backup")
    second = commit_marker(cluster, 2)
    lifeboat.run("restore-point", "after-2")
    commit_marker(cluster, 3)
    lifeboat.switch_and_archive()

    copied = json.loads(lifeboat.run("copy", "--region", "dr", "--output", "json").stdout)[0]
    assert copied["backups_copied"] == 1 and copied["wal_copied"] >= 2, copied
    assert lifeboat.run("copy", "--validate", "--region", "dr").returncode == 0

    shutil.rmtree(lifeboat.repo)  # the primary region is lost

    plan = json.loads(lifeboat.run("restore", "--pgdata", "/var/tmp/lifeboat-nowhere", "--plan",
                                   "--region", "dr", "--target-name", "after-2", "--output", "json").stdout)
    assert plan["runnable"] and plan["region"] == "dr" and str(dr) in plan["source"], plan
    restored, done = lifeboat.restore("--region", "dr", "--target-time", second.committed_at,
                                      "--no-validate")
    assert markers(restored) == [1, 2], done.stdout + done.stderr
    assert "recovery promoted" in done.stdout
    settings = (restored.pgdata / "postgresql.auto.conf").read_text()
    assert "wal-get --region dr %f" in settings  # its WAL came from the region too
    restored.stop("immediate")

    _, unknown = lifeboat.restore("--region", "mars", check=False, start=False)
    assert unknown.returncode == 2
    assert "region 'mars': the configuration has no [repository.copies.mars] (regions: dr, gone" in \
        unknown.stderr
    _, empty = lifeboat.restore("--region", "gone", check=False, start=False)
    assert empty.returncode == 1
    assert f"region 'gone' ({gone}): there is no Lifeboat repository there" in empty.stderr
    _, primary = lifeboat.restore(check=False, start=False)
    assert primary.returncode == 1
    assert "holds no backup of cluster 'main': if the primary region is lost, restore from a copy with " \
        "--region REGION (regions: dr, gone)" in primary.stderr
