"""The engine's typed errors.

Each error carries the process exit code the CLI should use: 2 for bad usage or
configuration, 1 for a failed operation. ``ArchiveDamagedError`` uses a code above
125 because PostgreSQL treats such a restore_command exit as fatal, which is what
a damaged archive must be: recovery stops instead of ending early and promoting.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_ARCHIVE_DAMAGED = 128


class LifeboatError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code = EXIT_FAILURE


class ConfigError(LifeboatError):
    """The configuration file is missing, malformed or holds impossible values."""

    exit_code = EXIT_USAGE


class UsageError(LifeboatError):
    """A command was asked for something that cannot make sense (bad argument)."""

    exit_code = EXIT_USAGE


class StorageError(LifeboatError):
    """The repository could not be read or written."""


class NotFoundError(StorageError):
    """An object that was asked for is not in the repository."""


class CopyConflictError(StorageError):
    """The target holds something under a key that differs from the source's object
    (another cluster's identity, a WAL file or pack of another size): it is not a copy
    of this source, and nothing is overwritten."""


class ChecksumError(LifeboatError):
    """Stored data does not match its recorded checksum (it is damaged)."""


class FormatError(LifeboatError):
    """A repository object is in a format this Lifeboat does not read (written by a newer
    or an older Lifeboat): it is refused, never misread."""


class ArchiveDuplicateError(LifeboatError):
    """A WAL file is already archived with different content."""


class ArchiveDamagedError(LifeboatError):
    """A WAL file that recovery needs is corrupt or missing in the middle of the archive."""

    exit_code = EXIT_ARCHIVE_DAMAGED


class LockBusyError(LifeboatError):
    """Another process holds the cluster's lock (a backup, expire or GC is running)."""


class PostgresError(LifeboatError):
    """The PostgreSQL server could not be reached or refused what was asked."""


class ClusterSetupError(LifeboatError):
    """The cluster's settings cannot work with Lifeboat (archiving not configured ...)."""


class BackupError(LifeboatError):
    """A backup could not be completed; no backup was recorded."""


class RestoreError(LifeboatError):
    """A restore could not be completed or did not reach its target."""


class RecoveryShortfallError(RestoreError):
    """Recovery ended before the point that was asked (or before the archive's end):
    committed work was not recovered. ``cause`` names why, as the data-loss metric does."""

    def __init__(self, message: str, cause: str = "restore_short_of_target") -> None:
        super().__init__(message)
        self.cause = cause


class CatalogError(LifeboatError):
    """The catalog (jobs, events, drill results) could not be read or written."""


class JobError(LifeboatError):
    """A job could not be enqueued or run as asked."""


class DrillError(LifeboatError):
    """A restore drill could not be carried out (its scope or reference point)."""
