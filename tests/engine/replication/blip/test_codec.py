"""Byte-level vectors for BLIP primitives (protocol §2.1-2.3, §7)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.replication.blip.codec import (
    decode_properties,
    decode_varint,
    encode_message,
    encode_properties,
    encode_varint,
)
from engine.replication.errors import MessageTooLargeError, ProtocolError
from tests.conftest import SHARED, needs_shared

VARINTS = [(0, "00"), (127, "7f"), (128, "8001"), (300, "ac02"), (16384, "808001"), (50000, "d08603")]
V3 = ({"Content-Type": "application/octet-stream", "Foo": "Bar"}, "2e436f6e74656e742d54797065006170706c69636174696f6e2f6f637465742d73747265616d00466f6f0042617200")  # fmt: skip
V4_INVALID = [("026869", "NUL"), ("026800", "odd"), ("1458005900466f6f0042617200466f6f005a6f6700", "duplicate")]
V2 = ({"Content-Type": "ham/rye", "X-Weather": "rainy"}, b"The white knight is sliding down the poker. He balances very badly.", 0x25)  # fmt: skip
V5 = ({"Shoe-Size": "8.5", "Hair": "yes", "Eyes": "Brown"}, b"Hi! This is the body.", 0x22)


@pytest.mark.parametrize(("value", "hexed"), VARINTS)
def test_varint_vectors_both_directions(value: int, hexed: str) -> None:
    data = bytes.fromhex(hexed)
    assert encode_varint(value) == data
    assert decode_varint(data) == (value, len(data))
    assert decode_varint(b"\xff" + data, 1) == (value, len(data) + 1)


@pytest.mark.parametrize(("value", "hexed"), VARINTS)
def test_varint_fed_one_byte_at_a_time(value: int, hexed: str) -> None:
    data = bytes.fromhex(hexed)
    for cut in range(len(data)):
        with pytest.raises(ProtocolError, match="truncated"):
            decode_varint(data[:cut])
    assert decode_varint(data)[0] == value


def test_varint_limits() -> None:
    assert decode_varint(encode_varint(2**64 - 1))[0] == 2**64 - 1
    with pytest.raises(ProtocolError):
        decode_varint(b"\x80" * 11)
    with pytest.raises(ValueError):
        encode_varint(-1)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert decode_varint(encoded) == (value, len(encoded))


def test_properties_vector_v3() -> None:
    props, hexed = V3
    block = bytes.fromhex(hexed)
    assert encode_varint(len(encode_properties(props))) + encode_properties(props) == block
    assert decode_properties(block[1:]) == props
    assert encode_message({}) == b"\x00"  # empty properties are written as 00


@pytest.mark.parametrize(("hexed", "why"), V4_INVALID)
def test_invalid_property_blocks_v4(hexed: str, why: str) -> None:
    block = bytes.fromhex(hexed)
    size, pos = decode_varint(block)
    with pytest.raises(ProtocolError):
        decode_properties(block[pos : pos + size])


def test_truncated_property_block_v4() -> None:
    size, pos = decode_varint(b"\x0c")
    assert size == 12 and len(b"\x0c"[pos:]) < size  # length says 12, nothing follows


@pytest.mark.parametrize("vector", [V2, V5])
def test_message_encodings(vector: tuple[dict[str, str], bytes, int]) -> None:
    props, body, prefix = vector
    encoded = encode_message(props, body)
    assert encoded[0] == prefix
    assert encoded[1 : 1 + prefix] == "".join(f"{k}\0{v}\0" for k, v in props.items()).encode()
    assert encoded[1 + prefix :] == body


def test_properties_refuse_bad_input() -> None:
    for props in ({"a\0": "b"}, {"a": "b\0"}, {"": "x"}):
        with pytest.raises(ValueError):
            encode_properties(props)
    with pytest.raises(ProtocolError):
        decode_properties(b"\xff\x00x\x00")
    with pytest.raises(ProtocolError):
        decode_properties(b"\x00x\x00")  # empty key
    with pytest.raises(MessageTooLargeError):
        decode_properties(b"a\x00" * 20, max_size=10)


@given(st.dictionaries(st.text(min_size=1).filter(lambda s: "\0" not in s), st.text().filter(lambda s: "\0" not in s)))
def test_properties_round_trip(props: dict[str, str]) -> None:
    assert decode_properties(encode_properties(props)) == props


@needs_shared(SHARED / "protocol-vectors.json")
def test_tables_match_the_shared_vector_file() -> None:
    vectors = json.loads((SHARED / "protocol-vectors.json").read_text())
    assert [(v, h) for v, h in vectors["varints"]] == VARINTS
    v3 = next(e for e in vectors["message_encodings"] if e["id"] == "V3")
    assert v3["properties_block_hex"] == V3[1]
    assert [h for h, _ in vectors["invalid_property_blocks_hex"]][:3] == [h for h, _ in V4_INVALID]
