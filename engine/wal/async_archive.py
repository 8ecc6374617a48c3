"""Asynchronous WAL archiving: the agent pushes ``.ready`` segments ahead, ``wal-push`` confirms.

The agent lists ``pg_wal/archive_status/*.ready`` (PostgreSQL's queue of files to
archive), pushes them in parallel through :func:`engine.wal.archive.push` (durable
put-if-absent) and then writes an *acknowledgement* into the cluster's spool
directory. When PostgreSQL later runs ``archive_command`` for that file, ``wal-push``
finds the acknowledgement, checks that it describes the very file it was handed
(size, modification time in ns, inode and device, the cluster and the repository),
removes it and returns 0 without reading the segment. While the agent is alive (its
heartbeat file in the spool is fresh) ``wal-push`` waits for the acknowledgement, up to
:data:`ACK_WAIT` seconds, instead of pushing the same file a second time: so
``archive_command`` returns as soon as the agent has stored the segment durably. Without
a live agent, or after that wait, ``wal-push`` pushes the file itself, so archiving
never depends on the agent being up.

An acknowledgement is written only after the push returned, i.e. after the archived
object is durable, so it never claims more than is true. It is written with a temp
file and a rename, but not fsynced: a crash can lose it or leave it empty, and either
way it no longer matches, so ``wal-push`` pushes again (a no-op for identical content).
The agent never touches ``archive_status``: PostgreSQL renames ``.ready`` to ``.done``
once ``archive_command`` succeeded.

The functions used by ``wal-push`` (:func:`consume_ack`) import nothing beyond ``os``.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is not imported on the WAL path
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from concurrent.futures import ThreadPoolExecutor

    from engine.config.schema import Config
    from engine.repository.storage.base import Storage

ACK_SUFFIX = ".ack"
ACK_MAGIC = "lifeboat-ack-1"
READY = ".ready"
HEARTBEAT = "agent.alive"  # touched by the agent every pass, in the cluster's spool
HEARTBEAT_FRESH = 5.0  # an older heartbeat means no agent: wal-push does not wait
ACK_WAIT = 30.0  # how long wal-push waits for a live agent's acknowledgement
ACK_POLL = 0.005
BATCH_PER_JOB = 4  # a pass pushes at most push_jobs x this, so a stop request is seen soon
RETRY_DELAY = 1.0  # a failed push is retried after this, doubling up to RETRY_MAX
RETRY_MAX = 30.0
EVENT_REPEAT_SECONDS = 60.0  # a push that keeps failing is reported again after this long
TEMP_MAX_AGE = 60.0  # temp files of a killed agent older than this are removed


def ack_path(spool: str, name: str) -> str:
    return os.path.join(spool, name + ACK_SUFFIX)


def ack_text(stat: os.stat_result, cluster: str, repository: str) -> str:
    """The acknowledgement of a pushed file: what identifies it, and where it went."""
    return (f"{ACK_MAGIC} {stat.st_size} {stat.st_mtime_ns} {stat.st_ino} {stat.st_dev} "
            f"{cluster} {repository}\n")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(4096)
    except OSError:
        return None


def ack_matches(spool: str, path: str, cluster: str, repository: str) -> bool:
    """Whether the spool holds an acknowledgement of exactly the file at ``path``."""
    text = _read(ack_path(spool, os.path.basename(path)))
    if not text:
        return False
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return text == ack_text(stat, cluster, repository)


def consume_ack(spool: str, path: str, cluster: str, repository: str) -> bool | None:
    """``wal-push``'s question: was ``path`` pushed ahead? If so (True), drop its
    acknowledgement; None when there is none (yet).

    An acknowledgement for another file of the same name (a cluster restored without a
    new timeline, a stale one from before a crash) is removed too, and False returned:
    the agent counts that name as done and will not acknowledge it again, so the caller
    pushes the file itself, at once.
    """
    ack = ack_path(spool, os.path.basename(path))
    text = _read(ack)
    if text is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return False  # let the real push report the missing file
    matched = text == ack_text(stat, cluster, repository)
    try:
        os.unlink(ack)
    except OSError:
        pass
    return matched


def agent_alive(spool: str, now: float | None = None) -> bool:
    """Whether an agent is pushing this cluster's WAL ahead (its heartbeat is fresh)."""
    try:
        mtime = os.stat(os.path.join(spool, HEARTBEAT)).st_mtime
    except OSError:
        return False
    if now is None:
        import time

        now = time.time()
    return now - mtime < HEARTBEAT_FRESH


def await_ack(spool: str, path: str, cluster: str, repository: str, wait: float = ACK_WAIT) -> bool:
    """``wal-push`` in async mode: True once the agent acknowledged ``path`` (the ack is
    consumed); False at once when no agent is alive or its acknowledgement is for another
    file, or when ``wait`` passed without one."""
    acked = consume_ack(spool, path, cluster, repository)
    if acked is not None:
        return acked
    import time

    deadline = time.monotonic() + wait
    while agent_alive(spool) and time.monotonic() < deadline:
        time.sleep(ACK_POLL)
        acked = consume_ack(spool, path, cluster, repository)
        if acked is not None:
            return acked
    return False


def _stamp(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev


def _history_first(name: str) -> tuple[bool, str]:
    """PostgreSQL archives timeline history files first, then in name order."""
    return not name.endswith(".history"), name


def ready_names(pgdata: str | os.PathLike[str]) -> list[str]:
    """Files PostgreSQL wants archived (those with a ``.ready`` status), oldest first."""
    status = os.path.join(pgdata, "pg_wal", "archive_status")
    names = [entry[:-len(READY)] for entry in os.listdir(status) if entry.endswith(READY)]
    return sorted(names, key=_history_first)


def archive_backlog(pgdata: str | os.PathLike[str], now: float | None = None) -> tuple[int, float]:
    """(files waiting to be archived, seconds since the oldest of them was completed).

    PostgreSQL creates ``<file>.ready`` when a WAL file is complete, so its mtime is
    when archiving could have started; the age of the oldest is the archive lag.
    """
    status = os.path.join(pgdata, "pg_wal", "archive_status")
    count, oldest = 0, None
    with os.scandir(status) as entries:
        for entry in entries:
            if not entry.name.endswith(READY):
                continue
            try:
                mtime = entry.stat().st_mtime
            except FileNotFoundError:
                continue  # archived while we looked
            count += 1
            oldest = mtime if oldest is None else min(oldest, mtime)
    if oldest is None:
        return 0, 0.0
    import time

    return count, max(0.0, (time.time() if now is None else now) - oldest)


def stale_spool(spool: str, pgdata: str, older_than: float, now: float | None = None
                ) -> list[tuple[str, int, float, str]]:
    """What a cluster's spool holds that nothing needs any more, older than ``older_than``
    seconds: (path, bytes, age in seconds, why) of acknowledgements of files PostgreSQL has
    archived (their ``.ready`` is gone) or of another file of the same name, and temp files
    of a killed agent. Never the heartbeat, never a name Lifeboat does not write there, and
    never a WAL file (the spool holds none; pg_wal is not touched)."""
    import time

    from engine.wal.names import wal_file_kind

    now = time.time() if now is None else now
    try:
        entries = sorted(os.listdir(spool))
    except FileNotFoundError:
        return []
    ready = set(ready_names(pgdata))
    found = []
    for entry in entries:
        path = os.path.join(spool, entry)
        if entry == HEARTBEAT or wal_file_kind(entry) is not None:
            continue
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            continue
        age = now - stat.st_mtime
        if age < older_than or not os.path.isfile(path):
            continue
        if entry.startswith(".") and ".tmp-" in entry:
            why = "temp file of an acknowledgement a killed agent did not finish"
        elif entry.endswith(ACK_SUFFIX) and not entry.startswith("."):
            name = entry[:-len(ACK_SUFFIX)]
            if wal_file_kind(name) is None:
                continue
            if name not in ready:
                why = f"acknowledgement of {name}, which PostgreSQL has archived (no .ready left)"
            elif not ack_matches(spool, os.path.join(pgdata, "pg_wal", name), _ack_cluster(path),
                                 _ack_repository(path)):
                why = f"acknowledgement of an earlier file named {name} (it does not match pg_wal's)"
            else:
                continue  # wal-push will consume it
        else:
            continue
        found.append((path, stat.st_size, age, why))
    return found


def _ack_fields(path: str) -> list[str]:
    return (_read(path) or "").split()


def _ack_cluster(path: str) -> str:
    fields = _ack_fields(path)
    return fields[5] if len(fields) >= 7 else ""


def _ack_repository(path: str) -> str:
    fields = _ack_fields(path)
    return " ".join(fields[6:]) if len(fields) >= 7 else ""


class AsyncArchiver:
    """Pushes a cluster's ``.ready`` WAL files ahead of ``archive_command``.

    ``storage`` must be the repository of ``config`` (acknowledgements name it).
    ``on_event(kind, severity, message)`` receives failures (``archive_push_failed``,
    error), recoveries (``archive_push_recovered``, info) and errors of a whole pass
    (``archive_async_error``, error); a failing file is reported once, then again every
    minute while it keeps failing. Nothing here raises out of :meth:`run`.
    """

    def __init__(self, config: Config, cluster: str, storage: Storage,
                 on_event: Callable[[str, str, str], None] | None = None) -> None:
        from engine.repository.codec import Codec

        entry = config.cluster(cluster)
        self.cluster = cluster
        self.pgdata = str(entry.pgdata)
        self.wal_dir = os.path.join(self.pgdata, "pg_wal")
        self.spool = str(config.spool_directory(cluster))
        self.repository = config.repository.url
        self.jobs = entry.archive.push_jobs
        self.storage = storage
        self.codec = Codec(config.compression.algorithm, config.compression.level)  # type: ignore[arg-type]
        self.on_event = on_event
        self.retry_delay = RETRY_DELAY
        self._retry: dict[str, tuple[int, float]] = {}  # name -> (failures in a row, next try)
        self._acked: set[str] = set()  # acknowledged by this process, .ready still present
        self._failing: dict[str, tuple[str, float]] = {}  # name -> (last error, reported at)
        self._pool: ThreadPoolExecutor | None = None

    # -- one pass -----------------------------------------------------------------------

    def pending(self) -> list[str]:
        """``.ready`` files not yet acknowledged, oldest first."""
        import time

        names = ready_names(self.pgdata)
        now = time.monotonic()
        return [name for name in names if name not in self._acked
                and self._retry.get(name, (0, 0.0))[1] <= now and not self._adopt_ack(name)]

    def heartbeat(self) -> None:
        """Tell ``wal-push`` an agent is alive, so it waits for acknowledgements."""
        os.makedirs(self.spool, mode=0o750, exist_ok=True)
        path = os.path.join(self.spool, HEARTBEAT)
        try:
            os.utime(path)
        except FileNotFoundError:
            with open(path, "w") as handle:
                handle.write(f"{os.getpid()}\n")

    def _adopt_ack(self, name: str) -> bool:
        """An acknowledgement left by an earlier agent that still matches counts as ours."""
        if ack_matches(self.spool, os.path.join(self.wal_dir, name), self.cluster, self.repository):
            self._acked.add(name)
            return True
        return False

    def push_ready(self) -> int:
        """Push the oldest pending ``.ready`` files (up to ``push_jobs`` x :data:`BATCH_PER_JOB`)
        in parallel; how many were pushed and acknowledged."""
        names = self.pending()[:self.jobs * BATCH_PER_JOB]
        if not names:
            return 0
        os.makedirs(self.spool, mode=0o750, exist_ok=True)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.jobs, thread_name_prefix=f"wal-async-{self.cluster}")
        futures = [(name, self._pool.submit(self._push_one, name)) for name in names]
        pushed = 0
        for name, future in futures:
            try:
                done = future.result()
            except Exception as exc:  # reported, retried later
                self._failed(name, exc)
                continue
            if done:
                pushed += 1
                self._recovered(name)
        return pushed

    def _backoff(self, name: str) -> None:
        import time

        failures = self._retry.get(name, (0, 0.0))[0] + 1
        delay = min(RETRY_MAX, self.retry_delay * 2 ** (failures - 1))
        self._retry[name] = (failures, time.monotonic() + delay)

    def _push_one(self, name: str) -> bool:
        """Push ``name`` and acknowledge it; False when PostgreSQL archived it meanwhile."""
        from engine.errors import StorageError
        from engine.wal import archive

        source = os.path.join(self.wal_dir, name)
        try:
            before = os.stat(source)
            archive.push(self.storage, self.cluster, source, self.codec)
            after = os.stat(source)
        except Exception:
            if not self._is_ready(name):
                return False  # archived (and perhaps recycled) by archive_command meanwhile
            raise
        if not self._is_ready(name):
            return False
        if _stamp(before) != _stamp(after):
            raise StorageError(f"{source} changed while it was being pushed")
        self._write_ack(name, after)
        self._acked.add(name)
        return True

    def _is_ready(self, name: str) -> bool:
        return os.path.exists(os.path.join(self.wal_dir, "archive_status", name + READY))

    def _write_ack(self, name: str, stat: os.stat_result) -> None:
        final = ack_path(self.spool, name)
        tmp = os.path.join(self.spool, f".{name}{ACK_SUFFIX}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, ack_text(stat, self.cluster, self.repository).encode())
        finally:
            os.close(fd)
        os.rename(tmp, final)

    # -- housekeeping -------------------------------------------------------------------

    def cleanup(self) -> int:
        """Remove acknowledgements whose ``.ready`` is gone (archived); how many were removed."""
        import time

        try:
            entries = os.listdir(self.spool)
        except FileNotFoundError:
            return 0
        ready = set(ready_names(self.pgdata))  # listed after the spool: no fresh ack is lost
        self._acked &= ready
        removed = 0
        for entry in entries:
            path = os.path.join(self.spool, entry)
            if entry.endswith(ACK_SUFFIX) and not entry.startswith("."):
                stale = entry[:-len(ACK_SUFFIX)] not in ready
            else:
                try:
                    stale = ".tmp-" in entry and time.time() - os.stat(path).st_mtime > TEMP_MAX_AGE
                except FileNotFoundError:
                    continue
            if stale:
                try:
                    os.unlink(path)
                    removed += 1
                except FileNotFoundError:
                    pass
        for name in [n for n in self._failing if n and n not in ready]:
            del self._failing[name]
        for name in [n for n in self._retry if n not in ready]:
            del self._retry[name]
        return removed

    def run(self, stop: threading.Event, interval: float = 0.2) -> None:
        """Push and clean up until ``stop`` is set; errors are reported and retried."""
        try:
            while not stop.is_set():
                pushed = 0
                try:
                    self.heartbeat()
                    pushed = self.push_ready()
                    self.cleanup()
                except Exception as exc:  # the loop must survive anything
                    self._failed("", exc, kind="archive_async_error")
                else:
                    self._failing.pop("", None)
                if not pushed:
                    stop.wait(interval)
        finally:
            self.close()

    def close(self) -> None:
        try:  # wal-push stops waiting for acknowledgements at once
            os.unlink(os.path.join(self.spool, HEARTBEAT))
        except OSError:
            pass
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- events -------------------------------------------------------------------------

    def _emit(self, kind: str, severity: str, message: str) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, severity, message)
            except Exception:  # a broken recorder must not stop archiving
                pass

    def _failed(self, name: str, exc: BaseException, kind: str = "archive_push_failed") -> None:
        import time

        if name:
            self._backoff(name)
        error = f"{type(exc).__name__}: {exc}"
        last = self._failing.get(name)
        now = time.monotonic()
        if last is not None and last[0] == error and now - last[1] < EVENT_REPEAT_SECONDS:
            return
        self._failing[name] = (error, now)
        what = f"cannot push {name} ahead" if name else "async archiving pass failed"
        self._emit(kind, "error", f"cluster '{self.cluster}': {what} (archive_command will push "
                                  f"it itself; retrying): {error}")

    def _recovered(self, name: str) -> None:
        self._retry.pop(name, None)
        if self._failing.pop(name, None) is not None:
            self._emit("archive_push_recovered", "info",
                       f"cluster '{self.cluster}': {name} pushed ahead after earlier failures")
