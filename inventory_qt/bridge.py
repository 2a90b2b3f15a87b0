"""The engine's listener and replicators as QObjects: their events reach widgets only as Qt signals.

The listener and the replicators run on the session's engine thread
(:mod:`inventory_qt.engine_thread`); the bridges start and stop them there
and await the outcome on the GUI loop. The engine calls its status listeners
on its own thread; each bridge re-emits the value on a private signal
connected with ``Qt.QueuedConnection`` to a method of the bridge, which lives
on the GUI thread, so widgets only ever hear of the engine on the GUI thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from PySide6.QtCore import QObject, Qt, Signal

from engine.replication.errors import ConfigurationError
from engine.replication.listener import ConnectionEvent, ListenerStatus, URLEndpointListener
from engine.replication.replicator import Replicator
from engine.replication.replicator_types import ActivityLevel, EndpointResolver, ReplicatorStatus
from engine.replication.trust_store import TRUST_STORE_FILE
from inventory_qt.discovery_bridge import ListenerAdvertising
from inventory_qt.engine_config import listener_setup, replicator_configuration
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
    #: from the engine thread to the GUI thread
    _status_relay = Signal(object)
    _client_relay = Signal(object)

    def __init__(self, session: Session, *, interfaces: Sequence[str] | None = None) -> None:
        super().__init__()
        self._session = session
        #: the listener's advert on the local network (``interfaces``: see inventory_qt.discovery_bridge)
        self.advertising = ListenerAdvertising(session, interfaces)
        self._listener: URLEndpointListener | None = None
        self._state = ListenerState.STOPPED
        self._status_relay.connect(self._on_status, Qt.ConnectionType.QueuedConnection)
        self._client_relay.connect(self._on_connection, Qt.ConnectionType.QueuedConnection)
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
        return self._listener.urls if self._listener is not None else []

    @property
    def port(self) -> int | None:
        """The port listened on, or None."""
        return self._listener.port if self._listener is not None else None

    @property
    def status(self) -> ListenerStatus:
        """Connected and active client counts."""
        return self._listener.status if self._listener is not None else ListenerStatus()

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
        await self._start_listener(host)
        if self._listener is not None and self._session.settings.listener.advertise:
            self.advertising.start(self._listener, self.fingerprint)
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
        old = self._listener
        if old is None or self._state is not ListenerState.RUNNING:
            return
        self._set_state(ListenerState.STOPPING)
        host = old.config.host
        try:
            await asyncio.wait_for(self._session.engine.call(old.stop), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("the listener did not stop within %.0f s", STOP_TIMEOUT)
        self._listener = None
        self.countsChanged.emit(0, 0)
        self._set_state(ListenerState.STARTING)
        try:
            await self._start_listener(host)
        except BaseException:
            self.fingerprint = None
            await self.advertising.stop()
            raise
        listener = self._listener
        assert listener is not None and listener.port is not None
        if not self._session.settings.listener.advertise:
            await self.advertising.stop()
        elif self.advertising.advertised:
            await self.advertising.update(port=listener.port, fingerprint=self.fingerprint)
        else:
            self.advertising.start(listener, self.fingerprint)
        self._set_state(ListenerState.RUNNING)

    async def _start_listener(self, host: str | None) -> None:
        session = self._session
        try:
            setup = await session.run(
                listener_setup, session.db, session.settings.listener, session.user, session.password
            )
            if host is not None:
                setup.configuration.host = host
            listener = URLEndpointListener(setup.configuration)
            listener.add_status_listener(self._status_relay.emit)  # called on the engine thread
            listener.add_connection_listener(self._client_relay.emit)
            await session.engine.call(listener.start)
        except BaseException:
            self._set_state(ListenerState.STOPPED)
            raise
        self._listener = listener
        self.fingerprint = setup.fingerprint

    async def stop(self) -> None:
        """Close every connection and free the port."""
        listener = self._listener
        if listener is None or self._state is ListenerState.STOPPING:
            return
        self._set_state(ListenerState.STOPPING)
        try:
            await self.advertising.stop()  # first: browsers should not try a listener going away
            await asyncio.wait_for(self._session.engine.call(listener.stop), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("the listener did not stop within %.0f s", STOP_TIMEOUT)
        finally:
            self._listener = None
            self.fingerprint = None
            self.countsChanged.emit(0, 0)
            self._set_state(ListenerState.STOPPED)

    def _on_status(self, status: ListenerStatus) -> None:
        self.countsChanged.emit(status.connection_count, status.active_connection_count)

    def _on_connection(self, event: ConnectionEvent) -> None:
        self.client.emit(ClientEvent(event.connected, event.peer, event.user, time.time()))


class PeerReplication(QObject):
    """The replicator of one peer row: Connect, Disconnect (keeps it), Reset checkpoint, Remove."""

    statusChanged = Signal(object)  # noqa: N815  (ReplicatorStatus)
    #: from the engine thread to the GUI thread
    _status_relay = Signal(object)

    def __init__(
        self,
        session: Session,
        url: str,
        *,
        remote_name: str | None = None,
        endpoint: EndpointResolver | None = None,
    ) -> None:
        super().__init__()
        self._session = session
        self.url = url
        self.remote_name = remote_name
        #: a discovered peer's resolver: each attempt connects where the peer listens now
        self.endpoint = endpoint
        self._replicator: Replicator | None = None
        self._status = ReplicatorStatus()
        #: Disconnect was asked for: the stop is no error to show
        self._stopped_on_request = False
        self._status_relay.connect(self._on_status, Qt.ConnectionType.QueuedConnection)

    @property
    def status(self) -> ReplicatorStatus:
        """The latest status (stopped before the first connect)."""
        return self._status

    @property
    def running(self) -> bool:
        """Whether it is connecting, connected or waiting to retry."""
        return self._status.activity is not ActivityLevel.STOPPED

    def _on_status(self, status: ReplicatorStatus) -> None:
        if status.activity is ActivityLevel.STOPPED and self._stopped_on_request:
            status = ReplicatorStatus(ActivityLevel.STOPPED, status.progress)
        self._status = status
        self.statusChanged.emit(status)

    def _replicator_for_session(self) -> Replicator:
        if self._replicator is None:
            session = self._session
            try:
                config = replicator_configuration(
                    session.db,
                    self.url,
                    session.settings.replicator,
                    session.user,
                    session.password,
                    remote_name=self.remote_name,
                    endpoint=self.endpoint,
                    trust_store=session.db.path / TRUST_STORE_FILE,
                )
            except ValueError as exc:  # a user name with ':' cannot be sent with Basic authentication
                raise ConfigurationError(str(exc)) from None
            self._replicator = Replicator(config)
            self._replicator.add_change_listener(self._status_relay.emit)  # called on the engine thread
        return self._replicator

    def connect_peer(self, *, reset_checkpoint: bool = False) -> None:
        """Start (or resume from the checkpoint) continuous push and pull with the signed-in credentials.

        Raises:
            ConfigurationError: the URL or the settings cannot work.
        """
        replicator = self._replicator_for_session()
        if self._status.activity is ActivityLevel.STOPPED:
            self._stopped_on_request = False
            self._on_status(ReplicatorStatus(ActivityLevel.CONNECTING))  # at once, not after the engine's turn
            self._session.engine.call_soon(lambda: replicator.start(reset_checkpoint=reset_checkpoint))

    async def disconnect_peer(self) -> None:
        """Stop, keeping the replicator: the next Connect resumes from its checkpoint."""
        replicator = self._replicator
        if replicator is not None:
            self._stopped_on_request = True
            try:
                await asyncio.wait_for(self._session.engine.call(replicator.stop), STOP_TIMEOUT)
            except TimeoutError:
                raise StopTimeoutError(f"the replication with {self.url} did not stop in time") from None
            self._on_status(ReplicatorStatus())

    async def reset_checkpoint(self) -> None:
        """Start over from the beginning: stop, then connect with the checkpoint reset."""
        await self.disconnect_peer()
        self.connect_peer(reset_checkpoint=True)

    async def remove(self) -> None:
        """Stop and forget the replicator."""
        with contextlib.suppress(StopTimeoutError):
            await self.disconnect_peer()
        self._replicator = None
