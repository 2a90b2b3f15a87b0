"""A BLIP connection over an upgraded asyncio stream, with LiteCore's strictness.

Glue between a socket, websockets' sans-I/O :class:`~websockets.protocol.Protocol` (framing
only; no permessage-deflate, protocol §1) and :class:`~tests.litecore_peer.blip.BlipProtocol`.
Every WebSocket message must be binary and at most 65,500 bytes (a LiteCore 3.0 peer stalls on
a bigger one, protocol §9). Anything the peer does that LiteCore refuses or chokes on is a
*violation*: it is appended to the owner's ``violations`` list and the connection is closed with
WebSocket code 4002 "An exception was thrown", as LiteCore does after an assertion (§3.7, §9).
(For a frame-level error LiteCore's BLIPIO itself closes with 1011 and ignores a text message
with a warning; the double reports both the same way, as the brief asks.)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.protocol import SEND_EOF, Protocol, Side, State

from tests.litecore_peer.blip import BIG_FRAME, BlipProtocol, BlipViolationError, Message, Outgoing

__all__ = ["EXCEPTION_CLOSE", "MAX_WS_MESSAGE", "BlipConnection", "ConnectionClosedError", "Handler"]

log = logging.getLogger(__name__)

#: protocol §9: a LiteCore 3.0 peer stalls on a single frame larger than about this.
MAX_WS_MESSAGE = 65_500
#: C/include/c4SocketTypes.h kWebSocketCloseAppPermanent, LiteCore's close after an exception.
EXCEPTION_CLOSE = (4002, "An exception was thrown")

Handler = Callable[[Message], Awaitable[None] | None]


class ConnectionClosedError(Exception):
    """The connection closed before a reply arrived."""


class BlipConnection:
    """One BLIP-over-WebSocket connection (client or server side)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        client: bool,
        violations: list[str],
        name: str = "peer",
        frame_size: int = BIG_FRAME,
    ) -> None:
        self.name = name
        self.violations = violations
        self._reader = reader
        self._writer = writer
        self._ws = Protocol(Side.CLIENT if client else Side.SERVER, state=State.OPEN, max_size=None)
        self._blip = BlipProtocol(frame_size)
        self._handlers: dict[str, Handler] = {}
        #: Called with every complete request before its handler; False stops it there.
        self.before_dispatch: Callable[[Message], bool] | None = None
        self._replies: dict[int, asyncio.Future[Message]] = {}
        self._pending: dict[int, Outgoing] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._fragments: list[bytes] | None = None
        self._failed = False
        self.closed: asyncio.Future[tuple[int | None, str]] = asyncio.get_running_loop().create_future()
        #: (code, reason) of the close frame the peer sent, if any.
        self.close_received: tuple[int, str] | None = None
        self.close_sent: tuple[int, str] | None = None

    # -- set-up ------------------------------------------------------------------------------

    def register(self, profile: str, handler: Handler) -> None:
        """Call ``handler`` for each request with this Profile (a coroutine runs as a task)."""
        self._handlers[profile] = handler

    def start(self) -> None:
        self._spawn(self._read_loop())
        self._spawn(self._write_loop())

    @property
    def is_open(self) -> bool:
        return self._ws.state is State.OPEN and not self._failed

    # -- sending -----------------------------------------------------------------------------

    async def request(
        self,
        profile: str,
        properties: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        compressed: bool = False,
        urgent: bool = False,
    ) -> Message:
        """Send a request and wait for its reply (an error reply is returned, not raised)."""
        return await self.send_request(profile, properties, body, compressed=compressed, urgent=urgent)

    def send_request(
        self,
        profile: str,
        properties: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        compressed: bool = False,
        urgent: bool = False,
    ) -> Awaitable[Message]:
        """Queue a request now (it keeps its place in the send order); await the result for its reply."""
        if not self.is_open:
            raise ConnectionClosedError(f"{self.name}: connection closed")
        outgoing = self._blip.send_request(
            [("Profile", profile), *properties], body, compressed=compressed, urgent=urgent
        )
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[id(outgoing)] = outgoing
        self._replies[id(outgoing)] = future
        self._wake.set()

        async def reply() -> Message:
            try:
                return await future
            finally:
                self._pending.pop(id(outgoing), None)
                self._replies.pop(id(outgoing), None)

        return reply()

    def send_no_reply(
        self,
        profile: str,
        properties: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        compressed: bool = False,
        urgent: bool = False,
    ) -> None:
        """Send a NoReply request."""
        if not self.is_open:
            return
        self._blip.send_request(
            [("Profile", profile), *properties], body, compressed=compressed, urgent=urgent, no_reply=True
        )
        self._wake.set()

    def reply(
        self,
        request: Message,
        properties: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        compressed: bool = False,
    ) -> None:
        """Answer ``request`` (nothing for a NoReply request, as LiteCore's MessageIn::respond)."""
        if request.no_reply or not self.is_open:
            return
        self._blip.send_reply(request, properties, body, compressed=compressed)
        self._wake.set()

    def reply_error(self, request: Message, domain: str, code: int, message: str = "") -> None:
        """Answer ``request`` with an error (protocol §2.9)."""
        if request.no_reply or not self.is_open:
            return
        props = [("Error-Domain", domain), ("Error-Code", str(code))]
        self._blip.send_reply(request, props, message.encode(), error=True)
        self._wake.set()

    def send_raw(self, data: bytes, *, text: bool = False) -> None:
        """Send hand-made bytes as one WebSocket message, bypassing BLIP (for negative tests)."""
        if text:
            self._ws.send_text(data)
        else:
            self._ws.send_binary(data)
        self._flush()

    # -- strictness --------------------------------------------------------------------------

    def violation(self, text: str) -> None:
        """Record a violation and close with 4002, as LiteCore does after an assertion."""
        log.warning("%s: violation: %s", self.name, text)
        self.violations.append(text)
        if self._failed:
            return
        self._failed = True
        if self._ws.state is State.OPEN:
            self.close_sent = EXCEPTION_CLOSE
            self._ws.send_close(*EXCEPTION_CLOSE)
            self._flush()
        self._cancel_replies()

    # -- closing -----------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "", timeout: float = 5.0) -> None:
        """Close the WebSocket and wait for the peer to finish the close handshake."""
        if self._ws.state is State.OPEN:
            self.close_sent = (code, reason)
            self._ws.send_close(code, reason)
            self._flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        self._abort()

    async def wait_closed(self) -> tuple[int | None, str]:
        return await asyncio.shield(self.closed)

    def _abort(self) -> None:
        self._writer.close()
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        self._finish_closed()

    def _finish_closed(self) -> None:
        self._cancel_replies()
        if not self.closed.done():
            code, reason = self.close_received or (None, "")
            self.closed.set_result((code, reason))

    def _cancel_replies(self) -> None:
        for future in self._replies.values():
            if not future.done():
                future.set_exception(ConnectionClosedError(f"{self.name}: connection closed"))

    # -- I/O loops ---------------------------------------------------------------------------

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: task failed", self.name, exc_info=task.exception())

    def _flush(self) -> None:
        for chunk in self._ws.data_to_send():
            if chunk == SEND_EOF:
                if self._writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        self._writer.write_eof()
            elif not self._writer.is_closing():
                self._writer.write(chunk)

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._ws.state is State.OPEN and not self._failed:
                frame = self._blip.next_frame()
                if frame is None:
                    break
                self._ws.send_binary(frame)
                self._flush()
                self._resolve_sent()
                try:
                    await self._writer.drain()
                except ConnectionError:
                    return

    def _resolve_sent(self) -> None:
        # Map the replies the BLIP layer now expects to their futures (numbers are assigned late).
        for key, outgoing in list(self._pending.items()):
            if outgoing.reply is not None and not self._replies[key].done():
                self._replies[key].set_result(outgoing.reply)

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    data = await self._reader.read(65536)
                except ConnectionError:
                    data = b""
                if not data:
                    self._ws.receive_eof()
                    self._flush()
                    break
                self._ws.receive_data(data)
                for event in self._ws.events_received():
                    if isinstance(event, Frame):
                        self._on_ws_frame(event.opcode, bytes(event.data), event.fin)
                self._flush()
                if self._ws.state is State.CLOSED:
                    break
        finally:
            self._writer.close()
            self._finish_closed()

    def _on_ws_frame(self, opcode: Opcode, data: bytes, fin: bool) -> None:
        if opcode is Opcode.CLOSE:
            if self._ws.close_rcvd is not None:
                self.close_received = (self._ws.close_rcvd.code, self._ws.close_rcvd.reason)
            self._cancel_replies()
            return
        if opcode not in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT) or self._failed:
            return
        if opcode is Opcode.TEXT:
            self.violation("text WebSocket message (BLIP frames must be binary, protocol §2.2)")
            return
        self._fragments = [data] if opcode is Opcode.BINARY else [*(self._fragments or []), data]
        if not fin:
            return
        frame, self._fragments = b"".join(self._fragments), None
        if len(frame) > MAX_WS_MESSAGE:
            self.violation(
                f"BLIP frame of {len(frame)} bytes in one WebSocket message: a LiteCore 3.0 peer stalls on "
                f"frames over {MAX_WS_MESSAGE} bytes (protocol §9); LiteCore sends at most 16 KiB (§2.5)"
            )
            return
        try:
            message = self._blip.receive_frame(frame)
        except BlipViolationError as exc:
            self.violation(str(exc))
            return
        self._wake.set()  # an ACK may be waiting, or a frozen message thawed
        if message is None:
            return
        if message.type == 0:
            self._dispatch(message)
        else:
            self._resolve_sent()

    def _dispatch(self, message: Message) -> None:
        if self.before_dispatch is not None and not self.before_dispatch(message):
            return
        handler = self._handlers.get(message.profile)
        if handler is None:
            # LiteCore MessageIn::notHandled: a normal reply, not a violation.
            self.reply_error(message, "BLIP", 404, "no handler for message")
            return
        try:
            result = handler(message)
        except Exception:
            log.exception("%s: handler for %r failed", self.name, message.profile)
            self.reply_error(message, "BLIP", 501, "unexpected exception")
            return
        if inspect.isawaitable(result):
            self._spawn(self._run_handler(message, result))

    async def _run_handler(self, message: Message, result: Awaitable[None]) -> None:
        try:
            await result
        except ConnectionClosedError:
            pass
        except Exception:
            log.exception("%s: handler for %r failed", self.name, message.profile)
            self.reply_error(message, "BLIP", 501, "unexpected exception")
