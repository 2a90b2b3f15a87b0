"""Opening handshakes (protocol §1, §9): routes, subprotocols, authentication hook, odd servers."""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

from engine.replication.auth import PasswordAuthenticator
from engine.replication.blip.websocket import (
    HandshakeRequest,
    _BlipServerConnection,
    _is_lan_host,
    _TolerantClientConnection,
    blipsync_url,
    connect,
)
from engine.replication.errors import (
    HandshakeError,
    HTTPStatusError,
    IncompatibleProtocolError,
    TransportError,
)
from tests.conftest import RAW_WEBSOCKETS_LOG, TIME_UNIT, wait_until
from tests.engine.replication.conftest import EchoServer

MakeServer = Callable[..., Awaitable[EchoServer]]
pytestmark = pytest.mark.both_loops  # the engine runs on either loop (tests/conftest.py)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def test_blipsync_url() -> None:
    assert blipsync_url("ws://h:1/db") == "ws://h:1/db/_blipsync"
    assert blipsync_url("wss://h/db/") == "wss://h/db/_blipsync"
    assert blipsync_url("ws://h:1/db/_blipsync") == "ws://h:1/db/_blipsync"
    for bad in ("http://h/db", "ws://h/", "ws://h/_private", "ws:///db"):
        with pytest.raises(HandshakeError):
            blipsync_url(bad)


@pytest.mark.parametrize(
    ("host", "lan"),
    [("127.0.0.1", True), ("192.168.1.4", True), ("10.0.0.1", True), ("fe80::1", True), ("[::1]", True),
     ("shop-laptop.local", True), ("localhost", True), ("example.com", False), ("8.8.8.8", False)],
)  # fmt: skip
def test_lan_hosts_use_no_proxy(host: str, lan: bool) -> None:
    assert _is_lan_host(host) is lan


@pytest.mark.asyncio
async def test_server_picks_the_first_protocol_the_client_prefers(echo_server: MakeServer) -> None:
    server = await echo_server()
    newest = await connect(server.url)
    assert newest.subprotocol == "BLIP_3+CBMobile_3"
    older = await connect(server.url, subprotocols=["BLIP_3+CBMobile_2", "BLIP_3+CBMobile_3"])
    assert older.subprotocol == "BLIP_3+CBMobile_2"
    for sock in (newest, older):
        sock.start()
        await sock.close()


@pytest.mark.asyncio
async def test_server_refuses_unknown_protocols_and_routes(echo_server: MakeServer) -> None:
    server = await echo_server()
    with pytest.raises(HTTPStatusError) as info:
        await connect(server.url, subprotocols=["BLIP_3+CBMobile_4"])
    assert info.value.status == 400
    with pytest.raises(HTTPStatusError) as missing:
        await connect(server.url.replace("/db", "/other"))
    assert missing.value.status == 404
    host, port = server.server.addresses[0]
    for path in ("/_private/_blipsync", "/db/_changes", "/"):
        with pytest.raises(Exception, match="404"):
            async with ws_connect(
                f"ws://{host}:{port}{path}",
                subprotocols=["BLIP_3+CBMobile_3"],  # type: ignore[list-item]
                logger=RAW_WEBSOCKETS_LOG,
            ):
                pass


@pytest.mark.asyncio
async def test_authentication_hook(echo_server: MakeServer) -> None:
    seen: list[HandshakeRequest] = []

    def authenticate(request: HandshakeRequest) -> str:
        seen.append(request)
        if request.headers.get("Authorization") != "Basic " + base64.b64encode(b"bob:pw").decode():
            raise HTTPStatusError(401, "unauthorized", headers={"WWW-Authenticate": 'Basic realm="test"'})
        return "bob"

    server = await echo_server(authenticator=authenticate)
    with pytest.raises(HTTPStatusError) as info:
        await connect(server.url)
    assert info.value.status == 401 and info.value.headers["WWW-Authenticate"] == 'Basic realm="test"'
    assert str(info.value) == "sign-in refused: wrong or missing user name, password or client certificate (HTTP 401)"
    good = await connect(server.url, headers={"Authorization": "Basic " + base64.b64encode(b"bob:pw").decode()})
    good.start()
    await asyncio.wait_for(_first(server), 5 * TIME_UNIT)
    assert server.sockets[0].context == {"database": "db", "principal": "bob"}
    assert seen[-1].database == "db"
    await good.close()


@pytest.mark.asyncio
async def test_failed_negotiations_leave_nothing_behind(echo_server: MakeServer) -> None:
    """Handshakes that pass the route and authentication, then fail (no common subprotocol),
    keep no connection (and its buffers, about 12 KB each) alive in the server."""

    def live_connections() -> int:
        gc.collect()
        return sum(isinstance(o, _BlipServerConnection) for o in gc.get_objects())

    server = await echo_server(authenticator=lambda _request: "bob")
    before = live_connections()
    for _ in range(200):
        with pytest.raises(HTTPStatusError, match="HTTP 400"):
            await connect(server.url, subprotocols=["BLIP_3+CBMobile_4"])
    await wait_until(lambda: not server.server._server.handler_tasks)  # type: ignore[union-attr]
    await wait_until(lambda: live_connections() <= before)
    good = await connect(server.url)
    good.start()
    await asyncio.wait_for(_first(server), 5 * TIME_UNIT)
    assert server.sockets[0].context == {"database": "db", "principal": "bob"}
    await good.close()


@pytest.mark.asyncio
async def test_duplicate_authorization_headers_are_a_bad_request(
    echo_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Credentials in the URL plus an explicit header: answered 400 before authentication, no traceback."""
    calls: list[HandshakeRequest] = []
    password = PasswordAuthenticator.from_users({"bob": "pw"})

    def authenticate(request: HandshakeRequest) -> str:
        calls.append(request)
        return password(request)

    server = await echo_server(authenticator=authenticate)
    host, port = server.server.addresses[0]
    credentials = base64.b64encode(b"bob:pw").decode()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"GET /db/_blipsync HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(bytes(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: BLIP_3+CBMobile_3\r\n"
            f"Authorization: Basic {credentials}\r\nAuthorization: Basic {credentials}\r\n\r\n"
        ).encode()
    )
    response = await asyncio.wait_for(reader.read(), 5 * TIME_UNIT)  # the server closes after answering
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 400 Bad Request"
    assert rest.endswith(b"\r\n\r\nduplicate Authorization header\n")
    assert calls == []
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    good = await connect(server.url, headers={"Authorization": f"Basic {credentials}"})  # one header is fine
    good.start()
    await good.close()


async def _first(server: EchoServer) -> None:
    while not server.sockets:
        await asyncio.sleep(0.005)


# -- servers that misbehave --------------------------------------------------------


@pytest_asyncio.fixture
async def raw_server() -> AsyncIterator[Callable[[Callable[[bytes], bytes]], Awaitable[str]]]:
    """A bare TCP server answering the upgrade with whatever ``respond(key)`` returns."""
    servers: list[asyncio.Server] = []

    async def make(respond: Callable[[bytes], bytes]) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key")
            )
            writer.write(respond(key))
            writer.write(b"\x88\x02\x03\xe8")  # then a close frame (1000)
            await writer.drain()
            await reader.read(64)  # the client's close frame, or EOF
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/db"

    yield make
    for server in servers:
        server.close()
        await server.wait_closed()


def accept(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID.encode()).digest())


def upgrade(status_line: bytes, key: bytes, protocol: bytes | None) -> bytes:
    lines = [status_line, b"Upgrade: websocket", b"Connection: Upgrade", b"Sec-WebSocket-Accept: " + accept(key)]
    if protocol is not None:
        lines.append(b"Sec-WebSocket-Protocol: " + protocol)
    return b"\r\n".join(lines) + b"\r\n\r\n"


@pytest.mark.asyncio
async def test_http_1_0_status_line_is_accepted(raw_server: Callable[..., Awaitable[str]]) -> None:
    url = await raw_server(lambda key: upgrade(b"HTTP/1.0 101 Switching Protocols", key, b"BLIP_3+CBMobile_3"))
    sock = await connect(url)
    assert sock.subprotocol == "BLIP_3+CBMobile_3"
    sock.start()
    await asyncio.wait_for(sock.wait_closed(), 5 * TIME_UNIT)


class PiecewiseServer:
    """A bare TCP server that writes its answer to the upgrade in two pieces, cut at ``cut``
    bytes, and writes the second only once the client has read the first (one TCP read each)."""

    def __init__(self, respond: Callable[[bytes], bytes], *, close_frame: bool) -> None:
        self.respond = respond
        self.close_frame = close_frame
        self.cut = 1
        self.reads: list[bytes] = []
        self.read = asyncio.Event()

    def record(self, data: bytes) -> None:
        self.reads.append(bytes(data))
        self.read.set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        response = self.respond(key)
        self.read.clear()
        writer.write(response[: self.cut])
        await writer.drain()
        await asyncio.wait_for(self.read.wait(), 5 * TIME_UNIT)
        writer.write(response[self.cut :])
        if self.close_frame:
            writer.write(b"\x88\x02\x03\xe8")  # a close frame (1000)
            await writer.drain()
            await reader.read(64)  # the client's close frame, or EOF
        writer.close()


@pytest_asyncio.fixture
async def piecewise_server(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[..., Awaitable[tuple[str, PiecewiseServer]]]]:
    servers: list[asyncio.Server] = []
    piecewise: list[PiecewiseServer] = []
    original = _TolerantClientConnection.data_received

    def recording(self: _TolerantClientConnection, data: bytes) -> None:
        if piecewise:
            piecewise[-1].record(data)
        original(self, data)

    monkeypatch.setattr(_TolerantClientConnection, "data_received", recording)

    async def make(respond: Callable[[bytes], bytes], *, close_frame: bool) -> tuple[str, PiecewiseServer]:
        piecewise.append(PiecewiseServer(respond, close_frame=close_frame))
        server = await asyncio.start_server(piecewise[-1].handle, "127.0.0.1", 0)
        servers.append(server)
        return f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/db", piecewise[-1]

    yield make
    for server in servers:
        server.close()
        await server.wait_closed()


HTTP_1_0_101 = b"HTTP/1.0 101 Switching Protocols"
HTTP_1_0_401 = b"HTTP/1.0 401 Unauthorized"


@pytest.mark.asyncio
async def test_http_1_0_101_split_anywhere_in_its_status_line(
    piecewise_server: Callable[..., Awaitable[tuple[str, PiecewiseServer]]],
) -> None:
    """Couchbase Lite 2.8/3.0 answer ``HTTP/1.0 101`` (protocol §9); the first TCP read may end anywhere in it."""
    url, server = await piecewise_server(lambda key: upgrade(HTTP_1_0_101, key, b"BLIP_3+CBMobile_3"), close_frame=True)
    for cut in range(1, 21):
        server.cut, server.reads = cut, []
        sock = await connect(url)
        assert server.reads[0] == HTTP_1_0_101[:cut]
        assert sock.subprotocol == "BLIP_3+CBMobile_3"
        sock.start()
        await asyncio.wait_for(sock.wait_closed(), 5 * TIME_UNIT)


def unauthorized(_key: bytes) -> bytes:
    """A Couchbase Lite 3.0 listener's refusal: HTTP/1.0, a challenge, a body that ends with the connection."""
    return (
        HTTP_1_0_401 + b'\r\nWWW-Authenticate: Basic charset="UTF-8"\r\nContent-Type: text/plain\r\n\r\nUnauthorized\n'
    )


@pytest.mark.asyncio
async def test_http_1_0_401_is_an_http_status_error(
    piecewise_server: Callable[..., Awaitable[tuple[str, PiecewiseServer]]],
) -> None:
    url, server = await piecewise_server(unauthorized, close_frame=False)
    for cut in range(1, 21):
        server.cut, server.reads = cut, []
        with pytest.raises(HTTPStatusError) as info:
            await connect(url)
        assert server.reads[0] == HTTP_1_0_401[:cut]
        assert (
            info.value.status == 401
            and str(info.value)
            == "sign-in refused: wrong or missing user name, password or client certificate (HTTP 401)"
        )
        assert info.value.headers["WWW-Authenticate"] == 'Basic charset="UTF-8"'


@pytest.mark.asyncio
async def test_no_subprotocol_in_the_answer(raw_server: Callable[..., Awaitable[str]]) -> None:
    url = await raw_server(lambda key: upgrade(b"HTTP/1.1 101 Switching Protocols", key, None))
    with pytest.raises(IncompatibleProtocolError):
        await connect(url)


@pytest.mark.asyncio
async def test_a_subprotocol_we_did_not_offer(raw_server: Callable[..., Awaitable[str]]) -> None:
    url = await raw_server(lambda key: upgrade(b"HTTP/1.1 101 Switching Protocols", key, b"BLIP_3+CBMobile_4"))
    with pytest.raises(IncompatibleProtocolError):
        await connect(url)


@pytest.mark.asyncio
async def test_wrong_accept_key(raw_server: Callable[..., Awaitable[str]]) -> None:
    url = await raw_server(lambda key: upgrade(b"HTTP/1.1 101 Switching Protocols", b"wrong", b"BLIP_3+CBMobile_3"))
    with pytest.raises(HandshakeError, match="invalid WebSocket handshake"):
        await connect(url)


@pytest.mark.asyncio
async def test_connection_refused_is_a_transport_error() -> None:
    async with ws_serve(lambda _ws: asyncio.sleep(0), "127.0.0.1", 0, logger=RAW_WEBSOCKETS_LOG) as server:
        port = next(iter(server.sockets)).getsockname()[1]
    with pytest.raises(TransportError):
        await connect(f"ws://127.0.0.1:{port}/db", open_timeout=5 * TIME_UNIT)
