"""The two doubles replicating with each other over 127.0.0.1 (protocol §3.12, §4, §6, §9)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.conftest import TIME_UNIT
from tests.litecore_peer import PeerStore, StrictListener, StrictReplicator

pytestmark = pytest.mark.asyncio

TIMEOUT = 10 * TIME_UNIT


@pytest_asyncio.fixture
async def listener() -> AsyncIterator[StrictListener]:
    server = await StrictListener(PeerStore("listener"), users={"bob": "pw"}).start()
    yield server
    await server.stop()


async def replicate(store: PeerStore, listener: StrictListener, **options: bool) -> StrictReplicator:
    """One-shot replication that must finish cleanly on both sides."""
    replicator = StrictReplicator(store, listener.url, "bob", "pw", **options)
    await asyncio.wait_for(replicator.run(), TIMEOUT)
    assert replicator.violations == [] and listener.violations == []
    assert replicator.errors == []
    return replicator


async def test_one_shot_push(listener: StrictListener) -> None:
    local = PeerStore("local")
    revs = {f"doc{i}": local.put(f"doc{i}", {"n": i}) for i in range(250)}
    replicator = await replicate(local, listener, pull=False)
    assert replicator.pushed == 250
    assert {doc_id: listener.store.get(doc_id)[0] for doc_id in revs} == revs  # type: ignore[index]
    assert listener.statuses == [401, 101]  # challenge first, as the 3.0 client does
    assert listener.sessions[0].conn.close_received == (1000, "")
    assert replicator.upgraded is not None and replicator.upgraded.status_line.startswith("HTTP/1.0 101")
    assert replicator.upgraded.subprotocol == "BLIP_3+CBMobile_3" and replicator.upgraded.challenged
    # The checkpoint went to the listener and is remembered locally.
    assert listener.store.peer_checkpoints[replicator.checkpoint_id][0] == "1-cc"
    assert local.checkpoints[replicator.checkpoint_id]["local"] == local.last_sequence


async def test_one_shot_pull_into_an_empty_store(listener: StrictListener) -> None:
    for i in range(450):
        listener.store.put(f"doc{i}", {"n": i})
    listener.store.delete("doc0")
    local = PeerStore("local")
    replicator = await replicate(local, listener, push=False)
    feed = listener.sessions[0].feed
    assert feed is not None and feed.active_only  # empty store, no checkpoint: activeOnly
    assert replicator.pulled == 449 and local.get("doc0") is None
    assert local.get("doc7") == (listener.store.get("doc7")[0], {"n": 7}, False)  # type: ignore[index]
    # Every pulled revision is remembered as the remote's.
    assert local.remote_ancestor(listener.url, "doc7") == local.get("doc7")[0]  # type: ignore[index]
    # With a checkpoint there is no activeOnly: the tombstone skipped before comes now.
    again = await replicate(local, listener, push=False)
    assert again.pulled == 1 and local.get("doc0")[2]  # type: ignore[index]
    assert (await replicate(local, listener, push=False)).pulled == 0


async def test_blobs_both_ways(listener: StrictListener) -> None:
    local = PeerStore("local")
    text = local.add_blob(b"hello world" * 1000, "text/plain")
    local.put("note", {"file": text})
    picture = listener.store.add_blob(bytes(range(256)) * 400, "image/png")
    listener.store.put("photo", {"picture": picture, "items": [{"p": picture}]})
    await replicate(local, listener)
    assert listener.store.blob(text["digest"]) == b"hello world" * 1000
    assert local.blob(picture["digest"]) == bytes(range(256)) * 400


async def test_deletions_both_ways(listener: StrictListener) -> None:
    local = PeerStore("local")
    local.put("mine", {"v": 1})
    listener.store.put("theirs", {"v": 1})
    await replicate(local, listener)
    local.delete("mine")
    listener.store.delete("theirs")
    await replicate(local, listener)
    for store in (local, listener.store):
        assert store.get("mine")[2] and store.get("theirs")[2]  # type: ignore[index]
    assert local.get("mine")[0] == listener.store.get("mine")[0]  # type: ignore[index]


async def test_restart_remembers_the_remote_revision(listener: StrictListener) -> None:
    local = PeerStore("local")
    local.put("doc", {"v": 1})
    local.put("gone", {"v": 1})
    await replicate(local, listener, pull=False)
    local.put("doc", {"v": 2})
    local.delete("gone")
    restarted = await replicate(local, listener, pull=False)
    assert restarted.conflicts == set() and restarted.pushed == 2
    assert listener.store.get("doc") == (local.get("doc")[0], {"v": 2}, False)  # type: ignore[index]
    assert listener.store.get("gone")[2]  # type: ignore[index]


async def test_a_forgotten_parent_gets_a_bare_409(listener: StrictListener) -> None:
    local = PeerStore("local")
    local.put("doc", {"v": 1})
    await replicate(local, listener, pull=False)
    amnesiac = PeerStore("amnesiac")  # same revisions, but no memory of the remote
    amnesiac.insert_revision("doc", local.get("doc")[0], [], {"v": 1})  # type: ignore[index]
    amnesiac.put("doc", {"v": 2})
    replicator = await replicate(amnesiac, listener, pull=False)
    assert replicator.conflicts == {"doc"} and replicator.pushed == 0


async def test_a_document_from_a_third_peer_is_pushed_once_the_puller_names_it(listener: StrictListener) -> None:
    local = PeerStore("local")
    for i in range(600):  # the listener's changes row for "doc" comes late: the push is refused first
        listener.store.put(f"filler{i}", {"i": i})
    third = "1-" + "3a" * 20
    for store in (local, listener.store):
        store.insert_revision("doc", third, [], {"from": "third"})
    local.put("doc", {"from": "local"})
    replicator = await replicate(local, listener)
    # The 409 to an empty parent is retried once the changes row shows the listener has `third`.
    assert replicator.conflicts == set() and replicator.pushed == 1
    assert listener.store.get("doc") == local.get("doc")


async def test_concurrent_edits_converge(listener: StrictListener) -> None:
    local = PeerStore("local")
    local.put("doc", {"v": 0})
    await replicate(local, listener)
    local.put("doc", {"side": "local"})
    listener.store.put("doc", {"side": "listener"})
    listener.store.put("doc", {"side": "listener", "again": True})  # higher generation wins
    first = await replicate(local, listener)
    assert first.conflicts == {"doc"} and len(first.resolved) == 1
    await replicate(local, listener)
    assert local.get("doc") == listener.store.get("doc")
    assert local.get("doc")[1] == {"side": "listener", "again": True}  # type: ignore[index]
    assert not local.is_conflicted("doc") and not listener.store.is_conflicted("doc")


async def test_local_winner_becomes_a_child_of_the_remote_revision(listener: StrictListener) -> None:
    local = PeerStore("local")
    local.put("doc", {"v": 0})
    await replicate(local, listener)
    listener.store.put("doc", {"side": "listener"})
    local.put("doc", {"side": "local"})
    local.delete("doc")  # deleted wins
    await replicate(local, listener)
    await replicate(local, listener)
    rev_id, _, deleted = listener.store.get("doc")  # type: ignore[misc]
    assert deleted and local.get("doc")[0] == rev_id  # type: ignore[index]
    assert rev_id.startswith("3-")  # child of the listener's 2-


async def test_deltas_for_big_bodies(listener: StrictListener) -> None:
    local = PeerStore("local")
    big = {"text": "x" * 500, "items": list(range(50))}
    local.put("big", big)
    listener.store.put("other", big)
    await replicate(local, listener)
    local.put("big", {**big, "items": [*range(50), 50]})
    listener.store.put("other", {**big, "text": "y" * 500})
    replicator = await replicate(local, listener)
    assert listener.sessions[-1].incoming.deltas_applied == 1
    assert replicator.puller is not None and replicator.puller.incoming.deltas_applied == 1
    assert listener.store.get("big")[1]["items"][-1] == 50  # type: ignore[index]
    assert local.get("other")[1]["text"] == "y" * 500  # type: ignore[index]


async def test_continuous_with_live_edits(listener: StrictListener) -> None:
    local = PeerStore("local")
    local.put("early", {"v": 1})
    replicator = StrictReplicator(local, listener.url, "bob", "pw", continuous=True)
    await asyncio.wait_for(replicator.start(), TIMEOUT)
    await listener.store.wait_until(lambda: listener.store.get("early") is not None, TIMEOUT)
    for i in range(5):
        listener.store.put("remote", {"i": i})
        local.put("local", {"i": i})
        await local.wait_until(lambda i=i: (local.get("remote") or (0, {}))[1] == {"i": i}, TIMEOUT)  # type: ignore[misc]
        await listener.store.wait_until(
            lambda i=i: (listener.store.get("local") or (0, {}))[1] == {"i": i},  # type: ignore[misc]
            TIMEOUT,
        )
    listener.store.delete("remote")
    await local.wait_until(lambda: local.get("remote")[2], TIMEOUT)  # type: ignore[index]
    await asyncio.wait_for(replicator.stop(), TIMEOUT)
    assert replicator.violations == [] and listener.violations == [] and replicator.errors == []
    assert listener.sessions[0].conn.close_received == (1000, "")


async def test_a_history_may_skip_generations_only_at_the_pruning_depth() -> None:
    """RevTree::findCommonAncestor: a gap is allowed where pruning would remove the revisions anyway."""
    revs = [f"{gen}-{gen:02x}ab" for gen in range(1, 27)]  # generations 1-26
    store = PeerStore()
    store.insert_revision("doc", revs[2], [revs[1], revs[0]], {"v": 3})
    deep = [*reversed(revs[6:25]), revs[2]]  # generation 3 at index 20 of the chain
    assert store.insert_revision("doc", revs[25], deep, {"v": 26}, allow_conflict=False)
    assert store.get("doc")[0] == revs[25] and not store.is_conflicted("doc")  # type: ignore[index]
    with pytest.raises(ValueError, match="not consecutive"):
        store.insert_revision("other", revs[25], [revs[24], revs[22]], {"v": 26})
