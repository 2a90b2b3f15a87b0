"""Discovery on the local network with zeroconf (mDNS / DNS-SD), on python-zeroconf's asyncio API.

- :class:`PeerAdvertiser` (:mod:`engine.replication.discovery_advertiser`)
  advertises a listener as ``_cblistservicesync._tcp``.
- :class:`PeerBrowser` browses and resolves adverts and keeps one :class:`Peer`
  per peer ID (our own never), reported as :class:`PeerAdded`,
  :class:`PeerChanged` and :class:`PeerRemoved` to callbacks and to async
  iterators. Foreign or malformed adverts are skipped with a debug log.
- :class:`PeerEndpoint` gives a replicator a peer's current URL at each
  connection attempt (``ReplicatorConfiguration.endpoint``), so it follows a
  peer that moved to another address or port.

``interfaces`` are IP addresses of this machine to use (tests: ``["127.0.0.1"]``);
None means every interface, IPv4 and IPv6. What an advert says, and how
addresses become URLs: :mod:`engine.replication.discovery_records`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import zeroconf
from zeroconf import DNSQuestionType, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from engine.replication import tuning
from engine.replication.discovery_advertiser import PeerAdvertiser, advertise_listener, open_zeroconf
from engine.replication.discovery_records import SERVICE_TYPE, Advert, Peer, decode_txt, peer_url, usable_addresses
from engine.replication.errors import DiscoveryError, PeerNotFoundError

__all__ = [
    "Peer",
    "PeerAdded",
    "PeerAdvertiser",
    "PeerBrowser",
    "PeerChanged",
    "PeerEndpoint",
    "PeerEvent",
    "PeerEvents",
    "PeerRemoved",
    "advertise_listener",
    "open_zeroconf",
    "quiet_zeroconf_warnings",
]

log = logging.getLogger(__name__)


def quiet_zeroconf_warnings() -> None:
    """Show zeroconf's own log from errors up (programs call this unless asked for details).

    It warns, with a traceback, at every send an interface cannot make (IPv6
    without a route, say): noise to a user; discovery reports real failures.
    """
    logging.getLogger("zeroconf").setLevel(logging.ERROR)


#: Questions ask for multicast answers (QM), never unicast ones (QU, python-zeroconf's default for
#: a first query): on a machine where several mDNS sockets share port 5353 (avahi or Bonjour
#: beside the app, two apps, the app and ``inventory-sync browse``), the kernel hands a unicast
#: answer to one of them only, often not the one that asked, and a peer showed up seconds late.
_ASK = DNSQuestionType.QM


# -- browsing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerAdded:
    """A peer appeared."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class PeerChanged:
    """A known peer's advert changed: another port or address, a new certificate..."""

    peer: Peer
    previous: Peer


@dataclass(frozen=True, slots=True)
class PeerRemoved:
    """A peer said goodbye, or its advert expired."""

    peer: Peer


PeerEvent = PeerAdded | PeerChanged | PeerRemoved


class _Seen(NamedTuple):
    """One resolved advert (a peer may have several, under other names)."""

    instance: str
    advert: Advert
    port: int
    addresses: tuple[str, ...]
    order: int


class PeerBrowser:
    """Finds peers on the local network; see the module docstring.

    Args:
        own_peer_id: our database's peer ID, never listed.
        interfaces: where to browse (see the module docstring).
        zeroconf: a python-zeroconf instance to share (not closed by :meth:`stop`).
        resolve_timeout_ms: how long to wait for an advert's records.
    """

    def __init__(
        self,
        *,
        own_peer_id: str | None = None,
        interfaces: Sequence[str] | None = None,
        zeroconf: AsyncZeroconf | None = None,
        resolve_timeout_ms: int = tuning.RESOLVE_TIMEOUT_MS,
    ) -> None:
        self.own_peer_id = own_peer_id
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._zeroconf = zeroconf
        self._owns_zeroconf = zeroconf is None
        self._timeout = resolve_timeout_ms
        self._browser: AsyncServiceBrowser | None = None
        self._seen: dict[str, _Seen] = {}
        self._peers: dict[str, Peer] = {}
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._listeners: list[Callable[[PeerEvent], None]] = []
        self._streams: set[PeerEvents] = set()
        self._order = itertools.count()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start browsing (peers then come as events).

        Raises:
            DiscoveryError: zeroconf could not start.
        """
        if self._browser is not None:
            return
        zc = self._zeroconf = self._zeroconf or open_zeroconf(self._interfaces)
        try:
            self._browser = AsyncServiceBrowser(
                zc.zeroconf, [SERVICE_TYPE], handlers=[self._on_state_change], question_type=_ASK
            )
        except (zeroconf.Error, OSError) as exc:
            if self._owns_zeroconf:
                self._zeroconf = None
                await zc.async_close()
            raise DiscoveryError(f"cannot browse: {exc}") from exc

    async def stop(self) -> None:
        """Stop browsing; the peer list empties (without events) and event iterators end."""
        browser, self._browser = self._browser, None
        if browser is not None:
            await browser.async_cancel()
        for task in self._resolving.values():
            task.cancel()
        self._resolving.clear()
        self._seen.clear()
        self._peers.clear()
        for stream in list(self._streams):
            stream.close()
        if self._owns_zeroconf and self._zeroconf is not None:
            zc, self._zeroconf = self._zeroconf, None
            await zc.async_close()

    async def __aenter__(self) -> PeerBrowser:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # -- what it found ---------------------------------------------------------------------

    @property
    def peers(self) -> Mapping[str, Peer]:
        """The peers found so far, by peer ID (a copy)."""
        return dict(self._peers)

    def peer(self, peer_id: str) -> Peer | None:
        """The peer with this ID, if it is advertised now."""
        return self._peers.get(peer_id)

    def add_peer_listener(self, listener: Callable[[PeerEvent], None]) -> Callable[[], None]:
        """Call ``listener`` with every event (on the event loop); return a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def events(self) -> PeerEvents:
        """An async iterator of events: a :class:`PeerAdded` for each peer known now, then every event."""
        stream = PeerEvents(self, [PeerAdded(peer) for peer in self._peers.values()])
        if self._browser is None:
            stream.close()
        else:
            self._streams.add(stream)
        return stream

    async def wait_for(self, predicate: Callable[[Peer], bool], timeout: float | None = None) -> Peer:
        """The first peer, known now or found later, for which ``predicate`` holds.

        Raises:
            TimeoutError: none within ``timeout`` seconds.
        """
        for peer in self._peers.values():
            if predicate(peer):
                return peer
        found: asyncio.Future[Peer] = asyncio.get_running_loop().create_future()

        def check(event: PeerEvent) -> None:
            if not isinstance(event, PeerRemoved) and predicate(event.peer) and not found.done():
                found.set_result(event.peer)

        remove = self.add_peer_listener(check)
        try:
            return await asyncio.wait_for(found, timeout)
        finally:
            remove()

    def endpoint(self, peer_id: str, *, wait: float = tuning.PEER_WAIT) -> PeerEndpoint:
        """A replicator's endpoint resolver that follows the peer ``peer_id``."""
        return PeerEndpoint(self, peer_id, wait=wait)

    # -- zeroconf's events -----------------------------------------------------------------

    def _on_state_change(
        self, zeroconf: zeroconf.Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        """python-zeroconf's handler (its keyword names are fixed), called on the event loop."""
        key = name.lower()
        previous = self._resolving.pop(key, None)
        if previous is not None:
            previous.cancel()
        if state_change is ServiceStateChange.Removed:
            self._forget(key)
            return
        task = asyncio.get_running_loop().create_task(self._resolve(zeroconf, name), name=f"resolve {name}")
        self._resolving[key] = task
        task.add_done_callback(lambda done: self._resolving.pop(key) if self._resolving.get(key) is done else None)

    async def _resolve(self, zc: zeroconf.Zeroconf, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        try:
            found = await info.async_request(zc, self._timeout, question_type=_ASK)
        except (zeroconf.Error, OSError) as exc:
            log.debug("advert %r not resolved: %s", name, exc)
            return
        if not found:
            log.debug("advert %r not resolved: no complete answer in %d ms", name, self._timeout)
            return
        try:
            seen = self._read(name, info)
        except Exception as exc:  # whatever a stranger's advert holds: skipped, never a crash
            log.debug("skipping advert %r: %s", name, exc)
            self._forget(name.lower())
            return
        if seen.advert.peer_id == self.own_peer_id:
            log.debug("skipping advert %r: our own", name)
            return
        key = name.lower()
        old = self._seen.get(key)
        self._seen[key] = seen
        self._refresh(seen.advert.peer_id)
        if old is not None and old.advert.peer_id != seen.advert.peer_id:
            self._refresh(old.advert.peer_id)

    def _read(self, name: str, info: AsyncServiceInfo) -> _Seen:
        port = info.port
        if port is None or not 0 < port < 65536:
            raise ValueError(f"port {port}")
        advert = decode_txt(info.properties)
        addresses = usable_addresses(info.parsed_scoped_addresses())
        if not addresses:
            raise ValueError(f"no usable address in {info.parsed_scoped_addresses()}")
        suffix = "." + SERVICE_TYPE
        instance = name[: -len(suffix)] if name.lower().endswith(suffix) else name
        return _Seen(instance, advert, port, tuple(addresses), next(self._order))

    def _forget(self, key: str) -> None:
        seen = self._seen.pop(key, None)
        if seen is not None:
            self._refresh(seen.advert.peer_id)

    def _refresh(self, peer_id: str) -> None:
        """Rebuild one peer from its adverts (the latest first) and report what changed."""
        adverts = sorted((s for s in self._seen.values() if s.advert.peer_id == peer_id), key=lambda s: -s.order)
        old = self._peers.get(peer_id)
        if not adverts:
            if old is not None:
                del self._peers[peer_id]
                self._emit(PeerRemoved(old))
            return
        latest = adverts[0]
        urls = dict.fromkeys(
            peer_url(seen.advert.scheme, address, seen.port, seen.advert.database)
            for seen in adverts
            for address in seen.addresses
        )
        advert = latest.advert
        peer = Peer(
            peer_id, latest.instance, advert.database, advert.fingerprint, advert.protocols,
            latest.port, latest.addresses, tuple(urls),
        )  # fmt: skip
        if peer == old:
            return
        self._peers[peer_id] = peer
        self._emit(PeerAdded(peer) if old is None else PeerChanged(peer, old))

    def _emit(self, event: PeerEvent) -> None:
        log.debug("%s: %r (%s) at %s", type(event).__name__, event.peer.name, event.peer.peer_id, event.peer.url)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("peer listener failed")
        for stream in self._streams:
            stream.put(event)


class PeerEvents:
    """Events of a :class:`PeerBrowser` as an async iterator, until the browser stops or :meth:`close`."""

    def __init__(self, browser: PeerBrowser, initial: list[PeerEvent]) -> None:
        self._browser = browser
        self._queue: asyncio.Queue[PeerEvent | None] = asyncio.Queue()
        self._closed = False
        for event in initial:
            self._queue.put_nowait(event)

    def put(self, event: PeerEvent) -> None:
        """Queue an event (the browser calls this)."""
        if not self._closed:
            self._queue.put_nowait(event)

    def close(self) -> None:
        """End the iteration once the events already queued are read."""
        if not self._closed:
            self._closed = True
            self._browser._streams.discard(self)
            self._queue.put_nowait(None)

    def __aiter__(self) -> PeerEvents:
        return self

    async def __anext__(self) -> PeerEvent:
        event = await self._queue.get()
        if event is None:
            self._queue.put_nowait(None)  # later calls end too
            raise StopAsyncIteration
        return event


# -- following a peer -------------------------------------------------------------------------


class PeerEndpoint:
    """Where a discovered peer listens now: ``ReplicatorConfiguration.endpoint`` for a replicator bound to it.

    Before each connection attempt the replicator calls :meth:`resolve`: the
    peer's preferred URL, or, after an attempt that did not get through while
    its advert stayed the same, its next URL (a peer with several addresses,
    some not reachable from here). A peer not advertised at the moment is
    waited for up to ``wait`` seconds; then its last known URL is tried.
    While the replicator waits to retry, :meth:`wait_announced` ends the wait
    when the peer is announced again, so a peer that moved is followed at once.
    """

    def __init__(self, browser: PeerBrowser, peer_id: str, *, wait: float = tuning.PEER_WAIT) -> None:
        self.peer_id = peer_id
        self._browser = browser
        self._wait = wait
        self._peer: Peer | None = None
        self._index = 0

    @property
    def peer(self) -> Peer | None:
        """The peer as last resolved."""
        return self._peer

    async def resolve(self, *, after_failure: bool = False) -> str:
        """The URL to connect to now.

        Raises:
            PeerNotFoundError: the peer is not advertised and was never seen
                (a transient error: the replicator tries again later).
        """
        peer = self._browser.peer(self.peer_id)
        if peer is None:
            with contextlib.suppress(TimeoutError):
                peer = await self._browser.wait_for(lambda p: p.peer_id == self.peer_id, self._wait)
        if peer is None:
            if self._peer is None:
                raise PeerNotFoundError(f"peer {self.peer_id} is not advertised on the network")
            return self._peer.urls[self._index]  # not advertised now: try where it was
        if peer != self._peer:
            self._index = 0
        elif after_failure:
            self._index = (self._index + 1) % len(peer.urls)
        self._peer = peer
        return peer.urls[self._index]

    async def wait_announced(self) -> None:
        """Return when the peer is next announced (it appeared, came back, or changed)."""
        announced: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def check(event: PeerEvent) -> None:
            if not isinstance(event, PeerRemoved) and event.peer.peer_id == self.peer_id and not announced.done():
                announced.set_result(None)

        remove = self._browser.add_peer_listener(check)
        try:
            await announced
        finally:
            remove()
