"""``wal-push`` and ``wal-get``: what PostgreSQL runs for every WAL file.

Kept apart from the other commands so that a push imports only what it uses: no
argparse, pydantic, psycopg, pathlib or json beyond the archive's own needs.
"""

from __future__ import annotations

from types import SimpleNamespace

from engine.config.file import config_path
from lifeboat.privileges import become


def parse_fast(argv: list[str]) -> SimpleNamespace | None:
    """``[--config FILE] [--cluster NAME] wal-push PATH`` or ``... wal-get NAME PATH``.

    These are the shapes archive_command and restore_command run; anything else
    (options after the command, --help, a typo) returns None and goes to argparse,
    which stays the one full parser.
    """
    options: dict[str, str | None] = {"config": None, "cluster": None}
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        key, equals, value = argv[i][2:].partition("=")
        if key not in options:
            return None
        if not equals:
            if i + 1 >= len(argv):
                return None
            i += 1
            value = argv[i]
        options[key] = value
        i += 1
    rest = argv[i:]
    if any(word.startswith("-") for word in rest):
        return None
    if len(rest) == 2 and rest[0] == "wal-push":
        return SimpleNamespace(command="wal-push", wal_path=rest[1], **options)
    if len(rest) == 3 and rest[0] == "wal-get":
        return SimpleNamespace(command="wal-get", wal_name=rest[1], destination=rest[2], **options)
    return None


def wal_push(args: SimpleNamespace) -> int:
    from engine.config.cache import archive_settings

    settings = archive_settings(config_path(args.config), args.cluster)
    become(settings.os_user)
    if settings.archive_mode == "async":
        from engine.wal.async_archive import await_ack

        # the agent pushes this very file (or did): confirm without reading it
        if await_ack(settings.spool, args.wal_path, settings.cluster, settings.repository):
            return 0
    from engine.repository.codec import Codec
    from engine.repository.storage import open_storage
    from engine.wal import archive

    storage = open_storage(settings.repository, settings.credentials)
    archive.push(storage, settings.cluster, args.wal_path,
                 Codec(settings.algorithm, settings.level))  # type: ignore[arg-type]
    return 0


def wal_get(args: SimpleNamespace) -> int:
    from engine.config.cache import archive_settings
    from engine.repository.storage import open_storage
    from engine.wal import archive

    settings = archive_settings(config_path(args.config), args.cluster)
    become(settings.os_user)
    storage = open_storage(settings.repository, settings.credentials)
    found = archive.get(storage, settings.cluster, args.wal_name, args.destination, settings.stream_dir)
    return 0 if found else 1
