"""Asyncio adapter: one :class:`BlipConnection` over one ``websockets`` connection.

The adapter only loops: read a frame, feed it, dispatch the events, write the
frames the core produces. Requests are answered by handlers registered per
``Profile``; an unknown profile gets ``BLIP``/404 "no handler for message"
(protocol §2.9); a handler that raises :class:`BlipError` sends that error, and
one that raises anything else sends ``BLIP``/500 without details, and the
connection lives on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed as WebSocketClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import Event, State

from engine.replication import tuning
from engine.replication.blip.connection import BlipConnection, IncomingBudget, Message, ReplyReceived
from engine.replication.errors import BlipError, ConnectionClosedError, ProtocolError, close_code_for

__all__ = ["BlipSocket", "DirectFrames", "Handler", "Reply"]

log = logging.getLogger(__name__)


class DirectFrames:
    """Mixin for ``websockets`` connections: hand whole data frames straight to a sink, a read's worth at a time.

    ``websockets`` queues each incoming message for an ``async for`` reader;
    for BLIP, whose every frame is a small WebSocket message, that costs more
    than the frame's own processing. Once :meth:`send_frames_to` has set a
    sink, unfragmented data frames are collected as they are parsed
    (``process_event`` is the hook ``websockets`` documents for subclasses) and
    handed over in one call once the bytes of one read are parsed. Once a
    fragmented message appears, every later frame takes the queue, so that
    order is kept.
    """

    frame_sink: Callable[[list[bytes | str]], None] | None = None
    _arrived: list[bytes | str]

    def send_frames_to(self, sink: Callable[[list[bytes | str]], None]) -> None:
        """From now on, hand whole data frames to ``sink``, in order, each read's in one list."""
        self._arrived = []
        self.frame_sink = sink

    def process_event(self, event: Event) -> None:
        if self.frame_sink is not None and isinstance(event, Frame) and event.opcode in _DATA_OPCODES:
            if event.fin:
                data = bytes(event.data)
                self._arrived.append(data if event.opcode is Opcode.BINARY else data.decode(errors="replace"))
                return
            self._hand_over()  # the whole frames before this fragment go first
            self.frame_sink = None
        super().process_event(event)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        self._hand_over()

    def _hand_over(self) -> None:
        if self.frame_sink is not None and self._arrived:
            arrived, self._arrived = self._arrived, []
            self.frame_sink(arrived)


_DATA_OPCODES = (Opcode.BINARY, Opcode.TEXT)


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler answers: properties, body, and whether to compress it."""

    properties: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    compressed: bool = False


#: A request handler: returns a Reply (or None for an empty reply), an awaitable
#: of one, or an asyncio Future that resolves to one (a deferred reply).
Handler = Callable[[Message], Reply | Awaitable[Reply | None] | None]


class BlipSocket:
    """A BLIP connection over an open WebSocket. Call :meth:`start` once.

    ``max_unfinished_bytes`` caps the bytes of incoming messages still being
    received on this connection, and ``incoming_budget`` (shared by the
    connections of a server) caps them over several connections; exceeding
    either closes the connection with 1009. They are freed when it closes.
    """

    def __init__(
        self,
        ws: Connection,
        *,
        subprotocol: str,
        name: str = "",
        max_message_size: int = tuning.MAX_MESSAGE_SIZE,
        max_unfinished_bytes: int = tuning.MAX_UNFINISHED_BYTES,
        incoming_budget: IncomingBudget | None = None,
    ) -> None:
        self.ws = ws
        self.subprotocol = subprotocol
        self.name = name or str(ws.remote_address)
        self.context: dict[str, Any] = {}
        self._conn = BlipConnection(
            max_message_size=max_message_size, max_unfinished_bytes=max_unfinished_bytes, shared_budget=incoming_budget
        )
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._wake = asyncio.Event()
        self._flush_scheduled = False
        self._draining = False
        self._closed = asyncio.Event()
        self._tasks: set[asyncio.Future[Reply | None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._failure: ProtocolError | None = None
        self._closing: asyncio.Task[None] | None = None

    # -- set-up ------------------------------------------------------------------

    def register(self, profile: str, handler: Handler) -> None:
        """Answer requests with ``Profile: profile`` with ``handler``."""
        self._handlers[profile] = handler

    def start(self) -> None:
        """Start reading and writing."""
        if self._reader is not None:
            raise RuntimeError("BlipSocket already started")
        if isinstance(self.ws, DirectFrames):
            self.ws.send_frames_to(self._receive_direct)
        self._reader = asyncio.create_task(self._read_loop(), name=f"blip-read {self.name}")
        self._writer = asyncio.create_task(self._write_loop(), name=f"blip-write {self.name}")

    def receiving_requests_before(self, number: int) -> bool:
        """Whether a request the peer sent before request ``number`` is still arriving."""
        return self._conn.receiving_requests_before(number)

    @property
    def closed(self) -> bool:
        """Whether the connection has ended."""
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Wait until the connection has ended."""
        await self._closed.wait()

    # -- requests -------------------------------------------------------------------

    def send_request(
        self,
        profile: str,
        properties: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        compressed: bool = False,
        urgent: bool = False,
        no_reply: bool = False,
    ) -> asyncio.Future[Message] | None:
        """Queue a ``profile`` request; return a future for its reply (None for NoReply).

        Urgent requests are written at once; others at the end of the event-loop turn.

        The future's result is the reply; an ERR reply sets :class:`BlipError`
        and a lost connection :class:`ConnectionClosedError`.

        Raises:
            ConnectionClosedError: the connection has ended.
        """
        if self.closed:
            raise ConnectionClosedError(f"connection to {self.name} is closed", code=self.close_code)
        props = {"Profile": profile, **properties} if properties else {"Profile": profile}
        number = self._conn.send_request(props, body, compressed=compressed, urgent=urgent, no_reply=no_reply)
        if urgent and not self._draining:
            self._flush()  # now, not after whatever work is already waiting on the loop
        else:
            self._schedule_flush()
        if no_reply:
            return None
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[number] = future
        return future

    async def request(
        self,
        profile: str,
        properties: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        compressed: bool = False,
        urgent: bool = False,
        no_reply: bool = False,
    ) -> Message | None:
        """Send a ``profile`` request and wait for its reply (None for NoReply).

        Raises:
            BlipError: the peer answered with an error.
            ConnectionClosedError: the connection ended first.
        """
        future = self.send_request(profile, properties, body, compressed=compressed, urgent=urgent, no_reply=no_reply)
        return None if future is None else await future

    # -- closing --------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with a WebSocket close code and wait until it has ended."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        if self._writer is not None and not self.closed:
            self._flush()
        try:
            await asyncio.wait_for(self.ws.close(code, reason[:120]), tuning.CLOSE_TIMEOUT)
        except (TimeoutError, OSError):
            self.ws.transport.abort()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=tuning.CLOSE_TIMEOUT)
        self._finish()

    def _finish(self) -> None:
        self._conn.close()  # drops half-received messages, gives their bytes back to a shared budget
        for task in (self._writer, *self._tasks):
            if task is not None and not task.done():
                task.cancel()
        error = ConnectionClosedError(f"connection to {self.name} closed", code=self.close_code)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        self._closed.set()

    # -- loops ------------------------------------------------------------------------

    def _receive(self, data: bytes | str) -> None:
        """Feed one WebSocket message to the core and dispatch what completes."""
        if self.closed:
            return
        self._receive_frame(data)
        self._schedule_flush()

    def _receive_frame(self, data: bytes | str) -> None:
        if isinstance(data, str):
            raise ProtocolError("text WebSocket message")
        conn = self._conn
        conn.receive_frame(data)
        for event in conn.events_received():  # dispatched frame by frame: handlers see the state right after it
            if isinstance(event, ReplyReceived):
                self._resolve(event.message)
            else:
                self._dispatch(event.message)

    def _receive_direct(self, frames: list[bytes | str]) -> None:
        """The frames of one read, handed over by the connection as they arrive (see ``DirectFrames``)."""
        if self._failure is not None or self.closed:
            return
        try:
            for data in frames:
                self._receive_frame(data)
        except ProtocolError as exc:
            self._failure = exc.with_traceback(None)  # kept: its frames would keep their buffers alive
            self._conn.close()  # free what it buffered now, not after the closing handshake
            self._closing = asyncio.create_task(self._close_for(exc))
            return
        self._schedule_flush()

    async def _close_for(self, exc: ProtocolError) -> None:
        log.warning("closing %s: %s", self.name, exc)
        self.close_code, self.close_reason = close_code_for(exc), str(exc)
        try:
            await asyncio.wait_for(self.ws.close(self.close_code, self.close_reason[:120]), tuning.CLOSE_TIMEOUT)
        except (TimeoutError, OSError):
            self.ws.transport.abort()

    async def _read_loop(self) -> None:
        try:
            # With a DirectFrames connection, frames arrive through _receive_direct and this
            # loop only sees the rare fragmented message; it ends when the connection closes.
            async for data in self.ws:
                self._receive(data)
        except ProtocolError as exc:
            self._conn.close()
            await self._close_for(exc)
        except WebSocketClosed:
            pass
        finally:
            if self._closing is not None:
                await asyncio.wait([self._closing], timeout=tuning.CLOSE_TIMEOUT)
            if self.close_code is None:
                self.close_code = self.ws.close_code
                self.close_reason = self.ws.close_reason or ""
            self._finish()

    async def _write_loop(self) -> None:
        """Wait out TCP back-pressure, then go on flushing."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self.ws.drain()
                self._draining = False
                self._flush()
        except (WebSocketClosed, OSError):
            pass

    def flush(self) -> None:
        """Write what is queued now, unless TCP pushes back (then the write loop does, as it drains)."""
        if not self._draining and not self.closed:
            self._flush()

    def _schedule_flush(self) -> None:
        """Write queued frames at the end of this event-loop turn, in one batch."""
        if not self._flush_scheduled and not self._draining:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Hand every frame the core allows to the WebSocket in one write, until TCP pushes back.

        Frames go through the WebSocket library's sans-I/O protocol and leave
        in a single ``writelines`` call: one system call for many frames.
        """
        self._flush_scheduled = False
        protocol, transport = self.ws.protocol, self.ws.transport
        while not self._draining and protocol.state is State.OPEN:
            frames = self._conn.frames_to_send(limit=tuning.WRITE_BATCH_FRAMES)
            if not frames:
                return
            for frame in frames:
                protocol.send_binary(frame)
            transport.writelines(protocol.data_to_send())
            if transport.get_write_buffer_size() > tuning.WRITE_BUFFER_HIGH:
                self._draining = True
                self._wake.set()

    # -- dispatch ---------------------------------------------------------------------

    def _resolve(self, message: Message) -> None:
        future = self._pending.pop(message.number, None)
        if future is None or future.done():
            return
        if message.is_error:
            future.set_exception(message.error())
        else:
            future.set_result(message)

    def _dispatch(self, message: Message) -> None:
        handler = self._handlers.get(message.properties.get("Profile", ""))
        if handler is None:
            if not message.no_reply:
                self._conn.send_error(message.number, "BLIP", 404, "no handler for message")
            return
        try:
            result = handler(message)
        except Exception as exc:
            self._answer_error(message, exc)
            return
        if result is None or type(result) is Reply:  # the usual answers: no awaitable check
            if not message.no_reply:
                self._answer(message, result)
        elif inspect.isawaitable(result):
            # a Future (a deferred reply) stays as it is; a coroutine becomes a task we can cancel
            future = asyncio.ensure_future(result)
            if future is not result:
                self._tasks.add(future)
                future.add_done_callback(self._tasks.discard)
            future.add_done_callback(lambda done: self._answer_future(message, done))
        else:
            self._answer(message, result)

    def _answer_future(self, message: Message, done: asyncio.Future[Reply | None]) -> None:
        if done.cancelled():  # only when the connection is going away
            return
        if (exc := done.exception()) is not None:
            self._answer_error(message, exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
        else:
            self._answer(message, done.result())
        self._schedule_flush()

    def _answer(self, message: Message, result: Reply | None) -> None:
        if message.no_reply or self.closed:
            return
        if result is None:
            self._conn.send_reply(message.number)
        else:
            self._conn.send_reply(message.number, result.properties, result.body, compressed=result.compressed)
        if message.urgent and not self._draining:
            self._flush()  # a reply to an urgent request goes now, as urgent requests do

    def _answer_error(self, message: Message, exc: Exception) -> None:
        if isinstance(exc, BlipError):
            log.debug("%s request on %s refused: %s", message.profile, self.name, exc)
        else:
            log.error("handler for %s on %s failed", message.profile, self.name, exc_info=exc)
        if message.no_reply or self.closed:
            return
        if isinstance(exc, BlipError):
            self._conn.send_error(message.number, exc.domain, exc.code, exc.message)
        else:
            self._conn.send_error(message.number, "BLIP", 500, "internal error")
