"""The doubles refuse what a real LiteCore peer refuses: violations, and a close with 4002."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from tests.conftest import TIME_UNIT
from tests.litecore_peer import PeerStore, StrictListener, StrictReplicator
from tests.litecore_peer.blip import Message
from tests.litecore_peer.codec import FrameEncoder, encode_message
from tests.litecore_peer.connection import BlipConnection
from tests.litecore_peer.handshake import client_handshake, server_handshake
from tests.litecore_peer.outgoing import OutgoingRev, RevSender

pytestmark = pytest.mark.asyncio

TIMEOUT = 10 * TIME_UNIT
EXCEPTION = (4002, "An exception was thrown")
REV = "1-" + "ab" * 20


@pytest_asyncio.fixture
async def listener() -> AsyncIterator[StrictListener]:
    server = await StrictListener(PeerStore("listener"), users={"bob": "pw"}).start()
    yield server
    await server.stop()


async def client(listener: StrictListener, **options: int) -> BlipConnection:
    """A hand-made client: a bare BLIP connection to the listener."""
    violations: list[str] = []
    reader, writer, _ = await client_handshake(listener.url, "bob", "pw", violations=violations)
    conn = BlipConnection(reader, writer, client=True, violations=violations, name="hand-made client", **options)
    conn.start()
    return conn


async def closed_with(conn: BlipConnection) -> tuple[int | None, str]:
    return await asyncio.wait_for(conn.wait_closed(), TIMEOUT)


async def test_listener_answers_http_1_0_with_a_basic_challenge(listener: StrictListener) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    writer.write(b"GET /db/_blipsync HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    writer.close()
    assert head.startswith(b"HTTP/1.0 401 ")
    assert b'WWW-Authenticate: Basic realm="' in head


async def test_unsolicited_rev_to_the_listener(listener: StrictListener) -> None:
    conn = await client(listener)
    assert (await conn.request("getCheckpoint", [("client", "cp-x")])).error[:2] == ("HTTP", 404)
    conn.send_no_reply("rev", [("id", "doc"), ("rev", REV), ("noconflicts", "1")], b"{}")
    assert await closed_with(conn) == EXCEPTION
    assert len(listener.violations) == 1 and listener.violations[0].startswith("unsolicited rev doc")
    assert listener.store.get("doc") is None


async def test_oversized_frame(listener: StrictListener) -> None:
    conn = await client(listener, frame_size=70_000)
    conn.send_no_reply("getCheckpoint", [("client", "cp-x")], bytes(70_000))
    assert await closed_with(conn) == EXCEPTION
    assert "65500" in listener.violations[0] and "70" in listener.violations[0]


async def test_first_request_must_be_get_checkpoint(listener: StrictListener) -> None:
    conn = await client(listener)
    conn.send_no_reply("subChanges")
    assert await closed_with(conn) == EXCEPTION
    assert "first request is 'subChanges'" in listener.violations[0]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (FrameEncoder().frame(2, 0x20, encode_message([("Profile", "getCheckpoint")])), "Bad incoming REQ #2"),
        (FrameEncoder().frame(1, 0x01, b"\x00"), "Bad incoming RES #1"),
        (FrameEncoder().frame(1, 0x20, b"\x00")[:-1] + b"\x00", "bad CRC"),
    ],
    ids=["request-number", "reply-to-nothing", "crc"],
)
async def test_frame_level_violations(listener: StrictListener, frame: bytes, expected: str) -> None:
    conn = await client(listener)
    conn.send_raw(frame)
    assert await closed_with(conn) == EXCEPTION
    assert expected in listener.violations[0]


async def test_text_message(listener: StrictListener) -> None:
    conn = await client(listener)
    conn.send_raw(b"hello", text=True)
    assert await closed_with(conn) == EXCEPTION
    assert "text WebSocket message" in listener.violations[0]


async def test_normal_refusals_are_not_violations(listener: StrictListener) -> None:
    conn = await client(listener)
    await conn.request("getCheckpoint", [("client", "cp-x")])
    assert (await conn.request("noSuchThing")).error == ("BLIP", 404, "no handler for message")
    assert (await conn.request("setCheckpoint", [("client", "cp-x"), ("rev", "7-cc")], b"{}")).error[:2] == (
        "HTTP",
        409,
    )
    assert (await conn.request("changes", [], b'[[1,"doc","' + REV.encode() + b'"]]')).error[:2] == ("BLIP", 409)
    assert listener.violations == []
    await conn.close()


async def test_a_2x_client_gets_cb_mobile_2_and_get_collections_gets_404(listener: StrictListener) -> None:
    violations: list[str] = []
    reader, writer, upgraded = await client_handshake(
        listener.url, "bob", "pw", violations=violations, protocols=("BLIP_3+CBMobile_2",)
    )
    assert upgraded.subprotocol == "BLIP_3+CBMobile_2"
    conn = BlipConnection(reader, writer, client=True, violations=violations)
    conn.start()
    # A 3.0 listener has no getCollections handler; 3.1 clients then fall back to getCheckpoint.
    assert (await conn.request("getCollections", [], b"{}")).error == ("BLIP", 404, "no handler for message")
    assert (await conn.request("getCheckpoint", [("client", "cp-x")])).error[:2] == ("HTTP", 404)
    await conn.close()
    assert listener.violations == [] and violations == []


@pytest.mark.parametrize("includes_rev", [False, True])
async def test_proposed_conflict_answer(includes_rev: bool) -> None:
    store = PeerStore("listener")
    current = store.put("doc", {"v": 1})
    listener = await StrictListener(store, conflict_includes_rev=includes_rev).start()
    try:
        conn = await client(listener)
        await conn.request("getCheckpoint", [("client", "cp-x")])
        rows = [["doc", "2-" + "cd" * 20, ""], ["new", REV], ["doc", current]]
        reply = await conn.request("proposeChanges", [("conflictIncludesRev", "true")], json.dumps(rows).encode())
        expected = {"status": 409, "rev": current} if includes_rev else 409
        assert reply.json() == [expected, 0, 304]
        assert (reply.get("maxHistory"), reply.get("blobs"), reply.get("deltas")) == ("20", "true", "true")
        # After proposeChanges, a rev must carry noconflicts.
        conn.send_no_reply("rev", [("id", "new"), ("rev", REV)], b"{}")
        assert await closed_with(conn) == EXCEPTION
        assert "without 'noconflicts'" in listener.violations[0]
    finally:
        await listener.stop()


async def test_non_empty_no_reply_propose_changes(listener: StrictListener) -> None:
    conn = await client(listener)
    await conn.request("getCheckpoint", [("client", "cp-x")])
    conn.send_no_reply("proposeChanges", [], json.dumps([["doc", REV]]).encode())
    assert await closed_with(conn) == EXCEPTION
    assert "non-empty NoReply proposeChanges" in listener.violations[0]


# -- a hand-made server against the StrictReplicator --------------------------------------------


Script = Callable[[BlipConnection], Awaitable[None]]


class HandServer:
    """A passive peer that answers the start-up and then runs ``script``."""

    def __init__(self, script: Script, *, challenge_header: bool = True) -> None:
        self.script = script
        self.challenge_header = challenge_header
        self.conn: asyncio.Future[BlipConnection] = asyncio.get_running_loop().create_future()
        self.violations: list[str] = []
        self.rev_replies: list[Message] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/db"

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.challenge_header:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        _, upgraded = await server_handshake(reader, writer, database="db", users=None)
        assert upgraded is not None
        conn = BlipConnection(reader, writer, client=False, violations=self.violations, name="hand-made server")
        conn.register("getCheckpoint", lambda msg: conn.reply_error(msg, "HTTP", 404))
        conn.register("setCheckpoint", lambda msg: conn.reply(msg, [("rev", "1-cc")]))
        conn.register("subChanges", self._sub_changes)
        conn.start()
        self.conn.set_result(conn)
        await conn.wait_closed()

    def _sub_changes(self, msg: Message) -> Awaitable[None]:
        conn = self.conn.result()
        conn.reply(msg)
        return self.script(conn)

    async def stop(self) -> None:
        self.server.close()


async def run_against(script: Script) -> tuple[StrictReplicator, HandServer]:
    server = HandServer(script)
    url = await server.start()
    replicator = StrictReplicator(PeerStore("local"), url, "bob", "pw", push=False)
    await asyncio.wait_for(replicator.run(), TIMEOUT)
    await server.stop()
    return replicator, server


def rev(doc_id: str, sequence: str | None = "1") -> list[tuple[str, str]]:
    props = [("id", doc_id), ("rev", REV)]
    return [*props, ("sequence", sequence)] if sequence else props


async def test_unsolicited_rev_to_the_replicator() -> None:
    async def script(conn: BlipConnection) -> None:
        conn.send_no_reply("rev", rev("live"), b'{"pushed":"without changes"}')

    replicator, server = await run_against(script)
    assert replicator.violations[0].startswith("unsolicited rev live")
    assert (await server.conn).close_received == EXCEPTION
    assert replicator.store.get("live") is None


async def test_a_second_rev_for_one_row_is_unsolicited() -> None:
    async def script(conn: BlipConnection) -> None:
        answer = await conn.request("changes", [], json.dumps([[1, "doc", REV]]).encode())
        assert answer.json() == [[]]
        assert not (await conn.request("rev", rev("doc"), b"{}")).is_error
        conn.send_no_reply("rev", rev("doc"), b"{}")

    replicator, server = await run_against(script)
    assert replicator.violations == [f"unsolicited rev doc {REV}: " + replicator.violations[0].split(": ", 1)[1]]
    assert (await server.conn).close_received == EXCEPTION


async def test_rev_without_sequence_is_answered_400() -> None:
    replies: list[Message] = []

    async def script(conn: BlipConnection) -> None:
        await conn.request("changes", [], json.dumps([[1, "doc", REV]]).encode())
        replies.append(await conn.request("rev", rev("doc", sequence=None), b"{}"))
        conn.send_no_reply("changes", [], b"[]")

    replicator, _ = await run_against(script)
    assert replies[0].error == ("HTTP", 400, "received 'rev' message with missing 'sequence'")
    assert replicator.violations == []


async def test_401_without_challenge_header() -> None:
    server = HandServer(lambda conn: asyncio.sleep(0), challenge_header=False)
    url = await server.start()
    replicator = StrictReplicator(PeerStore("local"), url, "bob", "pw")
    await asyncio.wait_for(replicator.run(), TIMEOUT)
    await server.stop()
    assert "401 without a usable WWW-Authenticate" in replicator.violations[0]


async def test_history_is_capped_and_ends_at_what_the_peer_has_as_litecore_sends_it() -> None:
    """TreeDocument::_getRevisionHistory: at most maxHistory entries with the revision itself (which
    the pusher then strips), skipped generations filled with made-up IDs while there is room, and
    the revision the peer has always last (after a gap when it is further back than the cap)."""
    store = PeerStore("sender")
    revs = [store.put("doc", {"v": v}) for v in range(30)]  # generations 1-30
    sender = RevSender(None, store)  # type: ignore[arg-type]  # history() needs only the store

    def history(known: tuple[str, ...], max_history: int) -> list[str]:
        return sender.history(OutgoingRev("doc", revs[-1], 30, known=known, max_history=max_history))

    ancestors = list(reversed(revs[:-1]))  # the revision itself counts toward maxHistory
    assert history((revs[24],), 20) == ancestors[:5]  # the peer's revision within reach
    assert history((revs[0],), 20) == [*ancestors[:18], revs[0]]  # beyond: 18, then a gap
    assert history((), 20) == ancestors[:19]
    assert history((revs[0],), 50) == ancestors
    # a gap in the sender's own tree (a line linked across pruned revisions) is filled
    top, root = "40-" + "a" * 40, "1-" + "c" * 40
    store.insert_revision("other", top, [*(f"{g}-{'b' * 40}" for g in range(39, 20, -1)), root], {"v": 1})
    gapped = sender.history(OutgoingRev("other", top, 1, known=(root,), max_history=50))
    assert [int(r.partition("-")[0]) for r in gapped] == list(range(39, 0, -1))
    assert all("-faded000" in r for r in gapped[19:-1]) and gapped[-1] == root


async def test_the_double_checks_a_received_history_only_as_far_as_the_first_revision_it_holds() -> None:
    """RevTree::findCommonAncestor checks generations only down to the first revision the tree
    has; a gap shallower than the pruning depth before that is an error."""
    store = PeerStore("receiver")
    revs = [store.put("doc", {"v": v}) for v in range(10)]  # generations 1-10
    top = "26-" + "a" * 40
    history = [*(f"{g}-{'b' * 40}" for g in range(25, 10, -1)), revs[-1], revs[2]]  # 10 at 16, a gap after
    assert store.insert_revision("doc", top, history, {"v": 26})
    with pytest.raises(ValueError, match="not consecutive"):
        PeerStore("empty").insert_revision("doc", top, history, {"v": 26})
