"""The engine's listener and replicators as QObjects: their events reach widgets only as Qt signals.

The listener and the replicators run in the session's sync engine, a child
process (:mod:`inventory_qt.engine_process`, :mod:`inventory_qt.engine_host`);
the bridges send it commands and await the answers on the GUI loop, and hear
of its events through the session's :class:`~inventory_qt.engine_process.EngineClient`,
whose signals are emitted on the GUI thread, so widgets only ever hear of the
engine on the GUI thread. If the engine process ends unexpectedly, a running
listener stops (:attr:`ListenerBridge.failed` says why) and each replication
shows the error; Start or Connect starts a new engine process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from PySide6.QtCore import QObject, Signal

from engine.replication.listener import ConnectionEvent, ListenerStatus
from engine.replication.replicator_types import ActivityLevel, ReplicatorStatus
from inventory_qt.discovery_bridge import ListenerAdvertising
from inventory_qt.engine_protocol import (
    ConnectPeer,
    DisconnectPeer,
    EngineStoppedError,
    ListenerInfo,
    RemovePeer,
    ReplicatorStatusEvent,
    StartListener,
    StopListener,
)
from inventory_qt.session import Session

__all__ = ["ListenerBridge", "ListenerState", "PeerReplication", "StopTimeoutError"]

log = logging.getLogger(__name__)

#: Seconds a stop may take before the app gives up waiting (log out stays quick).
STOP_TIMEOUT = 5.0


class StopTimeoutError(TimeoutError):
    """A listener or replicator did not stop in time."""


class ListenerState(IntEnum):
    """The Listener tab's state; the buttons follow it."""

    STOPPED = 0
    STARTING = 1
    RUNNING = 2
    STOPPING = 3


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """A client connected or left, with the wall-clock time it happened."""

    connected: bool
    peer: str
    user: str | None
    at: float


class ListenerBridge(QObject):
    """Starts and stops the user's listener; reports its state, counts and clients as signals."""

    stateChanged = Signal(int)  # noqa: N815  (ListenerState)
    countsChanged = Signal(int, int)  # noqa: N815  (connected, active)
    client = Signal(object)  # ClientEvent
    #: the listener stopped by itself (its engine process ended): the exception, for words
    failed = Signal(object)

    def __init__(self, session: Session, *, interfaces: Sequence[str] | None = None) -> None:
        super().__init__()
        self._session = session
        #: the listener's advert on the local network (``interfaces``: see inventory_qt.discovery_bridge)
        self.advertising = ListenerAdvertising(session, interfaces)
        self._info: ListenerInfo | None = None
        self._status = ListenerStatus()
        self._withdrawing: asyncio.Future[None] | None = None
        self._state = ListenerState.STOPPED
        session.engine.listenerStatus.connect(self._on_status)
        session.engine.listenerClient.connect(self._on_connection)
        session.engine.ended.connect(self._on_engine_ended)
        self.fingerprint: str | None = None

    @property
    def advertised(self) -> bool:
        """Whether the listener is advertised on the local network now."""
        return self.advertising.advertised

    @property
    def state(self) -> ListenerState:
        """Stopped, starting, running or stopping."""
        return self._state

    @property
    def urls(self) -> list[str]:
        """The URLs peers can use (empty unless running)."""
        return list(self._info.urls) if self._info is not None else []

    @property
    def port(self) -> int | None:
        """The port listened on, or None."""
        return self._info.port if self._info is not None else None

    @property
    def status(self) -> ListenerStatus:
        """Connected and active client counts."""
        return self._status if self._info is not None else ListenerStatus()

    def _set_state(self, state: ListenerState) -> None:
        if state != self._state:
            self._state = state
            self.stateChanged.emit(int(state))

    async def start(self, *, host: str | None = None) -> None:
        """Start listening with the session's settings; advertise it if they say so (in the background).

        Raises:
            ConfigurationError, OSError: it cannot start (the state goes back to stopped).
        """
        if self._state is not ListenerState.STOPPED:
            return
        self._set_state(ListenerState.STARTING)
        if self._withdrawing is not None:  # the advert of a listener whose engine ended
            await self._withdrawing
            self._withdrawing = None
        await self._start_listener(host)
        if self._info is not None and self._session.settings.listener.advertise:
            self.advertising.start(self._info)
        self._set_state(ListenerState.RUNNING)

    async def restart(self) -> None:
        """Apply new settings: a new listener (port, certificate...) replaces the running one.

        Clients are cut off (continuous replicators come back by themselves); the
        advert stays and is re-announced with the new port and certificate, so
        browsers see the peer change rather than leave, and replicators
        following it reconnect at once.

        Raises:
            ConfigurationError, OSError: the new listener cannot start (the state is then stopped).
        """
        old = self._info
        if old is None or self._state is not ListenerState.RUNNING:
            return
        self._set_state(ListenerState.STOPPING)
        try:
            try:
                await asyncio.wait_for(self._session.engine.request(StopListener), STOP_TIMEOUT)
            except TimeoutError:
                log.warning("the listener did not stop within %.0f s", STOP_TIMEOUT)
            self._info = None
            self._status = ListenerStatus()
            self.countsChanged.emit(0, 0)
            self._set_state(ListenerState.STARTING)
            await self._start_listener(old.host)
        except BaseException:  # it could not stop or start again (the engine may have ended): stopped
            self._stopped()
            await self.advertising.stop()
            raise
        info = self._info
        assert info is not None and info.port is not None
        if not self._session.settings.listener.advertise:
            await self.advertising.stop()
        elif self.advertising.advertised:
            await self.advertising.update(port=info.port, fingerprint=info.fingerprint)
        else:  # not advertised yet, or still probing the old port's advert: advertise the new one
            await self.advertising.stop()
            self.advertising.start(info)
        self._set_state(ListenerState.RUNNING)

    async def _start_listener(self, host: str | None) -> None:
        settings = self._session.settings.listener
        try:
            info: ListenerInfo = await self._session.engine.request(lambda req: StartListener(req, settings, host))
        except BaseException:
            self._set_state(ListenerState.STOPPED)
            raise
        self._info = info
        self._status = ListenerStatus()
        self.fingerprint = info.fingerprint

    async def stop(self) -> None:
        """Close every connection and free the port."""
        if self._info is None or self._state is ListenerState.STOPPING:
            return
        self._set_state(ListenerState.STOPPING)
        try:
            await self.advertising.stop()  # first: browsers should not try a listener going away
            await asyncio.wait_for(self._session.engine.request(StopListener), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("the listener did not stop within %.0f s", STOP_TIMEOUT)
        finally:
            self._stopped()

    def _stopped(self) -> None:
        self._info = None
        self.fingerprint = None
        self._status = ListenerStatus()
        self.countsChanged.emit(0, 0)
        self._set_state(ListenerState.STOPPED)

    def _on_engine_ended(self, error: BaseException) -> None:
        if self._info is not None and self._state is ListenerState.RUNNING:
            self._stopped()
            # the advert named a listener that is gone: withdraw it (a later Start announces the new one)
            self._withdrawing = asyncio.ensure_future(self.advertising.stop())
            self.failed.emit(error)

    def _on_status(self, status: ListenerStatus) -> None:
        if self._info is not None:
            self._status = status
            self.countsChanged.emit(status.connection_count, status.active_connection_count)

    def _on_connection(self, event: ConnectionEvent) -> None:
        self.client.emit(ClientEvent(event.connected, event.peer, event.user, time.time()))


class PeerReplication(QObject):
    """The replicator of one peer row: Connect, Disconnect (keeps it), Reset checkpoint, Remove."""

    statusChanged = Signal(object)  # noqa: N815  (ReplicatorStatus)

    def __init__(
        self,
        session: Session,
        url: str,
        *,
        remote_name: str | None = None,
        follow: bool = False,
        interfaces: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self._session = session
        self.url = url
        self.remote_name = remote_name
        #: a discovered peer: the engine follows it by its peer ID (``remote_name``) wherever it listens,
        #: browsing on ``interfaces`` (None: every interface)
        self.follow = follow and remote_name is not None
        self.interfaces = tuple(interfaces) if interfaces is not None else None
        self._key = session.engine.new_key()
        #: the configuration was checked (and the engine told of this replication)
        self._made = False
        self._status = ReplicatorStatus()
        self._pulled = 0
        #: Disconnect was asked for: the stop is no error to show
        self._stopped_on_request = False
        session.engine.replicatorStatus.connect(self._on_event)
        session.engine.ended.connect(self._on_engine_ended)

    @property
    def status(self) -> ReplicatorStatus:
        """The latest status (stopped before the first connect)."""
        return self._status

    @property
    def running(self) -> bool:
        """Whether it is connecting, connected or waiting to retry."""
        return self._status.activity is not ActivityLevel.STOPPED

    @property
    def pulled(self) -> int:
        """Documents pulled since the replication was made (in this engine process)."""
        return self._pulled

    def _on_event(self, event: ReplicatorStatusEvent) -> None:
        if event.key == self._key:
            self._pulled = event.pulled
            self._on_status(event.status())

    def _on_engine_ended(self, error: BaseException) -> None:
        self._made = False  # a new engine process makes it again
        if self.running:
            self._on_status(ReplicatorStatus(ActivityLevel.STOPPED, self._status.progress, error))  # type: ignore[arg-type]

    def _on_status(self, status: ReplicatorStatus) -> None:
        if status.activity is ActivityLevel.STOPPED and self._stopped_on_request:
            status = ReplicatorStatus(ActivityLevel.STOPPED, status.progress)
        self._status = status
        self.statusChanged.emit(status)

    def connect_peer(self, *, reset_checkpoint: bool = False) -> None:
        """Start (or resume) continuous push and pull with the signed-in credentials.

        The engine builds the configuration (reading certificate files, off the GUI thread);
        one that cannot work comes back as the row's error.
        """
        if self._status.activity is ActivityLevel.STOPPED:
            self._stopped_on_request = False
            self._on_status(ReplicatorStatus(ActivityLevel.CONNECTING))  # at once, not after the engine's turn
            settings = self._session.settings.replicator
            try:
                self._session.engine.send(
                    ConnectPeer(
                        self._key, self.url, settings, self.remote_name, reset_checkpoint, self.follow, self.interfaces
                    )
                )
            except Exception as exc:  # the engine cannot start: the row says why
                self._on_status(ReplicatorStatus(ActivityLevel.STOPPED, error=exc))  # type: ignore[arg-type]
                return
            self._made = True

    async def disconnect_peer(self) -> None:
        """Stop, keeping the replicator: the next Connect resumes from its checkpoint."""
        if self._made:
            self._stopped_on_request = True
            key = self._key
            try:
                await asyncio.wait_for(self._session.engine.request(lambda req: DisconnectPeer(req, key)), STOP_TIMEOUT)
            except TimeoutError:
                raise StopTimeoutError(f"the replication with {self.url} did not stop in time") from None
            self._on_status(ReplicatorStatus())

    async def reset_checkpoint(self) -> None:
        """Start over from the beginning: stop, then connect with the checkpoint reset."""
        await self.disconnect_peer()
        self.connect_peer(reset_checkpoint=True)

    async def remove(self) -> None:
        """Stop and forget the replicator."""
        if self._made:
            self._made = False
            self._stopped_on_request = True
            key = self._key
            with contextlib.suppress(StopTimeoutError, TimeoutError, EngineStoppedError):
                await asyncio.wait_for(self._session.engine.request(lambda req: RemovePeer(req, key)), STOP_TIMEOUT)
            self._on_status(ReplicatorStatus())
