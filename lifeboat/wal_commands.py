"""``wal-push`` and ``wal-get``: what PostgreSQL runs for every WAL file.

Kept apart from the other commands so that a push imports only what it uses: no
argparse, pydantic, psycopg, pathlib or json beyond the archive's own needs.
"""

from __future__ import annotations

from types import SimpleNamespace

from engine.config.file import config_path
from lifeboat.privileges import become

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    from engine.config.cache import ArchiveSettings
    from engine.repository.storage.base import Storage


def parse_fast(argv: list[str]) -> SimpleNamespace | None:
    """``[--config FILE] [--cluster NAME] wal-push PATH`` or ``... wal-get [--region R] NAME PATH``.

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
    region = None
    if len(rest) == 5 and rest[0] == "wal-get" and rest[1] == "--region":
        region, rest = rest[2], [rest[0], *rest[3:]]
    if any(word.startswith("-") for word in rest):
        return None
    if len(rest) == 2 and rest[0] == "wal-push":
        return SimpleNamespace(command="wal-push", wal_path=rest[1], **options)
    if len(rest) == 3 and rest[0] == "wal-get":
        return SimpleNamespace(command="wal-get", wal_name=rest[1], destination=rest[2], region=region,
                               **options)
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
    from engine.wal import archive

    archive.push(_repository(settings), settings.cluster, args.wal_path,
                 Codec(settings.algorithm, settings.level))  # type: ignore[arg-type]
    return 0


def wal_get(args: SimpleNamespace) -> int:
    from engine.config.cache import archive_settings
    from engine.wal import archive

    settings = archive_settings(config_path(args.config), args.cluster)
    become(settings.os_user)
    region = getattr(args, "region", None)
    if region is not None:  # a restore from a region's copy reads its WAL there, never elsewhere
        if region not in settings.copies:
            from engine.errors import UsageError

            raise UsageError(f"wal-get --region {region}: the configuration has no "
                             f"[repository.copies.{region}] (regions: "
                             f"{', '.join(sorted(settings.copies)) or 'none'})")
        found = archive.get(_repository(settings, settings.copies[region]), settings.cluster,
                            args.wal_name, args.destination)
        return 0 if found else 1
    storage = _repository(settings)
    if settings.tiers:  # WAL that moved with its backups: the repository first, then each tier
        from engine.repository import encryption
        from engine.repository.storage import open_storage
        from engine.repository.storage.tiered import TieredView

        keys = encryption.keys_of(storage)
        storage = encryption.attach(TieredView(
            [storage, *((lambda u=u: encryption.attach(open_storage(u, settings.credentials), keys))
                        for u in settings.tiers)],
            [settings.repository, *settings.tiers]), keys)
    found = archive.get(storage, settings.cluster, args.wal_name, args.destination, settings.stream_dir)
    return 0 if found else 1


def _repository(settings: ArchiveSettings, url: str | None = None) -> Storage:
    """The repository (or its copy at ``url``), with its keys when the configuration has
    [repository.encryption] (a wrong key is refused here, before anything is written).
    Without one, an encrypted repository is refused by ``cluster.json``, which every push
    and get reads first."""
    from engine.repository.storage import open_storage

    storage = open_storage(url or settings.repository, None if url else settings.credentials)
    if settings.encryption:
        from engine.repository import encryption

        sources = encryption.KeySources.from_plain(settings.encryption)
        encryption.attach(storage, encryption.open_keys(storage, sources))
    return storage
