"""BLIP 3 wire codec as LiteCore's Networking/BLIP (BLIPConnection.cc, Message.cc, Codec.cc) speaks it.

Varints (protocol §2.1), frames (§2.2), message encoding and properties (§2.3), the running
CRC-32 per direction (§2.6) and the one raw-deflate stream per direction (§2.7), ACK frames
(§2.8). Pure functions and two small stateful classes, one per direction: :class:`FrameEncoder`
and :class:`FrameDecoder`. Nothing here does I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ACK_REQ",
    "ACK_RES",
    "COMPRESSED",
    "ERR",
    "MAX_PROPERTIES_SIZE",
    "MORE_COMING",
    "NO_REPLY",
    "REQ",
    "RES",
    "TYPE_MASK",
    "URGENT",
    "BlipCodecError",
    "Frame",
    "FrameDecoder",
    "FrameEncoder",
    "decode_message",
    "decode_properties",
    "decode_varint",
    "encode_message",
    "encode_properties",
    "encode_varint",
]

# protocol §2.2 frame flags
TYPE_MASK = 0x07
REQ, RES, ERR, ACK_REQ, ACK_RES = 0, 1, 2, 4, 5
COMPRESSED = 0x08
URGENT = 0x10
NO_REPLY = 0x20
MORE_COMING = 0x40

#: LiteCore's kMaxPropertiesSize (Message.cc): a larger properties block is refused.
MAX_PROPERTIES_SIZE = 100 * 1024
#: protocol §2.7: Z_SYNC_FLUSH ends every compressed frame with this; it is not sent.
_DEFLATE_TRAILER = b"\x00\x00\xff\xff"
_MAX_VARINT_BYTES = 10


class BlipCodecError(Exception):
    """Bytes that LiteCore's BLIP reader would refuse (it closes the connection)."""


# -- varints (protocol §2.1) ---------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128, as Fleece's PutUVarInt."""
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int]:
    """Read a varint at ``pos``; return (value, position after it)."""
    value = shift = 0
    for i in range(pos, min(len(data), pos + _MAX_VARINT_BYTES)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    raise BlipCodecError("truncated or overlong varint")


# -- properties and messages (protocol §2.3) -----------------------------------------------


def encode_properties(properties: Iterable[tuple[str, str]]) -> bytes:
    """The properties block with its length varint in front (``00`` when there are none)."""
    block = b"".join(key.encode() + b"\x00" + value.encode() + b"\x00" for key, value in properties)
    return encode_varint(len(block)) + block


def decode_properties(data: bytes, *, strict: bool = True) -> tuple[dict[str, str], int]:
    """Parse a length-prefixed properties block; return (properties, offset of the body).

    LiteCore requires the block to end with NUL (Message.cc) and asserts an even number of
    strings; go-blip also refuses duplicate keys. ``strict=False`` accepts duplicates as
    LiteCore does (the first one wins).
    """
    size, start = decode_varint(data)
    if size > MAX_PROPERTIES_SIZE:
        raise BlipCodecError("properties excessively large")
    end = start + size
    if end > len(data):
        raise BlipCodecError("message ends before end of properties")
    if size == 0:
        return {}, end
    block = bytes(data[start:end])
    if block[-1] != 0:
        raise BlipCodecError("message properties not null-terminated")
    strings = block[:-1].split(b"\x00")
    if len(strings) % 2:
        raise BlipCodecError("odd number of strings in message properties")
    properties: dict[str, str] = {}
    for i in range(0, len(strings), 2):
        key, value = strings[i].decode(errors="replace"), strings[i + 1].decode(errors="replace")
        if key in properties:
            if strict:
                raise BlipCodecError(f"duplicate property {key!r}")
            continue
        properties[key] = value
    return properties, end


def encode_message(properties: Iterable[tuple[str, str]], body: bytes = b"") -> bytes:
    """A whole message before framing: properties block then body."""
    return encode_properties(properties) + body


def decode_message(data: bytes, *, strict: bool = True) -> tuple[dict[str, str], bytes]:
    """Split a reassembled message into (properties, body)."""
    properties, offset = decode_properties(data, strict=strict)
    return properties, bytes(data[offset:])


# -- frames (protocol §2.2, §2.6, §2.7, §2.8) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame. ``data`` is the uncompressed payload (for an ACK: the byte count's
    varint); ``wire_size`` is what LiteCore counts towards ACKs (frame minus header varints)."""

    number: int
    flags: int
    data: bytes
    wire_size: int

    @property
    def type(self) -> int:
        return self.flags & TYPE_MASK

    @property
    def more_coming(self) -> bool:
        return bool(self.flags & MORE_COMING)


class FrameEncoder:
    """The sending half of one connection: running CRC and deflate stream (protocol §2.6, §2.7)."""

    def __init__(self) -> None:
        self.crc = 0
        # LiteCore's Deflater: level 6, windowBits -15 (raw), memLevel 9.
        self._deflater = zlib.compressobj(6, zlib.DEFLATED, -15, 9)

    def frame(self, number: int, flags: int, chunk: bytes) -> bytes:
        """Encode one data frame carrying ``chunk`` (a slice of the encoded message)."""
        self.crc = zlib.crc32(chunk, self.crc)
        if flags & COMPRESSED:
            payload = self._deflater.compress(chunk) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
            if not payload.endswith(_DEFLATE_TRAILER):
                raise AssertionError("sync flush did not end with 00 00 FF FF")
            payload = payload[: -len(_DEFLATE_TRAILER)]
        else:
            payload = chunk
        return encode_varint(number) + encode_varint(flags) + payload + self.crc.to_bytes(4, "big")

    @staticmethod
    def ack(number: int, of_reply: bool, byte_count: int) -> bytes:
        """An ACK frame: no CRC, not compressed, flags type|Urgent|NoReply (protocol §2.8)."""
        flags = (ACK_RES if of_reply else ACK_REQ) | URGENT | NO_REPLY
        return encode_varint(number) + encode_varint(flags) + encode_varint(byte_count)


class FrameDecoder:
    """The receiving half of one connection: running CRC and inflate stream."""

    def __init__(self) -> None:
        self.crc = 0
        self._inflater = zlib.decompressobj(-15)

    def decode(self, raw: bytes) -> Frame:
        """Decode one WebSocket message as a BLIP frame, checking the CRC.

        Raises:
            BlipCodecError: bad header, bad deflate data or CRC mismatch (fatal in LiteCore).
        """
        if not raw:
            raise BlipCodecError("empty frame")
        number, pos = decode_varint(raw)
        flags, pos = decode_varint(raw, pos)
        wire_size = len(raw) - pos
        if flags & TYPE_MASK in (ACK_REQ, ACK_RES):
            return Frame(number, flags, bytes(raw[pos:]), wire_size)
        if wire_size < 4:
            raise BlipCodecError("frame too small for its checksum")
        payload, checksum = raw[pos:-4], int.from_bytes(raw[-4:], "big")
        if flags & COMPRESSED:
            try:
                data = self._inflater.decompress(payload + _DEFLATE_TRAILER)
            except zlib.error as exc:
                raise BlipCodecError(f"bad deflate data: {exc}") from None
        else:
            data = bytes(payload)
        self.crc = zlib.crc32(data, self.crc)
        if self.crc != checksum:
            raise BlipCodecError(f"bad CRC: frame says {checksum:08x}, computed {self.crc:08x}")
        return Frame(number, flags, data, wire_size)
