"""Discovery on the local network in the app: the Browser tab's peer browser, the listener's advert.

Both run on the session's discovery thread (:attr:`Session.discovery_thread`),
not in the engine process: their work is light, and the Browser tab lists what
the browser finds. Their events reach the GUI thread only through queued
signals, as in :mod:`inventory_qt.bridge`. A replicator following a discovered
peer runs in the engine process, which browses for that peer itself
(:class:`~inventory_qt.engine_protocol.ConnectPeer` ``follow``).

* :class:`DiscoveryBridge` browses while the user is signed in: peers found
  become :class:`~inventory_qt.models.peers_model.PeerInfo` values on
  :attr:`DiscoveryBridge.peerFound` (added or changed) and peer IDs on
  :attr:`DiscoveryBridge.peerLost`; our own database's peer ID is never
  reported.
* :class:`ListenerAdvertising` advertises the running listener as
  ``"<user> on <machine>"`` with the database's peer ID, re-announces a new
  port or certificate (:meth:`ListenerAdvertising.update`), and withdraws the
  advert on Stop and Log Out.

Which interfaces discovery uses (None: every interface) comes from
``--interface`` or :data:`INTERFACES_ENV` (tests: ``127.0.0.1``, so nothing
leaves the machine), read by :func:`discovery_interfaces`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from collections.abc import Sequence

from PySide6.QtCore import QObject, Qt, Signal

from engine.replication.discovery import Peer, PeerAdvertiser, PeerBrowser, PeerEvent, PeerRemoved
from engine.replication.discovery_records import default_instance_name
from inventory_qt.engine_protocol import ListenerInfo
from inventory_qt.errors import describe_error
from inventory_qt.models.peers_model import PeerInfo
from inventory_qt.session import Session

__all__ = ["INTERFACES_ENV", "DiscoveryBridge", "ListenerAdvertising", "discovery_interfaces", "peer_info"]

log = logging.getLogger(__name__)

#: Comma-separated IP addresses of this machine that discovery uses (default: every interface).
INTERFACES_ENV = "INVENTORY_DISCOVERY_INTERFACES"
#: Seconds stopping the browser or the advert may take (goodbye packets wait at most 2 s).
STOP_TIMEOUT = 3.0


def discovery_interfaces(given: Sequence[str] | None = None) -> list[str] | None:
    """``given`` (``--interface``), else :data:`INTERFACES_ENV`'s addresses, else None (every interface)."""
    if given:
        return list(given)
    text = os.environ.get(INTERFACES_ENV, "")
    addresses = [part.strip() for part in text.split(",") if part.strip()]
    return addresses or None


def peer_info(peer: Peer) -> PeerInfo:
    """A discovered peer as the Browser tab lists it (keyed by its peer ID)."""
    return PeerInfo(peer.peer_id, peer.name, peer.url, tls=peer.tls, fingerprint=peer.fingerprint, discovered=True)


def _listener_addresses(host: str | None) -> list[str] | None:
    """A listener bound to one address advertises that address only (as ``advertise_listener``)."""
    with contextlib.suppress(ValueError):
        if host and not ipaddress.ip_address(host).is_unspecified:
            return [host]
    return None


async def _own_peer_id(session: Session) -> str:
    return await session.run(lambda: session.db.peer_id)


class DiscoveryBridge(QObject):
    """The peer browser of a signed-in session (see the module docstring)."""

    peerFound = Signal(object)  # noqa: N815  (PeerInfo: added, or changed)
    peerLost = Signal(str)  # noqa: N815  (peer ID)
    #: browsing started (True) or stopped (False)
    runningChanged = Signal(bool)  # noqa: N815
    #: from the engine thread to the GUI thread
    _event_relay = Signal(object)

    def __init__(self, session: Session, interfaces: Sequence[str] | None = None) -> None:
        super().__init__()
        self._session = session
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._browser: PeerBrowser | None = None
        self.own_peer_id: str | None = None
        #: why browsing could not start, in words (None: it runs, or was not started)
        self.problem: str | None = None
        self._event_relay.connect(self._on_event, Qt.ConnectionType.QueuedConnection)

    @property
    def running(self) -> bool:
        """Whether the browser runs."""
        return self._browser is not None

    async def start(self) -> None:
        """Start browsing on the engine thread.

        Raises:
            DiscoveryError: zeroconf could not start (also kept in words in :attr:`problem`).
        """
        if self._browser is not None:
            return
        self.own_peer_id = await _own_peer_id(self._session)
        browser = PeerBrowser(own_peer_id=self.own_peer_id, interfaces=self._interfaces)

        async def start() -> None:
            await browser.start()
            browser.add_peer_listener(self._event_relay.emit)  # called on the engine thread

        try:
            await self._session.discovery_thread.call(start)
        except Exception as exc:
            self.problem = describe_error(exc)
            raise
        self.problem = None
        self._browser = browser
        self.runningChanged.emit(True)

    async def stop(self) -> None:
        """Stop browsing (quickly: a bounded wait); found peers are not reported as lost."""
        browser, self._browser = self._browser, None
        if browser is None:
            return
        try:
            await asyncio.wait_for(self._session.discovery_thread.call(browser.stop), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("the discovery browser did not stop within %.0f s", STOP_TIMEOUT)
        finally:
            self.runningChanged.emit(False)

    @property
    def interfaces(self) -> tuple[str, ...] | None:
        """The interfaces browsed (None: every interface); a replication following a peer uses the same."""
        return tuple(self._interfaces) if self._interfaces is not None else None

    def _on_event(self, event: PeerEvent) -> None:
        if self._browser is None:
            return
        if isinstance(event, PeerRemoved):
            self.peerLost.emit(event.peer.peer_id)
        else:
            self.peerFound.emit(peer_info(event.peer))


class ListenerAdvertising(QObject):
    """Advertises the running listener (see the module docstring)."""

    #: the advert was registered (True) or withdrawn or failed (False)
    advertisedChanged = Signal(bool)  # noqa: N815

    def __init__(self, session: Session, interfaces: Sequence[str] | None = None) -> None:
        super().__init__()
        self._session = session
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._advertiser: PeerAdvertiser | None = None
        self._starting: asyncio.Task[None] | None = None
        #: why advertising failed, in words (None: it runs, or was not asked for)
        self.problem: str | None = None

    @property
    def advertised(self) -> bool:
        """Whether the advert is registered now (not while its name is still being probed)."""
        return self._advertiser is not None

    @property
    def starting(self) -> bool:
        """Whether the advert's name is being probed."""
        return self._starting is not None and not self._starting.done()

    @property
    def name(self) -> str | None:
        """The name the listener is advertised under (None when not advertised)."""
        return self._advertiser.name if self._advertiser is not None else None

    def start(self, listener: ListenerInfo) -> asyncio.Task[None]:
        """Start advertising a started listener, in the background (probing its name takes about 1.2 s)."""
        if self._starting is None or self._starting.done():
            self.problem = None
            self._starting = asyncio.ensure_future(self._start(listener))
            self.advertisedChanged.emit(False)  # "starting" is shown
        return self._starting

    async def _start(self, listener: ListenerInfo) -> None:
        # the bridge withdraws the advert whenever its listener stops, and re-announces a
        # restarted one with update(): a start always registers a new advert
        assert self._advertiser is None
        peer_id = await _own_peer_id(self._session)
        name = default_instance_name(self._session.user)

        async def advertise() -> PeerAdvertiser:
            # made here rather than by advertise_listener so that a cancelled start (Stop or Log Out
            # while the name is still being probed) closes the zeroconf instance it opened
            advertiser = PeerAdvertiser(
                peer_id=peer_id,
                database_name=listener.database_name,
                port=listener.port or 0,
                fingerprint=listener.fingerprint,
                name=name,
                addresses=_listener_addresses(listener.host),
                interfaces=self._interfaces,
            )
            try:
                await advertiser.start()
            except BaseException:
                await advertiser.stop()
                raise
            return advertiser

        try:
            self._advertiser = await self._session.discovery_thread.call(advertise)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.problem = describe_error(exc)
            log.warning("cannot advertise the listener: %s", self.problem)
            self.advertisedChanged.emit(False)
            return
        self.problem = None
        self.advertisedChanged.emit(True)

    async def update(self, *, port: int, fingerprint: str | None) -> None:
        """Re-announce a listener that restarted (another port, another certificate) under the same name."""
        advertiser = self._advertiser
        if advertiser is not None:
            await self._session.discovery_thread.call(lambda: advertiser.update(port=port, fingerprint=fingerprint))

    async def stop(self) -> None:
        """Withdraw the advert (goodbye packets, a bounded wait); cancels a start still probing."""
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        advertiser, self._advertiser = self._advertiser, None
        if advertiser is None:
            return
        try:
            await asyncio.wait_for(self._session.discovery_thread.call(advertiser.stop), STOP_TIMEOUT)
        except TimeoutError:
            log.warning("the advert was not withdrawn within %.0f s", STOP_TIMEOUT)
        finally:
            self.advertisedChanged.emit(False)
