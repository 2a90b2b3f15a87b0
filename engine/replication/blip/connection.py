"""A sans-I/O BLIP 3 connection (protocol §2): frames in, events and frames out.

Feed each binary WebSocket message to :meth:`BlipConnection.receive_frame`,
collect complete messages with :meth:`BlipConnection.events_received`, queue
outgoing messages with :meth:`send_request`, :meth:`send_reply` and
:meth:`send_error`, and write what :meth:`frames_to_send` returns, one
WebSocket message per frame, in that order. No I/O, clock or threads inside.

The connection keeps one running CRC-32 and one raw-deflate stream per
direction (§2.6, §2.7), numbers requests (§2.4), cuts messages into frames
and reassembles interleaved incoming frames (§2.5), and does flow control
with ACK frames (§2.8). Anything malformed raises :class:`ProtocolError`;
after that the connection must be closed.

Memory: the bytes of messages still being received (first frames in, last
one not yet) count against a budget per connection and, optionally, an
:class:`IncomingBudget` shared with other connections; a frame that would
exceed either raises :class:`MessageTooLargeError` (close code 1009).
:meth:`BlipConnection.close` drops those buffers and gives the bytes back.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple

from engine.replication import tuning
from engine.replication.blip.codec import (
    FrameFlags,
    MessageType,
    decode_properties,
    decode_varint,
    encode_message,
    encode_varint,
)
from engine.replication.errors import BlipError, MessageTooLargeError, ProtocolError

__all__ = ["BlipConnection", "Event", "IncomingBudget", "Message", "ReplyReceived", "RequestReceived"]

_COMPRESSED = int(FrameFlags.COMPRESSED)
_URGENT = int(FrameFlags.URGENT)
_NO_REPLY = int(FrameFlags.NO_REPLY)
_MORE = int(FrameFlags.MORE_COMING)
_SYNC_TRAILER = b"\x00\x00\xff\xff"
_REQ = int(MessageType.REQUEST)
_ACK_REQ = int(MessageType.ACK_REQUEST)
_ACK_RES = int(MessageType.ACK_RESPONSE)
#: the types a complete message can have, by their type bits
_MESSAGE_TYPES = {int(t): t for t in (MessageType.REQUEST, MessageType.RESPONSE, MessageType.ERROR)}


def _decode_header(frame: bytes) -> tuple[int, int, int]:
    """A frame's message number and flags (§2.2), and where the rest starts."""
    if not frame:
        raise ProtocolError("empty frame")
    number, pos = decode_varint(frame, 0)
    flags, pos = decode_varint(frame, pos)
    return number, flags, pos


class Message(NamedTuple):
    """A complete incoming BLIP message (a named tuple: immutable and cheap on the hot path)."""

    number: int
    type: MessageType
    properties: dict[str, str]
    body: bytes = b""
    urgent: bool = False
    no_reply: bool = False
    compressed: bool = False

    @property
    def profile(self) -> str | None:
        """The request type (property ``Profile``)."""
        return self.properties.get("Profile")

    @property
    def is_error(self) -> bool:
        """Whether this is an ERR reply."""
        return self.type is MessageType.ERROR

    def error(self) -> BlipError:
        """The :class:`BlipError` an ERR reply carries (§2.9)."""
        try:
            code = int(self.properties.get("Error-Code", "0"))
        except ValueError:
            code = 0
        return BlipError(self.properties.get("Error-Domain", "BLIP"), code, self.body.decode(errors="replace"))


class RequestReceived(NamedTuple):
    """The peer sent a complete request."""

    message: Message


class ReplyReceived(NamedTuple):
    """The peer answered one of our requests (RES or ERR)."""

    message: Message


Event = RequestReceived | ReplyReceived


class _Outgoing:
    __slots__ = ("acked", "data", "flags", "is_request", "number", "pos", "sent")

    def __init__(self, number: int, flags: int, data: bytes, *, is_request: bool) -> None:
        self.number = number
        self.flags = flags
        self.data = data
        self.pos = 0
        self.sent = 0
        self.acked = 0
        self.is_request = is_request

    @property
    def urgent(self) -> bool:
        return bool(self.flags & _URGENT)


class _Incoming:
    __slots__ = ("acked", "buffer", "flags", "number", "received", "type")

    def __init__(self, number: int, type_: int, flags: int) -> None:
        self.number = number
        self.type = type_
        self.flags = flags
        self.buffer = bytearray()
        self.received = 0
        self.acked = 0


class IncomingBudget:
    """Bytes of unfinished incoming messages that several connections hold together.

    Each :class:`BlipConnection` given the same budget adds the bytes it
    buffers for messages whose last frame has not arrived yet, and takes them
    off when the message completes or the connection closes. Plain counting,
    for connections served by one event loop.
    """

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @property
    def available(self) -> int:
        """Bytes that may still be buffered."""
        return self.limit - self.used


class BlipConnection:
    """One side of a BLIP connection. See the module docstring."""

    def __init__(
        self,
        *,
        max_message_size: int = tuning.MAX_MESSAGE_SIZE,
        max_properties_size: int = tuning.MAX_PROPERTIES_SIZE,
        max_pending_incoming: int = tuning.MAX_PENDING_INCOMING,
        max_frame_size: int = tuning.MAX_FRAME_SIZE,
        max_unfinished_bytes: int = tuning.MAX_UNFINISHED_BYTES,
        shared_budget: IncomingBudget | None = None,
    ) -> None:
        self.max_message_size = max_message_size
        self.max_properties_size = max_properties_size
        self.max_pending_incoming = max_pending_incoming
        self.max_frame_size = max_frame_size
        self.max_unfinished_bytes = max_unfinished_bytes
        self.shared_budget = shared_budget
        self._unfinished_bytes = 0
        self._closed = False
        self._next_request = 1
        self._last_incoming_request = 0
        self._incoming: dict[tuple[bool, int], _Incoming] = {}
        self._awaiting_replies: set[int] = set()
        self._owed_replies: dict[int, bool] = {}
        self._outbox: deque[_Outgoing] = deque()
        self._unfinished: dict[tuple[bool, int], _Outgoing] = {}
        self._paused: set[tuple[bool, int]] = set()
        self._acks: list[bytes] = []
        self._events: list[Event] = []
        self._crc_out = 0
        self._crc_in = 0
        self._deflater = zlib.compressobj(tuning.DEFLATE_LEVEL, zlib.DEFLATED, -15, tuning.DEFLATE_MEM_LEVEL)
        self._inflater = zlib.decompressobj(-15)

    # -- sending ---------------------------------------------------------------

    def send_request(
        self,
        properties: Mapping[str, str],
        body: bytes = b"",
        *,
        compressed: bool = False,
        urgent: bool = False,
        no_reply: bool = False,
    ) -> int:
        """Queue a request; return its number. Its reply arrives as a :class:`ReplyReceived`."""
        number = self._next_request
        self._next_request += 1
        flags = _REQ | (_COMPRESSED if compressed else 0) | (_URGENT if urgent else 0) | (_NO_REPLY if no_reply else 0)
        if not no_reply:
            self._awaiting_replies.add(number)
        self._enqueue(_Outgoing(number, flags, encode_message(properties, body), is_request=True))
        return number

    def send_reply(
        self, request: int, properties: Mapping[str, str] | None = None, body: bytes = b"", *, compressed: bool = False
    ) -> None:
        """Queue the reply to request number ``request``.

        Raises:
            ValueError: that request is not waiting for a reply (unknown,
                NoReply, or already answered).
        """
        urgent = self._claim_reply(request)
        flags = int(MessageType.RESPONSE) | (_COMPRESSED if compressed else 0) | (_URGENT if urgent else 0)
        self._enqueue(_Outgoing(request, flags, encode_message(properties or {}, body), is_request=False))

    def send_error(
        self, request: int, domain: str, code: int, message: str = "", properties: Mapping[str, str] | None = None
    ) -> None:
        """Queue an ERR reply to request number ``request`` (§2.9)."""
        urgent = self._claim_reply(request)
        props = {"Error-Domain": domain, "Error-Code": str(code), **(properties or {})}
        flags = int(MessageType.ERROR) | (_URGENT if urgent else 0)
        self._enqueue(_Outgoing(request, flags, encode_message(props, message.encode()), is_request=False))

    def _claim_reply(self, request: int) -> bool:
        try:
            return self._owed_replies.pop(request)
        except KeyError:
            raise ValueError(f"request #{request} is not waiting for a reply") from None

    def _enqueue(self, msg: _Outgoing) -> None:
        """Queue a message; urgent ones go ahead of normal ones that have not started (§2.5)."""
        self._unfinished[(msg.is_request, msg.number)] = msg
        outbox = self._outbox
        if not msg.urgent or len(outbox) < 2:
            outbox.append(msg)
            return
        index = 1
        while index < len(outbox) and outbox[index].urgent:
            index += 1
        if msg.is_request:  # a new request never overtakes an unstarted request (§2.4)
            for i in range(len(outbox) - 1, index - 1, -1):
                if outbox[i].is_request and outbox[i].pos == 0:
                    index = i + 1
                    break
        outbox.insert(index, msg)

    def frames_to_send(self, limit: int | None = None) -> list[bytes]:
        """Return the frames that may be written now, in order (ACKs first).

        A message with more than 128,000 unacknowledged bytes is held back
        until the peer acknowledges it (§2.8); other messages keep going.
        """
        frames = self._acks
        self._acks = []
        outbox = self._outbox
        while outbox and (limit is None or len(frames) < limit):
            msg = outbox.popleft()
            if msg.sent - msg.acked > tuning.MAX_UNACKED_BYTES:
                self._paused.add((msg.is_request, msg.number))
                continue
            size = self.max_frame_size
            if outbox and outbox[0].urgent and not msg.urgent:
                size = min(size, tuning.URGENT_PREEMPT_FRAME_SIZE)
            frames.append(self._next_frame(msg, size))
            if msg.pos < len(msg.data):
                outbox.append(msg)
            else:
                del self._unfinished[(msg.is_request, msg.number)]
        return frames

    def _next_frame(self, msg: _Outgoing, size: int) -> bytes:
        chunk = msg.data[msg.pos : msg.pos + size]
        msg.pos += len(chunk)
        flags = msg.flags if msg.pos >= len(msg.data) else msg.flags | _MORE
        self._crc_out = zlib.crc32(chunk, self._crc_out)
        if flags & _COMPRESSED:  # protocol §2.7: one deflate stream per direction, trailer stripped
            payload = self._deflater.compress(chunk) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
            payload = payload[:-4]
        else:
            payload = chunk
        msg.sent += len(payload) + 4
        header = bytes((msg.number, flags)) if msg.number < 0x80 else encode_varint(msg.number) + bytes((flags,))
        return header + payload + self._crc_out.to_bytes(4, "big")

    # -- receiving -------------------------------------------------------------

    def receive_frame(self, frame: bytes) -> None:
        """Process one incoming frame (one binary WebSocket message).

        Raises:
            ProtocolError: the frame breaks the protocol, or the connection is
                closed; close the connection.
            MessageTooLargeError: the frame exceeds a size limit (a
                ``ProtocolError`` closing with 1009).
        """
        if self._closed:
            raise ProtocolError("frame received after the connection was closed")
        # the usual cases first: a message number of one to three varint bytes (up to 2,097,151), one flags byte
        if len(frame) >= 3 and frame[0] < 0x80 and frame[1] < 0x80:
            number, flags, pos = frame[0], frame[1], 2
        elif len(frame) >= 4 and frame[1] < 0x80 and frame[2] < 0x80:
            number, flags, pos = (frame[0] & 0x7F) | (frame[1] << 7), frame[2], 3
        elif len(frame) >= 5 and frame[0] >= 0x80 and frame[2] < 0x80 and frame[3] < 0x80:
            number, flags, pos = (frame[0] & 0x7F) | ((frame[1] & 0x7F) << 7) | (frame[2] << 14), frame[3], 4
        else:
            number, flags, pos = _decode_header(frame)
        ftype = flags & 0x07
        if ftype <= 2 and not flags & (_MORE | _COMPRESSED) and len(frame) >= pos + 4:
            is_request = ftype == _REQ
            if not (self._incoming and (is_request, number) in self._incoming):
                # the usual case: a whole uncompressed message in one frame, no reassembly
                data = frame[pos:-4]
                if len(data) > self.max_message_size:
                    raise self._too_large(0, len(data))
                self._check_crc(data, frame)
                self._check_new(is_request, number)
                self._complete(number, ftype, flags, data)
                return
        self._receive_other(frame, number, flags, pos)

    def _receive_other(self, frame: bytes, number: int, flags: int, pos: int) -> None:
        """A frame that is not a whole uncompressed message: an ACK, a compressed or a partial message."""
        ftype = flags & 0x07
        if ftype in (_ACK_REQ, _ACK_RES):
            self._receive_ack(ftype, number, decode_varint(frame, pos)[0])
            return
        if ftype > 2:
            raise ProtocolError(f"frame of undefined type {ftype}")
        if len(frame) < pos + 4:
            raise ProtocolError("frame too short for its checksum")
        is_request = ftype == _REQ
        key = (is_request, number)
        msg = self._incoming.get(key)
        held = len(msg.buffer) if msg is not None else 0
        room = self.max_message_size - held
        if flags & _MORE:  # kept until the last frame comes (§2.5): within the unfinished-bytes budgets
            room = min(room, self._unfinished_room())
        payload = frame[pos:-4]
        data = self._inflate(payload, room) if flags & _COMPRESSED else payload
        if len(data) > room:
            raise self._too_large(held, len(data))
        self._check_crc(data, frame)
        if msg is None:
            self._check_new(is_request, number)
            if not flags & _MORE:  # a whole compressed message in one frame
                self._complete(number, ftype, flags, data)
                return
            msg = self._start_incoming(is_request, number, ftype, flags)
        self._append(msg, is_request, data, bool(flags & _MORE), len(frame) - pos)

    def _check_crc(self, data: bytes, frame: bytes) -> None:
        """Protocol §2.6: one running CRC-32 per direction over the uncompressed bytes, in each frame's last four."""
        self._crc_in = zlib.crc32(data, self._crc_in)
        if self._crc_in != int.from_bytes(frame[-4:], "big"):
            raise ProtocolError("frame checksum mismatch")

    def _append(self, msg: _Incoming, is_request: bool, data: bytes, more: bool, wire_bytes: int) -> None:
        """Add a frame's data to a message: buffer it (and ACK, §2.8), or complete the message."""
        if more:
            msg.buffer += data
            self._hold(len(data))
            msg.received += wire_bytes
            if msg.received - msg.acked >= tuning.INCOMING_ACK_THRESHOLD:
                msg.acked = msg.received
                ack_type = _ACK_REQ if is_request else _ACK_RES
                self._acks.append(
                    encode_varint(msg.number) + bytes((ack_type | _URGENT | _NO_REPLY,)) + encode_varint(msg.received)
                )
            return
        del self._incoming[(is_request, msg.number)]
        self._hold(-len(msg.buffer))
        msg.buffer += data
        self._complete(msg.number, msg.type, msg.flags, bytes(msg.buffer))

    def _inflate(self, payload: bytes, room: int) -> bytes:
        """Inflate one frame's payload (§2.7), stopping one byte past ``room``."""
        try:
            return self._inflater.decompress(payload + _SYNC_TRAILER, max(room, 0) + 1)
        except zlib.error as exc:
            raise ProtocolError(f"bad deflate data: {exc}") from None

    def _unfinished_room(self) -> int:
        """Bytes that unfinished incoming messages may still add."""
        room = self.max_unfinished_bytes - self._unfinished_bytes
        if self.shared_budget is not None:
            room = min(room, self.shared_budget.available)
        return room

    def _too_large(self, held: int, size: int) -> MessageTooLargeError:
        """The error for ``size`` more bytes that do not fit (``held`` already buffered for the message)."""
        if held + size > self.max_message_size:
            return MessageTooLargeError(f"incoming message exceeds {self.max_message_size} bytes")
        if self._unfinished_bytes + size > self.max_unfinished_bytes:
            return MessageTooLargeError(
                f"unfinished incoming messages exceed {self.max_unfinished_bytes} bytes on this connection"
            )
        limit = self.shared_budget.limit if self.shared_budget is not None else 0
        return MessageTooLargeError(f"unfinished incoming messages exceed {limit} bytes over all connections")

    def _hold(self, size: int) -> None:
        """Count ``size`` more (or, negative, fewer) bytes of unfinished incoming messages."""
        self._unfinished_bytes += size
        if self.shared_budget is not None:
            self.shared_budget.used += size

    @property
    def unfinished_bytes(self) -> int:
        """Bytes buffered for incoming messages whose last frame has not arrived."""
        return self._unfinished_bytes

    def close(self) -> None:
        """Drop the messages still being received and give their bytes back to the shared budget.

        Call it once the connection has ended or failed; it may be called again.
        Frames received afterwards raise :class:`ProtocolError`.
        """
        self._closed = True
        for msg in self._incoming.values():
            msg.buffer.clear()  # in place: frees the memory even if a traceback still refers to it
        self._incoming.clear()
        self._hold(-self._unfinished_bytes)

    def _check_new(self, is_request: bool, number: int) -> None:
        """The first frame of an incoming message: a request must be the next in sequence (§2.4), a reply
        must answer a request of ours that awaits one."""
        if is_request:
            if number != self._last_incoming_request + 1:  # protocol §2.4
                raise ProtocolError(f"request #{number} out of sequence (expected #{self._last_incoming_request + 1})")
            self._last_incoming_request = number
        elif number in self._awaiting_replies:
            self._awaiting_replies.discard(number)
        else:
            raise ProtocolError(f"reply to unknown request #{number}")

    def _start_incoming(self, is_request: bool, number: int, ftype: int, flags: int) -> _Incoming:
        """Buffer a message whose first frame has come (checked by :meth:`_check_new`) and more will follow."""
        if len(self._incoming) >= self.max_pending_incoming:
            raise MessageTooLargeError(f"more than {self.max_pending_incoming} incoming messages at once")
        msg = _Incoming(number, ftype, flags)
        self._incoming[(is_request, number)] = msg
        return msg

    def _complete(self, number: int, ftype: int, flags: int, buffer: bytes) -> None:
        size, pos = (buffer[0], 1) if buffer and buffer[0] < 0x80 else decode_varint(buffer, 0)
        if size > self.max_properties_size:
            raise MessageTooLargeError(f"properties block of {size} bytes exceeds {self.max_properties_size}")
        if pos + size > len(buffer):
            raise ProtocolError("message ends inside its properties")
        urgent = bool(flags & _URGENT)
        message = Message(  # positional: this runs for every message
            number,
            _MESSAGE_TYPES[ftype],
            decode_properties(buffer[pos : pos + size]),
            buffer[pos + size :],
            urgent,
            bool(flags & _NO_REPLY),
            bool(flags & _COMPRESSED),
        )
        if ftype == _REQ:
            if not flags & _NO_REPLY:
                self._owed_replies[number] = urgent
            self._events.append(RequestReceived(message))
        else:
            self._events.append(ReplyReceived(message))

    def _receive_ack(self, ftype: int, number: int, received: int) -> None:
        """An ACK of one of our messages (§2.8); unknown or finished messages are ignored."""
        key = (ftype == _ACK_REQ, number)
        msg = self._unfinished.get(key)
        if msg is None or received <= msg.acked:
            return
        msg.acked = min(received, msg.sent)
        if key in self._paused and msg.sent - msg.acked <= tuning.MAX_UNACKED_BYTES:
            self._paused.discard(key)
            self._outbox.append(msg)

    def receiving_requests_before(self, number: int) -> bool:
        """Whether a request numbered below ``number`` is still arriving (some frames received, not the last).

        Messages complete in any order (§2.5): a small request can complete
        before a bigger one sent earlier, whose first frame, by §2.4, has arrived.
        """
        return any(is_request and n < number for is_request, n in self._incoming)

    def events_received(self) -> list[Event]:
        """Return (and forget) the complete messages received so far."""
        events = self._events
        self._events = []
        return events
