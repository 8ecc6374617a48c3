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


class LockLostError(LifeboatError):
    """The cluster's lock was lost while held (a lease on object storage that could not be
    renewed, or was taken over): the work stops rather than write without it."""


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


class PreviewError(LifeboatError):
    """A preview could not read the table it was asked for at the point it restored to."""


class PathError(LifeboatError):
    """A path the user gave (or configured) cannot be used: missing, of the wrong kind, not
    writable, on a read-only or full file system. The message names it and what to do."""


_WHAT_TO_DO = {
    "EACCES": "permission denied{user}: give it to that user (chown/chmod) or run as root",
    "EPERM": "operation not permitted{user}: give it to that user (chown/chmod) or run as root",
    "ENOSPC": "the file system is full: free space there, or use another location",
    "EDQUOT": "the disk quota is exhausted: free space there, or use another location",
    "EROFS": "the file system is read-only: remount it read-write, or use another location",
    "ENOTDIR": "a file stands where a directory is expected: move it away, or use another path",
    "EISDIR": "a directory stands where a file is expected: move it away, or use another path",
    "ENOENT": "it does not exist (or a directory above it does not): create it, or fix the path",
    "EEXIST": "it already exists: move it away, or use another path",
    "ENOTEMPTY": "the directory is not empty: empty it, or use another path",
    "ENAMETOOLONG": "the name is too long: use a shorter path",
    "ELOOP": "too many symbolic links: fix the link",
    "EIO": "the device reported an I/O error: check the disk",
}


#: Causes that mean the path itself is wrong (exit 2), rather than the system refusing (exit 1).
_WRONG_PATH = frozenset({"ENOTDIR", "EISDIR", "ENOENT", "EEXIST", "ENOTEMPTY", "ENAMETOOLONG",
                         "ELOOP"})


def path_error(exc: OSError, doing: str = "use", path: object = None) -> PathError:
    """A PathError for an OSError on a path: what was being done, the path, the cause in
    plain words and what to do about it (the user it ran as, for permission problems)."""
    import errno
    import os

    name = errno.errorcode.get(exc.errno or 0, "")
    where = path if path is not None else (exc.filename if exc.filename is not None else "a path")
    user = ""
    if name in ("EACCES", "EPERM"):
        import pwd

        try:
            user = f" for user {pwd.getpwuid(os.geteuid()).pw_name}"
        except KeyError:
            user = f" for uid {os.geteuid()}"
    advice = _WHAT_TO_DO.get(name)
    text = advice.format(user=user) if advice else (exc.strerror or str(exc))
    error = PathError(f"cannot {doing} {where}: {text}")
    if name in _WRONG_PATH:
        error.exit_code = EXIT_USAGE  # the path given is wrong, rather than the system refusing
    return error
