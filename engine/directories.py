"""Directories Lifeboat writes, made ready before work starts.

Run as root, Lifeboat switches to ``os_user`` (as pg_ctlcluster does), who usually cannot
create directories under /var/lib, /var/spool or a root-owned parent. So, still as root,
the directories a command will write are created here and given to ``os_user``; run as
anyone else, a directory that user cannot create or write is refused at once with its path
and what to do, before any work starts.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import ConfigError, PathError, path_error

if TYPE_CHECKING:
    from engine.config.schema import Config


def lifeboat_directories(config: Config) -> list[Path]:
    """The directories of Lifeboat's own that the configuration names: the repository and
    its copies (when they are local directories), the agent's state (job logs, restore logs,
    streamed WAL), a SQLite catalog's directory, the async archiving spools and the
    streaming directories."""
    from engine.repository.storage import local_path

    urls = (config.repository.url, *(c.url for c in config.repository.copies.values()))
    wanted = [Path(path) for path in map(local_path, urls) if path is not None]
    wanted.append(config.agent.state_dir)
    if config.catalog.dsn is None:
        wanted.append(config.catalog.path.parent)
    for name, cluster in config.clusters.items():
        if cluster.archive.mode == "async":
            wanted.append(config.spool_directory(name))
        if cluster.streaming.enabled:
            wanted.append(config.streaming_directory(name))
    return wanted


def _owner(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"os_user '{user}' does not exist on this machine") from None


def user_may_write(directory: Path, entry: pwd.struct_passwd) -> bool:
    """Whether the user of ``entry`` may create entries in ``directory`` (by its mode bits;
    checked as root, for another user)."""
    try:
        st = directory.stat()
    except OSError:
        return False
    if entry.pw_uid == 0:
        return True
    if st.st_uid == entry.pw_uid:
        return bool(st.st_mode & 0o300 == 0o300)
    groups = {entry.pw_gid, *os.getgrouplist(entry.pw_name, entry.pw_gid)}
    if st.st_gid in groups:
        return bool(st.st_mode & 0o030 == 0o030)
    return bool(st.st_mode & 0o003 == 0o003)


def user_may_read(path: Path, user: str) -> bool:
    """Whether ``user`` may read the file ``path`` (by its mode bits and those of the
    directories above it; checked as root, for another user)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return False
    if entry.pw_uid == 0:
        return True
    groups = {entry.pw_gid, *os.getgrouplist(entry.pw_name, entry.pw_gid)}

    def allowed(target: Path, bits: int) -> bool:  # bits: the owner's, e.g. 0o400
        try:
            st = target.stat()
        except OSError:
            return False
        if st.st_uid == entry.pw_uid:
            return bool(st.st_mode & bits)
        if st.st_gid in groups:
            return bool(st.st_mode & (bits >> 3))
        return bool(st.st_mode & (bits >> 6))

    path = Path(path).absolute()
    return allowed(path, 0o400) and all(allowed(d, 0o100) for d in path.parents)


def give_to(user: str, directories: Iterable[Path], mode: int = 0o750,
            only_where_needed: bool = False) -> list[Path]:
    """As root: create each missing directory (and missing parents) owned by ``user`` with
    ``mode``; directories that exist are left as they are. With ``only_where_needed``, stop
    at the first missing directory whose parent ``user`` may write: ``user`` creates the rest
    itself, when its work starts, so a command refused before then leaves nothing behind.
    Returns those created. Does nothing for another caller, or when ``user`` is root."""
    if os.geteuid() != 0 or user == "root":
        return []
    entry = _owner(user)
    created: list[Path] = []
    for directory in directories:
        directory = Path(directory)
        missing = [d for d in (directory, *directory.parents) if not d.exists()]
        for made in reversed(missing):
            if only_where_needed and user_may_write(made.parent, entry):
                break
            try:
                made.mkdir(mode=mode)
            except FileExistsError:
                pass
            except OSError as exc:
                raise path_error(exc, "create directory", made) from None
            os.chown(made, entry.pw_uid, entry.pw_gid)
            os.chmod(made, mode)  # mkdir's mode is masked by the umask
            created.append(made)
        if directory.exists() and not directory.is_dir():
            raise PathError(f"cannot use {directory} as a directory: a file stands where a "
                            "directory is expected (move it away, or use another path)")
    return created


def check_writable(directory: Path, purpose: str) -> None:
    """Refuse at once a directory this process cannot create or write, naming it, the user
    and what to do (rather than failing half-way through the work)."""
    directory = Path(directory)
    existing = next((d for d in (directory, *directory.parents) if os.path.lexists(d)), Path("/"))
    user = pwd.getpwuid(os.geteuid()).pw_name
    if not os.path.isdir(existing):
        raise PathError(f"cannot use {directory} for {purpose}: {existing} is a file, not a "
                        "directory (move it away, or use another path)")
    if _read_only(existing):
        raise PathError(f"cannot use {directory} for {purpose}: {existing} is on a read-only "
                        "file system (remount it read-write, or use another location)")
    if not os.access(existing, os.W_OK | os.X_OK):
        made = "write" if existing == directory else f"create {directory} in"
        raise PathError(
            f"cannot use {directory} for {purpose}: user {user} may not {made} {existing} "
            f"(run as root, which creates it for {user}, or create it yourself: "
            f"install -d -o {user} -m 700 {directory})")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def ensure(directories: Iterable[Path], mode: int = 0o750) -> list[str]:
    """Create the missing ``directories`` as the current user; what could not be created,
    each with its path and what to do (the caller says it; nothing is raised)."""
    from engine.durable import make_dirs

    problems = []
    for directory in directories:
        try:
            make_dirs(directory, mode)
            if not os.access(directory, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied", str(directory))
        except OSError as exc:
            problems.append(str(path_error(exc, "create directory", directory)))
    return problems
