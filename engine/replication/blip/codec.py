"""BLIP 3 wire primitives (protocol §2.1-2.3): varints, frame flags, properties.

Pure functions over bytes; the stateful parts (CRC, deflate, reassembly) live
in :mod:`engine.replication.blip.connection`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, IntFlag

from engine.replication.errors import MessageTooLargeError, ProtocolError

__all__ = [
    "FrameFlags",
    "MessageType",
    "decode_properties",
    "decode_varint",
    "encode_message",
    "encode_properties",
    "encode_varint",
]

#: A varint never needs more than 10 bytes for 64 bits (§2.1).
MAX_VARINT_BYTES = 10


class MessageType(IntEnum):
    """Frame types, the low three bits of the flags (§2.2)."""

    REQUEST = 0
    RESPONSE = 1
    ERROR = 2
    ACK_REQUEST = 4
    ACK_RESPONSE = 5


class FrameFlags(IntFlag):
    """Frame flag bits above the type (§2.2). Unknown higher bits are ignored."""

    TYPE_MASK = 0x07
    COMPRESSED = 0x08
    URGENT = 0x10
    NO_REPLY = 0x20
    MORE_COMING = 0x40


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128 (§2.1): 300 -> ``ac 02``."""
    if value < 0:
        raise ValueError("varints are unsigned")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
    """Decode a varint at ``pos``; return ``(value, position after it)``.

    Raises:
        ProtocolError: truncated, or longer than 10 bytes.
    """
    result = 0
    shift = 0
    end = min(len(data), pos + MAX_VARINT_BYTES)
    for i in range(pos, end):
        byte = data[i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i + 1
        shift += 7
    if end - pos == MAX_VARINT_BYTES:
        raise ProtocolError("varint longer than 10 bytes")
    raise ProtocolError("truncated varint")


def encode_properties(properties: Mapping[str, str]) -> bytes:
    """Encode a properties block without its length prefix (§2.3).

    Raises:
        ValueError: a key or value contains NUL, or a key is empty.
    """
    parts = []
    for key, value in properties.items():
        if not key or "\0" in key or "\0" in value:
            raise ValueError(f"invalid BLIP property {key!r}")
        parts.append(key)
        parts.append(value)
    if not parts:
        return b""
    return ("\0".join(parts) + "\0").encode()


def decode_properties(block: bytes, max_size: int | None = None) -> dict[str, str]:
    """Decode a properties block (without its length prefix), validating it (§2.3).

    Raises:
        ProtocolError: not NUL-terminated, odd number of strings, duplicate
            key, empty key or invalid UTF-8.
        MessageTooLargeError: larger than ``max_size``.
    """
    if not block:
        return {}
    if max_size is not None and len(block) > max_size:
        raise MessageTooLargeError(f"properties block of {len(block)} bytes exceeds {max_size}")
    if block[-1] != 0:
        raise ProtocolError("properties block is not NUL-terminated")
    try:
        strings = block.decode().split("\0")
    except UnicodeDecodeError:
        raise ProtocolError("properties are not valid UTF-8") from None
    strings.pop()  # the empty string after the last NUL
    count = len(strings)
    if count % 2:
        raise ProtocolError("properties block has an odd number of strings")
    pairs = iter(strings)
    # consecutive (key, value) pairs; the count is even. Without strict=: a keyword argument
    # costs zip as much as building the pairs, and this runs for every message
    properties = dict(zip(pairs, pairs))  # noqa: B905
    if len(properties) * 2 != count:
        raise ProtocolError("properties block has a duplicate key")
    if "" in properties:
        raise ProtocolError("properties block has an empty key")
    return properties


def encode_message(properties: Mapping[str, str], body: bytes = b"") -> bytes:
    """Encode a message before framing (§2.3): varint length, properties, body."""
    block = encode_properties(properties)
    return encode_varint(len(block)) + block + body
