"""Fixtures for BLIP over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest_asyncio

from engine.database import Database
from engine.replication.auth import AllowedUser, BasicAuthenticator, PasswordAuthenticator
from engine.replication.blip.socket import BlipSocket
from engine.replication.blip.websocket import BlipServer, connect
from engine.replication.listener import ListenerConfiguration, URLEndpointListener
from engine.replication.passwords import PasswordHash, hash_password
from engine.replication.replicator import Replicator
from engine.replication.replicator_types import ActivityLevel, ReplicatorConfiguration, ReplicatorStatus
from engine.userdata import open_database
from tests.conftest import TIME_UNIT

Setup = Callable[[BlipSocket], None]


class EchoServer:
    """A BlipServer on 127.0.0.1 whose connections run ``setup`` then live until closed."""

    def __init__(self, setup: Setup | None = None, **options: object) -> None:
        self.setup = setup or (lambda _sock: None)
        self.sockets: list[BlipSocket] = []
        self.server = BlipServer(accepts_database=lambda db: db == "db", on_connection=self._on_connection, **options)  # type: ignore[arg-type]

    async def _on_connection(self, sock: BlipSocket) -> None:
        self.sockets.append(sock)
        self.setup(sock)
        sock.start()
        await sock.wait_closed()

    @property
    def url(self) -> str:
        host, port = self.server.addresses[0]
        return f"ws://{host}:{port}/db"

    async def client(self, setup: Setup | None = None, **options: object) -> BlipSocket:
        sock = await connect(self.url, **options)  # type: ignore[arg-type]
        if setup:
            setup(sock)
        sock.start()
        return sock


@pytest_asyncio.fixture
async def echo_server() -> AsyncIterator[Callable[..., Awaitable[EchoServer]]]:
    servers: list[EchoServer] = []

    async def make(setup: Setup | None = None, **options: object) -> EchoServer:
        server = EchoServer(setup, **options)
        await server.server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.server.stop()


# -- replication between real databases --------------------------------------------------


USERS = {"bob": "secret"}
#: Test hashes cost little: a real one (scrypt n=2**14) takes about 0.1 s per handshake.
CHEAP_SCRYPT_N = 2**4


def password_authenticator(users: dict[str, str] | None = None) -> PasswordAuthenticator:
    """A listener's password check for ``users`` (default USERS), hashed at a low scrypt cost."""
    entries = (users or USERS).items()
    return PasswordAuthenticator.from_users(
        AllowedUser(name, password_hash=PasswordHash.parse(hash_password(password, n=CHEAP_SCRYPT_N)))
        for name, password in entries
    )


class Peers:
    """Databases, listeners and replicators for one test, all cleaned up afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.databases: list[Database] = []
        self.listeners: list[URLEndpointListener] = []
        self.replicators: list[Replicator] = []

    def database(self, name: str, **options: Any) -> Database:
        """A database as the app opens it (durable commits, the bodies a list merge needs), unless ``options`` say otherwise."""
        db = open_database(self.root / name) if not options else Database(self.root / name, **options)
        self.databases.append(db)
        return db

    async def listener(self, db: Database, **options: Any) -> URLEndpointListener:
        options.setdefault("host", "127.0.0.1")
        options.setdefault("authenticator", password_authenticator())
        listener = URLEndpointListener(ListenerConfiguration(db, **options))
        await listener.start()
        self.listeners.append(listener)
        return listener

    def replicator(self, db: Database, target: URLEndpointListener | str, **options: Any) -> Replicator:
        url = target if isinstance(target, str) else target.urls[0]
        options.setdefault("authenticator", BasicAuthenticator("bob", "secret"))
        options.setdefault("max_attempt_wait", 0.2)
        replicator = Replicator(ReplicatorConfiguration(db, url, **options))
        self.replicators.append(replicator)
        return replicator

    async def replicate(self, db: Database, target: URLEndpointListener | str, **options: Any) -> Replicator:
        """Run a one-shot replication to completion; fail on error."""
        replicator = self.replicator(db, target, **options)
        replicator.start()
        status = await asyncio.wait_for(replicator.wait_stopped(), 60 * TIME_UNIT)
        assert status.error is None, status.error
        return replicator

    async def close(self) -> None:
        for replicator in self.replicators:
            await replicator.stop()
        for listener in self.listeners:
            await listener.stop()
        for db in self.databases:
            db.close()


@pytest_asyncio.fixture
async def peers(tmp_path: Path) -> AsyncIterator[Peers]:
    group = Peers(tmp_path)
    yield group
    await group.close()


async def wait_for_activity(replicator: Replicator, *levels: ActivityLevel, timeout: float = 20.0) -> ReplicatorStatus:
    """Wait until the replicator reports one of ``levels``."""
    if replicator.status.activity in levels:
        return replicator.status
    reached: asyncio.Future[ReplicatorStatus] = asyncio.get_running_loop().create_future()

    def check(status: ReplicatorStatus) -> None:
        if status.activity in levels and not reached.done():
            reached.set_result(status)

    remove = replicator.add_change_listener(check)
    try:
        return await asyncio.wait_for(reached, timeout * TIME_UNIT)
    finally:
        remove()


async def raw_upgrade(
    url: str, *, authorization: str | None = None, local_host: str | None = None, then: bytes = b""
) -> bytes:
    """Send a BLIP upgrade request to ``url`` (``then`` right after it); return every byte the server
    sends until it closes, or until the end of the response head if it switches protocols."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    local = (local_host, 0) if local_host else None
    reader, writer = await asyncio.open_connection(host, port, local_addr=local)
    lines = [
        f"GET {parts.path}/_blipsync HTTP/1.1",
        f"Host: {parts.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(bytes(16)).decode()}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: BLIP_3+CBMobile_3,BLIP_3+CBMobile_2",
    ]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + then)
    received = b""
    try:
        async with asyncio.timeout(10 * TIME_UNIT):
            while chunk := await reader.read(65536):
                received += chunk
                if received.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in received:
                    break
        return received
    finally:
        writer.close()


def basic(user: str, password: str) -> str:
    """An ``Authorization`` header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
