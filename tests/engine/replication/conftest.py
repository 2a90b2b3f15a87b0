"""Fixtures for BLIP over real sockets on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio

from engine.replication.blip_socket import BlipSocket
from engine.replication.websocket import BlipServer, connect

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
