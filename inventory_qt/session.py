"""A signed-in user: the open database, the thread that works on it, the password, the settings.

Everything that touches the disk runs on the session's database thread
(:meth:`Session.run`), so the GUI thread never waits on a commit; the
listener and the replicators run in the session's sync engine
(:attr:`Session.engine`: a child process on the same database directory,
see :mod:`inventory_qt.engine_process`). Every committed transaction, local,
replicated or from another process, reaches the GUI thread as one
:class:`~engine.changes.Changes` on :attr:`Session.changed` (a queued Qt
signal), and each model decides whether to refresh (Anki ``OpChanges``).
What the engine process commits is announced at once: it sends the document
IDs over its pipe, and the session's handle looks for them on the database
thread (:meth:`~engine.db_core.DatabaseCore.poll_external_changes`); what the
app saves is pushed at once: the engine process is told to look.

The password lives here, in memory, for as long as the session: it is the
credential sent to other peers' listeners, and the default allow list of our
own listener. It is never written, logged or shown by ``repr``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from PySide6.QtCore import QObject, Qt, Signal

from engine.changes import Changes, ChangeSource
from engine.database import Database
from engine.errors import InvalidUserNameError
from engine.replication.db_runner import DbRunner
from engine.replication.external_changes import follow_external_changes
from engine.userdata import encode_user_name, open_user_database
from inventory_qt import engine_process
from inventory_qt.engine_process import EngineClient
from inventory_qt.engine_thread import EngineThread
from inventory_qt.settings import Settings, load_settings, save_settings

__all__ = ["Session", "open_session"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class Session(QObject):
    """One user's open inventory. Create with :func:`open_session`; end with :meth:`close`."""

    #: every committed transaction of the database (on the GUI thread)
    changed = Signal(object)
    #: the settings were replaced (:meth:`update_settings`)
    settingsChanged = Signal(object)  # noqa: N815
    #: carries Changes from the committing thread to the GUI thread
    _relay = Signal(object)

    def __init__(self, user: str, password: str, data_dir: Path | None, db: Database, runner: DbRunner) -> None:
        super().__init__()
        self.user = user
        self._password = password
        self.data_dir = data_dir
        self.db = db
        self._runner = runner
        self.settings = Settings()
        #: where the listener and the replicators run (see :mod:`inventory_qt.engine_process`)
        self.engine = EngineClient(db, user, password)
        self._discovery_thread: EngineThread | None = None
        self._closed = False
        self._relay.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        self._remove_listener = db.add_change_listener(self._on_commit)
        self._follower: asyncio.Task[None] | None = None
        self._looking: asyncio.Task[None] | None = None
        self._look_again = False
        if self.engine.mode == "process":
            self.engine.committed.connect(self._engine_committed)

    def __repr__(self) -> str:
        return f"Session(user={self.user!r}, password=<hidden>)"

    @property
    def password(self) -> str:
        """The signed-in user's password (memory only)."""
        return self._password

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has run."""
        return self._closed

    def _on_commit(self, changes: Changes) -> None:
        """On the committing thread: to the GUI thread; a save of ours is pushed at once."""
        self._relay.emit(changes)
        if changes.source is ChangeSource.LOCAL:
            self.engine.poke()

    def _deliver(self, changes: Changes) -> None:
        if not self._closed:
            self.changed.emit(changes)

    def _engine_committed(self, _changes: Changes) -> None:
        """The engine process committed: look now (one look at a time, one more if asked meanwhile)."""
        self._look_again = True
        if not self._closed and (self._looking is None or self._looking.done()):
            self._looking = asyncio.ensure_future(self._look())

    async def _look(self) -> None:
        while self._look_again and not self._closed:
            self._look_again = False
            try:
                await self.run(self.db.poll_external_changes)  # announces them on ``changed``
            except Exception as exc:  # closed meanwhile; the follower retries otherwise
                log.debug("cannot look for the engine's changes: %s", exc)
                return

    @property
    def discovery_thread(self) -> EngineThread:
        """Where the app's discovery runs (the Browser tab's peer browser, the listener's advert).

        A thread of the app's own (started on first use): zeroconf's work stays off
        the GUI loop, and it is light, so it need not live in the engine process.
        """
        if self._discovery_thread is None:
            self._discovery_thread = EngineThread("discovery")
        return self._discovery_thread

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` on the database thread; return its result (or raise its exception)."""
        return await self._runner.run(fn, *args, **kwargs)

    def follow_other_processes(self) -> None:
        """Announce changes other processes commit to the same files (``inventory-sync set``...)."""
        if self._follower is None:
            self._follower = asyncio.create_task(follow_external_changes(self.db, self._runner), name="app follower")

    def update_settings(self, settings: Settings) -> asyncio.Future[None]:
        """Use new settings at once and tell whoever shows them; store them off the GUI thread.

        In effect before the write (two updates in a row build on each other); await the
        returned future for the write.
        """
        self.settings = settings
        self.settingsChanged.emit(settings)
        return asyncio.ensure_future(self.run(save_settings, self.db, settings))

    async def close(self) -> None:
        """Stop the sync engine and following changes, close the database on its thread. Idempotent.

        Stop the listener and the replicators first (they stop cleanly, saving checkpoints);
        whatever still runs on the engine's loop here is cancelled.
        """
        if self._closed:
            return
        self._closed = True
        self._remove_listener()
        if self._follower is not None:
            self._follower.cancel()
        if self._looking is not None:
            self._looking.cancel()
        try:
            await self.engine.stop()
            if self._discovery_thread is not None:
                await self._discovery_thread.stop()
        finally:
            await self._close_database()

    async def _close_database(self) -> None:
        try:
            await self._runner.run(self.db.close)
        finally:
            self._runner.close()
            self._password = ""


def _open(user: str, data_dir: Path | None) -> tuple[Database, Settings]:
    db = open_user_database(user, data_dir)  # creates and seeds the starter list on first use
    try:
        return db, load_settings(db)
    except BaseException:
        db.close()
        raise


def _close_opened(opening: asyncio.Future[tuple[Database, Settings]]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result()[0].close()


async def open_session(user: str, password: str, data_dir: Path | None) -> Session:
    """Open (creating and seeding on first use) ``user``'s database off the GUI thread.

    Raises:
        InvalidUserNameError: the name cannot name a database.
        StorageError: the database cannot be opened.
    """
    user = user.strip()
    encode_user_name(user)  # a bad name is refused before any thread starts
    if not password:
        raise InvalidUserNameError("enter a password")
    runner = DbRunner(threaded=True)
    opening = asyncio.ensure_future(runner.run(_open, user, data_dir))
    try:
        db, settings = await asyncio.shield(opening)
    except asyncio.CancelledError:  # signing in was abandoned: close what the thread opens
        opening.add_done_callback(_close_opened)
        runner.close()
        raise
    except BaseException:
        runner.close()
        raise
    session = Session(user, password, data_dir, db, runner)
    session.settings = settings
    if engine_process.START_AT_SIGN_IN:
        session.engine.start()  # its imports run while the window fills in
    log.info("signed in as %r", user)
    return session
