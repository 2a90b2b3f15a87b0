"""BLIP over real WebSockets on 127.0.0.1: requests, handlers, errors, load, flow control."""

from __future__ import annotations

import asyncio
import random
import tracemalloc
import zlib
from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Subprotocol

from engine.replication import tuning
from engine.replication.blip.codec import encode_message, encode_varint
from engine.replication.blip.connection import IncomingBudget, Message
from engine.replication.blip.socket import BlipSocket, Reply
from engine.replication.blip.websocket import blipsync_url
from engine.replication.errors import BlipError, ConnectionClosedError
from tests.conftest import RAW_WEBSOCKETS_LOG, TIME_UNIT, wait_until
from tests.engine.replication.conftest import EchoServer

MakeServer = Callable[..., Awaitable[EchoServer]]


def echo(message: Message) -> Reply:
    return Reply({"echo": message.properties.get("n", "")}, message.body, compressed=message.compressed)


async def slow_echo(message: Message) -> Reply:
    await asyncio.sleep(0)
    return echo(message)


def serve_echo(sock: BlipSocket) -> None:
    sock.register("echo", echo)
    sock.register("slow-echo", slow_echo)

    def fail(_: Message) -> Reply:
        raise RuntimeError("secret internal detail")

    def refuse(_: Message) -> Reply:
        raise BlipError("HTTP", 409, "conflict")

    sock.register("fail", fail)
    sock.register("refuse", refuse)


@pytest.mark.asyncio
async def test_request_and_reply(echo_server: MakeServer) -> None:
    server = await echo_server(serve_echo)
    client = await server.client()
    reply = await client.request("echo", {"n": "7"}, b"hello")
    assert reply is not None and reply.properties == {"echo": "7"} and reply.body == b"hello"
    assert client.subprotocol == "BLIP_3+CBMobile_3"
    assert await client.request("echo", None, b"x", no_reply=True) is None
    await client.close()


@pytest.mark.asyncio
async def test_errors_and_the_connection_lives_on(echo_server: MakeServer) -> None:
    server = await echo_server(serve_echo)
    client = await server.client()
    with pytest.raises(BlipError) as unknown:
        await client.request("nope")
    assert (unknown.value.domain, unknown.value.code, unknown.value.message) == ("BLIP", 404, "no handler for message")
    with pytest.raises(BlipError) as failed:
        await client.request("fail")
    assert failed.value.code == 500 and "secret" not in failed.value.message
    with pytest.raises(BlipError) as refused:
        await client.request("refuse")
    assert (refused.value.domain, refused.value.code) == ("HTTP", 409)
    assert (await client.request("slow-echo", None, b"still here")).body == b"still here"  # type: ignore[union-attr]
    await client.close()


@pytest.mark.asyncio
async def test_a_thousand_concurrent_requests_both_directions(echo_server: MakeServer) -> None:
    # all interleaved, these requests are about 100 MB half-received at once on each side: more
    # than replication ever keeps in flight (tuning.MAX_UNFINISHED_BYTES), so allow them here
    allowance = 256 << 20
    server = await echo_server(serve_echo, max_unfinished_bytes=allowance, incoming_budget=IncomingBudget(allowance))
    client = await server.client(serve_echo, max_unfinished_bytes=allowance)
    await wait_until(lambda: bool(server.sockets))
    server_side = server.sockets[0]
    rnd = random.Random(7)
    sizes = [min(1 << 20, (1 << (i % 21)) - 1) for i in range(1000)]

    async def run(sock: BlipSocket, tag: str) -> None:
        bodies = [rnd.randbytes(size) for size in sizes]
        futures = [
            sock.send_request("echo" if i % 3 else "slow-echo", {"n": f"{tag}{i}"}, body, compressed=i % 4 == 0)
            for i, body in enumerate(bodies)
        ]
        replies = await asyncio.gather(*futures)  # type: ignore[arg-type]
        for i, reply in enumerate(replies):
            assert reply.properties["echo"] == f"{tag}{i}" and reply.body == bodies[i]

    await asyncio.wait_for(asyncio.gather(run(client, "c"), run(server_side, "s")), 120 * TIME_UNIT)
    await client.close()


async def sink_server(echo_server: MakeServer) -> tuple[list[bytes], EchoServer, BlipSocket]:
    """A server that keeps the bodies of ``sink`` requests, and a client connected to it."""
    received: list[bytes] = []
    server = await echo_server(lambda sock: sock.register("sink", lambda m: received.append(m.body)))
    return received, server, await server.client()


@pytest.mark.asyncio
async def test_slow_reader_makes_the_sender_pause(echo_server: MakeServer) -> None:
    received, server, client = await sink_server(echo_server)
    await wait_until(lambda: bool(server.sockets))
    server.sockets[0].ws.transport.pause_reading()
    body = b"\x07" * (8 << 20)
    future = client.send_request("sink", None, body)
    outgoing = client._conn._unfinished[(True, 1)]
    await wait_until(lambda: bool(client._conn._paused))  # BLIP flow control holds the message back
    assert outgoing.pos < len(body) // 4
    assert client.ws.transport.get_write_buffer_size() <= 4 * tuning.MAX_UNACKED_BYTES
    server.sockets[0].ws.transport.resume_reading()
    assert future is not None
    await asyncio.wait_for(future, 30 * TIME_UNIT)
    assert received == [body]
    await client.close()


@pytest.mark.asyncio
@pytest.mark.asyncio_loop  # it records the writes of asyncio's transport (uvloop's cannot be patched)
async def test_urgent_requests_are_written_at_once(echo_server: MakeServer) -> None:
    received, _, client = await sink_server(echo_server)
    transport = client.ws.transport
    writes: list[int] = []
    original = transport.writelines

    def recording(data: list[bytes]) -> None:
        writes.append(len(data))  # WebSocket frames per write (client frames are masked)
        original(data)

    transport.writelines = recording  # type: ignore[method-assign]
    client.send_request("sink", None, b"normal", no_reply=True)
    assert writes == []  # written at the end of this event-loop turn
    client.send_request("sink", None, b"urgent", urgent=True, no_reply=True)
    assert writes == [2]  # the urgent one, and the one queued before it
    await wait_until(lambda: len(received) == 2)
    assert received == [b"normal", b"urgent"]
    await client.close()


@pytest.mark.asyncio
async def test_closing_fails_pending_requests(echo_server: MakeServer) -> None:
    never = asyncio.Event()

    async def hang(_: Message) -> Reply:
        await never.wait()
        return Reply()

    server = await echo_server(lambda sock: sock.register("hang", hang))
    client = await server.client()
    pending = asyncio.ensure_future(client.request("hang"))
    await wait_until(lambda: bool(server.sockets))
    await server.server.stop()
    with pytest.raises(ConnectionClosedError):
        await asyncio.wait_for(pending, 5 * TIME_UNIT)
    await client.wait_closed()
    assert client.close_code == 1001  # the listener went away
    with pytest.raises(ConnectionClosedError):
        client.send_request("echo")


@pytest.mark.asyncio
async def test_text_message_is_a_protocol_error(echo_server: MakeServer) -> None:
    server = await echo_server(serve_echo)
    client = await server.client()
    await client.ws.send("not binary")
    await asyncio.wait_for(client.wait_closed(), 5 * TIME_UNIT)
    assert client.close_code == 1002


@pytest.mark.asyncio
async def test_garbage_frame_closes_only_that_connection(echo_server: MakeServer) -> None:
    server = await echo_server(serve_echo)
    bad = await server.client()
    good = await server.client()
    await bad.ws.send(b"\x01\x00garbage!")
    await asyncio.wait_for(bad.wait_closed(), 5 * TIME_UNIT)
    assert bad.close_code == 1002
    assert (await good.request("echo", None, b"ok")).body == b"ok"  # type: ignore[union-attr]
    await good.close()


# -- memory held by unfinished incoming messages ----------------------------------------

MIB = 1 << 20


class RawBlipClient:
    """A bare WebSocket client that writes hand-made BLIP frames (running CRC, one deflate stream, §2.6-2.7)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.crc = 0
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15, 9)

    @classmethod
    async def connect(cls, server: EchoServer) -> RawBlipClient:
        return cls(
            await ws_connect(
                blipsync_url(server.url), subprotocols=[Subprotocol("BLIP_3+CBMobile_3")], logger=RAW_WEBSOCKETS_LOG
            )
        )

    async def send_zeros(self, number: int, *, first: bool, more: bool) -> None:
        """One compressed NoReply frame of request ``number`` carrying 1 MiB of zeros (about 1 KB on the wire)."""
        chunk = (encode_message({"Profile": "flood"}) if first else b"") + bytes(MIB)
        payload = (self.deflater.compress(chunk) + self.deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]
        self.crc = zlib.crc32(chunk, self.crc)
        flags = 0x28 | (0x40 if more else 0)
        await self.ws.send(encode_varint(number) + bytes((flags,)) + payload + self.crc.to_bytes(4, "big"))


@pytest.mark.asyncio
async def test_unfinished_messages_are_capped_over_all_connections(echo_server: MakeServer) -> None:
    """Two clients each stay within their own allowance but not within the server's total: the
    one that goes over is closed with 1009, its buffers are freed, and the server goes on."""
    slack = 4096  # room for the properties at the start of each message
    budget = IncomingBudget(6 * MIB + slack)
    server = await echo_server(serve_echo, incoming_budget=budget, max_unfinished_bytes=4 * MIB + slack)
    tracemalloc.start()
    try:
        first = await RawBlipClient.connect(server)
        for k in range(3):
            await first.send_zeros(1, first=k == 0, more=True)
        await wait_until(lambda: budget.used > 3 * MIB)
        second = await RawBlipClient.connect(server)
        for k in range(3):
            await second.send_zeros(1, first=k == 0, more=True)
        await wait_until(lambda: budget.used > 6 * MIB)
        holding = tracemalloc.get_traced_memory()[0]
        await second.send_zeros(1, first=False, more=True)  # 4 MiB: its own allowance, but 7 MiB in all
        await asyncio.wait_for(second.ws.wait_closed(), 5 * TIME_UNIT)
        assert second.ws.close_code == 1009
        assert budget.used < 3 * MIB + slack  # the first client's message only
        assert holding - tracemalloc.get_traced_memory()[0] > 2 * MIB  # the closed one's buffers are gone
    finally:
        tracemalloc.stop()
    newcomer = await server.client()
    body = random.Random(3).randbytes(MIB)
    assert (await newcomer.request("echo", None, body)).body == body  # type: ignore[union-attr]
    await first.send_zeros(1, first=False, more=False)  # the first client finishes its message
    await wait_until(lambda: budget.used == 0)
    assert all(sock._conn.unfinished_bytes == 0 for sock in server.sockets)
    await first.ws.close()
    await newcomer.close()
