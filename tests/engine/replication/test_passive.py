"""The passive side message by message, as a Couchbase Lite replicator would drive it (protocol §3)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from engine.blobs import digest_of
from engine.database import Database
from engine.documents import Document
from engine.errors import StorageError
from engine.replication.auth import BasicAuthenticator
from engine.replication.blip.connection import Message
from engine.replication.blip.socket import BlipSocket, Reply
from engine.replication.blip.websocket import connect
from engine.replication.errors import BlipError
from engine.replication.listener import URLEndpointListener
from tests.conftest import TIME_UNIT, wait_until
from tests.engine.replication.conftest import Peers

pytestmark = pytest.mark.asyncio

AUTH = BasicAuthenticator("bob", "secret").headers()


class Client:
    """A raw BLIP client that records what the listener sends it."""

    def __init__(self, sock: BlipSocket) -> None:
        self.sock = sock
        self.changes: asyncio.Queue[Message] = asyncio.Queue()
        self.revs: asyncio.Queue[Message] = asyncio.Queue()
        sock.register("changes", self._changes)
        sock.register("rev", self._rev)
        self.wanted = True
        #: the revision this client holds of each document, named in its changes replies
        self.holds: dict[str, str] = {}

    def _changes(self, message: Message) -> object:
        self.changes.put_nowait(message)
        rows = json.loads(message.body) if message.body else []
        answer = [[self.holds[r[1]]] if r[1] in self.holds else [] for r in rows] if self.wanted else []
        return Reply({"deltas": "true"}, json.dumps(answer).encode())

    def _rev(self, message: Message) -> None:
        self.revs.put_nowait(message)

    async def next_changes(self) -> list[list[object]]:
        message = await asyncio.wait_for(self.changes.get(), 5 * TIME_UNIT)
        return json.loads(message.body) if message.body else []


@pytest_asyncio.fixture
async def setup(peers: Peers) -> AsyncIterator[tuple[Database, URLEndpointListener, Client]]:
    db = peers.database("a")
    listener = await peers.listener(db)
    sock = await connect(listener.urls[0], headers=AUTH)
    client = Client(sock)
    sock.start()
    yield db, listener, client
    await sock.close()


async def test_checkpoints_are_stored_per_client_with_mvcc(setup: tuple[Database, URLEndpointListener, Client]) -> None:
    _, _, client = setup
    with pytest.raises(BlipError) as missing:
        await client.sock.request("getCheckpoint", {"client": "cp-x"})
    assert (missing.value.domain, missing.value.code) == ("HTTP", 404)
    reply = await client.sock.request("setCheckpoint", {"client": "cp-x"}, b'{"local":5}')
    assert reply is not None and reply.properties["rev"] == "1-cc"
    with pytest.raises(BlipError) as stale:
        await client.sock.request("setCheckpoint", {"client": "cp-x", "rev": "7-cc"}, b'{"local":6}')
    assert stale.value.code == 409
    got = await client.sock.request("getCheckpoint", {"client": "cp-x"})
    assert got is not None and json.loads(got.body) == {"local": 5} and got.properties["rev"] == "1-cc"
    with pytest.raises(BlipError) as no_client:
        await client.sock.request("getCheckpoint")
    assert no_client.value.code == 400


async def test_unknown_profiles_and_push_style_changes(setup: tuple[Database, URLEndpointListener, Client]) -> None:
    _, _, client = setup
    with pytest.raises(BlipError) as unknown:
        await client.sock.request("putRev")
    assert (unknown.value.code, unknown.value.message) == (404, "no handler for message")
    with pytest.raises(BlipError) as refused:
        await client.sock.request("changes", None, b'[[1,"a","1-aa"]]')
    assert refused.value.code == 409
    with pytest.raises(BlipError) as collection:
        await client.sock.request("getCheckpoint", {"client": "c", "collection": "0"})
    assert collection.value.code == 400


async def test_get_collections_must_come_first(peers: Peers) -> None:
    db = peers.database("a")
    listener = await peers.listener(db)
    sock = await connect(listener.urls[0], headers=AUTH)
    sock.start()
    body = json.dumps({"checkpoint_ids": ["cp-1", "cp-2"], "collections": ["_default", "store.items"]}).encode()
    reply = await sock.request("getCollections", None, body)
    assert reply is not None and json.loads(reply.body) == [{}, None]
    with pytest.raises(BlipError):
        await sock.request("getCheckpoint", {"client": "cp-1"})  # aware mode needs collection=0
    with pytest.raises(BlipError) as missing:
        await sock.request("getCheckpoint", {"client": "cp-1", "collection": "0"})
    assert missing.value.code == 404
    with pytest.raises(BlipError):
        await sock.request("getCollections", None, body)  # only as the first message
    await sock.close()


async def test_propose_changes_decisions(setup: tuple[Database, URLEndpointListener, Client]) -> None:
    db, _, client = setup
    doc = db.save("a", {"v": 1})
    rows = [
        ["a", doc.rev_id, ""],
        ["a", "2-" + "c" * 40, doc.rev_id],
        ["b", "1-" + "d" * 40],
        ["a", "2-" + "e" * 40, "1-" + "f" * 40],
    ]
    reply = await client.sock.request("proposeChanges", {"conflictIncludesRev": "true"}, json.dumps(rows).encode())
    assert reply is not None and reply.properties.get("deltas") == "true" and reply.properties.get("blobs") == "true"
    assert json.loads(reply.body) == [304, 0, 0, {"status": 409, "rev": doc.rev_id}]


async def test_sub_changes_one_shot_then_caught_up(setup: tuple[Database, URLEndpointListener, Client]) -> None:
    db, _, client = setup
    for i in range(5):
        db.save(f"d{i}", {"i": i})
    db.delete("d0")
    await client.sock.request("subChanges", {"batch": "2", "versioning": "rev-trees"})
    rows = []
    while batch := await client.next_changes():
        rows.extend(batch)
    assert [r[1] for r in rows] == ["d1", "d2", "d3", "d4", "d0"]
    assert rows[-1][3] == 1  # CBMobile_3: deletion as an integer flag
    revs = [await asyncio.wait_for(client.revs.get(), 5) for _ in range(5)]
    assert {m.properties["id"] for m in revs} == {"d0", "d1", "d2", "d3", "d4"}
    tomb = next(m for m in revs if m.properties["id"] == "d0")
    assert tomb.properties["deleted"] == "1" and tomb.properties["history"]


async def test_revisions_go_out_in_feed_order(setup: tuple[Database, URLEndpointListener, Client]) -> None:
    """Several changes answered at once: their revisions still leave in sequence order, batch after batch."""
    db, _, client = setup
    with db.batch() as batch:
        for i in range(1000):
            batch.save(f"doc-{i:04d}", {"i": i})
    await client.sock.request("subChanges", {"batch": "200", "versioning": "rev-trees"})
    revs = [await asyncio.wait_for(client.revs.get(), 5 * TIME_UNIT) for _ in range(1000)]
    sequences = [json.loads(m.properties["sequence"]) for m in revs]
    assert sequences == sorted(sequences) and len(set(sequences)) == 1000


async def test_sub_changes_continuous_and_active_only(setup: tuple[Database, URLEndpointListener, Client]) -> None:
    db, _, client = setup
    db.save("gone", {})
    db.delete("gone")
    db.save("kept", {})
    await client.sock.request("subChanges", {"continuous": "true", "activeOnly": "true", "since": "0"})
    assert [r[1] for r in await client.next_changes()] == ["kept"]
    assert await client.next_changes() == []  # caught up
    first = await asyncio.wait_for(client.revs.get(), 5 * TIME_UNIT)
    assert first.properties["id"] == "kept"
    client.holds["kept"] = first.properties["rev"]
    db.delete("kept")  # live deletions do flow after the catch-up, offered in changes first (§3.7, §9)
    (row,) = await client.next_changes()
    assert (row[1], row[3]) == ("kept", 1)
    live = await asyncio.wait_for(client.revs.get(), 5 * TIME_UNIT)
    assert (live.properties["id"], live.properties["deleted"], live.no_reply) == ("kept", "1", True)
    assert live.properties["history"] == client.holds["kept"]  # the history stops at what the client has
    assert client.revs.empty() and client.changes.empty()


async def caught_up_on(client: Client, doc_id: str) -> None:
    """Subscribe continuously and take the one document there is; the feed is then parked."""
    await client.sock.request("subChanges", {"continuous": "true"})
    assert [r[1] for r in await client.next_changes()] == [doc_id]
    assert await client.next_changes() == []  # caught up
    rev = await asyncio.wait_for(client.revs.get(), 5 * TIME_UNIT)
    client.holds[doc_id] = rev.properties["rev"]


def commits_through(db: Database, step: Callable[[], None]) -> Callable[[Callable[..., object]], object]:
    """A store write that runs ``step`` after the transaction's work (announcements included), before its commit."""
    write = db._store.write

    def wrapped(fn: Callable[..., object]) -> object:
        def then_step(txn: object) -> object:
            result = fn(txn)
            step()
            return result

        return write(then_step)

    return wrapped


async def edit_held_before_its_commit(
    db: Database, client: Client, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, asyncio.Future[Document], list[object]]:
    """Edit ``a`` (saved and pulled first) from another thread, its commit held until the event is set;
    return the event, the pending save, and the row the client was offered meanwhile."""
    first = db.save("a", {"v": 1})
    await caught_up_on(client, "a")
    landing = threading.Event()
    monkeypatch.setattr(db._store, "write", commits_through(db, lambda: landing.wait(10 * TIME_UNIT)))
    saving = asyncio.ensure_future(asyncio.to_thread(db.save, "a", {"v": 2}, base_rev=first.rev_id))
    (row,) = await client.next_changes()  # offered while the commit is held
    assert row[1] == "a" and not saving.done()
    return landing, saving, row


async def test_a_live_edit_is_offered_while_its_commit_is_flushed_and_sent_once_it_lands(
    setup: tuple[Database, URLEndpointListener, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, _, client = setup
    landing, saving, row = await edit_held_before_its_commit(db, client, monkeypatch)
    with contextlib.suppress(BlipError):  # a barrier: the listener has read the answer to that changes
        await client.sock.request("getCheckpoint", {"client": "barrier"})
    assert client.revs.empty() and not saving.done()  # no revision leaves before its commit lands
    landing.set()
    second = await saving
    live = await asyncio.wait_for(client.revs.get(), 5 * TIME_UNIT)
    assert live.properties["rev"] == row[2] == second.rev_id
    monkeypatch.undo()
    client.holds["a"] = second.rev_id
    third = db.save("a", {"v": 3}, base_rev=second.rev_id)
    (row,) = await client.next_changes()  # the commit of the offered edit was not offered again
    assert row[2] == third.rev_id
    live = await asyncio.wait_for(client.revs.get(), 5 * TIME_UNIT)
    assert (live.properties["rev"], live.properties["history"]) == (third.rev_id, second.rev_id)
    assert json.loads(live.body) == {"v": 3}


async def test_a_commit_that_fails_after_its_offer_closes_that_connection_and_loses_nothing(
    setup: tuple[Database, URLEndpointListener, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, listener, client = setup
    db.save("a", {"v": 1})
    await caught_up_on(client, "a")

    def fail() -> None:
        raise StorageError("database write failed: Input/output error")

    monkeypatch.setattr(db._store, "write", commits_through(db, fail))
    with pytest.raises(StorageError):
        db.save("b", {})
    monkeypatch.undo()
    (row,) = await client.next_changes()  # offered before the commit failed
    assert row[1] == "b"
    await asyncio.wait_for(client.sock.wait_closed(), 5 * TIME_UNIT)
    assert client.sock.close_code == 4001  # transient: the peer comes back and asks from its checkpoint
    assert client.revs.empty()
    assert db.get("b") is None and db.get("a") is not None
    sock = await connect(listener.urls[0], headers=AUTH)  # the listener serves on
    other = Client(sock)
    sock.start()
    db.save("b", {"v": 2})
    await sock.request("subChanges", {})
    assert [r[1] for r in await other.next_changes()] == ["a", "b"]
    await sock.close()


async def test_a_revision_asked_for_before_unsubchanges_still_goes_out(
    setup: tuple[Database, URLEndpointListener, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, _, client = setup
    landing, saving, row = await edit_held_before_its_commit(db, client, monkeypatch)  # the client wants it
    await client.sock.request("unsubChanges")
    landing.set()
    second = await saving
    live = await asyncio.wait_for(client.revs.get(), 5 * TIME_UNIT)  # every requested rev is answered (§9)
    assert live.properties["rev"] == row[2] == second.rev_id


async def test_an_offered_edit_counts_as_activity_until_its_revision_is_sent(
    setup: tuple[Database, URLEndpointListener, Client],
) -> None:
    db, listener, client = setup
    first = db.save("a", {"v": 1})
    await caught_up_on(client, "a")
    await wait_until(lambda: listener.status.active_connection_count == 0)
    seen: list[int] = []
    listener.add_status_listener(lambda status: seen.append(status.active_connection_count))
    db.save("a", {"v": 2}, base_rev=first.rev_id)
    await client.next_changes()
    await asyncio.wait_for(client.revs.get(), 5 * TIME_UNIT)
    await wait_until(lambda: listener.status.active_connection_count == 0)
    assert seen[0] == 1 and seen[-1] == 0


async def test_a_failed_commit_offered_to_no_one_closes_nothing(
    setup: tuple[Database, URLEndpointListener, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, _, client = setup
    db.save("a", {"v": 1})
    await client.sock.request("subChanges", {"continuous": "true"}, json.dumps({"docIDs": ["a", "c"]}).encode())
    assert [r[1] for r in await client.next_changes()] == ["a"]
    assert await client.next_changes() == []
    client.holds["a"] = (await asyncio.wait_for(client.revs.get(), 5 * TIME_UNIT)).properties["rev"]

    def fail() -> None:
        raise StorageError("database write failed: Input/output error")

    monkeypatch.setattr(db._store, "write", commits_through(db, fail))
    with pytest.raises(StorageError):
        db.save("b", {})  # not a document this client follows: nothing was sent
    monkeypatch.undo()
    db.save("c", {})  # takes the sequence "b" was to have
    (row,) = await client.next_changes()
    assert row[1] == "c" and not client.sock.closed


async def test_sub_changes_refuses_filters_and_other_versioning(
    setup: tuple[Database, URLEndpointListener, Client],
) -> None:
    _, _, client = setup
    with pytest.raises(BlipError):
        await client.sock.request("subChanges", {"filter": "sync_gateway/bychannel"})
    with pytest.raises(BlipError) as versioning:
        await client.sock.request("subChanges", {"versioning": "version-vectors"})
    assert versioning.value.code == 501


async def test_rev_push_stores_and_refuses_conflicts(setup: tuple[Database, URLEndpointListener, Client]) -> None:
    db, _, client = setup
    r1, r2 = "1-" + "a" * 40, "2-" + "b" * 40
    await client.sock.request("rev", {"id": "p", "rev": r1, "sequence": "1"}, b'{"v":1}')
    await client.sock.request("rev", {"id": "p", "rev": r2, "history": r1, "noconflicts": "true"}, b'{"v":2}')
    assert db.get("p").rev_id == r2  # type: ignore[union-attr]
    with pytest.raises(BlipError) as conflict:
        await client.sock.request("rev", {"id": "p", "rev": "2-" + "c" * 40, "history": r1}, b'{"v":3}')
    assert conflict.value.code == 409
    with pytest.raises(BlipError) as bad:
        await client.sock.request("rev", {"id": "p", "rev": "3-xyz"}, b"{}")
    assert bad.value.code == 400
    with pytest.raises(BlipError) as no_base:
        await client.sock.request("rev", {"id": "q", "rev": r2, "history": r1, "deltaSrc": r1}, b'{"v":[9]}')
    assert no_base.value.code == 422
    with pytest.raises(BlipError) as underscore:
        await client.sock.request("rev", {"id": "u", "rev": r1}, b"[1]")
    assert underscore.value.code == 400
    await client.sock.request("rev", {"id": "u", "rev": r1}, b'{"_id":"u","_rev":"x","v":1}')
    assert db.get("u").body == {"v": 1}  # type: ignore[union-attr]
    await client.sock.request("rev", {"id": "w", "rev": r1}, b'{"\\u005fid":"w","v":1}')  # "_id", escaped
    assert db.get("w").body == {"v": 1}  # type: ignore[union-attr]


async def test_rev_with_blob_fetches_it_first(setup: tuple[Database, URLEndpointListener, Client]) -> None:
    db, _, client = setup
    data = b"picture bytes" * 100
    asked: list[Message] = []

    def serve(message: Message) -> Reply:
        asked.append(message)
        return Reply({}, data)

    client.sock.register("getAttachment", serve)
    blob = {"@type": "blob", "digest": digest_of(data), "length": len(data), "content_type": "text/plain"}
    await client.sock.request("rev", {"id": "b", "rev": "1-" + "a" * 40}, json.dumps({"f": blob}).encode())
    assert db.read_blob(blob["digest"]) == data
    assert asked[0].properties == {
        "Profile": "getAttachment",
        "digest": blob["digest"],
        "docID": "b",
        "compress": "true",
    }


async def test_read_only_listener(peers: Peers) -> None:
    db = peers.database("a")
    listener = await peers.listener(db, read_only=True)
    sock = await connect(listener.urls[0], headers=AUTH)
    sock.start()
    for profile, body in (("proposeChanges", b'[["a","1-aa"]]'), ("rev", b"{}")):
        with pytest.raises(BlipError) as refused:
            await sock.request(profile, {"id": "a", "rev": "1-" + "a" * 40}, body)
        assert refused.value.code == 403
    await sock.close()


async def test_status_counts_connections(peers: Peers) -> None:
    db = peers.database("a")
    listener = await peers.listener(db)
    statuses = []
    listener.add_status_listener(statuses.append)
    sock = await connect(listener.urls[0], headers=AUTH)
    sock.start()
    await wait_until(lambda: listener.status.connection_count == 1)
    await sock.close()
    await wait_until(lambda: listener.status.connection_count == 0)
    assert [s.connection_count for s in statuses][:2] == [1, 0]


async def test_a_malformed_changes_reply_skips_those_rows_only(
    setup: tuple[Database, URLEndpointListener, Client],
) -> None:
    db, _, client = setup
    db.save("a", {})
    answered: list[bytes] = []

    def garbage(message: Message) -> Reply:
        answered.append(message.body)
        return Reply({}, b"not json")

    client.sock.register("changes", garbage)
    await client.sock.request("subChanges", {"continuous": "true"})
    await wait_until(lambda: len(answered) >= 1)
    with pytest.raises(BlipError):  # the connection still answers
        await client.sock.request("getCheckpoint", {"client": "x"})
    assert client.revs.empty()


async def test_every_interface_and_family_share_one_port(peers: Peers) -> None:
    """Listening everywhere on a port the system picks: one port for IPv4 and IPv6 (no probe-then-bind race)."""
    db = peers.database("a")
    listener = await peers.listener(db, host=None)
    ports = {urlsplit(url).port for url in listener.urls}
    assert ports == {listener.port}
    names = []
    hosts = ["127.0.0.1", "[::1]"] if socket.has_dualstack_ipv6() else ["127.0.0.1"]
    for host in hosts:
        sock = await connect(f"ws://{host}:{listener.port}/userdb", headers=AUTH)
        sock.start()
        await wait_until(lambda: listener.status.connection_count == 1)
        names.extend(session.socket.name for session in listener._sessions)
        await sock.close()
        await wait_until(lambda: listener.status.connection_count == 0)
    assert names[0].startswith("127.0.0.1:")  # not ::ffff:127.0.0.1
    if len(names) > 1:
        assert names[1].startswith("[::1]:")
