"""The pgBackRest builds a run compares with: each one's binary, version, options, work
directory, configuration file and command lines.

Several builds can take part in one run (``--pgbackrest PATH`` given more than once); each
gets its own repository, stanza, lock and log directories, and the server's
archive_command pushes every segment into each of their archives. ``--pgbackrest-block``
turns on block incremental with bundling (``repo1-block=y`` + ``repo1-bundle=y``) for every
build that has it (2.46 and later); older builds run without, and the report says so.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.environment import CLUSTER, Bench, BenchError

BLOCK_SINCE = (2, 46)  # first release with repo-block (block incremental)


@dataclass(frozen=True)
class PgBackRest:
    """One pgBackRest build as this run uses it."""

    key: str  # the tool's name in results: "pgbackrest", then "pgbackrest2", ...
    path: str
    version: str  # "2.59.1"
    block: bool  # repo1-block=y + repo1-bundle=y
    root: Path  # its directory in the work directory (repository, log, lock, config)

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def config(self) -> Path:
        return self.root / "pgbackrest.conf"

    @property
    def label(self) -> str:
        """How the report names it, e.g. ``pgBackRest 2.59.1 (block + bundle)``."""
        return f"pgBackRest {self.version}" + (" (block + bundle)" if self.block else "")

    @property
    def short(self) -> str:
        """A short name for ratio columns, e.g. ``2.59.1 b+b``."""
        return self.version + (" b+b" if self.block else "")

    def config_text(self, repo: Path, bench: Bench, extra: str = "") -> str:
        """``pgbackrest.conf`` for a repository at ``repo``; ``extra`` lines go to [global]."""
        block = "repo1-bundle=y\nrepo1-block=y\n" if self.block else ""
        return (f"[global]\nrepo1-path={repo}\nrepo1-retention-full=9999\nprocess-max=2\n"
                f"compress-type=zst\ncompress-level=3\nstart-fast=y\n{block}{extra}"
                f"log-path={self.root}/log\nlock-path={self.root}/lock\n"
                f"log-level-console=warn\nlog-level-file=info\n\n"
                f"[{CLUSTER}]\npg1-path={bench.paths.pgdata}\npg1-port={bench.port}\n"
                f"pg1-socket-path={bench.paths.sock}\n")

    def cmd(self, *args: str | Path, config: Path | None = None) -> list[str | Path]:
        return [self.path, f"--config={config or self.config}", f"--stanza={CLUSTER}", *args]

    def push_command(self) -> str:
        """Its part of the server's archive_command (``%p`` appended by the caller)."""
        return shlex.join([self.path, f"--config={self.config}", f"--stanza={CLUSTER}",
                           "archive-push"])


def version_of(path: str) -> str:
    """``2.59.1`` from ``pgbackrest version``; a BenchError if it does not run."""
    try:
        done = subprocess.run([path, "version"], capture_output=True, text=True, timeout=30,
                              check=False)
    except OSError as exc:
        raise BenchError(f"cannot run {path}: {exc}") from None
    found = re.search(r"pgBackRest (\d+\.\d+(?:\.\d+)?\S*)", done.stdout)
    if done.returncode != 0 or found is None:
        raise BenchError(f"{path} version did not say which pgBackRest it is: "
                         f"{(done.stdout + done.stderr).strip()[:200]}")
    return found.group(1)


def has_block(version: str) -> bool:
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    return numbers >= BLOCK_SINCE


def builds(paths: list[str], block: bool, workdir: Path) -> tuple[PgBackRest, ...]:
    """The builds at ``paths``, in that order: the first is ``pgbackrest`` in
    ``WORKDIR/pgbackrest``, the next ``pgbackrest2`` in ``WORKDIR/pgbackrest2``..."""
    found = []
    for number, path in enumerate(paths, 1):
        key = "pgbackrest" if number == 1 else f"pgbackrest{number}"
        version = version_of(path)
        found.append(PgBackRest(key, path, version, block and has_block(version), workdir / key))
    return tuple(found)


def anchor(builds: tuple[PgBackRest, ...]) -> PgBackRest:
    """The build the targets compare with: the first with block incremental, else the first."""
    return next((b for b in builds if b.block), builds[0])


def build_of(bench: Bench, tool: str) -> PgBackRest:
    """The build whose key is ``tool``."""
    for build in bench.pgbackrests:
        if build.key == tool:
            return build
    raise BenchError(f"no pgBackRest build named {tool}")
