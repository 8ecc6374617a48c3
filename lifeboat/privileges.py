"""Running as the cluster's OS user.

PostgreSQL's files belong to its OS user (``postgres``), and so must the repository,
since PostgreSQL itself runs ``archive_command``. Started as root, lifeboat switches
to that user before touching anything, as Debian's pg_ctlcluster does.
"""

from __future__ import annotations

import os
import pwd

from engine.errors import ConfigError


def who() -> str:
    """Who is asking, as jobs record it (``alice@cli``); call it before :func:`become`."""
    import getpass

    return f"{os.environ.get('SUDO_USER') or getpass.getuser()}@cli"


def become(user: str) -> None:
    """Switch from root to ``user``; nothing to do for any other caller."""
    if os.geteuid() != 0 or user == "root":
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"os_user '{user}' does not exist on this machine") from None
    os.initgroups(user, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=user, LOGNAME=user)
    os.umask(0o027)
