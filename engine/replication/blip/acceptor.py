"""The listener's own accept path: connection caps and accept-error pauses, before any TLS or HTTP work.

:class:`Acceptor` watches the listening sockets and accepts connections itself,
so that everything a client can cost before it authenticates is bounded at the
cheapest point:

- **Caps.** At most ``max_connections`` connections are held at once, and
  ``max_per_address`` from one address, counted from ``accept()`` until the
  connection is lost (handshakes included). The total is lowered, if need be,
  to fit the process's open-file limit with
  :data:`~engine.replication.tuning.RESERVED_DESCRIPTORS` to spare, so that no
  flood of connections can take the last descriptors. At the total cap a new
  connection takes the place of the oldest one still in its TLS or HTTP
  handshake, so that idle or slow unauthenticated connections cannot lock
  everyone out; with none to replace, and over an address's cap, it is reset
  at once: no TLS, no HTTP, no task.
- **Accept errors pause and back off.** When ``accept()`` fails for want of
  descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM...) the sockets are
  unwatched and tried again after a wait that doubles up to a maximum. asyncio's
  own accept loop (``selector_events._accept_connection`` of Python 3.11; fixed
  upstream by python/cpython#151615) logs the error and schedules a retry in
  one second, but then goes on calling ``accept()`` up to ``backlog`` (100)
  times in the same turn: every failure logs again and schedules one more
  retry, and every retry watches the socket again, so the retries pending grow
  by hundreds a second, and the log lines with them (4,600 a second at 100% CPU
  after some minutes, in a user's report); even fixed, it logs once a second.
- **Logged once per spell.** The total cap reached, an address's cap reached,
  and accept errors each log one warning when they start, and an info line
  with the numbers refused, replaced or failed when they end; never a line
  per connection.

Each admitted socket goes to ``loop.connect_accepted_socket`` with the TLS
context and handshake deadline. Loops that cannot watch sockets (Windows'
proactor) fall back to ``loop.create_server`` without caps.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import ssl as ssl_module
import struct
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from engine.replication import tuning

if sys.platform != "win32":
    import resource

__all__ = ["Acceptor", "ConnectionCounts", "address_key", "descriptor_room", "listening_sockets"]

log = logging.getLogger(__name__)

#: accept(2) on Linux reports a connection's pending network error; the connection is gone, the next one may come.
_CONNECTION_GONE = frozenset(
    getattr(errno, name)
    for name in ("ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET", "EHOSTUNREACH",
                 "EOPNOTSUPP", "ENETUNREACH", "ECONNRESET")
    if hasattr(errno, name)
)  # fmt: skip
#: SO_LINGER on, 0 s: close() resets the connection and keeps nothing (no TIME_WAIT) on our side.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


@dataclass(frozen=True, slots=True)
class ConnectionCounts:
    """Connections held now, refused at the caps and replaced at the total cap since start, and the cap in force."""

    held: int = 0
    refused: int = 0
    replaced: int = 0
    limit: int = 0


def address_key(host: str) -> str:
    """The address a connection counts against: an IPv4-mapped IPv6 address as IPv4, others as they are.

    Whole IPv6 addresses, not /64 prefixes: every host of a LAN shares its
    /64 (and every link-local address fe80::/64), so a cap per /64 would be a
    cap on the shop's whole IPv6 network. The total cap bounds a client that
    takes many addresses.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def descriptor_room(reserve: int = tuning.RESERVED_DESCRIPTORS) -> int | None:
    """Descriptors connections may take under the open-file soft limit, or None without a limit.

    ``reserve`` is left to the rest of the process; a limit under twice the
    reserve gives connections half of it.
    """
    if sys.platform == "win32":  # sockets are not counted against a descriptor limit there
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return soft - reserve if soft > 2 * reserve else max(1, soft // 2)


def no_delay(sock: socket.socket) -> None:
    """Send small writes at once (TCP_NODELAY): a BLIP request waits for its answer, not for an ACK.

    asyncio sets it only on sockets whose ``proto`` is ``IPPROTO_TCP``, and sockets
    made by :func:`socket.create_server` (and those they accept) say 0: without it,
    Nagle's algorithm held each small message back for the peer's delayed ACK
    (40 ms here), and an edit took 44 ms to reach a peer instead of 4.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # already reset by the peer
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def listening_sockets(host: str | None, port: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for ``host`` (None: every interface) and ``port`` (0: any free port).

    Every interface means one dual-stack socket where the system has them, so
    that IPv4 and IPv6 clients find the listener on the same port even when the
    system chooses it. A host name gets a socket per address, all on one port.
    """
    if host is None and socket.has_dualstack_ipv6():
        sock = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
        sock.setblocking(False)
        no_delay(sock)  # accepted sockets inherit it (Linux); each is set again when accepted
        return [sock]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, address in dict.fromkeys((info[0], info[4][:2]) for info in infos):
            chosen = port or (sockets[0].getsockname()[1] if sockets else 0)  # the port chosen for the first
            sockets.append(socket.create_server((address[0], chosen), family=family))
            sockets[-1].setblocking(False)
            no_delay(sockets[-1])
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class _Spell:
    """A condition that logs one warning when it starts and one line when it ends, counting in between."""

    __slots__ = ("refused", "replaced", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.refused = 0
        self.replaced = 0


class _Slot:
    """An admitted connection: the address it counts against, and its task (TLS) or its protocol (HTTP on)."""

    __slots__ = ("connection", "key", "released", "task")

    def __init__(self, key: str) -> None:
        self.key = key
        self.task: asyncio.Task[None] | None = None
        self.connection: ServerConnection | None = None
        self.released = False

    @property
    def in_handshake(self) -> bool:
        """Still in its TLS or HTTP handshake: nobody has authenticated on it yet."""
        return self.connection is None or self.connection.protocol.state is State.CONNECTING

    def reset(self) -> None:
        if self.connection is not None:
            self.connection.transport.abort()
        elif self.task is not None:
            self.task.cancel()


class Acceptor(asyncio.AbstractServer):
    """Accepts connections on listening sockets within caps, and hands them to ``protocol_factory``.

    An :class:`asyncio.AbstractServer`, so that a ``websockets`` server can stand on it.
    """

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        protocol_factory: Callable[[], ServerConnection],
        *,
        ssl: ssl_module.SSLContext | None = None,
        ssl_handshake_timeout: float = tuning.TLS_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout: float = tuning.CLOSE_TIMEOUT,
        max_connections: int = tuning.MAX_CONNECTIONS,
        max_per_address: int = tuning.MAX_CONNECTIONS_PER_ADDRESS,
    ) -> None:
        if max_connections < 1 or max_per_address < 1:
            raise ValueError("connection caps must be at least 1")
        self._loop = asyncio.get_running_loop()
        self._sockets = tuple(sockets)
        self._factory = protocol_factory
        self._tls: dict[str, Any] = (
            {"ssl": ssl, "ssl_handshake_timeout": ssl_handshake_timeout, "ssl_shutdown_timeout": ssl_shutdown_timeout}
            if ssl is not None
            else {}
        )
        room = descriptor_room()
        self.max_connections = max_connections if room is None else min(max_connections, room)
        if self.max_connections < max_connections:
            log.info("at most %d connections at once, to stay under the open-file limit", self.max_connections)
        self.max_per_address = max_per_address
        self._slots: dict[_Slot, None] = {}  # in the order they were admitted
        self._held: Counter[str] = Counter()
        self._refused = 0
        self._replaced = 0
        self._full: _Spell | None = None  # total cap reached
        self._full_addresses: dict[str, _Spell] = {}  # refusing: an address's cap reached
        self._failing: _Spell | None = None  # accept() fails
        self._retry_wait = tuning.ACCEPT_RETRY_INITIAL_WAIT
        self._retry: asyncio.TimerHandle | None = None
        self._serving = False
        self._closed = False
        self._fallback: list[asyncio.Server] = []

    # -- asyncio.AbstractServer ---------------------------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty once closed)."""
        return () if self._closed else self._sockets

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        """Watch the sockets (or, on a loop that cannot, let it accept without caps)."""
        if self._serving or self._closed:
            return
        self._serving = True
        try:
            self._watch()
        except NotImplementedError:
            log.info("this event loop cannot watch sockets: connections are accepted without caps")
            for sock in self._sockets:
                self._fallback.append(
                    await self._loop.create_server(self._factory, sock=sock, backlog=tuning.ACCEPT_BATCH, **self._tls)
                )

    async def serve_forever(self) -> None:
        await self.start_serving()
        await asyncio.Future()  # until cancelled

    def close(self) -> None:
        """Stop accepting, reset connections still in their opening handshakes, close the sockets."""
        if self._closed:
            return
        self._closed, self._serving = True, False
        if self._retry is not None:
            self._retry.cancel()
        for server in self._fallback:
            server.close()
        for sock in self._sockets:
            if not self._fallback:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        for slot in list(self._slots):
            if slot.in_handshake:
                slot.reset()

    async def wait_closed(self) -> None:
        """Wait until the TLS handshakes under way have stopped."""
        starting = {slot.task for slot in self._slots if slot.connection is None and slot.task is not None}
        if starting:
            await asyncio.wait(starting)
        for server in self._fallback:
            await server.wait_closed()

    # -- counts -------------------------------------------------------------------------------

    @property
    def counts(self) -> ConnectionCounts:
        """Connections held, refused and replaced so far, and the cap in force."""
        return ConnectionCounts(len(self._slots), self._refused, self._replaced, self.max_connections)

    # -- accepting -------------------------------------------------------------------------------

    def _watch(self) -> None:
        for sock in self._sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _unwatch(self) -> None:
        for sock in self._sockets:
            self._loop.remove_reader(sock.fileno())

    def _accept(self, sock: socket.socket) -> None:
        """Accept what is waiting, at most ACCEPT_BATCH connections per loop turn."""
        for _ in range(tuning.ACCEPT_BATCH):
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _CONNECTION_GONE:
                    continue
                self._pause(exc)  # out of descriptors or memory, or anything unforeseen: never spin
                return
            if self._failing is not None:
                self._end_failing()
            self._admit(conn, address)

    def _admit(self, conn: socket.socket, address: Any) -> None:
        """Start a connection within the caps; at the total cap, in place of the oldest still in its handshake."""
        key = address_key(address[0]) if isinstance(address, tuple) else str(address)
        if self._held[key] >= self.max_per_address:
            self._refuse(conn)
            spell = self._full_addresses.get(key)
            if spell is None:
                spell = self._full_addresses[key] = _Spell(self._loop.time())
                log.warning(
                    "refusing connections from %s: %d held, the most one address may hold", key, self._held[key]
                )
            spell.refused += 1
            return
        if len(self._slots) >= self.max_connections:
            if self._full is None:
                self._full = _Spell(self._loop.time())
                log.warning(
                    "%d connections held, the most this listener takes at once: each new one replaces the "
                    "oldest still in its handshake, or is refused if none is",
                    len(self._slots),
                )
            oldest = next((slot for slot in self._slots if slot.in_handshake), None)
            if oldest is None:
                self._refuse(conn)
                self._full.refused += 1
                return
            self._forget(oldest)  # counted out now: its descriptor closes on the next loop turn
            oldest.reset()
            self._replaced += 1
            self._full.replaced += 1
        slot = _Slot(key)
        self._slots[slot] = None
        self._held[key] += 1
        slot.task = self._loop.create_task(self._start(conn, slot))

    def _refuse(self, conn: socket.socket) -> None:
        self._refused += 1
        with contextlib.suppress(OSError):  # already reset by the peer
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        conn.close()

    async def _start(self, conn: socket.socket, slot: _Slot) -> None:
        """Run the TLS handshake, if any, within its deadline, and start the connection's protocol."""
        started = False
        no_delay(conn)
        # our own reference to the protocol: with TLS, uvloop hands back its TLS layer's protocol
        # (asyncio's loop hands back ours), and the transport it returns is the one ours got
        connection = self._factory()
        try:
            transport, _ = await self._loop.connect_accepted_socket(lambda: connection, conn, **self._tls)
            started = True
        except Exception:  # the TLS handshake failed or timed out (asyncio logs it at debug level)
            return
        finally:
            if not started:  # or it was replaced, or the server is closing
                conn.close()
                self._release(slot)
        if slot.released:  # replaced as its TLS handshake ended
            transport.abort()
            return
        slot.connection = connection
        if connection.connection_lost_waiter.done():
            self._release(slot)
        else:
            connection.connection_lost_waiter.add_done_callback(lambda _: self._release(slot))

    def _forget(self, slot: _Slot) -> bool:
        """Count a connection out; False if it already was."""
        if slot.released:
            return False
        slot.released = True
        del self._slots[slot]
        self._held[slot.key] -= 1
        if self._held[slot.key] <= 0:
            del self._held[slot.key]
        return True

    def _release(self, slot: _Slot) -> None:
        """Count out a connection that ended; end the spells of refusals it ends."""
        if not self._forget(slot) or self._closed:
            return
        full = self._full
        if full is not None and len(self._slots) < self.max_connections:
            self._full = None
            log.info(
                "below the connection cap again after %.0f s; %d refused, %d replaced",
                self._loop.time() - full.started,
                full.refused,
                full.replaced,
            )
        spell = self._full_addresses.get(slot.key)
        if spell is not None and self._held[slot.key] < self.max_per_address:
            del self._full_addresses[slot.key]
            log.info(
                "accepting connections from %s again after %.0f s; %d refused",
                slot.key,
                self._loop.time() - spell.started,
                spell.refused,
            )

    # -- accept errors -----------------------------------------------------------------------------

    def _pause(self, exc: OSError) -> None:
        """Stop watching the sockets for a while; log only the first error of a spell."""
        self._unwatch()
        if self._failing is None:
            self._failing = _Spell(self._loop.time())
            self._retry_wait = tuning.ACCEPT_RETRY_INITIAL_WAIT
            log.warning(
                "cannot accept connections (%s) with %d held; trying again every %g s",
                exc.strerror or exc,
                len(self._slots),
                tuning.ACCEPT_RETRY_MAX_WAIT,
            )
        else:
            self._retry_wait = min(2 * self._retry_wait, tuning.ACCEPT_RETRY_MAX_WAIT)
        self._failing.refused += 1
        self._retry = self._loop.call_later(self._retry_wait, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if not self._closed:
            self._watch()

    def _end_failing(self) -> None:
        spell, self._failing = self._failing, None
        assert spell is not None
        log.info(
            "accepting connections again after %.1f s; %d attempts failed",
            self._loop.time() - spell.started,
            spell.refused,
        )
