"""The sync engine's side of the app: the listener and replicators of one signed-in user. No Qt here.

:class:`EngineHost` runs them on the running asyncio loop and talks only in
the messages of :mod:`inventory_qt.engine_protocol`. The app runs it in a
child process (:func:`child_main`, started by
:mod:`inventory_qt.engine_process` with multiprocessing's "spawn" context):
the replication's Python work then holds that process's GIL, not the GUI's,
and the window stays responsive during a large pull (docs/notes.md). The
child opens the same database directory as the app (LMDB serves several
processes); every transaction the child commits is sent to the app at once
(:class:`~inventory_qt.engine_protocol.Committed`), and a :class:`Poke` from
the app (it saved) makes the child look for the app's commit now rather
than at its next poll, so a save is pushed at once.

A replication bound to a discovered peer (``ConnectPeer.follow``) follows it
by its peer ID wherever it listens: the host browses the local network itself
(one :class:`~engine.replication.discovery.PeerBrowser`, started at the first
such replication) and gives the replicator the browser's endpoint.

With ``ENGINE_MODE = "thread"`` (:mod:`inventory_qt.engine_process`) the
same host runs on a thread of the app, with the app's own database handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from engine.changes import Changes, ChangeSource
from engine.database import Database
from engine.replication import event_loop, tuning
from engine.replication.discovery import PeerBrowser, PeerEndpoint
from engine.replication.errors import ConfigurationError
from engine.replication.listener import URLEndpointListener
from engine.replication.replicator import Replicator
from engine.replication.trust_store import TRUST_STORE_FILE
from engine.userdata import open_database
from inventory_qt import engine_config
from inventory_qt.engine_config import listener_setup, replicator_configuration
from inventory_qt.engine_protocol import (
    Committed,
    ConnectPeer,
    DisconnectPeer,
    Hello,
    ListenerClient,
    ListenerInfo,
    ListenerStatusEvent,
    LogLine,
    Poke,
    RemovePeer,
    ReplicatorStatusEvent,
    Reply,
    Shutdown,
    StartListener,
    StopListener,
    encode_error,
)

__all__ = ["EngineHost", "child_main"]

log = logging.getLogger(__name__)

#: Seconds the host gives each listener or replicator to stop when it closes.
CLOSE_TIMEOUT = 3.0

Send = Callable[[object], None]


class EngineHost:
    """The listener and the replicators of one database, driven by messages (see the module docstring)."""

    def __init__(self, db: Database, user: str, password: str, send: Send, *, forward_commits: bool) -> None:
        self._db = db
        self._user = user
        self._password = password
        self._send = send
        self._listener: URLEndpointListener | None = None
        self._replicators: dict[int, Replicator] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: browsers for replications that follow a discovered peer, by the interfaces they browse
        self._browsers: dict[tuple[str, ...] | None, PeerBrowser] = {}
        #: replications waiting for their browser to start (a Disconnect meanwhile cancels the start)
        self._following: set[int] = set()
        self._remove_commit_listener = db.add_change_listener(self._on_commit) if forward_commits else None

    def __repr__(self) -> str:
        return f"EngineHost({self._db.path}, user={self._user!r}, password=<hidden>)"

    def _on_commit(self, changes: Changes) -> None:
        # what other processes (the app) committed, the app knows already
        if changes.source is not ChangeSource.EXTERNAL:
            self._send(Committed.of(changes))

    def handle(self, message: object) -> None:
        """Act on one command (on the host's loop); requests are answered by a Reply when done."""
        if isinstance(message, Poke):
            self._db.poll_external_changes()
        elif isinstance(message, ConnectPeer):
            if message.follow and message.key not in self._replicators:
                self._following.add(message.key)  # now: a Disconnect read next must find it
                self._spawn(self._connect_following(message))
            else:
                self._connect(message)
        elif isinstance(message, StartListener | StopListener | DisconnectPeer | RemovePeer):
            if isinstance(message, DisconnectPeer | RemovePeer):
                self._following.discard(message.key)
            self._spawn(self._answer(message))
        else:
            log.warning("unknown command %s", type(message).__name__)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: StartListener | StopListener | DisconnectPeer | RemovePeer) -> None:
        try:
            value = await self._run(message)
        except Exception as exc:
            self._send(Reply(message.req, error=encode_error(exc)))
        else:
            self._send(Reply(message.req, value))

    async def _run(self, message: object) -> Any:
        if isinstance(message, StartListener):
            return await self._start_listener(message)
        if isinstance(message, StopListener):
            listener, self._listener = self._listener, None
            if listener is not None:
                await listener.stop()
        elif isinstance(message, DisconnectPeer | RemovePeer):
            replicator = self._replicators.get(message.key)
            if replicator is not None:
                await replicator.stop()
            if isinstance(message, RemovePeer):
                self._replicators.pop(message.key, None)
        return None

    async def _start_listener(self, message: StartListener) -> ListenerInfo:
        if self._listener is not None:  # the app lost track (it should not): start afresh
            await self._listener.stop()
            self._listener = None
        setup = listener_setup(self._db, message.settings, self._user, self._password)
        if message.host is not None:
            setup.configuration.host = message.host
        listener = URLEndpointListener(setup.configuration)
        listener.add_status_listener(lambda status: self._send(ListenerStatusEvent.of(status)))
        listener.add_connection_listener(lambda event: self._send(ListenerClient.of(event)))
        await listener.start()
        self._listener = listener
        config = listener.config
        return ListenerInfo(tuple(listener.urls), listener.port, setup.fingerprint, config.host, config.database_name)

    async def _connect_following(self, message: ConnectPeer) -> None:
        """Start a replication that follows a discovered peer, once the browser it asks runs."""
        try:
            browser = self._browsers.get(message.interfaces)
            if browser is None:
                browser = PeerBrowser(
                    own_peer_id=self._db.peer_id,
                    interfaces=list(message.interfaces) if message.interfaces is not None else None,
                )
                self._browsers[message.interfaces] = browser
                await browser.start()
        except Exception as exc:  # zeroconf cannot start: the row says why
            self._browsers.pop(message.interfaces, None)
            self._send(ReplicatorStatusEvent(message.key, 0, 0, 0, encode_error(exc), None))
            return
        finally:
            wanted = message.key in self._following
            self._following.discard(message.key)
        if wanted and message.remote_name is not None:
            self._connect(message, browser.endpoint(message.remote_name))

    def _connect(self, message: ConnectPeer, endpoint: PeerEndpoint | None = None) -> None:
        replicator = self._replicators.get(message.key)
        if replicator is None:
            try:
                config = replicator_configuration(
                    self._db,
                    message.url,
                    message.settings,
                    self._user,
                    self._password,
                    remote_name=message.remote_name,
                    endpoint=endpoint,
                    trust_store=self._db.path / TRUST_STORE_FILE,
                )
                replicator = Replicator(config)
            except (ValueError, ConfigurationError) as exc:  # the app checked; a file may have gone since
                error = exc if isinstance(exc, ConfigurationError) else ConfigurationError(str(exc))
                self._send(ReplicatorStatusEvent(message.key, 0, 0, 0, encode_error(error), None))
                return
            key = message.key
            replicator.add_change_listener(
                lambda status: self._send(ReplicatorStatusEvent.of(key, status, replicator.pulled))
            )
            self._replicators[key] = replicator
        replicator.start(reset_checkpoint=message.reset_checkpoint)

    async def close(self) -> None:
        """Stop the listener and every replicator (each within CLOSE_TIMEOUT), stop forwarding commits."""
        stops = [r.stop() for r in self._replicators.values()]
        if self._listener is not None:
            stops.append(self._listener.stop())
        self._replicators.clear()
        self._listener = None
        for task in list(self._tasks):
            task.cancel()
        stops += [browser.stop() for browser in self._browsers.values()]
        self._browsers.clear()
        self._following.clear()
        results = await asyncio.gather(
            *(asyncio.wait_for(stop, CLOSE_TIMEOUT) for stop in stops), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.warning("while stopping the engine: %s: %s", type(result).__name__, result)
        if self._remove_commit_listener is not None:
            self._remove_commit_listener()
        self._password = ""


# -- the child process --------------------------------------------------------------------------


class _PipeLogHandler(logging.Handler):
    """Hands the child's log records to the app, formatted here (the engine never logs secrets)."""

    def __init__(self, send: Send) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self._send(LogLine(record.name, record.levelno, message))
        except Exception:
            self.handleError(record)


def _locked_sender(conn: Connection) -> Send:
    lock = threading.Lock()

    def send(message: object) -> None:
        with lock, contextlib.suppress(OSError):  # the app is gone: nobody to tell
            conn.send(message)

    return send


def child_main(conn: Connection) -> None:
    """The engine process: read Hello, then serve commands until Shutdown or until the app is gone."""
    send = _locked_sender(conn)
    try:
        hello = conn.recv()
    except (EOFError, OSError):
        return
    if not isinstance(hello, Hello):
        return
    root = logging.getLogger()
    root.handlers[:] = [_PipeLogHandler(send)]
    root.setLevel(hello.log_level)
    engine_config.THREADED_DATABASE = hello.threaded_database
    if hello.external_changes_interval is not None:
        tuning.EXTERNAL_CHANGES_INTERVAL = hello.external_changes_interval
    try:
        event_loop.run(_serve(conn, send, hello))
    finally:
        conn.close()


def _read_commands(conn: Connection, loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue[object]) -> None:
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the app ended (or closed its end): stop
            message = None
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, message)
        except RuntimeError:  # the loop is closed
            return
        if message is None or isinstance(message, Shutdown):
            return


async def _serve(conn: Connection, send: Send, hello: Hello) -> None:
    try:
        db = await asyncio.to_thread(open_database, Path(hello.path))
    except Exception:
        log.exception("the sync engine cannot open %s", hello.path)
        return
    host = EngineHost(db, hello.user, hello.password, send, forward_commits=True)
    inbox: asyncio.Queue[object] = asyncio.Queue()
    threading.Thread(
        target=_read_commands, args=(conn, asyncio.get_running_loop(), inbox), name="commands", daemon=True
    ).start()
    shutdown: Shutdown | None = None
    try:
        while True:
            message = await inbox.get()
            if message is None:
                break
            if isinstance(message, Shutdown):
                shutdown = message
                break
            try:
                host.handle(message)
            except Exception:
                log.exception("the engine could not handle %s", type(message).__name__)
    finally:
        await host.close()
        db.close()
        if shutdown is not None:
            send(Reply(shutdown.req))
