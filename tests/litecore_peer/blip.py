"""Sans-I/O BLIP connection state, modelled on LiteCore's BLIPIO (Networking/BLIP/BLIPConnection.cc).

Frames in (one WebSocket message each), :class:`Message` events out; requests and replies in,
frames out. It enforces what LiteCore's reader enforces and raises :class:`BlipViolationError`
for it: a new request numbered other than last+1, a reply to no waiting request, bad CRC or
deflate data, a first frame without the properties length, an unterminated properties block
(protocol §2.2-§2.9). The sender follows LiteCore: request numbers assigned when the first
frame goes out, frames of at most 16 KiB (4 KiB when an urgent message waits), round-robin
with LiteCore's urgent-insertion rule (§2.5), a message paused past 128,000 unacknowledged
bytes (§2.8), an ACK after every 50,000 bytes received of one message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.litecore_peer.codec import (
    ACK_REQ,
    ACK_RES,
    COMPRESSED,
    ERR,
    MORE_COMING,
    NO_REPLY,
    REQ,
    RES,
    TYPE_MASK,
    URGENT,
    BlipCodecError,
    FrameDecoder,
    FrameEncoder,
    decode_message,
    decode_varint,
    encode_message,
)

__all__ = ["BIG_FRAME", "BlipProtocol", "BlipViolationError", "Message", "Outgoing"]

#: LiteCore kBigFrameSize / kDefaultFrameSize (BLIPConnection.cc).
BIG_FRAME = 16384
SMALL_FRAME = 4096
#: LiteCore kIncomingAckThreshold (Message.cc) and kMaxUnackedBytes (MessageOut.hh).
ACK_THRESHOLD = 50_000
MAX_UNACKED = 128_000


class BlipViolationError(Exception):
    """Something the peer sent that LiteCore's BLIP layer refuses or chokes on."""


@dataclass(slots=True)
class Message:
    """A complete incoming request or reply."""

    number: int
    flags: int
    properties: dict[str, str]
    body: bytes

    @property
    def type(self) -> int:
        return self.flags & TYPE_MASK

    @property
    def is_error(self) -> bool:
        return self.type == ERR

    @property
    def no_reply(self) -> bool:
        return bool(self.flags & NO_REPLY)

    @property
    def urgent(self) -> bool:
        return bool(self.flags & URGENT)

    @property
    def compressed(self) -> bool:
        return bool(self.flags & COMPRESSED)

    @property
    def profile(self) -> str:
        return self.properties.get("Profile", "")

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.properties.get(name, default)

    def get_bool(self, name: str) -> bool:
        """LiteCore's MessageIn::boolProperty: true/YES/false/NO (any case) or an integer."""
        value = self.properties.get(name, "")
        if value.lower() in ("true", "yes"):
            return True
        if value.lower() in ("false", "no", ""):
            return False
        try:
            return int(value) != 0
        except ValueError:
            return False

    def get_int(self, name: str, default: int = 0) -> int:
        """LiteCore's MessageIn::intProperty: a decimal integer, else ``default``."""
        try:
            return int(self.properties.get(name, ""))
        except ValueError:
            return default

    def json(self) -> Any:
        """The body parsed as JSON; None when empty or not JSON (as Fleece's conversion)."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def error(self) -> tuple[str, int, str]:
        """(domain, code, message) of an error reply."""
        return (
            self.properties.get("Error-Domain", "BLIP"),
            self.get_int("Error-Code"),
            self.body.decode(errors="replace"),
        )


@dataclass(slots=True, eq=False)
class Outgoing:
    """A message being sent. ``number`` is 0 for a request until its first frame goes out."""

    number: int
    flags: int
    data: bytes
    sent: int = 0
    wire_sent: int = 0
    acked: int = 0
    reply: Message | None = None
    expects_reply: bool = False

    @property
    def is_request(self) -> bool:
        return self.flags & TYPE_MASK == REQ

    @property
    def urgent(self) -> bool:
        return bool(self.flags & URGENT)


@dataclass(slots=True)
class _Incoming:
    number: int
    flags: int
    chunks: list[bytes] = field(default_factory=list)
    raw_received: int = 0
    unacked: int = 0


class BlipProtocol:
    """One BLIP connection's state, both directions."""

    def __init__(self, frame_size: int = BIG_FRAME) -> None:
        self.frame_size = frame_size
        self._encoder = FrameEncoder()
        self._decoder = FrameDecoder()
        self._outbox: list[Outgoing] = []
        self._frozen: list[Outgoing] = []
        self._acks: list[bytes] = []
        self._last_request_sent = 0
        self._last_request_received = 0
        self._incoming_requests: dict[int, _Incoming] = {}
        self._incoming_replies: dict[int, _Incoming] = {}
        #: Requests fully sent and waiting for their reply, by number.
        self.awaiting_reply: dict[int, Outgoing] = {}

    # -- sending -----------------------------------------------------------------------------

    def send_request(
        self,
        properties: Iterable[tuple[str, str]],
        body: bytes = b"",
        *,
        compressed: bool = False,
        urgent: bool = False,
        no_reply: bool = False,
    ) -> Outgoing:
        """Queue a request; its number is assigned when its first frame is produced."""
        flags = REQ | (COMPRESSED if compressed else 0) | (URGENT if urgent else 0) | (NO_REPLY if no_reply else 0)
        message = Outgoing(0, flags, encode_message(properties, body), expects_reply=not no_reply)
        self._requeue(message)
        return message

    def send_reply(
        self,
        request: Message,
        properties: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        error: bool = False,
        compressed: bool = False,
    ) -> None:
        """Queue the reply to ``request`` (urgent if the request was, as LiteCore's MessageBuilder)."""
        if request.no_reply:
            raise AssertionError(f"reply to NoReply request #{request.number}")
        flags = (ERR if error else RES) | (URGENT if request.urgent else 0) | (COMPRESSED if compressed else 0)
        self._requeue(Outgoing(request.number, flags, encode_message(properties, body)))

    def _requeue(self, message: Outgoing) -> None:
        # LiteCore BLIPIO::requeue: an urgent message goes after the last urgent one, leaving one
        # normal message in between if possible, and a new one never overtakes an unstarted one.
        index = len(self._outbox)
        if message.urgent and len(self._outbox) > 1:
            is_new = message.sent == 0
            while True:
                index -= 1
                other = self._outbox[index]
                if other.urgent:
                    if index + 1 != len(self._outbox):
                        index += 1
                    break
                if is_new and other.sent == 0:
                    break
                if index == 0:
                    break
            index += 1
        self._outbox.insert(index, message)

    def next_frame(self) -> bytes | None:
        """The next frame to write, ACKs first; None when nothing can be sent now."""
        if self._acks:
            return self._acks.pop(0)
        if not self._outbox:
            return None
        message = self._outbox.pop(0)
        if message.number == 0:
            self._last_request_sent += 1
            message.number = self._last_request_sent
        size = self.frame_size
        if not message.urgent and self._outbox and self._outbox[0].urgent:
            size = min(size, SMALL_FRAME)
        chunk = message.data[message.sent : message.sent + size]
        message.sent += len(chunk)
        more = message.sent < len(message.data)
        flags = message.flags | (MORE_COMING if more else 0)
        frame = self._encoder.frame(message.number, flags, chunk)
        message.wire_sent += len(frame) - _header_size(frame)
        if more:
            if message.wire_sent - message.acked > MAX_UNACKED:
                self._frozen.append(message)
            else:
                self._requeue(message)
        elif message.is_request and message.expects_reply:
            self.awaiting_reply[message.number] = message
        return frame

    # -- receiving ---------------------------------------------------------------------------

    def receive_frame(self, raw: bytes) -> Message | None:
        """Take one frame; return the message it completes, if any.

        Raises:
            BlipViolationError: LiteCore would close the connection over this frame.
        """
        try:
            frame = self._decoder.decode(raw)
        except BlipCodecError as exc:
            raise BlipViolationError(str(exc)) from None
        kind = frame.type
        if kind in (ACK_REQ, ACK_RES):
            self._received_ack(frame.number, kind == ACK_RES, frame.data)
            return None
        if kind == REQ:
            incoming = self._incoming_request(frame.number, frame.flags)
        elif kind in (RES, ERR):
            incoming = self._incoming_reply(frame.number, frame.flags)
        else:
            return None  # LiteCore: "Unknown BLIP frame type received", ignored for compatibility
        if not incoming.chunks and frame.data == b"":
            raise BlipViolationError(f"frame too small: message #{frame.number} starts with no properties length")
        incoming.chunks.append(frame.data)
        incoming.raw_received += frame.wire_size
        incoming.unacked += frame.wire_size
        if incoming.unacked >= ACK_THRESHOLD and frame.more_coming:
            self._acks.append(FrameEncoder.ack(frame.number, kind != REQ, incoming.raw_received))
            incoming.unacked = 0
        if frame.more_coming:
            return None
        table = self._incoming_requests if kind == REQ else self._incoming_replies
        table.pop(frame.number, None)
        try:
            properties, body = decode_message(b"".join(incoming.chunks), strict=False)
        except BlipCodecError as exc:
            raise BlipViolationError(f"message #{frame.number}: {exc}") from None
        message = Message(frame.number, incoming.flags, properties, body)
        if kind != REQ:
            request = self.awaiting_reply.pop(frame.number)
            request.reply = message
        return message

    def _incoming_request(self, number: int, flags: int) -> _Incoming:
        # LiteCore BLIPIO::pendingRequest
        existing = self._incoming_requests.get(number)
        if existing is not None:
            return existing
        if number != self._last_request_received + 1:
            state = "already finished" if number <= self._last_request_received else "too high"
            raise BlipViolationError(
                f"BLIP protocol error: Bad incoming REQ #{number} ({state}; expected #{self._last_request_received + 1})"
            )
        self._last_request_received = number
        incoming = _Incoming(number, flags & ~MORE_COMING)
        self._incoming_requests[number] = incoming
        return incoming

    def _incoming_reply(self, number: int, flags: int) -> _Incoming:
        # LiteCore BLIPIO::pendingResponse: the first frame's type decides RES or ERR.
        existing = self._incoming_replies.get(number)
        if existing is not None:
            return existing
        if number not in self.awaiting_reply:
            state = "no request waiting" if number <= self._last_request_sent else "too high"
            raise BlipViolationError(f"BLIP protocol error: Bad incoming RES #{number} ({state})")
        incoming = _Incoming(number, flags & ~MORE_COMING)
        self._incoming_replies[number] = incoming
        return incoming

    def _received_ack(self, number: int, of_reply: bool, payload: bytes) -> None:
        try:
            count, _ = decode_varint(payload)
        except BlipCodecError:
            return  # LiteCore: "Couldn't parse body of ACK", ignored
        for message in (*self._outbox, *self._frozen):
            if message.number == number and message.is_request != of_reply:
                message.acked = max(message.acked, count)
                if message in self._frozen and message.wire_sent - message.acked <= MAX_UNACKED:
                    self._frozen.remove(message)
                    self._requeue(message)
                return


def _header_size(frame: bytes) -> int:
    _, pos = decode_varint(frame)
    _, pos = decode_varint(frame, pos)
    return pos
