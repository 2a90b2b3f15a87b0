"""A listener under abuse (issue 12): after each kind, a normal sync still completes at the first
attempt, and every connection the abuse opened is gone, with the memory it held."""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import os
import random
import socket
import tracemalloc
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Subprotocol

from engine.replication.blip.codec import encode_varint
from engine.replication.blip.websocket import ServerLimits, _BlipServerConnection, blipsync_url, connect
from engine.replication.errors import HTTPStatusError
from engine.replication.listener import ConnectionEvent, URLEndpointListener
from engine.replication.replicator_types import ReplicatorType
from engine.replication.server_validation import ServerValidation
from tests.conftest import RAW_WEBSOCKETS_LOG, TIME_UNIT, wait_until
from tests.engine.replication.certificates import client_hello, test_identity
from tests.engine.replication.conftest import USERS, Peers

pytestmark = pytest.mark.asyncio

DOCS = 50
MIB = 1 << 20
#: Short deadlines, so that abuse that waits them out ends quickly; every connection from 127.0.0.1.
LIMITS = ServerLimits(
    max_connections=1000,
    max_connections_per_address=1000,
    tls_handshake_timeout=1.0,
    handshake_timeout=1.0,
    close_timeout=1.0,
)
CREDENTIALS = {"Authorization": "Basic " + base64.b64encode(b"bob:" + USERS["bob"].encode()).decode()}


#: Every server connection object still alive.
LIVE: weakref.WeakSet[_BlipServerConnection] = weakref.WeakSet()


def no_server_connection_alive() -> bool:
    if LIVE:
        gc.collect()  # connections, transports and tasks refer to each other
    return not LIVE


@dataclass
class Shop:
    """A listener serving DOCS documents, the clients' TLS context if it uses TLS, and what it announced."""

    peers: Peers
    listener: URLEndpointListener
    client_tls: ServerValidation | None
    caplog: pytest.LogCaptureFixture
    events: list[ConnectionEvent] = field(default_factory=list)
    syncs: int = 0

    @property
    def address(self) -> tuple[str, int]:
        port = self.listener.port
        assert port is not None
        return "127.0.0.1", port

    @property
    def url(self) -> str:
        return self.listener.urls[0]

    async def normal_sync(self) -> None:
        """A one-shot pull into a new database: at the first attempt, within a generous timeout."""
        self.syncs += 1
        db = self.peers.database(f"client{self.syncs}", durable=False)
        replicator = self.peers.replicator(
            db, self.listener, type=ReplicatorType.PULL, max_attempts=1, tls=self.client_tls
        )
        replicator.start()
        status = await asyncio.wait_for(replicator.wait_stopped(), 20 * TIME_UNIT)
        assert status.error is None, status.error
        assert len(db.doc_ids()) == DOCS

    async def settled(self) -> None:
        """Every connection gone: none held by the accept path, none open, no connection object alive."""
        await wait_until(lambda: self.listener.connection_counts.held == 0, 10)
        self.caplog.clear()  # a captured record of a closing connection's error would keep it alive
        await wait_until(no_server_connection_alive, 10)
        assert self.listener.status.connection_count == 0


MakeShop = Callable[..., Awaitable[Shop]]


@pytest_asyncio.fixture
async def shop(
    peers: Peers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[MakeShop]:
    made: list[Shop] = []
    original = _BlipServerConnection.__init__

    def tracked(self: _BlipServerConnection, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        LIVE.add(self)

    monkeypatch.setattr(_BlipServerConnection, "__init__", tracked)

    async def make(*, tls: bool = False) -> Shop:
        """The shop's listener (the same one on every call: hypothesis runs its examples against one)."""
        if made:
            return made[0]
        db = peers.database("shop", durable=False)
        with db.batch() as batch:
            for i in range(DOCS):
                batch.save(f"item{i}", {"name": f"item {i}", "qty": i})
        identity = test_identity() if tls else None
        client_tls = ServerValidation.pinned(identity.certificate) if identity is not None else None
        listener = await peers.listener(db, database_name="shop", tls=identity, limits=LIMITS)
        made.append(Shop(peers, listener, client_tls, caplog))
        listener.add_connection_listener(made[0].events.append)
        await made[0].normal_sync()  # warm: what a first sync allocates once is not counted as abuse
        await made[0].settled()
        return made[0]

    yield make


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.read(), 10 * TIME_UNIT)
    except ConnectionResetError:
        return b""


UPGRADE = (
    "GET /shop/_blipsync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {base64.b64encode(bytes(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
    f"Sec-WebSocket-Protocol: BLIP_3+CBMobile_3\r\nAuthorization: {CREDENTIALS['Authorization']}\r\n\r\n"
).encode()


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
async def test_garbage_instead_of_a_handshake(shop: MakeShop, tls: bool) -> None:
    served = await shop(tls=tls)
    rng = random.Random(12)
    connections = [await asyncio.open_connection(*served.address) for _ in range(40)]
    for i, (_reader, writer) in enumerate(connections):  # half of them end their "request"
        writer.write(rng.randbytes(rng.randrange(1, 4000)) + (b"\r\n\r\n" if i % 2 else b""))
    answers = await asyncio.gather(*(read_to_end(reader) for reader, _writer in connections))
    for _reader, writer in connections:
        writer.close()
    assert tls or all(answer.startswith(b"HTTP/1.1 400 ") or answer == b"" for answer in answers)
    await served.normal_sync()
    await served.settled()


async def test_a_wrong_subprotocol(shop: MakeShop) -> None:
    served = await shop()
    for _ in range(40):
        with pytest.raises(HTTPStatusError, match="HTTP 400"):
            await connect(served.url, headers=CREDENTIALS, subprotocols=["BLIP_3+CBMobile_9"])
    await served.normal_sync()
    await served.settled()


def frames() -> st.SearchStrategy[list[bytes]]:
    """Random bytes, and random bytes behind a plausible frame header (message number, flags)."""
    framed = st.builds(
        lambda number, flags, body: encode_varint(number) + bytes((flags,)) + body,
        st.integers(0, 1 << 40),
        st.integers(0, 255),
        st.binary(max_size=300),
    )
    return st.lists(st.one_of(st.binary(max_size=100), framed), min_size=1, max_size=8)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sent=frames())
async def test_random_blip_frames_after_a_valid_handshake(
    shop: MakeShop, sent: list[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    # the record of "closing ...: <error>" holds the error, whose traceback holds the connection
    caplog.set_level(logging.ERROR, "engine.replication.blip.socket")
    served = await shop()
    async with ws_connect(
        blipsync_url(served.url),
        subprotocols=[Subprotocol("BLIP_3+CBMobile_3")],
        additional_headers=CREDENTIALS,
        logger=RAW_WEBSOCKETS_LOG,
    ) as ws:
        for frame in sent:
            await ws.send(frame)
        await asyncio.wait_for(ws.close(), 10 * TIME_UNIT)
    await served.normal_sync()
    await served.settled()


def send_huge_frame(address: tuple[str, int], payload: bytes) -> bytes:
    """Upgrade, then send one masked binary frame of len(payload) bytes; return what came back."""
    with socket.create_connection(address) as sock:
        sock.sendall(UPGRADE)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        header = b"\x82\xff" + len(payload).to_bytes(8, "big") + os.urandom(4)
        try:
            sock.sendall(header + payload[:4096])
            sock.sendall(memoryview(payload)[4096:])
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while the frame was on its way
        received = head.partition(b"\r\n\r\n")[2]
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
        return received


async def test_a_50_mb_frame(shop: MakeShop) -> None:
    """Refused from its header on (1009, more than 1 MiB): it is never held in memory."""
    served = await shop()
    payload = bytes(50 * MIB)  # allocated before tracing starts
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        received = await asyncio.to_thread(send_huge_frame, served.address, payload)
        peak = tracemalloc.get_traced_memory()[1]
        assert received[:1] == b"\x88" and received[2:4] == b"\x03\xf1"  # a close frame: 1009, message too big
        assert peak - before < 4 * MIB
        await served.normal_sync()
        await served.settled()
    finally:
        tracemalloc.stop()


async def test_hundreds_of_idle_connections(shop: MakeShop) -> None:
    """200 clients that open a WebSocket and do nothing more: a sync goes on meanwhile, and
    once they leave, the memory they held is given back."""
    served = await shop()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        idle = [
            await ws_connect(
                blipsync_url(served.url),
                subprotocols=[Subprotocol("BLIP_3+CBMobile_3")],
                additional_headers=CREDENTIALS,
                logger=RAW_WEBSOCKETS_LOG,
            )
            for _ in range(200)
        ]
        await wait_until(lambda: served.listener.status.connection_count == 200)
        held = tracemalloc.get_traced_memory()[0]
        await served.normal_sync()
        await asyncio.gather(*(ws.close() for ws in idle))
        del idle
        await served.settled()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held - before > 2 * MIB  # what they cost (both ends of each connection live in this process)
    assert after - before < (held - before) / 10


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
async def test_hundreds_of_half_open_connections(shop: MakeShop, tls: bool) -> None:
    """200 connections that send nothing (and, with TLS, 100 that start a handshake and stop or
    leave): a sync goes on meanwhile, and the handshake deadline closes them."""
    served = await shop(tls=tls)
    silent = [await asyncio.open_connection(*served.address) for _ in range(200)]
    if tls:
        hello = client_hello()
        for i in range(100):
            _reader, writer = await asyncio.open_connection(*served.address)
            writer.write(hello[: len(hello) // 2])
            if i % 2:
                writer.close()
    await served.normal_sync()
    for reader, _writer in silent:
        assert await read_to_end(reader) == b""  # cut by the server at the deadline
    for _reader, writer in silent:
        writer.close()
    await served.settled()


async def test_a_slowloris(shop: MakeShop) -> None:
    """100 clients dribbling their upgrade request a byte every 50 ms: a sync goes on meanwhile,
    and the handshake deadline cuts them before their requests are through."""
    served = await shop()
    connections = [await asyncio.open_connection(*served.address) for _ in range(100)]

    async def dribble(writer: asyncio.StreamWriter) -> None:
        for byte in UPGRADE:
            writer.write(bytes((byte,)))
            await asyncio.sleep(0.05)

    senders = [asyncio.create_task(dribble(writer)) for _reader, writer in connections]
    await served.normal_sync()
    for reader, _writer in connections:
        assert await read_to_end(reader) == b""
    assert not any(sender.done() for sender in senders)  # cut before their requests were through
    for sender in senders:
        sender.cancel()
    for _reader, writer in connections:
        writer.close()
    await served.settled()
