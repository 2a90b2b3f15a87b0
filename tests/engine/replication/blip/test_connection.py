"""The sans-I/O BLIP connection: vectors V1-V12, properties, flow control, fuzzing (protocol §2, §7)."""

from __future__ import annotations

import itertools
import json
import random
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.replication import tuning
from engine.replication.blip.codec import MessageType, encode_message, encode_varint
from engine.replication.blip.connection import (
    BlipConnection,
    IncomingBudget,
    Message,
    ReplyReceived,
    RequestReceived,
)
from engine.replication.errors import MessageTooLargeError, ProtocolError
from tests.conftest import SHARED, needs_shared

SHOE = {"Shoe-Size": "8.5", "Hair": "yes"}
CHECKPOINT = {"Profile": "getCheckpoint", "client": "cp-abc"}
V1 = "01201753686f652d53697a6500382e35004861697200796573004869216031fe1e"
V6 = "02002450726f66696c6500676574436865636b706f696e7400636c69656e740063702d6162630088f370c2"
V7 = "01002450726f66696c6500676574436865636b706f696e7400636c69656e740063702d616263005575197f"
V8 = "010100d202ef8d"
V9 = "0102214572726f722d446f6d61696e00424c4950004572726f722d436f646500343034006e6f2068616e646c657220666f72206d65737361676536ead239"  # fmt: skip
V10 = ["01400d50726f66696c65006563686f00ca859b26", "010030313233343536373839dfb123c9"]
V11 = "0128120fcec84fd50dceac4a65b0d03365f048cc2c62a84c2d66f0c85404006031fe1e"
V12 = "0334dc8603"


def drain(conn: BlipConnection) -> list[bytes]:
    return conn.frames_to_send()


def pump(a: BlipConnection, b: BlipConnection) -> None:
    """Deliver frames both ways until both are quiet."""
    while True:
        moved = False
        for src, dst in ((a, b), (b, a)):
            for frame in src.frames_to_send():
                dst.receive_frame(frame)
                moved = True
        if not moved:
            return


def only_request(conn: BlipConnection) -> Message:
    events = conn.events_received()
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    return events[0].message


def test_message_numbers_of_every_varint_width_arrive_in_order() -> None:
    """Numbers 1-127 take one varint byte, up to 16,383 two, beyond that three (protocol §2.2)."""
    sender, receiver = BlipConnection(), BlipConnection()
    for n in range(1, 17_000):
        sender.send_request({"Profile": "n", "n": str(n)}, b"x", no_reply=True)
        for frame in sender.frames_to_send():
            receiver.receive_frame(frame)
        message = only_request(receiver)
        assert (message.number, message.properties["n"], message.body) == (n, str(n), b"x")
    client, server = BlipConnection(), BlipConnection()
    for n in range(1, 300):  # a reply carries its request's number
        client.send_request({"Profile": "n"})
        pump(client, server)
        server.send_reply(only_request(server).number, {"ok": str(n)})
        pump(client, server)
        (event,) = client.events_received()
        assert isinstance(event, ReplyReceived) and (event.message.number, event.message.properties) == (
            n,
            {"ok": str(n)},
        )


# -- vectors: serialize ----------------------------------------------------------


def test_v1_and_v6_serialize_with_running_crc() -> None:
    conn = BlipConnection()
    conn.send_request(SHOE, b"Hi!", no_reply=True)
    conn.send_request(CHECKPOINT)
    assert [f.hex() for f in drain(conn)] == [V1, V6]


def test_v7_first_frame_of_a_direction() -> None:
    conn = BlipConnection()
    conn.send_request(CHECKPOINT)
    assert drain(conn) == [bytes.fromhex(V7)]


@pytest.mark.parametrize(("reply", "expected"), [("empty", V8), ("error", V9)])
def test_v8_v9_replies(reply: str, expected: str) -> None:
    conn = BlipConnection()
    conn.receive_frame(bytes.fromhex(V7))
    request = only_request(conn)
    if reply == "empty":
        conn.send_reply(request.number)
    else:
        conn.send_error(request.number, "BLIP", 404, "no handler for message")
    assert drain(conn) == [bytes.fromhex(expected)]


def test_v10_two_frames() -> None:
    conn = BlipConnection(max_frame_size=14)
    conn.send_request({"Profile": "echo"}, b"0123456789")
    assert [f.hex() for f in drain(conn)] == V10


def test_v11_compressed() -> None:
    conn = BlipConnection()
    conn.send_request(SHOE, b"Hi!", compressed=True, no_reply=True)
    assert drain(conn) == [bytes.fromhex(V11)]


def test_v12_ack_after_50012_bytes() -> None:
    sender, receiver = BlipConnection(max_frame_size=12_499), BlipConnection()
    for _ in range(2):
        sender.send_request({"Profile": "x"}, no_reply=True)
    sender.send_request({"Profile": "big"}, b"\x01" * 60_000)
    frames = drain(sender)
    for frame in frames[:2]:
        receiver.receive_frame(frame)
    acks = []
    for frame in frames[2:]:
        receiver.receive_frame(frame)
        acks.extend(receiver.frames_to_send())
    assert acks[0] == bytes.fromhex(V12)  # 4 frames of 12,499 + 4 CRC bytes = 50,012


# -- vectors: parse --------------------------------------------------------------


def test_v1_v6_parse() -> None:
    conn = BlipConnection()
    conn.receive_frame(bytes.fromhex(V1))
    conn.receive_frame(bytes.fromhex(V6))
    first, second = (e.message for e in conn.events_received())
    assert (first.number, first.properties, first.body, first.no_reply) == (1, SHOE, b"Hi!", True)
    assert (second.number, second.profile, second.body, second.no_reply) == (2, "getCheckpoint", b"", False)


@pytest.mark.parametrize(("hexed", "type_", "body"), [(V8, MessageType.RESPONSE, b""), (V9, MessageType.ERROR, b"no handler for message")])  # fmt: skip
def test_v8_v9_parse(hexed: str, type_: MessageType, body: bytes) -> None:
    conn = BlipConnection()
    conn.send_request(CHECKPOINT)
    drain(conn)
    conn.receive_frame(bytes.fromhex(hexed))
    (event,) = conn.events_received()
    assert isinstance(event, ReplyReceived)
    assert event.message.type is type_ and event.message.body == body
    if type_ is MessageType.ERROR:
        error = event.message.error()
        assert (error.domain, error.code, error.message) == ("BLIP", 404, "no handler for message")


def test_v10_v11_parse() -> None:
    conn = BlipConnection()
    for frame in V10:
        conn.receive_frame(bytes.fromhex(frame))
    assert only_request(conn).body == b"0123456789"
    compressed = BlipConnection()
    compressed.receive_frame(bytes.fromhex(V11))
    message = only_request(compressed)
    assert (message.properties, message.body, message.compressed) == (SHOE, b"Hi!", True)


def test_v12_parse_resumes_a_paused_message() -> None:
    sender = BlipConnection()
    for _ in range(2):
        sender.send_request({"Profile": "x"}, no_reply=True)
    sender.send_request({"Profile": "big"}, b"\x02" * 400_000)
    before = sum(len(f) for f in drain(sender))
    assert before < 200_000 and not sender.frames_to_send()  # paused at 128,000 unacknowledged bytes
    sender.receive_frame(bytes.fromhex(V12))
    assert sender.frames_to_send()  # resumed


@pytest.mark.parametrize("hexed", [V1, V7, V11, *V10])
def test_vectors_fed_one_byte_per_frame(hexed: str) -> None:
    """Re-frame each vector's message into 1-byte frames: reassembly gives the same message."""
    reference = BlipConnection()
    frames = [bytes.fromhex(hexed)] if hexed not in V10 else [bytes.fromhex(h) for h in V10]
    if hexed == V10[1]:
        return
    for frame in frames:
        reference.receive_frame(frame)
    message = only_request(reference)
    sender, receiver = BlipConnection(max_frame_size=1), BlipConnection()
    sender.send_request(message.properties, message.body, compressed=message.compressed, no_reply=message.no_reply)
    tiny = drain(sender)
    assert len(tiny) == len(encode_message(message.properties, message.body))
    for frame in tiny:
        receiver.receive_frame(frame)
    assert only_request(receiver) == message


@needs_shared(SHARED / "protocol-vectors.json")
def test_frames_match_the_shared_vector_file() -> None:
    frames = {v["id"]: v for v in json.loads((SHARED / "protocol-vectors.json").read_text())["frames"]}
    assert frames["V1"]["hex"] == V1 and frames["V6"]["hex"] == V6 and frames["V7"]["hex"] == V7
    assert frames["V8"]["hex"] == V8 and frames["V9"]["hex"] == V9 and frames["V10"]["frames_hex"] == V10
    assert frames["V11"]["hex"] == V11 and frames["V12"]["hex"] == V12


# -- numbering and replies ---------------------------------------------------------


def test_request_numbers_must_be_sequential() -> None:
    conn = BlipConnection()
    with pytest.raises(ProtocolError, match="sequence"):
        conn.receive_frame(b"\x02" + bytes.fromhex(V7)[1:])  # request #2 first (the CRC covers no header)


def test_reply_to_unknown_request_is_fatal() -> None:
    with pytest.raises(ProtocolError, match="unknown request"):
        BlipConnection().receive_frame(bytes.fromhex(V8))


def test_no_reply_requests_cannot_be_answered() -> None:
    conn = BlipConnection()
    conn.receive_frame(bytes.fromhex(V1))
    message = only_request(conn)
    with pytest.raises(ValueError):
        conn.send_reply(message.number)
    with pytest.raises(ValueError):
        conn.send_reply(99)


def test_each_request_gets_exactly_one_reply() -> None:
    a, b = BlipConnection(), BlipConnection()
    a.send_request({"Profile": "echo"}, b"x")
    pump(a, b)
    request = only_request(b)
    b.send_reply(request.number, {"ok": "1"}, b"y")
    with pytest.raises(ValueError):
        b.send_reply(request.number)
    pump(a, b)
    (event,) = a.events_received()
    assert isinstance(event, ReplyReceived) and event.message.body == b"y"


def test_urgent_request_reply_is_urgent_and_overtakes_queued_messages() -> None:
    a, b = BlipConnection(), BlipConnection()
    a.send_request({"Profile": "first"}, b"1" * 100_000)
    a.send_request({"Profile": "second"}, b"2" * 100)
    a.send_request({"Profile": "urgent"}, b"3", urgent=True)
    frames = a.frames_to_send()
    for frame in frames:
        b.receive_frame(frame)
    order = [e.message.profile for e in b.events_received()]
    assert order.index("urgent") < order.index("first")
    assert order.index("second") < order.index("urgent")  # never overtakes an unstarted request


# -- properties: round trips -------------------------------------------------------

texts = st.text(alphabet=st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=20)
messages = st.tuples(
    st.dictionaries(texts.filter(bool), texts, max_size=5),
    st.binary(max_size=70_000),
    st.booleans(),
    st.booleans(),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, min_size=1, max_size=8), st.integers(min_value=1, max_value=20_000), st.booleans())
def test_random_messages_round_trip_interleaved(
    batch: list[tuple[dict[str, str], bytes, bool, bool]], frame_size: int, both_ways: bool
) -> None:
    a, b = BlipConnection(max_frame_size=frame_size), BlipConnection(max_frame_size=frame_size)
    for props, body, compressed, urgent in batch:
        a.send_request(props, body, compressed=compressed, urgent=urgent, no_reply=True)
        if both_ways:
            b.send_request(props, body, compressed=not compressed, no_reply=True)
    pump(a, b)
    for receiver in (b, a) if both_ways else (b,):
        events = sorted(receiver.events_received(), key=lambda e: e.message.number)
        assert [(e.message.properties, e.message.body) for e in events] == [(p, body) for p, body, _, _ in batch]


class ReferenceSender:
    """An independent frame writer that picks compression per frame (protocol §2.6-2.7)."""

    def __init__(self) -> None:
        self.crc = 0
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15, 9)

    def frame(self, number: int, chunk: bytes, *, more: bool, compress: bool) -> bytes:
        flags = 0x20 | (0x40 if more else 0)
        payload = chunk
        if compress:
            flags |= 0x08
            payload = (self.deflater.compress(chunk) + self.deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]
        self.crc = zlib.crc32(chunk, self.crc)
        return encode_varint(number) + bytes((flags,)) + payload + self.crc.to_bytes(4, "big")


@settings(max_examples=80, deadline=None)
@given(st.lists(messages, min_size=1, max_size=4), st.lists(st.integers(1, 100_000), max_size=8), st.lists(st.booleans(), min_size=1, max_size=6), st.randoms(use_true_random=False))  # fmt: skip
def test_mixed_compressed_and_plain_frames_within_messages(
    batch: list[tuple[dict[str, str], bytes, bool, bool]], cuts: list[int], compress: list[bool], rnd: random.Random
) -> None:
    chunks = []
    for props, body, _, _ in batch:
        data = encode_message(props, body)
        bounds = sorted({0, len(data), *(c % len(data) for c in cuts)})
        chunks.append([data[a:b] for a, b in itertools.pairwise(bounds)])
    # interleave: any message may go next, but first frames keep numbering order (§2.4)
    sender, frames, next_chunk, started = ReferenceSender(), [], [0] * len(chunks), 0
    while any(k < len(c) for k, c in zip(next_chunk, chunks, strict=True)):
        i = rnd.choice([i for i in range(min(started + 1, len(chunks))) if next_chunk[i] < len(chunks[i])])
        k = next_chunk[i]
        next_chunk[i] += 1
        started = max(started, i + 1)
        more = next_chunk[i] < len(chunks[i])
        frames.append(sender.frame(i + 1, chunks[i][k], more=more, compress=compress[len(frames) % len(compress)]))
    receiver = BlipConnection()
    for frame in frames:
        receiver.receive_frame(frame)
    got = {e.message.number: (e.message.properties, e.message.body) for e in receiver.events_received()}
    assert got == {n: (p, b) for n, (p, b, _, _) in enumerate(batch, start=1)}


# -- limits ----------------------------------------------------------------------


def test_message_size_limit() -> None:
    sender, receiver = BlipConnection(), BlipConnection(max_message_size=1000)
    sender.send_request({"Profile": "big"}, b"x" * 5000)
    with pytest.raises(MessageTooLargeError):
        for frame in drain(sender):
            receiver.receive_frame(frame)


def test_deflate_bomb_is_bounded() -> None:
    sender, receiver = BlipConnection(), BlipConnection(max_message_size=10_000)
    sender.send_request({"Profile": "bomb"}, b"\0" * 10_000_000, compressed=True, no_reply=True)
    with pytest.raises(MessageTooLargeError):
        for frame in sender.frames_to_send():
            receiver.receive_frame(frame)


def test_properties_size_limit() -> None:
    sender, receiver = BlipConnection(), BlipConnection(max_properties_size=100)
    sender.send_request({"k": "v" * 200})
    with pytest.raises(MessageTooLargeError):
        receiver.receive_frame(drain(sender)[0])


def test_pending_incoming_limit() -> None:
    sender, receiver = BlipConnection(max_frame_size=10), BlipConnection(max_pending_incoming=3)
    for _ in range(5):
        sender.send_request({"Profile": "p"}, b"x" * 100)
    with pytest.raises(MessageTooLargeError):
        for frame in drain(sender):
            receiver.receive_frame(frame)


MIB = 1 << 20


def unfinished_flood(requests: int, frames: int, sender: ReferenceSender | None = None) -> Iterator[bytes]:
    """``requests`` interleaved requests of ``frames`` compressed frames of 1 MiB of zeros each, all
    with MoreComing: about 1 KB on the wire per MiB buffered, and no message ever finishes."""
    sender = sender or ReferenceSender()
    for k in range(frames):
        for number in range(1, requests + 1):
            prefix = encode_message({"Profile": "flood"}) if k == 0 else b""
            yield sender.frame(number, prefix + bytes(MIB), more=True, compress=True)


def test_unfinished_messages_are_capped_per_connection() -> None:
    """20 requests of 60 MiB, never finished: the connection stops at its budget (1009), not at 1.2 GB."""
    receiver = BlipConnection()
    wire = 0
    with pytest.raises(MessageTooLargeError, match="on this connection") as info:
        for frame in unfinished_flood(20, 60):
            wire += len(frame)
            receiver.receive_frame(frame)
            assert receiver.unfinished_bytes <= tuning.MAX_UNFINISHED_BYTES
    assert info.value.close_code == 1009
    assert wire < 200_000  # a few dozen KB of traffic...
    assert receiver.unfinished_bytes > tuning.MAX_UNFINISHED_BYTES - 2 * MIB  # ...held it all, then no more
    receiver.close()
    assert receiver.unfinished_bytes == 0 and not receiver._incoming
    with pytest.raises(ProtocolError):
        receiver.receive_frame(bytes.fromhex(V7))


def test_unfinished_bytes_come_back_when_messages_complete() -> None:
    budget = IncomingBudget(3 * MIB)
    sender, receiver = BlipConnection(), BlipConnection(max_unfinished_bytes=2 * MIB, shared_budget=budget)
    body = random.Random(1).randbytes(MIB + MIB // 2)  # two of them at once would exceed both budgets
    for _ in range(3):
        sender.send_request({"Profile": "big"}, body, no_reply=True)
        while frames := sender.frames_to_send():
            for frame in frames:
                receiver.receive_frame(frame)
                assert receiver.unfinished_bytes <= 2 * MIB and budget.used == receiver.unfinished_bytes
            for ack in receiver.frames_to_send():
                sender.receive_frame(ack)
    assert [e.message.body for e in receiver.events_received()] == [body] * 3
    assert receiver.unfinished_bytes == 0 and budget.used == 0


def test_unfinished_messages_are_capped_over_connections_sharing_a_budget() -> None:
    budget = IncomingBudget(4 * MIB)
    first, second = (BlipConnection(max_unfinished_bytes=3 * MIB, shared_budget=budget) for _ in range(2))
    for frame in unfinished_flood(1, 2):
        first.receive_frame(frame)
    flood = unfinished_flood(1, 2)
    second.receive_frame(next(flood))
    props = len(encode_message({"Profile": "flood"}))
    assert (first.unfinished_bytes, second.unfinished_bytes) == (2 * MIB + props, MIB + props)
    assert budget.used == 3 * MIB + 2 * props
    with pytest.raises(MessageTooLargeError, match="over all connections"):
        second.receive_frame(next(flood))  # within its own 3 MiB, beyond the shared 4 MiB
    second.close()
    assert budget.used == first.unfinished_bytes
    first.close()
    first.close()
    assert budget.used == 0


# -- malformed input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        b"",  # empty frame
        b"\x81",  # truncated varint
        b"\x01",  # no flags
        b"\x01\x03abcdabcd",  # undefined type
        b"\x01\x00\x00",  # shorter than the checksum
        bytes.fromhex(V1)[:-1] + b"\x00",  # checksum mismatch
        b"\x01\x28\xff\xff\xff" + b"\x00" * 4,  # bad deflate data
    ],
)
def test_malformed_frames_raise_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        BlipConnection().receive_frame(frame)


def test_acks_for_unknown_messages_are_ignored() -> None:
    conn = BlipConnection()
    conn.receive_frame(bytes.fromhex(V12))
    conn.receive_frame(b"\x09\x35\x05")
    assert conn.events_received() == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=10))
def test_random_frames_never_crash(frames: list[bytes]) -> None:
    conn = BlipConnection(max_message_size=100_000)
    try:
        for frame in frames:
            conn.receive_frame(frame)
    except ProtocolError:
        pass
    conn.events_received()


def valid_stream(seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    sender = BlipConnection(max_frame_size=rnd.randint(1, 300))
    for _ in range(rnd.randint(1, 5)):
        props = {"Profile": "p" * rnd.randint(1, 5), "k": str(rnd.random())}
        sender.send_request(props, rnd.randbytes(rnd.randint(0, 2000)), compressed=rnd.random() < 0.5)
    return drain(sender)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 10_000),
    st.integers(0, 10_000),
    st.integers(0, 7),
    st.sampled_from(["flip", "cut", "insert", "drop"]),
)
def test_mutated_streams_end_in_protocol_error_or_clean_result(seed: int, where: int, bit: int, how: str) -> None:
    frames = valid_stream(seed)
    i = where % len(frames)
    frame = bytearray(frames[i])
    if how == "flip":
        frame[where % len(frame)] ^= 1 << bit
    elif how == "cut":
        del frame[where % len(frame) :]
    elif how == "insert":
        frame.insert(where % (len(frame) + 1), bit)
    else:
        frames = frames[:i] + frames[i + 1 :]
    if how != "drop":
        frames[i] = bytes(frame)
    conn = BlipConnection(max_message_size=50_000)
    try:
        for f in frames:
            conn.receive_frame(f)
    except ProtocolError:
        return
    for event in conn.events_received():
        assert isinstance(event.message, Message)


def test_flow_control_pauses_one_message_and_lets_others_through() -> None:
    a, b = BlipConnection(), BlipConnection()
    a.send_request({"Profile": "big"}, b"\x03" * 1_000_000, no_reply=True)
    a.send_request({"Profile": "small"}, b"hi", no_reply=True)
    first = a.frames_to_send()
    sent = sum(len(f) for f in first)
    assert sent < tuning.MAX_UNACKED_BYTES + 2 * tuning.MAX_FRAME_SIZE
    for frame in first:
        b.receive_frame(frame)
    assert [e.message.profile for e in b.events_received()] == ["small"]
    pump(a, b)
    (event,) = b.events_received()
    assert event.message.body == b"\x03" * 1_000_000


def test_an_urgent_request_can_complete_before_an_earlier_long_one_and_says_so() -> None:
    """§2.5: a later, urgent message may complete first; the receiver can tell an earlier one is still arriving."""
    sender, receiver = BlipConnection(), BlipConnection()
    sender.send_request({"Profile": "changes"}, b"x" * (3 * tuning.MAX_FRAME_SIZE))
    sender.send_request({"Profile": "changes"}, b"[]", urgent=True, no_reply=True)
    completed: list[int] = []
    for frame in sender.frames_to_send():
        receiver.receive_frame(frame)
        for event in receiver.events_received():
            completed.append(event.message.number)
            if event.message.number == 2:  # the empty one arrived first
                assert receiver.receiving_requests_before(2) and not receiver.receiving_requests_before(1)
    assert completed == [2, 1]
    assert not receiver.receiving_requests_before(3)
