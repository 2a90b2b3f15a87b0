"""The listener's accept path: connection caps, handshake deadlines, heartbeats, accept errors."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import resource
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio

from engine.database import Database
from engine.replication.blip import acceptor
from engine.replication.blip.acceptor import Acceptor, address_key, descriptor_room, listening_sockets
from engine.replication.blip.websocket import ServerLimits, connect
from engine.replication.replicator_types import ReplicatorType
from tests.conftest import TIME_UNIT, wait_until
from tests.engine.replication.certificates import client_hello, tls_contexts
from tests.engine.replication.conftest import EchoServer, Peers

MakeServer = Callable[..., Awaitable[EchoServer]]
PROJECT = Path(__file__).resolve().parents[4]

#: the accept path is where the two loops differ most (uvloop hands back its TLS layer as the protocol)
pytestmark = pytest.mark.both_loops


def test_address_keys() -> None:
    assert address_key("192.168.1.4") == "192.168.1.4"
    assert address_key("::ffff:192.168.1.4") == "192.168.1.4"  # an IPv4 client of a dual-stack socket
    assert address_key("2001:DB8:0::1") == "2001:db8::1"
    assert address_key("2001:db8::2") != address_key("2001:db8::1")  # a LAN shares its /64: not grouped
    assert address_key("fe80::1%eth0") == "fe80::1%eth0"
    assert address_key("not an address") == "not an address"


@pytest.mark.parametrize(
    ("soft", "room"), [(1024, 896), (4096, 3968), (256, 128), (100, 50), (resource.RLIM_INFINITY, None)]
)
def test_descriptor_room(monkeypatch: pytest.MonkeyPatch, soft: int, room: int | None) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (soft, resource.RLIM_INFINITY))
    assert descriptor_room(128) == room


@pytest.mark.parametrize(
    "bad",
    [{"max_connections": 0}, {"max_connections_per_address": 0}, {"handshake_timeout": 0},
     {"tls_handshake_timeout": -1}, {"close_timeout": 0}],
)  # fmt: skip
def test_limits_that_would_serve_nobody_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ServerLimits(**bad)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_the_cap_fits_the_open_file_limit(echo_server: MakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, 4096))
    server = await echo_server(limits=ServerLimits(max_connections=5000))
    assert server.server.connection_counts.limit == 896
    small = await echo_server(limits=ServerLimits(max_connections=100))
    assert small.server.connection_counts.limit == 100


@pytest.mark.asyncio
@pytest.mark.parametrize("host", ["127.0.0.1", None])
async def test_accepted_connections_send_small_writes_at_once(host: str | None) -> None:
    # TCP_NODELAY on the listening sockets and on every accepted one: a small BLIP message must not
    # wait for the peer's delayed ACK (Nagle's algorithm made an edit take 44 ms to reach a peer)
    transports: list[asyncio.BaseTransport] = []

    class Recorder(asyncio.Protocol):
        def __init__(self) -> None:
            self.connection_lost_waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.protocol = SimpleNamespace(state=None)  # past its handshake, for the caps

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transports.append(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            self.connection_lost_waiter.set_result(None)

    sockets = await listening_sockets(host, 0)
    server = Acceptor(sockets, Recorder)  # type: ignore[arg-type]  # any protocol with a lost-waiter
    await server.start_serving()
    try:
        assert all(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for sock in sockets)
        _reader, writer = await asyncio.open_connection("127.0.0.1", sockets[0].getsockname()[1])
        await wait_until(lambda: len(transports) == 1)
        accepted = transports[0].get_extra_info("socket")
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


# -- caps ---------------------------------------------------------------------------------------


async def reset_at_once(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed the connection without a byte of answer."""
    try:
        return await asyncio.wait_for(reader.read(100), 5 * TIME_UNIT) == b""
    except ConnectionResetError:
        return True


async def refused(host: str, port: int, source: str | None = None) -> bool:
    """Whether a new connection is reset at once (on loopback, often before connect() returns)."""
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0) if source else None)
    except ConnectionResetError:
        return True
    try:
        return await reset_at_once(reader)
    finally:
        writer.close()


def accept_path_records(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == acceptor.__name__ and r.levelno == level]


@pytest.mark.asyncio
async def test_connections_over_the_cap_are_reset_at_once(
    echo_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """At the cap, with every connection open (past its handshake), a newcomer is reset at once;
    one warning for the spell, and a line when it ends with the number refused."""
    caplog.set_level(logging.INFO, acceptor.__name__)
    server = await echo_server(limits=ServerLimits(max_connections=5, max_connections_per_address=100))
    host, port = server.server.addresses[0]
    clients = [await server.client() for _ in range(5)]
    await wait_until(lambda: len(server.sockets) == 5)
    for _ in range(20):
        assert await refused(host, port)
    counts = server.server.connection_counts
    assert (counts.held, counts.refused, counts.replaced, counts.limit) == (5, 20, 0, 5)
    assert accept_path_records(caplog) == [
        "5 connections held, the most this listener takes at once: each new one replaces the oldest still in "
        "its handshake, or is refused if none is"
    ]
    await clients.pop().close()  # one leaves: a newcomer gets in
    await wait_until(lambda: server.server.connection_counts.held == 4)
    [ended] = accept_path_records(caplog, logging.INFO)
    assert ended.startswith("below the connection cap again after ") and ended.endswith(" s; 20 refused, 0 replaced")
    clients.append(await server.client())
    await wait_until(lambda: len(server.sockets) == 6)
    for client in clients:
        await client.close()
    await wait_until(lambda: server.server.connection_counts.held == 0)
    assert len(accept_path_records(caplog)) == 1


@pytest.mark.asyncio
async def test_at_the_cap_a_newcomer_replaces_the_oldest_handshake(echo_server: MakeServer) -> None:
    """Connections that never finish their handshake cannot lock clients out until their deadline:
    at the cap, each newcomer takes the place of the oldest of them."""
    server = await echo_server(limits=ServerLimits(max_connections=5, max_connections_per_address=100))
    host, port = server.server.addresses[0]
    opened = await server.client()
    silent = [await asyncio.open_connection(host, port) for _ in range(4)]
    await wait_until(lambda: server.server.connection_counts.held == 5)
    newcomer = await server.client()  # in place of the first silent one
    assert await reset_at_once(silent[0][0])
    await wait_until(lambda: len(server.sockets) == 2)
    counts = server.server.connection_counts
    assert (counts.held, counts.refused, counts.replaced) == (5, 0, 1)
    later = [await server.client() for _ in range(3)]  # the other silent ones make room in turn
    assert all([await reset_at_once(reader) for reader, _writer in silent])
    assert server.server.connection_counts.replaced == 4
    assert await refused(host, port)  # all five are open now: nothing to replace
    assert not any(client.closed for client in [opened, newcomer, *later])
    for _reader, writer in silent:
        writer.close()
    for client in [opened, newcomer, *later]:
        await client.close()
    await wait_until(lambda: server.server.connection_counts.held == 0)


@pytest.mark.asyncio
async def test_one_address_cannot_take_every_connection(
    echo_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await echo_server(limits=ServerLimits(max_connections=100, max_connections_per_address=3))
    host, port = server.server.addresses[0]
    try:
        greedy = [await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0)) for _ in range(3)]
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address on this system")
    await wait_until(lambda: server.server.connection_counts.held == 3)
    for _ in range(10):
        assert await refused(host, port, "127.0.0.2")
    other = await server.client()  # from 127.0.0.1
    await wait_until(lambda: len(server.sockets) == 1)
    assert server.server.connection_counts.refused == 10
    assert accept_path_records(caplog) == ["refusing connections from 127.0.0.2: 3 held, the most one address may hold"]
    await other.close()
    for _reader, writer in greedy:
        writer.close()
    await wait_until(lambda: server.server.connection_counts.held == 0)


@pytest.mark.asyncio
async def test_a_loop_that_cannot_watch_sockets_still_serves(
    echo_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows' proactor loop has no add_reader: the server falls back to the loop's own accept path."""

    def unsupported(*_args: object) -> None:
        raise NotImplementedError

    monkeypatch.setattr(asyncio.get_running_loop(), "add_reader", unsupported)
    server = await echo_server()
    client = await server.client()
    await wait_until(lambda: len(server.sockets) == 1)
    await client.close()


# -- handshake deadlines ----------------------------------------------------------------------

UPGRADE = (
    "GET /db/_blipsync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {base64.b64encode(bytes(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: BLIP_3+CBMobile_3\r\n" + "X-Padding: 0123456789\r\n" * 50 + "\r\n"
).encode()


async def dribble(writer: asyncio.StreamWriter, data: bytes) -> None:
    """A slowloris: one byte every 50 ms."""
    for byte in data:
        writer.write(bytes((byte,)))
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def tls_pair(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    return tls_contexts()


DEADLINE = 0.3


@pytest.mark.asyncio
@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize("abuse", ["silent", "partial", "dribbled"])
async def test_slow_or_partial_handshakes_are_cut_at_the_deadline(
    echo_server: MakeServer, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext], tls: bool, abuse: str
) -> None:
    """Nothing sent, half a request (or a ClientHello) then nothing, or every byte 50 ms apart:
    each connection is closed at the handshake deadline, not the default 10 s later."""
    limits = ServerLimits(tls_handshake_timeout=DEADLINE, handshake_timeout=DEADLINE)
    server = await echo_server(limits=limits, ssl=tls_pair[0] if tls else None)
    host, port = server.server.addresses[0]
    first_flight = client_hello() if tls else UPGRADE
    loop = asyncio.get_running_loop()
    # the clock starts before the connection does: the server's deadline runs from its accept, which
    # can come well before this coroutine resumes on a loaded machine, so an earlier start is the
    # only one that bounds the connection's life from below
    started = loop.time()
    reader, writer = await asyncio.open_connection(host, port)
    sender = None
    if abuse == "partial":
        writer.write(first_flight[: len(first_flight) // 2])
    elif abuse == "dribbled":
        sender = asyncio.create_task(dribble(writer, first_flight))
    try:
        assert await reset_at_once(reader)
    finally:
        if sender is not None:
            sender.cancel()
        writer.close()
    assert DEADLINE - 0.05 < loop.time() - started < DEADLINE + 2 * TIME_UNIT
    if sender is not None:
        assert not sender.done() or sender.cancelled()  # cut before the request was through
    await wait_until(lambda: server.server.connection_counts.held == 0)


# -- heartbeats ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_peer_that_stops_answering_pings_is_closed(echo_server: MakeServer) -> None:
    """A client that completes the upgrade, then neither reads nor answers, is closed after
    ping_interval + ping_timeout, its socket released close_timeout later; one that answers stays."""
    limits = ServerLimits(ping_interval=0.2, ping_timeout=0.2, close_timeout=0.2)
    server = await echo_server(limits=limits)
    healthy = await server.client()
    await wait_until(lambda: len(server.sockets) == 1)
    host, port = server.server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(UPGRADE)
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5 * TIME_UNIT)).startswith(b"HTTP/1.1 101")
    await wait_until(lambda: len(server.sockets) == 2)
    stuck = server.sockets[1]
    loop = asyncio.get_running_loop()
    opened = loop.time()
    await asyncio.wait_for(stuck.wait_closed(), 0.2 + 0.2 + 0.2 + 2 * TIME_UNIT)
    await wait_until(lambda: server.server.connection_counts.held == 1)
    assert loop.time() - opened < 0.6 + 1.0 * TIME_UNIT
    close_sent = stuck.ws.protocol.close_sent
    assert close_sent is not None and (close_sent.code, close_sent.reason) == (1011, "keepalive ping timeout")
    assert not healthy.closed and not server.sockets[0].closed  # after several pings
    writer.close()
    await healthy.close()


# -- out of descriptors ---------------------------------------------------------------------------


class LimitedListener:
    """The listener of limited_listener.py in a child process, and what it says."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.logs: list[dict[str, Any]] = []

    async def ask(self, command: str, answer: str) -> dict[str, Any]:
        """Send ``command``; return its answer (the first line with the key ``answer``)."""
        assert self.process.stdin is not None
        if command:
            self.process.stdin.write(command.encode() + b"\n")
        return await self.until(lambda line: answer in line)

    async def until(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.process.stdout.readline(), 20 * TIME_UNIT)
            assert raw, "the listener process ended"
            line = json.loads(raw)
            if "log" in line:
                self.logs.append(line)
            if predicate(line):
                return line


@pytest_asyncio.fixture
async def limited_listener(tmp_path: Path) -> AsyncIterator[tuple[LimitedListener, str]]:
    with Database(tmp_path / "shop", durable=False) as db, db.batch() as batch:
        for i in range(20):
            batch.save(f"item{i}", {"n": i})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.engine.replication.blip.limited_listener", str(tmp_path / "shop"), "256",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=PROJECT,
    )  # fmt: skip
    child = LimitedListener(process)
    port = (await child.ask("", "port"))["port"]
    yield child, f"ws://127.0.0.1:{port}/shop"
    assert process.stdin is not None
    process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), 10 * TIME_UNIT)
    except TimeoutError:
        process.kill()
        await process.wait()


@pytest.mark.asyncio
async def test_out_of_descriptors_the_listener_pauses_and_logs_once(
    limited_listener: tuple[LimitedListener, str], peers: Peers
) -> None:
    """With every descriptor taken, accept() fails (EMFILE) for as long as clients wait: one
    warning for the spell, no busy loop, and a normal sync right after descriptors come back.
    asyncio's own accept path logged hundreds of errors a second here (up to 4,600 at 100% CPU)."""
    child, url = limited_listener
    assert (await child.ask("fill", "filled"))["filled"] > 100
    host, port = url.removeprefix("ws://").split("/")[0].split(":")
    waiting = [await asyncio.open_connection(host, int(port)) for _ in range(10)]  # queued by the kernel
    await child.until(lambda line: "cannot accept connections" in line.get("message", ""))
    window = await child.ask("measure 1.0", "records")
    assert window["records"] == 0
    assert window["cpu"] < 0.3  # not spinning (a busy loop is about 1.0)
    await child.ask("free", "freed")
    db = peers.database("client")
    replicator = peers.replicator(db, url, type=ReplicatorType.PULL, max_attempts=1)
    replicator.start()
    status = await asyncio.wait_for(replicator.wait_stopped(), 20 * TIME_UNIT)
    assert status.error is None and len(db.doc_ids()) == 20
    await child.until(lambda line: "accepting connections again" in line.get("message", ""))
    warnings = [line for line in child.logs if line["log"] in ("WARNING", "ERROR", "CRITICAL")]
    warnings = [w for w in warnings if not w["message"].startswith("TLS is disabled")]  # at start: a plain ws:// test
    assert [w["message"].split(" (")[0] for w in warnings] == ["cannot accept connections"]
    for _reader, writer in waiting:
        writer.close()


@pytest.mark.asyncio
async def test_a_tls_connection_is_counted_until_it_ends(
    echo_server: MakeServer, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """Held while open, counted out when it closes, and stop() is prompt after it (uvloop hands
    back its own TLS layer from connect_accepted_socket, not the protocol the acceptor made)."""
    server = await echo_server(ssl=tls_pair[0])
    host, port = server.server.addresses[0]
    client = await connect(f"wss://{host}:{port}/db", ssl=tls_pair[1])
    client.start()
    await wait_until(lambda: server.server.connection_counts.held == 1 and len(server.sockets) == 1)
    await client.close()
    await wait_until(lambda: server.server.connection_counts.held == 0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await server.server.stop()
    assert loop.time() - started < 2 * TIME_UNIT


@pytest.mark.asyncio
async def test_stop_does_not_wait_for_handshakes_under_way(
    echo_server: MakeServer, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """Connections still in their TLS or HTTP handshake are reset by stop(), not waited for (10 s each)."""
    plain, tls = await echo_server(), await echo_server(ssl=tls_pair[0])
    connections = [await asyncio.open_connection(*plain.server.addresses[0]) for _ in range(5)]
    connections += [await asyncio.open_connection(*tls.server.addresses[0]) for _ in range(5)]
    connections[-1][1].write(client_hello()[:20])
    await wait_until(lambda: plain.server.connection_counts.held == 5 and tls.server.connection_counts.held == 5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(plain.server.stop(), tls.server.stop())
    assert loop.time() - started < 2 * TIME_UNIT
    for reader, writer in connections:
        assert await reset_at_once(reader)
        writer.close()
