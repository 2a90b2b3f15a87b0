"""The app's end of its sync engine: a child process (the default) or a thread, as Qt signals.

During a 50,000-document pull the replication's Python work, on a thread of
the app, stalled the GUI thread 20-56 ms at a time waiting for the GIL
(docs/notes.md). So the listener and the replicators of a session run in a
child process (:func:`inventory_qt.engine_host.child_main`), started with
multiprocessing's "spawn" context at sign-in (or on first use) and talked to over a
:func:`multiprocessing.Pipe` in the messages of
:mod:`inventory_qt.engine_protocol`. A reader thread here waits on the pipe
and re-emits each message on a queued signal, so everything the bridges see
arrives on the GUI thread.

If the child ends unexpectedly, :attr:`EngineClient.ended` carries an
:class:`~inventory_qt.engine_protocol.EngineStoppedError` (the bridges show it
in words) and pending requests fail with it; the next request starts a new
child. :meth:`EngineClient.stop` (log out, quitting) asks the child to stop,
then terminates and finally kills it if it does not end in time.

``ENGINE_MODE = "thread"`` runs the same host (:class:`~inventory_qt.engine_host.EngineHost`)
on an :class:`~inventory_qt.engine_thread.EngineThread` of the app instead, with the
app's database handle: what the app did before, kept for comparison (``bench/ui_lag.py
--engine thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal

from PySide6.QtCore import QObject, Qt, Signal

from engine.database import Database
from inventory_qt import engine_config
from inventory_qt.engine_host import EngineHost, child_main
from inventory_qt.engine_protocol import (
    Committed,
    EngineStoppedError,
    Hello,
    ListenerClient,
    ListenerStatusEvent,
    LogLine,
    Poke,
    ReplicatorStatusEvent,
    Reply,
    Shutdown,
    decode_error,
)
from inventory_qt.engine_thread import EngineThread

__all__ = ["ENGINE_MODE", "START_AT_SIGN_IN", "EngineClient"]

log = logging.getLogger(__name__)

#: Where the listener and replicators run: a child process, or a thread of the app.
ENGINE_MODE: Literal["process", "thread"] = "process"
#: Start the child at sign-in (its imports take about a second), rather than at the first Start or Connect.
START_AT_SIGN_IN = True

#: Seconds :meth:`EngineClient.stop` waits for an orderly end before terminating, then killing.
SHUTDOWN_TIMEOUT = 4.0
KILL_TIMEOUT = 2.0
#: Seconds between the engine process's own looks for the app's commits (None: the engine's
#: default); a save pokes it to look at once anyway (tests lengthen it to prove the poke works).
EXTERNAL_CHANGES_INTERVAL: float | None = None


class _Ended:
    """Sentinel message from the reader: the child's end of the pipe closed."""

    __slots__ = ("generation",)

    def __init__(self, generation: int) -> None:
        self.generation = generation


class EngineClient(QObject):
    """Starts the engine on first use, sends it commands, re-emits its events on the GUI thread."""

    #: ListenerStatus
    listenerStatus = Signal(object)  # noqa: N815
    #: ConnectionEvent
    listenerClient = Signal(object)  # noqa: N815
    #: ReplicatorStatusEvent (filtered by key by each bridge)
    replicatorStatus = Signal(object)  # noqa: N815
    #: Changes the engine committed (in a child process: the app's handle has to look)
    committed = Signal(object)
    #: the engine ended unexpectedly (the EngineStoppedError)
    ended = Signal(object)
    #: messages from the reader thread (or the engine thread) to the GUI thread
    _inbox = Signal(object)

    def __init__(self, db: Database, user: str, password: str, *, mode: str | None = None) -> None:
        super().__init__()
        self._db = db
        self._user = user
        self._password = password
        self.mode = mode or ENGINE_MODE
        self._requests = itertools.count(1)
        self._keys = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._send_lock = threading.Lock()
        self._conn: Connection | None = None
        self._process: BaseProcess | None = None
        self._generation = 0
        self._thread: EngineThread | None = None
        self._host: EngineHost | None = None
        self._stopping = False
        self._inbox.connect(self._receive, Qt.ConnectionType.QueuedConnection)

    def __repr__(self) -> str:
        return f"EngineClient({self.mode}, user={self._user!r}, password=<hidden>)"

    # -- starting --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the engine is up (a child process alive, or the thread)."""
        if self.mode == "thread":
            return self._thread is not None and self._thread.running
        return self._conn is not None and self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        """The child process's ID (None in thread mode or before the first use)."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the engine now (sign-in does), so that the first Start or Connect need not wait for it.

        A failure is logged; the first request tries again and says why.
        """
        try:
            self._ensure_started()
        except Exception as exc:
            log.warning("the sync engine could not start: %s", exc)

    def new_key(self) -> int:
        """A key for a new replication (unique within this client)."""
        return next(self._keys)

    def _ensure_started(self) -> None:
        if self._stopping:
            raise EngineStoppedError("signing out: the sync engine is stopping")
        if self.mode == "thread":
            if self._thread is None:
                self._thread = EngineThread()
                self._host = EngineHost(self._db, self._user, self._password, self._inbox.emit, forward_commits=False)
            return
        if self._conn is not None:
            return
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=child_main, args=(theirs,), name=f"inventory-engine {self._user}")
        process.daemon = True  # multiprocessing ends it if the app exits without stopping it
        process.start()
        theirs.close()  # the child holds the only other end: its death reads as EOF here
        self._generation += 1
        self._conn, self._process = ours, process
        # the reader first: a child that dies at once is then noticed (and the next request starts another)
        threading.Thread(target=self._read, args=(ours, self._generation), name="engine pipe", daemon=True).start()
        level = max(logging.getLogger().getEffectiveLevel(), logging.INFO)
        self._send(
            Hello(
                str(self._db.path),
                self._user,
                self._password,
                level,
                engine_config.THREADED_DATABASE,
                EXTERNAL_CHANGES_INTERVAL,
            )
        )
        log.info("sync engine started (process %s)", process.pid)

    def _read(self, conn: Connection, generation: int) -> None:
        """On the reader thread: every message to the GUI thread, then the end."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            except Exception:  # a message that does not unpickle: say so, keep reading
                log.exception("unreadable message from the sync engine")
                continue
            self._inbox.emit(message)
        conn.close()
        self._inbox.emit(_Ended(generation))

    # -- talking ---------------------------------------------------------------------------------

    def _send(self, message: object) -> None:
        if self.mode == "thread":
            assert self._thread is not None and self._host is not None
            self._thread.call_soon(self._host.handle, message)
            return
        conn = self._conn
        if conn is None:
            raise EngineStoppedError("the sync engine is not running")
        with self._send_lock:
            try:
                conn.send(message)
            except OSError as exc:  # it died: the reader says so shortly
                raise EngineStoppedError("the sync engine stopped unexpectedly") from exc

    def send(self, message: object) -> None:
        """Send a command that needs no answer (starting the engine if needed)."""
        self._ensure_started()
        self._send(message)

    async def request(self, make: Any) -> Any:
        """Send ``make(req)`` and await its Reply's value (or its error, rebuilt)."""
        self._ensure_started()
        req = next(self._requests)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req] = future
        try:
            self._send(make(req))
            return await future
        finally:
            self._pending.pop(req, None)

    def poke(self) -> None:
        """The app committed: have a running child look now (never starts one). Any thread."""
        if self.mode == "process" and self._conn is not None and not self._stopping:
            with contextlib.suppress(EngineStoppedError):
                self._send(Poke())

    def _receive(self, message: object) -> None:
        """On the GUI thread: route one message."""
        if isinstance(message, ReplicatorStatusEvent):
            self.replicatorStatus.emit(message)
        elif isinstance(message, Committed):
            self.committed.emit(message.changes())
        elif isinstance(message, Reply):
            future = self._pending.get(message.req)
            if future is not None and not future.done():
                if message.error is not None:
                    future.set_exception(decode_error(message.error))
                else:
                    future.set_result(message.value)
        elif isinstance(message, ListenerStatusEvent):
            self.listenerStatus.emit(message.status())
        elif isinstance(message, ListenerClient):
            self.listenerClient.emit(message.event())
        elif isinstance(message, LogLine):
            logging.getLogger(message.name).log(message.level, "%s", message.message)
        elif isinstance(message, _Ended):
            self._ended(message.generation)

    def _ended(self, generation: int) -> None:
        if generation != self._generation or self._process is None:
            return
        process, self._process, self._conn = self._process, None, None
        code = process.exitcode  # without waiting on the GUI thread: None if it is still ending
        if code is None and not self._stopping:
            threading.Thread(target=process.join, name="engine reaper", daemon=True).start()
        how = f" (exit code {code})" if code is not None else ""
        error = EngineStoppedError(f"the sync engine stopped unexpectedly{how}; Connect or Start starts it again")
        self._fail_pending(error)
        if not self._stopping:
            log.warning("the sync engine (process %s) ended unexpectedly, exit code %s", process.pid, code)
            self.ended.emit(error)

    # -- stopping --------------------------------------------------------------------------------

    async def stop(self) -> None:
        """End the engine: ask first, then terminate, then kill (each within its timeout). Idempotent."""
        self._stopping = True
        self._password = ""
        if self._thread is not None:
            thread, host, self._thread, self._host = self._thread, self._host, None, None
            if host is not None and thread.running:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(thread.call(host.close), SHUTDOWN_TIMEOUT)
            await thread.stop()
        process = self._process
        if process is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.request_stop(), SHUTDOWN_TIMEOUT)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, process.join, KILL_TIMEOUT)
        if process.is_alive():
            log.warning("the sync engine (process %s) did not stop in time: terminating it", process.pid)
            process.terminate()
            await loop.run_in_executor(None, process.join, KILL_TIMEOUT)
        if process.is_alive():
            process.kill()
            await loop.run_in_executor(None, process.join, KILL_TIMEOUT)
        self._process, self._conn = None, None  # the reader closes its end once it reads the end
        self._fail_pending(EngineStoppedError("signed out: the sync engine stopped"))

    def _fail_pending(self, error: EngineStoppedError) -> None:
        """Fail the requests the child did not answer before it ended."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    async def request_stop(self) -> None:
        """Ask the child to stop everything and end (the Reply comes just before it exits)."""
        req = next(self._requests)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req] = future
        try:
            self._send(Shutdown(req))
            await future
        finally:
            self._pending.pop(req, None)
