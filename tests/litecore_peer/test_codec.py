"""The double's BLIP codec against protocol-vectors.json (protocol §7), in both directions."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side

from tests.conftest import SHARED, needs_shared
from tests.litecore_peer.blip import BlipProtocol, BlipViolationError
from tests.litecore_peer.codec import (
    BlipCodecError,
    FrameDecoder,
    FrameEncoder,
    decode_message,
    decode_properties,
    decode_varint,
    encode_message,
    encode_properties,
    encode_varint,
)

VECTORS_PATH = SHARED / "protocol-vectors.json"
pytestmark = needs_shared(VECTORS_PATH)


def _vectors() -> dict[str, Any]:
    path = Path(VECTORS_PATH)
    return json.loads(path.read_text()) if path.exists() else {"frames": [], "varints": []}


VECTORS = _vectors()
FRAMES = {frame["id"]: frame for frame in VECTORS["frames"]}


def _props(frame: dict[str, Any]) -> list[tuple[str, str]]:
    return [(key, value) for key, value in frame["properties"]]


@pytest.mark.parametrize(("value", "hex_"), VECTORS["varints"])
def test_varints(value: int, hex_: str) -> None:
    assert encode_varint(value).hex() == hex_
    assert decode_varint(bytes.fromhex(hex_)) == (value, len(hex_) // 2)


def test_truncated_varint_is_refused() -> None:
    with pytest.raises(BlipCodecError):
        decode_varint(b"\x80\x80")


@pytest.mark.parametrize("name", ["V1", "V7", "V8", "V9"])
def test_single_frames_both_ways(name: str) -> None:
    vector = FRAMES[name]
    data = encode_message(_props(vector), vector["body"].encode())
    assert FrameEncoder().frame(vector["msgno"], vector["flags"], data).hex() == vector["hex"]
    frame = FrameDecoder().decode(bytes.fromhex(vector["hex"]))
    assert (frame.number, frame.flags) == (vector["msgno"], vector["flags"])
    assert decode_message(frame.data) == (dict(_props(vector)), vector["body"].encode())


def test_crc_runs_across_frames_of_a_direction() -> None:
    v1, v6 = FRAMES["V1"], FRAMES["V6"]
    encoder = FrameEncoder()
    encoder.frame(1, v1["flags"], encode_message(_props(v1), v1["body"].encode()))
    assert encoder.frame(2, 0, encode_message(_props(v6))).hex() == v6["hex"]
    decoder = FrameDecoder()
    decoder.decode(bytes.fromhex(v1["hex"]))
    assert decode_message(decoder.decode(bytes.fromhex(v6["hex"])).data)[0] == dict(_props(v6))
    with pytest.raises(BlipCodecError, match="CRC"):
        FrameDecoder().decode(bytes.fromhex(v6["hex"]))  # V6 is only valid after V1


def test_compressed_frame_decodes_and_round_trips() -> None:
    v11 = FRAMES["V11"]
    frame = FrameDecoder().decode(bytes.fromhex(v11["hex"]))
    assert frame.flags == 0x28
    assert decode_message(frame.data) == (dict(_props(v11)), b"Hi!")
    encoded = FrameEncoder().frame(1, 0x28, encode_message(_props(v11), b"Hi!"))
    assert encoded[-4:] == bytes.fromhex("6031fe1e")
    assert FrameDecoder().decode(encoded).data == frame.data


def test_ack_frame() -> None:
    assert FrameEncoder.ack(3, False, 50012).hex() == FRAMES["V12"]["hex"]
    frame = FrameDecoder().decode(bytes.fromhex(FRAMES["V12"]["hex"]))
    assert (frame.number, frame.flags, decode_varint(frame.data)[0]) == (3, 0x34, 50012)


@pytest.mark.parametrize("vector", VECTORS.get("message_encodings", []), ids=lambda v: v["id"])
def test_message_encodings(vector: dict[str, Any]) -> None:
    props = _props(vector)
    if "properties_block_hex" in vector:
        assert encode_properties(props).hex() == vector["properties_block_hex"]
        assert decode_properties(bytes.fromhex(vector["properties_block_hex"]))[0] == dict(props)
    else:
        data = encode_message(props, vector["body"].encode())
        assert data.hex().startswith(vector["hex_prefix"])
        assert decode_message(data) == (dict(props), vector["body"].encode())
    assert encode_properties([]) == b"\x00"


@pytest.mark.parametrize(("hex_", "why"), VECTORS.get("invalid_property_blocks_hex", []))
def test_invalid_property_blocks(hex_: str, why: str) -> None:
    with pytest.raises(BlipCodecError):
        decode_properties(bytes.fromhex(hex_))


def test_blob_digest_vector() -> None:
    vector = VECTORS["digests"][0]
    digest = "sha1-" + base64.b64encode(hashlib.sha1(vector["data_utf8"].encode()).digest()).decode()
    assert digest == vector["digest"]


# -- the sans-I/O connection ------------------------------------------------------------------


def test_protocol_sends_v1_then_v6() -> None:
    sender = BlipProtocol()
    v1, v6 = FRAMES["V1"], FRAMES["V6"]
    sender.send_request(_props(v1), b"Hi!", no_reply=True)
    sender.send_request(_props(v6))
    assert sender.next_frame().hex() == v1["hex"]  # type: ignore[union-attr]
    assert sender.next_frame().hex() == v6["hex"]  # type: ignore[union-attr]
    assert sender.next_frame() is None


def test_protocol_fragments_as_v10() -> None:
    v10 = FRAMES["V10"]
    sender = BlipProtocol(frame_size=14)
    sender.send_request(_props(v10), v10["body"].encode())
    assert [sender.next_frame().hex(), sender.next_frame().hex()] == v10["frames_hex"]  # type: ignore[union-attr]


def _websocket_bytes(frames: list[bytes]) -> bytes:
    client = Protocol(Side.CLIENT)
    for frame in frames:
        client.send_binary(frame)
    return b"".join(client.data_to_send())


@pytest.mark.parametrize("name", ["V1", "V10", "V11"])
def test_reassembly_fed_one_byte_at_a_time(name: str) -> None:
    vector = FRAMES[name]
    frames = [bytes.fromhex(h) for h in vector.get("frames_hex", [vector.get("hex", "")])]
    server, receiver = Protocol(Side.SERVER), BlipProtocol()
    messages = []
    for byte in _websocket_bytes(frames):
        server.receive_data(bytes([byte]))
        for event in server.events_received():
            assert isinstance(event, Frame) and event.opcode is Opcode.BINARY
            message = receiver.receive_frame(bytes(event.data))
            if message is not None:
                messages.append(message)
    assert len(messages) == 1
    assert messages[0].properties == dict(_props(vector))
    assert messages[0].body == vector["body"].encode()


def test_request_numbers_must_be_consecutive() -> None:
    receiver = BlipProtocol()
    with pytest.raises(BlipViolationError, match="Bad incoming REQ #2"):
        receiver.receive_frame(FrameEncoder().frame(2, 0, encode_message([("Profile", "getCheckpoint")])))


def test_reply_to_unknown_request_is_refused() -> None:
    with pytest.raises(BlipViolationError, match="Bad incoming RES #1"):
        BlipProtocol().receive_frame(bytes.fromhex(FRAMES["V8"]["hex"]))


def test_reply_matches_a_sent_request_once() -> None:
    sender = BlipProtocol()
    sender.send_request([("Profile", "getCheckpoint")])
    sender.next_frame()
    message = sender.receive_frame(bytes.fromhex(FRAMES["V8"]["hex"]))
    assert message is not None and message.type == 1
    with pytest.raises(BlipViolationError):
        sender.receive_frame(FrameEncoder().frame(1, 1, b"\x00"))


def test_acks_every_50000_bytes_and_pauses_past_128000() -> None:
    sender, receiver = BlipProtocol(), BlipProtocol()
    body = bytes(range(256)) * 1200  # 307,200 bytes
    sender.send_request([("Profile", "big")], body)
    sent = 0
    while (frame := sender.next_frame()) is not None:
        sent += 1
        receiver.receive_frame(frame)
    assert sent == 8  # 128,000 bytes went out, then the message waits for an ACK
    ack = receiver.next_frame()
    assert ack is not None and FrameDecoder().decode(ack).flags == 0x34
    sender.receive_frame(ack)
    while (frame := sender.next_frame()) is not None:
        message = receiver.receive_frame(frame)
        while (ack := receiver.next_frame()) is not None:
            sender.receive_frame(ack)
    assert message is not None and message.body == body
