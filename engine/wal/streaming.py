"""Streaming WAL: ``pg_receivewal`` run and supervised by the agent, with a replication slot.

The receiver writes into the cluster's streaming directory (``[clusters.NAME.streaming]
directory``): complete segments under their own names, the segment being received as
``<segment>.partial`` (padded to the segment size). :meth:`StreamingSupervisor.tick`
pushes complete segments into the repository through :func:`engine.wal.archive.push`
(put-if-absent, so the same segment pushed by ``archive_command`` is a no-op and one with
different content an error), and prunes those it pushed; ``wal-get`` serves what the
repository does not hold yet from the directory, the ``.partial`` included.

RPO 0: when the cluster's ``synchronous_streaming`` is on, the receiver runs with
``--synchronous`` (it fsyncs and acknowledges every write) and, once it is connected,
``synchronous_standby_names`` on the primary names its application_name. A commit
then returns only after its WAL is durable in the streaming directory. While the
receiver is down, commits on the primary *wait* (PostgreSQL's synchronous replication
does not fall back to asynchronous): the supervisor restarts it with a backoff of at
most :data:`BACKOFF_MAX` seconds and reports the outage as critical. The setting is
never changed when it already names other standbys (an event says so), and it is left
in place on :meth:`~StreamingSupervisor.stop`: stopping the agent of a synchronous
cluster stops its commits until the receiver is back or the setting is cleared.

The receiver runs as the OS user of the calling process (the agent, after it became
``os_user``), in its own session, and receives SIGTERM if the thread that started it
exits (Linux ``PR_SET_PDEATHSIG``): call :meth:`~StreamingSupervisor.tick` from one
long-lived thread.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

import psycopg

from engine.config.schema import Config
from engine.errors import ClusterSetupError, LifeboatError, UsageError
from engine.postgres import connection as postgres
from engine.postgres import server
from engine.repository import clusterinfo
from engine.repository.codec import Codec
from engine.repository.storage import Storage
from engine.wal import archive
from engine.wal import names as wal

BACKOFF_MAX = 10.0  # seconds between restarts at most (commits may be waiting)
STABLE_AFTER = 30.0  # a receiver that ran this long starts a new failure count
OBSERVE_INTERVAL = 5.0  # how often pg_stat_replication is read
KEEP_SEGMENTS = 2  # newest complete segments kept in the directory after being archived
PUSH_RETRY = 60.0  # a segment that failed to archive is tried again after this long
EVENT_REPEAT = 60.0  # an event of the same kind and cause is not repeated sooner
SYNC_GRACE = 10.0  # seconds a receiver may take to show as synchronous after the setting
STOP_TIMEOUT = 10.0

EventSink = Callable[[str, str, str], None]


@dataclass(frozen=True)
class StreamingStatus:
    """A snapshot for metrics and the console."""

    cluster: str
    pid: int | None
    running: bool
    restarts: int
    synchronous: bool
    sync_state: str | None  # pg_stat_replication: sync, quorum, potential or async
    flushed_lsn: str | None  # what the receiver last reported flushed
    lag_bytes: int | None  # primary's current LSN minus flushed_lsn
    last_exit_code: int | None
    last_error: str | None
    archived_segments: int


def standby_names(setting: str) -> list[str]:
    """The names in a ``synchronous_standby_names`` value, lower-cased, quotes removed."""
    text = setting.strip()
    grouped = re.match(r"^(?:(?:FIRST|ANY)\s+)?\d+\s*\((.*)\)$", text, re.IGNORECASE | re.DOTALL)
    if grouped:
        text = grouped.group(1)
    return [name.strip().strip('"').lower() for name in text.split(",") if name.strip()]


def conninfo(**params: object) -> str:
    """A libpq connection string with every value quoted."""
    def quote(value: object) -> str:
        return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{key}={quote(value)}" for key, value in params.items() if value is not None)


def _interrupt(process: subprocess.Popen[bytes]) -> None:
    """Ask pg_receivewal to flush what it has and exit (SIGINT), and continue it (SIGCONT) in
    case it was stopped: a stopped receiver keeps the SIGINT pending, so the caller (the
    agent's loop) would wait :data:`STOP_TIMEOUT` for nothing and then kill it."""
    process.send_signal(signal.SIGINT)
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGCONT)


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that makes the child receive SIGTERM when its parent thread dies (Linux)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return arm


class StreamingSupervisor:
    """Runs ``pg_receivewal`` for one cluster, restarts it when it dies, archives what it wrote.

    ``on_event(kind, severity, message)`` receives: ``slot_created``, ``receiver_started``,
    ``receiver_died`` (exit code and its last message), ``receiver_restarted``,
    ``receiver_stopped``, ``synchronous_set``, ``synchronous_active``,
    ``synchronous_conflict``, ``synchronous_cleared``, ``receiver_not_synchronous``,
    ``streaming_setup_failed``, ``stream_archive_failed`` and ``streaming_error``.
    Nothing raises out of :meth:`tick`.
    """

    def __init__(self, config: Config, cluster: str, storage: Storage,
                 on_event: EventSink | None = None) -> None:
        entry = config.cluster(cluster)
        self.config = config
        self.cluster = cluster
        self.settings = entry
        self.storage = storage
        self.on_event = on_event
        self.directory = config.streaming_directory(cluster)
        self.synchronous = entry.synchronous_streaming
        self.slot = entry.streaming.slot
        self.application_name = entry.streaming.application_name
        self.codec = Codec(config.compression.algorithm, config.compression.level)  # type: ignore[arg-type]
        self._active = False
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._started_at = 0.0
        self._next_launch = 0.0
        self._failures = 0  # consecutive exits of short-lived receivers
        self._launches = 0
        self._last_exit: int | None = None
        self._last_error: str | None = None
        self._next_observe = 0.0
        self._synchronous_since: float | None = None  # when the current receiver was made sync
        self._sync_state: str | None = None
        self._flushed_lsn: str | None = None
        self._lag: int | None = None
        self._pushed: set[str] = set()
        self._push_retry: dict[str, float] = {}
        self._archived = 0
        self._emitted: dict[str, float] = {}  # repeat key -> when last recorded
        self._restart_requested = False

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Create the directory and the slot and launch the receiver (retried by tick if it fails)."""
        if os.geteuid() == 0 and self.config.os_user != "root":
            raise UsageError(f"streaming for cluster '{self.cluster}' must run as os_user "
                             f"'{self.config.os_user}', not root (its files are read by wal-get)")
        self._active = True
        self._next_launch = 0.0
        self.tick()

    def tick(self) -> None:
        """Restart the receiver if it died (with backoff), archive complete segments, observe."""
        if not self._active:
            return
        try:
            self._supervise()
            self.archive_streamed()
            self._observe()
        except Exception as exc:  # the agent's loop must survive anything
            self._emit("streaming_error", "error", f"cluster '{self.cluster}': streaming "
                       f"supervision failed: {type(exc).__name__}: {exc}", repeat_key="error")

    def stop(self) -> None:
        """Stop the receiver (it flushes what it has) and archive its complete segments."""
        self._active = False
        process = self._process
        if process is not None and self._end_receiver():
            self._emit("receiver_stopped", "warning" if self.synchronous else "info",
                       f"cluster '{self.cluster}': pg_receivewal "
                       f"(pid {process.pid}) stopped" + (
                           "; synchronous_standby_names still names it, so commits on the "
                           "primary wait until it runs again" if self.synchronous else ""))
        self._process = None
        try:
            self.archive_streamed()
        except Exception as exc:
            self._emit("streaming_error", "error", f"cluster '{self.cluster}': archiving streamed "
                       f"WAL failed: {type(exc).__name__}: {exc}")

    def request_restart(self) -> None:
        """Ask :meth:`tick` to stop the receiver and start it again at once (any thread may
        ask; the receiver is started by the thread that ticks, see the module's note)."""
        self._restart_requested = True
        self._next_launch = 0.0

    def restart(self, timeout: float = 30.0) -> str:
        """Restart the receiver (stop it if it runs, start it again with the same slot) and
        wait up to ``timeout`` seconds until the ticking thread has started it; what was done.

        Called from another thread than the one that ticks (the agent's remediation). The
        receiver keeps its slot, so it resumes where the slot stands."""
        if not self._active:
            raise UsageError(f"streaming of cluster '{self.cluster}' is not running in this "
                             "agent (it was stopped or never started)")
        process = self._process
        before = (f"pg_receivewal (pid {process.pid}) was running"
                  if process is not None and process.poll() is None else
                  "pg_receivewal was not running" + (
                      f" (last exit code {self._last_exit}: {self._last_error})"
                      if self._last_exit is not None else
                      f" ({self._last_error})" if self._last_error else ""))
        launches = self._launches
        self.request_restart()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self._process
            if self._launches > launches and current is not None and current.poll() is None:
                return (f"{before}; restarted as pid {current.pid} with slot '{self.slot}' "
                        f"into {self.directory}")
            time.sleep(0.05)
        raise ClusterSetupError(
            f"{before}; the restart of pg_receivewal for cluster '{self.cluster}' did not happen "
            f"within {timeout:g}s" + (f": {self._last_error}" if self._last_error else ""))

    def status(self) -> StreamingStatus:
        process = self._process
        running = process is not None and process.poll() is None
        return StreamingStatus(
            cluster=self.cluster, pid=process.pid if process is not None else None,
            running=running, restarts=max(0, self._launches - 1), synchronous=self.synchronous,
            sync_state=self._sync_state if running else None, flushed_lsn=self._flushed_lsn,
            lag_bytes=self._lag if running else None, last_exit_code=self._last_exit,
            last_error=self._last_error, archived_segments=self._archived)

    # -- the receiver -------------------------------------------------------------------

    def _supervise(self) -> None:
        if self._restart_requested:
            self._restart_requested = False
            self._stop_for_restart()
        process = self._process
        if process is not None:
            code = process.poll()
            if code is None:
                if time.monotonic() - self._started_at >= STABLE_AFTER:
                    self._failures = 0
                return
            self._reap(process, code)
        if time.monotonic() < self._next_launch:
            return
        try:
            self._prepare()
            self._spawn()
        except LifeboatError as exc:
            self._failed_launch(str(exc))

    def _prepare(self) -> None:
        """The directory and the slot; in asynchronous mode, no synchronous setting of ours."""
        try:
            self.directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        except OSError as exc:
            raise ClusterSetupError(f"cannot create the streaming directory {self.directory}: "
                                    f"{exc.strerror}") from None
        with postgres.connect_cluster(self.settings, self.cluster) as conn:
            self._ensure_slot(conn)
            if not self.synchronous:
                self._clear_synchronous(conn)

    def _command(self) -> list[str]:
        info = clusterinfo.read(self.storage, self.cluster)
        binary = server.bin_dir_for(info.pg_version, self.settings.bin_dir) / "pg_receivewal"
        if not binary.exists():
            raise ClusterSetupError(f"{binary} not found: set bin_dir in [clusters.{self.cluster}]")
        dsn = conninfo(host=self.settings.host, port=self.settings.port, user=self.settings.user,
                       application_name=self.application_name,
                       connect_timeout=max(1, int(self.settings.connect_timeout)))
        return [str(binary), "--directory", str(self.directory), "--slot", self.slot,
                "--dbname", dsn, "--no-loop", "--no-password", "--verbose",
                *(["--synchronous"] if self.synchronous else [])]

    def _spawn(self) -> None:
        command = self._command()
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True,
                env=os.environ | {"PGAPPNAME": self.application_name},
                preexec_fn=_parent_death_signal())
        except OSError as exc:
            raise ClusterSetupError(f"cannot run {command[0]}: {exc.strerror}") from None
        self._stderr = collections.deque(maxlen=20)
        assert process.stderr is not None
        self._reader = threading.Thread(target=_collect, args=(process.stderr, self._stderr),
                                        name=f"pg_receivewal-{self.cluster}", daemon=True)
        self._reader.start()
        self._process = process
        self._started_at = time.monotonic()
        self._launches += 1
        self._synchronous_since = None
        self._next_observe = self._started_at + 0.2
        self._emitted.pop("setup", None)
        mode = "synchronous" if self.synchronous else "asynchronous"
        if self._launches == 1:
            self._emit("receiver_started", "info", f"cluster '{self.cluster}': pg_receivewal "
                       f"started (pid {process.pid}, slot '{self.slot}', {mode}) into {self.directory}")
        else:
            self._emit("receiver_restarted", "info", f"cluster '{self.cluster}': pg_receivewal "
                       f"restarted (pid {process.pid}, restart {self._launches - 1})",
                       repeat_key="restarted" if self._failures > 1 else None)

    def _end_receiver(self) -> bool:
        """Interrupt a running receiver (it flushes what it has), kill it if it does not end
        within STOP_TIMEOUT, and wait for its output reader; False when none was running."""
        process = self._process
        if process is None or process.poll() is not None:
            return False
        _interrupt(process)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._reader is not None:
            self._reader.join(1.0)
        return True

    def _stop_for_restart(self) -> None:
        """Stop a running receiver (it flushes what it has) for :meth:`restart`; the launch
        that follows at once is not counted as a failure."""
        process = self._process
        if process is not None and self._end_receiver():
            self._emit("receiver_stopped", "info", f"cluster '{self.cluster}': pg_receivewal "
                       f"(pid {process.pid}) stopped to be restarted")
        elif process is not None:
            self._last_exit = process.returncode
        self._process = None
        self._sync_state = None
        self._lag = None
        self._failures = 0
        self._next_launch = 0.0

    def _reap(self, process: subprocess.Popen[bytes], code: int) -> None:
        if self._reader is not None:
            self._reader.join(1.0)
        ran = time.monotonic() - self._started_at
        self._process = None
        self._sync_state = None
        self._lag = None
        if not self._active:
            return
        self._failures = 1 if ran >= STABLE_AFTER else self._failures + 1
        delay = min(BACKOFF_MAX, 2.0 ** (self._failures - 1))
        self._next_launch = time.monotonic() + delay
        last = self._stderr[-1] if self._stderr else "(it printed nothing)"
        self._last_exit = code
        self._last_error = last
        waiting = ("; commits on the primary wait until it is back" if self.synchronous else "")
        self._emit("receiver_died", "critical" if self.synchronous else "error",
                   f"cluster '{self.cluster}': pg_receivewal (pid {process.pid}) exited with code "
                   f"{code} after {ran:.1f}s: {last}; restarting in {delay:g}s{waiting}",
                   repeat_key=f"died:{code}:{last}")

    def _failed_launch(self, message: str) -> None:
        self._failures += 1
        delay = min(BACKOFF_MAX, 2.0 ** (self._failures - 1))
        self._next_launch = time.monotonic() + delay
        self._last_error = message
        self._emit("streaming_setup_failed", "critical" if self.synchronous else "error",
                   f"cluster '{self.cluster}': cannot start pg_receivewal: {message} "
                   f"(retrying in {delay:g}s)", repeat_key="setup")

    # -- the primary's side -------------------------------------------------------------

    def _ensure_slot(self, conn: psycopg.Connection) -> None:
        if ensure_slot(conn, self.cluster, self.slot):
            self._emit("slot_created", "info", f"cluster '{self.cluster}': physical replication "
                       f"slot '{self.slot}' created (it keeps WAL on the primary until the "
                       "receiver has it)")

    def _set_standby_names(self, conn: psycopg.Connection, value: str | None) -> None:
        from psycopg import sql

        if value is None:
            conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
        else:
            conn.execute(sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(
                sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")

    def _ensure_synchronous(self, conn: psycopg.Connection) -> None:
        current = str(postgres.value(conn, "SHOW synchronous_standby_names") or "")
        names = standby_names(current)
        if self.application_name.lower() in names or "*" in names:
            return
        if names:
            self._emit("synchronous_conflict", "critical",
                       f"cluster '{self.cluster}': synchronous_standby_names is '{current}', "
                       f"which does not name the receiver '{self.application_name}': left as it "
                       "is, so commits do not wait for the streamed copy (RPO 0 is not "
                       f"guaranteed); add '{self.application_name}' to it", repeat_key="conflict")
            return
        value = f'"{self.application_name}"'
        self._set_standby_names(conn, value)
        self._emit("synchronous_set", "info", f"cluster '{self.cluster}': synchronous_standby_names "
                   f"set to '{value}' (was empty): commits now wait until pg_receivewal has "
                   "flushed their WAL")

    def _clear_synchronous(self, conn: psycopg.Connection) -> None:
        current = str(postgres.value(conn, "SHOW synchronous_standby_names") or "")
        if standby_names(current) == [self.application_name.lower()]:
            self._set_standby_names(conn, None)
            self._emit("synchronous_cleared", "warning", f"cluster '{self.cluster}': streaming is "
                       f"asynchronous, so synchronous_standby_names ('{current}') was reset")

    def _observe(self) -> None:
        """Read the receiver's row in pg_stat_replication; make it synchronous once connected."""
        process = self._process
        now = time.monotonic()
        if process is None or process.poll() is not None or now < self._next_observe:
            return
        self._next_observe = now + 0.5  # until it is seen (and synchronous when it should be)
        try:
            with postgres.connect_cluster(self.settings, self.cluster) as conn:
                found = conn.execute(
                    "SELECT sync_state, flush_lsn::text, "
                    "pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::bigint "
                    "FROM pg_stat_replication WHERE application_name = %s "
                    "ORDER BY backend_start DESC LIMIT 1", (self.application_name,)).fetchone()
                if found is not None and self.synchronous and self._synchronous_since is None:
                    self._ensure_synchronous(conn)
                    self._synchronous_since = now
        except LifeboatError:
            return  # the primary is down or busy: the receiver's own exit tells more
        if found is None:
            return
        state, flushed, lag = found
        settled = not self.synchronous or state in ("sync", "quorum")
        if settled:
            self._next_observe = now + OBSERVE_INTERVAL
        if self.synchronous and settled and self._sync_state != state:
            self._emit("synchronous_active", "info", f"cluster '{self.cluster}': pg_receivewal "
                       f"is a synchronous standby ({state}): commits wait for the streamed copy",
                       repeat_key="active")
        elif not settled and self._synchronous_since is not None \
                and now - self._synchronous_since > SYNC_GRACE:
            self._next_observe = now + OBSERVE_INTERVAL
            self._emit("receiver_not_synchronous", "critical", f"cluster '{self.cluster}': "
                       f"pg_receivewal is connected as '{state}', not synchronous: commits do not "
                       "wait for it (check synchronous_standby_names)", repeat_key="not-sync")
        self._sync_state = state
        self._flushed_lsn = flushed or self._flushed_lsn
        self._lag = None if lag is None else int(lag)

    # -- archiving ----------------------------------------------------------------------

    def archive_streamed(self) -> int:
        """Push complete segments (and history files) into the repository; prune those pushed.

        Returns how many were pushed. The newest :data:`KEEP_SEGMENTS` complete segments stay
        (pg_receivewal resumes after the newest one it finds).
        """
        try:
            entries = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return 0
        now = time.monotonic()
        pushed = 0
        for name in entries:
            if name in self._pushed or not (wal.is_segment(name) or wal.is_history(name)):
                continue
            if self._push_retry.get(name, 0.0) > now:
                continue
            try:
                archive.push(self.storage, self.cluster, self.directory / name, self.codec)
            except LifeboatError as exc:
                self._push_retry[name] = now + PUSH_RETRY
                self._emit("stream_archive_failed", "error", f"cluster '{self.cluster}': cannot "
                           f"archive streamed {name} (retrying in {PUSH_RETRY:g}s): {exc}",
                           repeat_key=f"push:{name}")
                continue
            self._push_retry.pop(name, None)
            self._pushed.add(name)
            self._archived += 1
            pushed += 1
        segments = [name for name in entries if wal.is_segment(name)]
        for name in segments[:-KEEP_SEGMENTS]:
            if name in self._pushed:
                try:
                    os.unlink(self.directory / name)
                except FileNotFoundError:
                    pass
                self._pushed.discard(name)
        return pushed

    # -- events -------------------------------------------------------------------------

    def _emit(self, kind: str, severity: str, message: str, repeat_key: str | None = None) -> None:
        """Record an event; another with the same ``repeat_key`` waits EVENT_REPEAT seconds."""
        if repeat_key is not None:
            now = time.monotonic()
            last = self._emitted.get(repeat_key)
            if last is not None and now - last < EVENT_REPEAT:
                return
            self._emitted[repeat_key] = now
        if self.on_event is not None:
            try:
                self.on_event(kind, severity, message)
            except Exception:  # a broken recorder must not stop streaming
                pass


def ensure_slot(conn: psycopg.Connection, cluster: str, slot: str) -> bool:
    """Create the physical replication slot ``slot`` (reserving WAL at once) unless it
    exists; True when it was created. ClusterSetupError when a logical slot has the name."""
    kind = postgres.value(conn, "SELECT slot_type FROM pg_replication_slots WHERE slot_name = %s",
                          (slot,))
    if kind is None:
        conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
        return True
    if kind != "physical":
        raise ClusterSetupError(f"replication slot '{slot}' exists but is {kind}: set "
                                f"another slot in [clusters.{cluster}.streaming]")
    return False


def _collect(stream: IO[bytes], lines: collections.deque[str]) -> None:
    """Keep the last lines pg_receivewal writes to stderr (for the event when it dies)."""
    for raw in stream:
        line = raw.decode(errors="replace").strip()
        if line:
            lines.append(line)
    stream.close()
