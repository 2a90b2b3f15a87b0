"""URLEndpointListener: the passive peer, serving one database over BLIP (protocol §1, §3).

Configured like Couchbase Lite's listener: port (0 = any free port), network
address (default: all), database name in the URL (default ``userdb``), an
authenticator (required: :data:`~engine.replication.auth.NO_AUTHENTICATION` lets
anyone in), a sign-in throttle, read-only mode, delta sync on or off, a TLS
identity (None: plain ``ws://``, with a warning; see :mod:`engine.replication.listener_tls`),
and what one client may cost (``limits``: connections, handshake deadlines, pings).
``stop()`` closes every connection with 1001 (going away), so continuous
clients go offline and retry, and frees the port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

import ifaddr

from engine.database import Database
from engine.replication.auth import OpenAccess, listener_authenticator
from engine.replication.blip.socket import BlipSocket
from engine.replication.blip.websocket import Authenticator, BlipServer, ConnectionCounts, ServerLimits
from engine.replication.db_runner import DbRunner
from engine.replication.errors import ConfigurationError, ReplicationError
from engine.replication.external_changes import follow_external_changes
from engine.replication.passive import PassiveSession
from engine.replication.throttle import SignInThrottle
from engine.replication.tls import TLSIdentity, server_context

__all__ = ["ConnectionEvent", "ListenerConfiguration", "ListenerStats", "ListenerStatus", "URLEndpointListener"]

log = logging.getLogger(__name__)

DEFAULT_DATABASE_NAME = "userdb"


@dataclass
class ListenerConfiguration:
    """How a listener serves its database.

    ``authenticator`` must be chosen: None is refused, ``NO_AUTHENTICATION``
    lets anyone in. ``throttle`` slows down and then refuses addresses that fail
    to sign in (None: no throttle).
    """

    database: Database
    port: int = 0
    host: str | None = None
    database_name: str = DEFAULT_DATABASE_NAME
    authenticator: Authenticator | None = None
    read_only: bool = False
    enable_delta_sync: bool = True
    tls: TLSIdentity | None = None
    threaded_database: bool = False
    throttle: SignInThrottle | None = field(default_factory=SignInThrottle)
    limits: ServerLimits = field(default_factory=ServerLimits)


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A client connected or disconnected."""

    connected: bool
    peer: str
    user: str | None = None
    close_code: int | None = None


@dataclass
class ListenerStats:
    """Traffic since the listener was created (all connections, open or closed)."""

    revs_sent: int = 0
    rev_bytes_sent: int = 0
    deltas_sent: int = 0
    revs_received: int = 0
    deltas_received: int = 0

    def add(self, session: PassiveSession) -> None:
        """Add a finished session's counts."""
        self.revs_sent += session.sender.revs_sent
        self.rev_bytes_sent += session.sender.bytes_sent
        self.deltas_sent += session.sender.deltas_sent
        self.revs_received += session.receiver.revs_received
        self.deltas_received += session.receiver.deltas_received


@dataclass(frozen=True, slots=True)
class ListenerStatus:
    """Open connections, and those with a replication in progress."""

    connection_count: int = 0
    active_connection_count: int = 0


class URLEndpointListener:
    """Serves a database to replicators. Call :meth:`start`, later :meth:`stop`."""

    def __init__(self, config: ListenerConfiguration) -> None:
        """Check the configuration.

        Raises:
            ConfigurationError: no authenticator chosen, or TLS settings that do not fit it.
            ReplicationError: an invalid database name.
        """
        if not config.database_name or config.database_name.startswith("_") or "/" in config.database_name:
            raise ReplicationError(f"invalid database name {config.database_name!r}")
        self._authenticator = listener_authenticator(config.authenticator, throttle=config.throttle)
        self.config = config
        self._server: BlipServer | None = None
        self._sessions: set[PassiveSession] = set()
        self._listeners: list[Callable[[ListenerStatus], None]] = []
        self._connection_listeners: list[Callable[[ConnectionEvent], None]] = []
        self._status = ListenerStatus()
        self._finished = ListenerStats()
        self._runner = DbRunner(threaded=config.threaded_database)
        self._follower: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Start accepting connections.

        Raises:
            OSError: the port is taken or the address is not on this machine.
        """
        if self._server is not None:
            return
        server = BlipServer(
            accepts_database=lambda name: name == self.config.database_name,
            on_connection=self._serve,
            authenticator=self._authenticator,
            ssl=self._tls_context(),
            limits=self.config.limits,
        )
        await server.start(self.config.host, self.config.port)
        self._server = server
        self._follower = asyncio.create_task(
            follow_external_changes(self.config.database, self._runner), name="external changes"
        )
        log.info("listening on %s", ", ".join(self.urls))
        if isinstance(self.config.authenticator, OpenAccess):
            access = "read" if self.config.read_only else "read and write"
            log.warning("no authentication: anyone who reaches %s may %s it", self.config.database_name, access)

    def _tls_context(self) -> ssl.SSLContext | None:
        """The server context for the configured identity, asking for client certificates when the
        authenticator has roots for them (``client_roots``)."""
        identity = self.config.tls
        roots = getattr(self.config.authenticator, "client_roots", None)
        if identity is None:
            if roots:
                raise ConfigurationError("client certificates need TLS: give the listener a TLS identity")
            log.warning("TLS is disabled: passwords and documents cross the network in clear (ws://)")
            return None
        log.info("TLS identity %s, SHA-256 %s", identity.subject, identity.fingerprint)
        return server_context(identity, client_roots=roots)

    async def stop(self) -> None:
        """Close every connection (1001) and free the port."""
        server, self._server = self._server, None
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.cancel()
        if server is not None:
            await server.stop()
        self._update()

    @property
    def port(self) -> int | None:
        """The port accepting connections, or None when stopped."""
        addresses = self._server.addresses if self._server is not None else []
        return addresses[0][1] if addresses else None

    @property
    def urls(self) -> list[str]:
        """One ``ws[s]://host:port/<db>`` URL per usable address (IPv6 in brackets)."""
        port = self.port
        if port is None:
            return []
        scheme = "wss" if self.config.tls is not None else "ws"
        hosts = [self.config.host] if self.config.host else _local_addresses()
        return [f"{scheme}://{_url_host(host)}:{port}/{self.config.database_name}" for host in hosts]

    # -- status ------------------------------------------------------------------------------

    @property
    def stats(self) -> ListenerStats:
        """Revisions sent and received so far, over every connection."""
        total = ListenerStats(**vars(self._finished))
        for session in self._sessions:
            total.add(session)
        return total

    @property
    def connection_counts(self) -> ConnectionCounts:
        """Connections held now (handshakes included), refused and replaced at the caps so far, and the cap."""
        return self._server.connection_counts if self._server is not None else ConnectionCounts()

    @property
    def status(self) -> ListenerStatus:
        """Connection counts."""
        return self._status

    def add_status_listener(self, listener: Callable[[ListenerStatus], None]) -> Callable[[], None]:
        """Call ``listener`` whenever the status changes; return a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def add_connection_listener(self, listener: Callable[[ConnectionEvent], None]) -> Callable[[], None]:
        """Call ``listener`` when a client connects or disconnects; return a function that removes it."""
        self._connection_listeners.append(listener)
        return lambda: self._connection_listeners.remove(listener) if listener in self._connection_listeners else None

    def _announce(self, event: ConnectionEvent) -> None:
        for listener in list(self._connection_listeners):
            try:
                listener(event)
            except Exception:
                log.exception("connection listener failed")

    def _update(self, _session: PassiveSession | None = None) -> None:
        status = ListenerStatus(len(self._sessions), sum(1 for s in self._sessions if s.busy))
        if status != self._status:
            self._status = status
            for listener in list(self._listeners):
                try:
                    listener(status)
                except Exception:
                    log.exception("listener status callback failed")

    # -- connections ------------------------------------------------------------------------

    async def _serve(self, blip: BlipSocket) -> None:
        session = PassiveSession(
            blip,
            self.config.database,
            self._runner,
            read_only=self.config.read_only,
            deltas=self.config.enable_delta_sync,
            on_activity=self._update,
        )
        user = blip.context.get("principal")
        user = user if isinstance(user, str) else None
        self._sessions.add(session)
        self._update()
        log.info("%s connected as %r", blip.name, user)
        self._announce(ConnectionEvent(True, blip.name, user))
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            self._finished.add(session)
            self._update()
            log.info("%s disconnected (%s)", blip.name, blip.close_code)
            self._announce(ConnectionEvent(False, blip.name, user, blip.close_code))


def _local_addresses() -> list[str]:
    """Addresses of this machine's interfaces, IPv4 first, without link-local IPv6."""
    v4, v6 = [], []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                v4.append(ip.ip)
            elif not ipaddress.IPv6Address(ip.ip[0]).is_link_local:
                v6.append(ip.ip[0])
    return v4 + v6


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
