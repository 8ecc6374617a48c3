"""Programs the benchmark runs besides PostgreSQL's own: found, or installed with apt-get
when running as root. A pgBackRest given by path (``--pgbackrest``) must exist; only
Debian's (the default) is installed when missing.

``/usr/bin/time`` is not required: without it, peak memory is read with ``getrusage`` in a
small wrapper (see bench/timing.py).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

from bench.environment import log

# program -> Debian package. tar needs the zstd program for `tar --zstd`.
REQUIRED = {"tar": "tar", "zstd": "zstd"}
DEBIAN_PGBACKREST = ("pgbackrest", "/usr/bin/pgbackrest")  # names of Debian's, installable
# Searched besides root's PATH: the PATH every benchmark command gets (bench/environment.py).
COMMAND_PATH = "/usr/local/bin:/usr/bin:/bin"


class SetupError(Exception):
    """A required program is missing and could not be installed; the message says which."""


def missing_programs(pgbackrests: list[str]) -> dict[str, str]:
    """The required programs not found, with the package that provides each; a missing
    pgBackRest other than Debian's is an error (it cannot be installed)."""
    search = f"{os.environ.get('PATH', '')}:{COMMAND_PATH}"
    required = dict(REQUIRED)
    for path in pgbackrests:
        if path in DEBIAN_PGBACKREST:
            required[path] = "pgbackrest"
        elif not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise SetupError(f"--pgbackrest {path}: no such executable (build one with "
                             "/work/shared/tools/build-pgbackrest.sh; see bench/README.md)")
    return {program: package for program, package in required.items()
            if shutil.which(program, path=search) is None}


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    command = ["apt-get", *args]
    log(shlex.join(command))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise SetupError(f"cannot run apt-get: {exc}") from exc


def apt_install(packages: list[str]) -> None:
    """``apt-get install`` the packages; ``apt-get update`` and a second try only if it fails."""
    install = ("install", "-y", "--no-install-recommends", *packages)
    done = _apt_get(*install)
    if done.returncode != 0:
        log("apt-get install failed; updating the package lists and trying again")
        _apt_get("update")
        done = _apt_get(*install)
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise SetupError(f"apt-get install {' '.join(packages)} failed (exit {done.returncode}):\n"
                         f"{output}")


def ensure_programs(pgbackrests: list[str]) -> None:
    """Install missing programs when running as root; otherwise say which packages to install."""
    missing = missing_programs(pgbackrests)
    if not missing:
        return
    packages = sorted(set(missing.values()))
    if os.geteuid() != 0:
        raise SetupError(f"{', '.join(missing)} not found: install the Debian package(s) "
                         f"{' '.join(packages)} (apt-get install {' '.join(packages)}), "
                         "or run as root to have them installed")
    apt_install(packages)
    still_missing = missing_programs(pgbackrests)
    if still_missing:
        raise SetupError(f"{', '.join(still_missing)} still not found after installing "
                         f"{' '.join(packages)}")
    log(f"installed {' '.join(packages)}")
