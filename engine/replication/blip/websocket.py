"""Opening BLIP connections over ``websockets`` (protocol §1): the client and the server side.

Client: :func:`connect` appends ``/_blipsync`` to a database URL, offers
``BLIP_3+CBMobile_3,BLIP_3+CBMobile_2``, turns permessage-deflate off, uses no
proxy for LAN addresses, accepts the ``HTTP/1.0`` status lines of Couchbase
Lite 2.8 and 3.0 listeners (§9), and fails clearly when the server picks no
subprotocol, a wrong one, or answers with an HTTP error.

Server: :class:`BlipServer` routes ``/<db>/_blipsync`` (``<db>`` not starting
with ``_``), picks the first subprotocol in the client's list that we speak,
runs an authentication hook on the opening handshake, and gives each client
its own :class:`BlipSocket`. What a client can cost is bounded: connections
in total and per address (an :class:`~engine.replication.blip.acceptor.Acceptor`
resets those over the caps before any TLS or HTTP work, and pauses on accept
errors), a deadline for the TLS handshake and one for the HTTP upgrade, pings
that close a connection whose peer stops answering, 1 MiB per frame, and the
bytes of incoming messages still being received, per connection and, through
one :class:`IncomingBudget` shared by every server of the process, over all
their connections.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import re
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, cast
from urllib.parse import unquote, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI, NegotiationError
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from engine.errors import os_error_words
from engine.replication import tuning
from engine.replication.blip.acceptor import Acceptor, ConnectionCounts, listening_sockets
from engine.replication.blip.connection import IncomingBudget
from engine.replication.blip.socket import BlipSocket, DirectFrames
from engine.replication.errors import (
    HTTP_STATUS_WORDS,
    HandshakeError,
    HTTPStatusError,
    IncompatibleProtocolError,
    TransportError,
)

__all__ = [
    "SERVER_INCOMING_BUDGET",
    "USER_AGENT",
    "Authenticator",
    "BlipServer",
    "ConnectionCounts",
    "HandshakeRequest",
    "ServerLimits",
    "blipsync_url",
    "connect",
]

log = logging.getLogger(__name__)


class _NoDebugLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs every header and frame at debug level: headers carry credentials and
    frames document bodies. Given this logger it never sees debug enabled, whatever the
    application enables; its other records go on as usual."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802  (logging's name)
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_WS_LOG_CLIENT = _NoDebugLogger(logging.getLogger(f"{__name__}.client"))
_WS_LOG_SERVER = _NoDebugLogger(logging.getLogger(f"{__name__}.server"))

USER_AGENT = "inventory-sync/0.1"
_ROUTE = re.compile(r"/([^_/][^/]*)/_blipsync/?")
_HTTP_1_0 = b"HTTP/1.0 "
#: Unfinished incoming messages over every connection of every BlipServer in this process.
SERVER_INCOMING_BUDGET = IncomingBudget(tuning.MAX_SERVER_UNFINISHED_BYTES)


def blipsync_url(url: str) -> str:
    """Return the ``_blipsync`` endpoint of a database URL (``ws://host:port/db``).

    Raises:
        HandshakeError: not a ws:// or wss:// URL naming a database.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise HandshakeError(f"not a ws:// or wss:// URL: {url}")
    path = parts.path.rstrip("/")
    if not path.endswith("/_blipsync"):
        path += "/_blipsync"
    if not _ROUTE.fullmatch(path):
        raise HandshakeError(f"URL names no database: {url}")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def _is_lan_host(host: str) -> bool:
    """Whether ``host`` is a loopback, private or link-local address, or a local name."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return host == "localhost" or host.endswith((".local", ".localhost")) or "." not in host
    return address.is_private or address.is_loopback or address.is_link_local


class _BlipServerConnection(DirectFrames, ServerConnection):
    """A server connection that hands BLIP frames straight to its BlipSocket.

    It also carries what the opening handshake found out (database, principal)
    to the connection handler, and drops it with the connection when the
    handshake fails after all (no common subprotocol...) and no handler runs.
    """

    database = ""
    principal: Any = None


class _TolerantClientConnection(DirectFrames, ClientConnection):
    """Accepts an ``HTTP/1.0`` status line, which Couchbase Lite 2.8 and 3.0 listeners send
    (protocol §9), and hands BLIP frames straight to its BlipSocket."""

    _status_pending: bytes = b""
    _status_checked = False

    def data_received(self, data: bytes) -> None:
        if not self._status_checked:
            # protocol §9: read as HTTP/1.1 whatever the status (101, or 401 and other refusals),
            # however TCP cuts the response: decide once its first 9 bytes have arrived
            data = self._status_pending + data
            if len(data) < len(_HTTP_1_0) and _HTTP_1_0.startswith(data):
                self._status_pending = data
                return
            self._status_pending = b""
            self._status_checked = True
            if data.startswith(_HTTP_1_0):
                data = b"HTTP/1.1 " + data[len(_HTTP_1_0) :]
        super().data_received(data)


async def connect(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    ssl: ssl_module.SSLContext | None = None,
    subprotocols: Sequence[str] = tuning.SUBPROTOCOLS,
    open_timeout: float = tuning.OPEN_TIMEOUT,
    ping_interval: float | None = tuning.PING_INTERVAL,
    max_unfinished_bytes: int = tuning.MAX_UNFINISHED_BYTES,
) -> BlipSocket:
    """Open a BLIP connection to a database URL; return it unstarted.

    Register handlers on the returned socket, then call its ``start()``.
    ``max_unfinished_bytes`` caps the incoming messages it holds half-received.

    Raises:
        HTTPStatusError: the server answered with an HTTP error (401, 403...).
        IncompatibleProtocolError: no common subprotocol.
        HandshakeError: any other handshake failure (bad accept key...).
        TransportError: the network failed (refused, reset, timed out).
    """
    endpoint = blipsync_url(url)
    host = urlsplit(endpoint).hostname or ""
    proxy: Literal[True] | None = None if _is_lan_host(host) else True
    # a link-local IPv6 host carries its zone encoded (fe80::1%25eth0, RFC 6874); the socket
    # wants it decoded, and TLS the address without it
    address = unquote(host)
    tls_options: dict[str, Any] = {"server_hostname": address.partition("%")[0]} if ssl is not None else {}
    try:
        ws = await ws_connect(
            endpoint,
            host=address,
            **tls_options,
            subprotocols=[Subprotocol(p) for p in subprotocols],
            compression=None,
            additional_headers=dict(headers or {}),
            user_agent_header=USER_AGENT,
            proxy=proxy,
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            ping_timeout=tuning.PING_TIMEOUT,
            close_timeout=tuning.CLOSE_TIMEOUT,
            max_size=tuning.MAX_WEBSOCKET_MESSAGE,
            create_connection=_TolerantClientConnection,
            ssl=ssl,
            logger=_WS_LOG_CLIENT,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        reason = HTTP_STATUS_WORDS.get(status) or (
            HTTPStatus(status).phrase.lower() if status in HTTPStatus._value2member_map_ else "refused"
        )
        raise HTTPStatusError(status, f"{reason} (HTTP {status})", headers=exc.response.headers) from None
    except NegotiationError as exc:
        raise IncompatibleProtocolError(f"incompatible replication protocol: {exc}") from None
    except InvalidURI as exc:
        raise HandshakeError(str(exc)) from None
    except InvalidHandshake as exc:
        cause = exc.__cause__
        if isinstance(cause, EOFError) and ssl is None:
            # a TLS listener closes on a plain request, before any status line
            raise TransportError(
                f"connection to {host} failed: {cause} (if the listener uses TLS, its URL starts with wss://)"
            ) from cause
        if isinstance(cause, ssl_module.SSLError | OSError | EOFError):
            raise TransportError(f"connection to {host} failed: {cause}") from cause
        raise HandshakeError(f"invalid WebSocket handshake from {host}: {exc}") from None
    except ssl_module.SSLError:
        raise
    except (OSError, TimeoutError, EOFError) as exc:
        where = urlsplit(endpoint).netloc.rpartition("@")[2]
        raise TransportError(f"cannot connect to {where}: {os_error_words(exc)}") from exc
    if ws.subprotocol is None:
        await ws.close(1002, "no subprotocol")
        raise IncompatibleProtocolError("incompatible replication protocol: the peer chose no BLIP subprotocol")
    return BlipSocket(
        ws,
        subprotocol=str(ws.subprotocol),
        name=f"{host}:{urlsplit(endpoint).port}",
        max_unfinished_bytes=max_unfinished_bytes,
    )


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """What the authentication hook sees of an opening handshake."""

    path: str
    database: str
    headers: Headers
    remote_address: Any
    peer_certificate: bytes | None = None


#: Returns a principal (e.g. a user name) for an accepted handshake, or raises
#: HTTPStatusError (with headers such as WWW-Authenticate) to refuse it.
Authenticator = Callable[[HandshakeRequest], Any | Awaitable[Any]]
ConnectionHandler = Callable[[BlipSocket], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one client may cost a :class:`BlipServer`: connections, deadlines, heartbeats.

    At most ``max_connections`` connections at once (fewer if the open-file
    limit requires) and ``max_connections_per_address`` from one address;
    ``tls_handshake_timeout`` seconds for the TLS handshake, then
    ``handshake_timeout`` for the HTTP upgrade request and its authentication.
    An open connection is pinged every ``ping_interval`` seconds (None: never)
    and closed when a pong takes longer than ``ping_timeout``; a closing
    connection's socket is released ``close_timeout`` seconds later at most.
    """

    max_connections: int = tuning.MAX_CONNECTIONS
    max_connections_per_address: int = tuning.MAX_CONNECTIONS_PER_ADDRESS
    tls_handshake_timeout: float = tuning.TLS_HANDSHAKE_TIMEOUT
    handshake_timeout: float = tuning.HTTP_HANDSHAKE_TIMEOUT
    ping_interval: float | None = tuning.PING_INTERVAL
    ping_timeout: float | None = tuning.PING_TIMEOUT
    close_timeout: float = tuning.CLOSE_TIMEOUT

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_connections_per_address < 1:
            raise ValueError("connection caps must be at least 1")
        if min(self.tls_handshake_timeout, self.handshake_timeout, self.close_timeout) <= 0:
            raise ValueError("handshake and close timeouts must be positive")


@dataclass
class BlipServer:
    """A WebSocket server that accepts BLIP connections for named databases.

    ``limits`` bounds connections, handshakes and idle peers. Each connection
    may buffer ``max_unfinished_bytes`` of incoming messages still being
    received, and all of them together ``incoming_budget`` (by default shared
    with the other servers of the process); a connection that would exceed
    either is closed with 1009.
    """

    accepts_database: Callable[[str], bool]
    on_connection: ConnectionHandler
    authenticator: Authenticator | None = None
    ssl: ssl_module.SSLContext | None = None
    subprotocols: Sequence[str] = tuning.SUBPROTOCOLS
    limits: ServerLimits = ServerLimits()
    max_unfinished_bytes: int = tuning.MAX_UNFINISHED_BYTES
    incoming_budget: IncomingBudget = field(default_factory=lambda: SERVER_INCOMING_BUDGET)
    _server: Server | None = field(default=None, init=False)
    _acceptor: Acceptor | None = field(default=None, init=False)

    async def start(self, host: str | None, port: int) -> None:
        """Listen on ``host`` (None: every interface) and ``port`` (0: any free port).

        Every interface means one dual-stack socket where the system has them,
        so that IPv4 and IPv6 clients find the listener on the same port even
        when the port is chosen by the system (two sockets would get two ports).
        """
        sockets = await listening_sockets(host, port)
        # websockets runs each connection's opening handshake (within handshake_timeout) and
        # its handler; the acceptor stands in for the asyncio server it would create, so that
        # caps and accept errors are dealt with before any TLS or HTTP work.
        server = serve(
            self._handle,
            process_request=self._process_request,
            open_timeout=self.limits.handshake_timeout,
            server_header=USER_AGENT,
            logger=_WS_LOG_SERVER,
        )
        acceptor = Acceptor(
            sockets,
            lambda: self._new_connection(server),
            ssl=self.ssl,
            ssl_handshake_timeout=self.limits.tls_handshake_timeout,
            ssl_shutdown_timeout=self.limits.close_timeout,
            max_connections=self.limits.max_connections,
            max_per_address=self.limits.max_connections_per_address,
        )

        async def listen() -> asyncio.Server:
            await acceptor.start_serving()
            return cast(asyncio.Server, acceptor)  # websockets uses the AbstractServer API and .sockets

        server.create_server = listen
        try:
            self._server = await server
        except BaseException:
            acceptor.close()
            raise
        self._acceptor = acceptor

    def _new_connection(self, server: Server) -> _BlipServerConnection:
        """A connection for a newly accepted socket (what ``serve()`` would make with our options)."""
        protocol = ServerProtocol(
            subprotocols=[Subprotocol(p) for p in self.subprotocols],
            select_subprotocol=lambda _protocol, offered: self._select_subprotocol(offered),
            max_size=tuning.MAX_WEBSOCKET_MESSAGE,  # no extensions: compression off (protocol §1)
            logger=_WS_LOG_SERVER,
        )
        return _BlipServerConnection(
            protocol,
            server,
            ping_interval=self.limits.ping_interval,
            ping_timeout=self.limits.ping_timeout,
            close_timeout=self.limits.close_timeout,
        )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) pairs the server listens on."""
        if self._server is None:
            return []
        return [sock.getsockname()[:2] for sock in self._server.sockets]

    @property
    def connection_counts(self) -> ConnectionCounts:
        """Connections held now (handshakes included), refused and replaced at the caps so far, and the cap."""
        return self._acceptor.counts if self._acceptor is not None else ConnectionCounts()

    async def stop(self) -> None:
        """Close every connection with 1001 (going away), reset those still in their handshakes, free the port."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close(close_connections=True)
        await server.wait_closed()

    def _select_subprotocol(self, offered: Sequence[Subprotocol]) -> Subprotocol:
        for protocol in offered:  # the client's order of preference (protocol §1)
            if protocol in self.subprotocols:
                return protocol
        raise NegotiationError("incompatible replication protocol; this peer speaks " + ", ".join(self.subprotocols))

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        match = _ROUTE.fullmatch(urlsplit(request.path).path)
        if match is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        database = unquote(match[1])
        if not self.accepts_database(database):
            return connection.respond(HTTPStatus.NOT_FOUND, "no such database\n")
        if len(request.headers.get_all("Authorization")) > 1:  # which one would count? (protocol §1)
            log.warning("refused a handshake from %s: duplicate Authorization header", connection.remote_address)
            return connection.respond(HTTPStatus.BAD_REQUEST, "duplicate Authorization header\n")
        principal = None
        if self.authenticator is not None:
            ssl_object = connection.transport.get_extra_info("ssl_object")
            certificate = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            handshake = HandshakeRequest(
                request.path, database, request.headers, connection.remote_address, certificate
            )
            try:
                principal = self.authenticator(handshake)
                if inspect.isawaitable(principal):
                    principal = await principal
            except HTTPStatusError as exc:
                response = connection.respond(exc.status, exc.args[0] + "\n")
                for key, value in exc.headers.items():
                    response.headers[key] = value
                return response
        if isinstance(connection, _BlipServerConnection):  # always: see start()
            connection.database, connection.principal = database, principal
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        database, principal = (ws.database, ws.principal) if isinstance(ws, _BlipServerConnection) else ("", None)
        socket = BlipSocket(
            ws,
            subprotocol=str(ws.subprotocol),
            name=_peer_name(ws.remote_address),
            max_unfinished_bytes=self.max_unfinished_bytes,
            incoming_budget=self.incoming_budget,
        )
        socket.context.update(database=database, principal=principal)
        try:
            await self.on_connection(socket)
        except Exception:
            log.exception("connection handler for %s failed", socket.name)
            await socket.close(1011, "internal error")
        finally:
            if not socket.closed:
                await socket.close(1000)


def _peer_name(address: Any) -> str:
    """``host:port`` of a client; an IPv4 client of a dual-stack socket shows as IPv4, IPv6 in brackets."""
    host, port = address[0], address[1]
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return f"{host}:{port}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"{ip.ipv4_mapped}:{port}"
    return f"[{host}]:{port}" if ip.version == 6 else f"{host}:{port}"
