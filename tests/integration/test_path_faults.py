"""Paths that cannot be used, swept over the commands that use them.

For every command and every fault (a missing parent, a file where a directory is expected
and the reverse, no permission, a read-only file system, a full file system, a path with
spaces or non-ASCII characters) the outcome is either success (the path is fine, only
unusual) or exit 1/2 with a message naming the path and what to do: never a traceback,
never "internal error", and nothing in the repository or the data directory lost.
Run as root (as CI does) and, where the user matters, as ``postgres``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.pg import LIFEBOAT, PG_USER, Cluster, Lifeboat, Workspace, chown_postgres, free_port


@dataclass
class Site:
    """One cluster with a backup, and places on purpose broken."""

    env: Lifeboat
    backup: str
    a_file: Path  # a regular file
    root_only: Path  # a directory postgres may not enter (root, 0700)
    root_owned: Path  # a directory postgres may enter but not write (root, 0755)
    read_only: Path  # a read-only file system holding a copy of the repository
    full: Path  # a file system with no space left
    odd: Path  # a directory whose name has spaces and non-ASCII characters

    def config(self, name: str, repository: Path | None = None, extra: str = "",
               cluster_extra: str = "") -> Path:
        """A configuration like the site's, with another repository or more settings
        (``extra`` after [repository], ``cluster_extra`` after [clusters.main])."""
        env = self.env
        path = env.workspace.root / f"{name}.toml"
        path.write_text(
            f'[repository]\npath = "{repository or env.repo}"\n{extra}\n'
            f'[clusters.main]\npgdata = "{env.cluster.pgdata}"\nhost = "127.0.0.1"\n'
            f'port = {env.cluster.port}\narchive_timeout = "30s"\n{cluster_extra}')
        os.chmod(path, 0o644)
        return path


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(where)], capture_output=True, text=True)
    assert done.returncode == 0, f"the fault tests mount tmpfs (as root): {done.stderr}"
    chown_postgres(where)


def _unmount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture(scope="module")
def site(workspace: Workspace) -> Iterator[Site]:
    env = Lifeboat.create(workspace)
    mounts: list[Path] = []
    try:
        env.cluster.start()
        env.run("init")
        env.cluster.sql("CREATE TABLE kept AS SELECT g AS n FROM generate_series(1, 1000) g")
        env.run("backup")
        backup = json.loads(env.run("info", "--output", "json").stdout)["clusters"][0]["backups"][0]["id"]
        a_file = workspace.root / "a-file"
        a_file.write_text("not a directory\n")
        root_only = workspace.root / "root-only"
        root_only.mkdir(mode=0o700)
        root_owned = workspace.root / "root-owned"
        root_owned.mkdir(mode=0o755)
        read_only = workspace.root / "read-only"
        _mount_tmpfs(read_only, "256m")
        mounts.append(read_only)
        shutil.copytree(env.repo, read_only / "repo", symlinks=True)
        subprocess.run(["chown", "-R", PG_USER, str(read_only)], check=True)
        done = subprocess.run(["mount", "-o", "remount,ro", str(read_only)], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        full = workspace.root / "full"
        _mount_tmpfs(full, "8m")
        mounts.append(full)
        for name in ("lifeboat.repo", "clusters/main/cluster.json"):  # an initialised repository
            (full / "repo" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(env.repo / name, full / "repo" / name)
        subprocess.run(["chown", "-R", PG_USER, str(full)], check=True)
        subprocess.run(["dd", "if=/dev/zero", f"of={full}/filler", "bs=1M", "count=16"],
                       capture_output=True)  # fills it: dd stops at ENOSPC
        odd = workspace.path("dir with spaces é ü 日本")
        yield Site(env, backup, a_file, root_only, root_owned, read_only, full, odd)
    finally:
        env.cleanup()
        for mount in mounts:
            _unmount(mount)


def lifeboat(config: Path, *args: str, as_postgres: bool = False,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [str(LIFEBOAT), "--config", str(config), *args]
    if as_postgres:
        command = ["runuser", "-u", PG_USER, "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "LIFEBOAT_CACHE_DIR": "/var/tmp/lifeboat-fault-cache"})


def refused(done: subprocess.CompletedProcess[str], *names: object, codes: tuple[int, ...] = (1, 2)
            ) -> None:
    """Exit 1 or 2, the message names every one of ``names``, no traceback or internal error
    (the message is on stderr; a failed drill's report, on stdout, counts too)."""
    shown = f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    said = done.stderr + done.stdout
    assert done.returncode in codes, shown
    assert "Traceback" not in said and "internal error" not in said and "Errno" not in said, shown
    for name in names:
        assert str(name) in said, f"{name} is not named\n{shown}"


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Site], subprocess.CompletedProcess[str]]
    names: Callable[[Site], tuple[object, ...]]
    advice: str  # a word of what to do, or of the cause
    codes: tuple[int, ...] = (1, 2)


CASES = [
    # the repository
    Case("backup, repository is a file",
         lambda s: lifeboat(s.config("r-file", s.a_file), "backup"),
         lambda s: (s.a_file,), "a file stands where a directory is expected"),
    Case("info, repository under a directory postgres may not enter",
         lambda s: lifeboat(s.config("r-perm", s.root_only / "repo"), "info", as_postgres=True),
         lambda s: (s.root_only / "repo",), "permission denied for user postgres"),
    Case("backup, repository on a read-only file system",
         lambda s: lifeboat(s.config("r-ro", s.read_only / "repo"), "backup", "--no-expire"),
         lambda s: (s.read_only / "repo",), "read-only"),
    Case("expire, repository on a read-only file system",
         lambda s: lifeboat(s.config("r-ro", s.read_only / "repo"), "expire", "--dry-run"),
         lambda s: (s.read_only / "repo",), "read-only"),
    Case("backup, repository on a full file system",
         lambda s: lifeboat(s.config("r-full", s.full / "repo"), "backup", "--no-expire"),
         lambda s: (s.full / "repo",), "full"),
    Case("wal-push into a repository on a full file system",
         lambda s: lifeboat(s.config("r-full", s.full / "repo"), "wal-push", str(_a_segment(s))),
         lambda s: (s.full / "repo",), "full"),
    # the destination of a restore
    Case("restore into a file",
         lambda s: lifeboat(s.config("d"), "restore", "--pgdata", str(s.a_file)),
         lambda s: (s.a_file,), "a file stands where a directory is expected"),
    Case("restore into a missing directory under one postgres may not write, as postgres",
         lambda s: lifeboat(s.config("d"), "restore", "--pgdata", str(s.root_only / "new" / "pg"),
                            as_postgres=True),
         lambda s: (s.root_only / "new" / "pg", s.root_only, "postgres"), "install -d"),
    Case("restore onto a read-only file system",
         lambda s: lifeboat(s.config("d"), "restore", "--pgdata", str(s.read_only / "pg")),
         lambda s: (s.read_only / "pg",), "read-only"),
    Case("restore onto a full file system",
         lambda s: lifeboat(s.config("d"), "restore", "--pgdata", str(s.full / "pg")),
         lambda s: (s.full / "pg",), "full"),
    Case("restore --start with the agent's state directory a file",
         lambda s: lifeboat(s.config("d-state", extra=f'[agent]\nstate_dir = "{s.a_file}"\n'),
                            "restore", "--start", "--pgdata", str(s.env.workspace.root / "never-1")),
         lambda s: (s.a_file,), "a file"),
    # the catalog, the agent and the exporter's outputs
    Case("agent with its state directory a file",
         lambda s: lifeboat(s.config("a-state", extra=f'[agent]\nstate_dir = "{s.a_file}/agent"\n'),
                            "agent", "--duration", "1"),
         lambda s: (s.a_file,), "a file stands where a directory is expected"),
    Case("jobs with the catalog's directory a file",
         lambda s: lifeboat(s.config("c-file", extra=f'[catalog]\npath = "{s.a_file}/c.sqlite3"\n'),
                            "jobs"),
         lambda s: (s.a_file,), "catalog"),
    Case("grafana export onto a directory",
         lambda s: lifeboat(s.config("o"), "grafana", "export", "--output", str(s.odd)),
         lambda s: (s.odd,), "a directory stands where a file is expected"),
    Case("rules export into a missing directory",
         lambda s: lifeboat(s.config("o"), "rules", "export", "--output", str(s.odd / "no" / "r.yml")),
         lambda s: (s.odd / "no" / "r.yml",), "does not exist"),
    Case("rules export onto a read-only file system",
         lambda s: lifeboat(s.config("o"), "rules", "export", "--output", str(s.read_only / "r.yml")),
         lambda s: (s.read_only / "r.yml",), "read-only"),
    Case("drill with its scratch directory a file",
         lambda s: lifeboat(s.config("dr", cluster_extra=f'[clusters.main.drills]\n'
                                                         f'scratch_dir = "{s.a_file}"\n'),
                            "drill", "--kind", "full"),
         lambda s: (s.a_file,), "a file"),
    Case("copy to a region on a read-only file system",
         lambda s: lifeboat(s.config("cp", extra=f'[repository.copies.dr]\npath = "{s.read_only}/copy"\n'
                                     ), "copy"),
         lambda s: (s.read_only / "copy",), "read-only"),
    # WAL commands
    Case("wal-push of a directory",
         lambda s: lifeboat(s.config("w"), "wal-push", str(_directory(s.odd / SEGMENT))),
         lambda s: (s.odd / SEGMENT,), "a directory stands where a file is expected"),
    Case("wal-push of a missing file",
         lambda s: lifeboat(s.config("w"), "wal-push", str(s.odd / "missing" / SEGMENT)),
         lambda s: (s.odd / "missing" / SEGMENT,), "does not exist"),
    Case("wal-get into a missing directory (fatal to recovery: 128)",
         lambda s: lifeboat(s.config("w"), "wal-get", _first_segment(s), str(s.odd / "no" / "x")),
         lambda s: (s.odd / "no" / "x",), "does not exist", codes=(128,)),
    # the configuration file
    Case("configuration file is a directory",
         lambda s: lifeboat(s.odd, "info"),
         lambda s: (s.odd,), "directory"),
    Case("configuration file postgres may not read",
         lambda s: lifeboat(_root_only_config(s), "info", as_postgres=True),
         lambda s: (_root_only_config(s),), "ermission denied"),
]


SEGMENT = "00000001000000000000007F"  # a name no test's cluster reaches


def _directory(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


def _a_segment(site: Site) -> Path:
    """A WAL segment of the site's cluster (fetched from its archive), to push elsewhere."""
    path = site.odd / _first_segment(site)
    if not path.exists():
        done = lifeboat(site.config("w"), "wal-get", _first_segment(site), str(path))
        assert done.returncode == 0, done.stderr
    return path


def _first_segment(site: Site) -> str:
    archive = json.loads(site.env.run("info", "--output", "json").stdout)["clusters"][0]["archive"]
    return archive[0]["first"]


def _root_only_config(site: Site) -> Path:
    path = site.root_only.parent / "root-only.toml"
    shutil.copy(site.config("c"), path)
    os.chmod(path, 0o600)
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_path_that_cannot_be_used_is_named_with_what_to_do(site: Site, case: Case) -> None:
    done = case.run(site)
    refused(done, *case.names(site), codes=case.codes)
    assert case.advice in done.stderr + done.stdout, done.stderr + done.stdout


def test_nothing_was_lost_by_the_faults(site: Site) -> None:
    """After every fault above: the repository verifies and still holds only whole backups;
    the full repository, whose backup failed, lists none."""
    verify = site.env.run("verify", "--output", "json", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    backups = json.loads(site.env.run("info", "--output", "json").stdout)["clusters"][0]["backups"]
    assert [b["status"] for b in backups] == ["ok"] * len(backups) and site.backup in {
        b["id"] for b in backups}
    full = json.loads(lifeboat(site.config("r-full", site.full / "repo"), "info", "--output",
                               "json").stdout)
    assert full["clusters"][0]["status"] == "ok" and full["clusters"][0]["backups"] == []


def test_restore_as_root_creates_the_destination_for_postgres(site: Site) -> None:
    """Under a root-owned parent, as root: created owned by postgres, mode 0700, restored."""
    target = site.root_owned / "missing" / "pgdata"
    done = lifeboat(site.config("d"), "restore", "--pgdata", str(target))
    assert done.returncode == 0, done.stderr
    import pwd

    owner = pwd.getpwnam(PG_USER).pw_uid
    for directory in (target, target.parent):
        st = directory.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (owner, 0o700), directory
    assert (target / "PG_VERSION").read_text().strip() == "15"


def test_unusual_names_just_work(site: Site, workspace: Workspace) -> None:
    """A repository and a data directory with spaces and non-ASCII characters: archive,
    back up, restore and start, verify."""
    env = Lifeboat.create(workspace)
    odd_repo = site.odd / "répo sitory"
    env.repo = odd_repo
    env.write_config(env.cluster)
    env.cluster.configure({"archive_command": f"'{env.archive_command()}'"})
    try:
        env.cluster.start()
        env.run("init")
        env.cluster.sql("CREATE TABLE t AS SELECT g AS n FROM generate_series(1, 500) g")
        env.run("backup")
        env.run("check")
        pgdata = site.odd / "restored ü"
        port = free_port()
        env.run("restore", "--pgdata", str(pgdata), "--start", "--port", str(port),
                "--archive-mode", "off")
        restored = Cluster(pgdata, port, pgdata.parent / "restored.log", started=True)
        env.restored.append(restored)
        assert restored.value("SELECT count(*) FROM t") == 500
        assert env.run("verify").returncode == 0
    finally:
        env.cleanup()


def test_a_data_directory_holding_a_file_named_log_restores_and_starts(site: Site) -> None:
    """pg_ctl -l $PGDATA/log is common: the restore's own start-up log goes elsewhere."""
    env = site.env
    log_file = env.cluster.pgdata / "log"
    log_file.write_text("the server's own log file\n")
    chown_postgres(log_file)
    try:
        env.run("backup", "--type", "incr")
        restored, done = env.restore()
        assert done.returncode == 0, done.stderr
        assert (restored.pgdata / "log").read_text() == "the server's own log file\n"
        assert restored.value("SELECT count(*) FROM kept") == 1000
        server_log = next(line for line in done.stdout.splitlines() if line.startswith("server log: "))
        assert not server_log.removeprefix("server log: ").startswith(str(restored.pgdata))
    finally:
        with contextlib.suppress(FileNotFoundError):
            log_file.unlink()


def test_as_postgres_an_unwritable_catalog_says_what_to_run_and_init_as_root_fixes_it(
        site: Site) -> None:
    place = site.root_owned / "lib"
    env = site.env
    config = env.config  # the one the cluster's archive_command reads
    env.write_config(env.cluster, extra=f'\n[catalog]\npath = "{place}/catalog.sqlite3"\n'
                                        f'[agent]\nstate_dir = "{place}/agent"\n')
    try:
        _catalog_created_by_init(config, place)
    finally:
        env.write_config(env.cluster)


def _catalog_created_by_init(config: Path, place: Path) -> None:
    done = lifeboat(config, "backup", "--type", "incr", "--no-expire", as_postgres=True)
    assert done.returncode == 0, done.stderr
    assert f"not recorded in the catalog: cannot open the catalog {place}/catalog.sqlite3" in done.stderr
    assert f"run once as root: lifeboat --config {config} init" in done.stderr
    init = lifeboat(config, "init")
    assert init.returncode == 0, init.stderr
    done = lifeboat(config, "backup", "--type", "incr", "--no-expire", as_postgres=True)
    assert done.returncode == 0 and "not recorded" not in done.stderr, done.stderr
    recorded = json.loads(lifeboat(config, "jobs", "--output", "json", as_postgres=True).stdout)
    assert [(j["kind"], j["state"], j["requested_by"]) for j in recorded["jobs"]] == [
        ("backup", "succeeded", "postgres@cli")]
