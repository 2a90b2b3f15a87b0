"""Replication end to end: real databases, a real listener on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
import json
import logging
import os

import pytest

from engine.database import Database, RevisionInsert
from engine.database_sync import RevisionRequest
from engine.documents import Document
from engine.errors import ValidationError
from engine.inventory import (
    LIST_DOC_ID,
    StarterItem,
    add_item,
    read_items,
    remove_item,
    save_new_list,
    set_quantity,
    validate_list_revision,
)
from engine.inventory_merge import ItemMergeResolver
from engine.replication import tuning
from engine.replication.attachments import AttachmentFetcher, AttachmentServer
from engine.replication.auth import BasicAuthenticator
from engine.replication.blip.connection import Message
from engine.replication.blip.socket import Reply
from engine.replication.errors import BlipError, HTTPStatusError, PeerNotFoundError
from engine.replication.listener import URLEndpointListener
from engine.replication.messages import parse_proposed
from engine.replication.passive import PassiveSession
from engine.replication.puller import Puller
from engine.replication.replicator_types import ActivityLevel, DocumentReplication, ReplicatorType
from engine.revid import make_rev_id
from engine.seeding import load_starter_inventory
from tests.conftest import TIME_UNIT, save_in_other_process_async, wait_until
from tests.engine.replication.conftest import Peers, wait_for_activity

pytestmark = pytest.mark.asyncio


def fill(db: Database, prefix: str, count: int) -> None:
    with db.batch() as batch:
        for i in range(count):
            batch.save(f"{prefix}{i}", {"n": i, "who": prefix})


def same_docs(a: Database, b: Database) -> bool:
    ids = a.doc_ids(include_deleted=True)
    if ids != b.doc_ids(include_deleted=True):
        return False

    def key(db: Database, doc_id: str) -> tuple[object, ...]:
        doc = db.get(doc_id)
        assert doc is not None
        return (doc.rev_id, doc.body, doc.deleted, doc.conflicted)

    return all(key(a, i) == key(b, i) for i in ids)


@pytest.mark.parametrize("kind", list(ReplicatorType))
async def test_one_shot_in_each_direction(peers: Peers, kind: ReplicatorType) -> None:
    a, b = peers.database("a"), peers.database("b")
    fill(a, "a", 300)
    fill(b, "b", 200)
    listener = await peers.listener(a)
    replicator = await peers.replicate(b, listener, type=kind)
    assert (len(a.doc_ids()), len(b.doc_ids())) == (300 + 200 * kind.pushes, 200 + 300 * kind.pulls)
    assert (replicator.pushed, replicator.pulled) == (200 * kind.pushes, 300 * kind.pulls)
    assert replicator.status.progress.completed == replicator.status.progress.total
    if kind is ReplicatorType.PUSH_AND_PULL:
        assert same_docs(a, b)


async def test_continuous_edits_on_either_side_arrive(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    fill(a, "a", 50)
    listener = await peers.listener(a)
    replicator = peers.replicator(b, listener, continuous=True)
    replicator.start()
    await wait_for_activity(replicator, ActivityLevel.IDLE)
    assert len(b.doc_ids()) == 50
    a.save("from-a", {"x": 1})
    await wait_until(lambda: b.get("from-a") is not None)
    b.save("from-b", {"y": 2})
    await wait_until(lambda: a.get("from-b") is not None)
    doc = a.get("a1")
    assert doc is not None
    a.delete("a1")
    await wait_until(lambda: (d := b.get("a1")) is not None and d.deleted)
    await wait_until(lambda: same_docs(a, b))
    await replicator.stop()
    assert replicator.status.activity is ActivityLevel.STOPPED and replicator.status.error is None


async def test_changes_made_by_other_processes_replicate(peers: Peers) -> None:
    # e.g. `inventory-sync set` in one terminal while `inventory-sync serve` or `sync --continuous` runs
    a, b = peers.database("a"), peers.database("b")
    listener = await peers.listener(a)
    replicator = peers.replicator(b, listener, continuous=True)
    replicator.start()
    await wait_for_activity(replicator, ActivityLevel.IDLE)
    await save_in_other_process_async(a.path, "written-beside-the-listener")
    await wait_until(lambda: b.get("written-beside-the-listener") is not None)
    await save_in_other_process_async(b.path, "written-beside-the-replicator")
    await wait_until(lambda: a.get("written-beside-the-replicator") is not None)


async def test_chain_carries_edits_both_ways(peers: Peers) -> None:
    a, b, c = peers.database("a"), peers.database("b"), peers.database("c")
    listener_a = await peers.listener(a)
    listener_b = await peers.listener(b)
    b_to_a = peers.replicator(b, listener_a, continuous=True)
    c_to_b = peers.replicator(c, listener_b, continuous=True)
    b_to_a.start()
    c_to_b.start()
    a.save("doc", {"from": "a"})
    await wait_until(lambda: (d := c.get("doc")) is not None and d.body == {"from": "a"})
    current = c.get("doc")
    assert current is not None
    c.save("doc", {"from": "c"}, base_rev=current.rev_id)
    await wait_until(lambda: (d := a.get("doc")) is not None and d.body == {"from": "c"})


async def test_restart_resumes_without_resending(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    fill(a, "a", 400)
    fill(b, "b", 100)
    listener = await peers.listener(a)
    await peers.replicate(b, listener)
    stats = listener.stats
    assert (stats.revs_sent, stats.revs_received) == (400, 100)
    await peers.replicate(b, listener)
    assert (listener.stats.revs_sent, listener.stats.revs_received) == (400, 100)  # nothing sent again
    a.save("later", {})
    second = await peers.replicate(b, listener)
    assert (listener.stats.revs_sent, second.pulled, second.pushed) == (401, 1, 0)


async def test_interrupted_pull_resumes_where_it_stopped(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    fill(a, "a", 3000)
    listener = await peers.listener(a)
    first = peers.replicator(b, listener, type=ReplicatorType.PULL)
    first.start()
    await wait_until(lambda: len(b.doc_ids()) >= 500, timeout=30)
    await first.stop()
    have = len(b.doc_ids())
    sent_before = listener.stats.revs_sent
    await peers.replicate(b, listener, type=ReplicatorType.PULL)
    assert len(b.doc_ids()) == 3000
    assert listener.stats.revs_sent - sent_before == 3000 - have


@pytest.mark.parametrize("size", [1, 70_000, 1_000_000, 5 * 1024 * 1024])
async def test_blobs_travel_both_ways(peers: Peers, size: int) -> None:
    a, b = peers.database("a"), peers.database("b")
    pull_blob = a.save_blob(os.urandom(size), "image/jpeg")
    push_blob = b.save_blob(os.urandom(size), "application/octet-stream")
    a.save("pulled", {"picture": pull_blob.to_dict()})
    b.save("pushed", {"nested": [{"file": push_blob.to_dict()}]})
    listener = await peers.listener(a)
    await peers.replicate(b, listener)
    assert b.read_blob(pull_blob.digest) == a.read_blob(pull_blob.digest)
    assert a.read_blob(push_blob.digest) == b.read_blob(push_blob.digest)


async def test_fetched_blobs_held_in_memory_stay_within_the_allowance(
    peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = peers.database("a"), peers.database("b")
    blobs = [a.save_blob(os.urandom(8_000 + i), "image/jpeg") for i in range(12)]
    for i, blob in enumerate(blobs):
        a.save(f"p{i}", {"picture": blob.to_dict()})
    a.save("big", {"picture": a.save_blob(os.urandom(30_000), "image/jpeg").to_dict()})  # alone above the limit
    monkeypatch.setattr(tuning, "MAX_FETCHED_BYTES", 20_000)
    held: list[int] = []
    original = AttachmentFetcher._reserve

    async def watching(self: AttachmentFetcher, size: int) -> None:
        await original(self, size)
        held.append(self.bytes_held)

    monkeypatch.setattr(AttachmentFetcher, "_reserve", watching)
    listener = await peers.listener(a)
    replicator = await peers.replicate(b, listener, type=ReplicatorType.PULL)
    assert replicator.pulled == 13 and len(held) == 13
    assert max(held) == 30_000 and sorted(held)[-2] <= 20_000
    for blob in blobs:
        assert b.read_blob(blob.digest) == a.read_blob(blob.digest)


async def test_a_revision_whose_pictures_exceed_the_allowance_together_still_arrives(
    peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its own fetched pictures never wait for each other (the list document has one per item)."""
    a, b = peers.database("a"), peers.database("b")
    pictures = [a.save_blob(os.urandom(12_000 + i), "image/jpeg") for i in range(3)]
    a.save("list", {"items": [{"key": f"k{i}", "image": p.to_dict()} for i, p in enumerate(pictures)]})
    monkeypatch.setattr(tuning, "MAX_FETCHED_BYTES", 20_000)
    listener = await peers.listener(a)
    replicator = peers.replicator(b, listener, type=ReplicatorType.PULL)
    replicator.start()
    status = await asyncio.wait_for(replicator.wait_stopped(), 10 * TIME_UNIT)
    assert status.error is None and replicator.pulled == 1
    for picture in pictures:
        assert b.read_blob(picture.digest) == a.read_blob(picture.digest)


async def test_blobs_are_not_sent_to_a_peer_that_has_them(peers: Peers, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = peers.database("a"), peers.database("b")
    data = os.urandom(200_000)
    blob = a.save_blob(data, "image/jpeg")
    b.save_blob(data, "image/jpeg")
    for i in range(3):
        a.save(f"p{i}", {"picture": blob.to_dict()})
    listener = await peers.listener(a)
    asked: list[str] = []
    original = AttachmentServer.get_attachment

    async def counting(self: AttachmentServer, message):  # type: ignore[no-untyped-def]
        asked.append(message.properties["digest"])
        return await original(self, message)

    monkeypatch.setattr(AttachmentServer, "get_attachment", counting)
    replicator = await peers.replicate(b, listener, type=ReplicatorType.PULL)
    assert replicator.pulled == 3 and listener.stats.revs_sent == 3
    assert asked == []  # b already had the bytes: nothing was fetched


async def big_document_in_sync(peers: Peers, body: dict[str, object]) -> tuple[Database, Database, URLEndpointListener]:
    """``big`` saved on a listener's database ``a`` and pulled by ``b``, which keeps replicating continuously."""
    a, b = peers.database("a"), peers.database("b")
    a.save("big", body)
    listener = await peers.listener(a)
    peers.replicator(b, listener, continuous=True).start()
    await wait_until(lambda: b.get("big") is not None)
    return a, b, listener


async def test_deltas_send_fewer_bytes_than_bodies(peers: Peers) -> None:
    body = {"text": "x" * 4000, "count": 0}
    a, b, listener = await big_document_in_sync(peers, body)
    before = listener.stats
    for count in range(1, 11):
        current = a.get("big")
        assert current is not None
        a.save("big", {**body, "count": count}, base_rev=current.rev_id)
        await wait_until(lambda c=count: (d := b.get("big")) is not None and d.body["count"] == c)
    after = listener.stats
    assert after.deltas_sent - before.deltas_sent == 10
    assert after.rev_bytes_sent - before.rev_bytes_sent < 10 * 4000 // 10
    # and pushing back uses deltas too
    current = b.get("big")
    assert current is not None
    b.save("big", {**body, "count": 99}, base_rev=current.rev_id)
    await wait_until(lambda: (d := a.get("big")) is not None and d.body["count"] == 99)
    assert listener.stats.deltas_received >= 1
    # a body under MIN_DELTA_BODY goes whole (and NoReply): a delta would save less than a packet
    a.save("small", {"text": "s" * 300, "n": 0})
    await wait_until(lambda: b.get("small") is not None)
    sent = listener.stats.deltas_sent
    a.save("small", {"text": "s" * 300, "n": 1})
    await wait_until(lambda: (d := b.get("small")) is not None and d.body["n"] == 1)
    assert listener.stats.deltas_sent == sent


async def test_delta_sync_off(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    a.save("big", {"text": "y" * 3000, "n": 0})
    listener = await peers.listener(a, enable_delta_sync=False)
    await peers.replicate(b, listener)
    current = a.get("big")
    assert current is not None
    a.save("big", {"text": "y" * 3000, "n": 1}, base_rev=current.rev_id)
    await peers.replicate(b, listener)
    assert listener.stats.deltas_sent == 0 and b.get("big").body["n"] == 1  # type: ignore[union-attr]


async def test_conflict_default_resolver(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    a.save("doc", {"v": 0})
    listener = await peers.listener(a)
    await peers.replicate(b, listener)
    base = a.get("doc")
    assert base is not None
    a.save("doc", {"v": "a"}, base_rev=base.rev_id)
    b.save("doc", {"v": "b"}, base_rev=base.rev_id)
    await peers.replicate(b, listener)
    await peers.replicate(b, listener)
    doc_a, doc_b = a.get("doc"), b.get("doc")
    assert doc_a is not None and doc_b is not None
    assert doc_a.rev_id == doc_b.rev_id and doc_a.body == doc_b.body and doc_a.body["v"] in ("a", "b")
    assert not doc_a.conflicted and not doc_b.conflicted


@pytest.mark.parametrize("continuous", [False, True])
async def test_a_peer_settled_on_a_branch_we_closed_earlier_converges(peers: Peers, continuous: bool) -> None:
    # B once resolved a conflict against X (closed it); A, the listener, has since settled on X.
    # A refuses B's branch (409) and offers X, which B already has: B must resolve again.
    a, b = peers.database("a"), peers.database("b")
    base = a.save("doc", {"v": 0})
    b.insert_revisions([RevisionInsert("doc", base.rev_id, [], {"v": 0})])
    x = a.save("doc", {"v": "x"}, base_rev=base.rev_id)
    y = b.save("doc", {"v": "y"}, base_rev=base.rev_id)
    b.insert_revisions([RevisionInsert("doc", x.rev_id, [base.rev_id], {"v": "x"})])
    b.resolve_conflict("doc", keep=y.rev_id, close=x.rev_id)
    assert b.get_tree("doc").is_left_behind(x.rev_id)  # type: ignore[union-attr]
    listener = await peers.listener(a)
    replicator = peers.replicator(b, listener, continuous=continuous)
    replicator.start()

    def converged() -> bool:
        doc_a, doc_b = a.get("doc"), b.get("doc")
        assert doc_a is not None and doc_b is not None
        return doc_a.rev_id == doc_b.rev_id and not doc_a.conflicted and not doc_b.conflicted

    if continuous:
        await wait_until(converged)
    else:
        status = await asyncio.wait_for(replicator.wait_stopped(), 60 * TIME_UNIT)
        assert status.error is None
        await peers.replicate(b, listener)  # the resolution is pushed by the end of this one at the latest
        assert converged()
    tree = b.get_tree("doc")
    doc_b = b.get("doc")
    assert tree is not None and doc_b is not None and x.rev_id in tree.history(doc_b.rev_id)


async def test_conflict_item_merge_resolver(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    a.save(LIST_DOC_ID, {"type": "list", "items": [{"key": "x", "value": 1}, {"key": "y", "value": 1}]})
    listener = await peers.listener(a)
    await peers.replicate(b, listener, conflict_resolver=ItemMergeResolver())
    set_quantity(a, "x", 10)
    set_quantity(b, "y", 20)
    events: list[DocumentReplication] = []
    replicator = peers.replicator(b, listener, conflict_resolver=ItemMergeResolver())
    replicator.add_document_listener(events.append)
    replicator.start()
    assert (await replicator.wait_stopped()).error is None
    # one run: the refused proposal waits for the puller, whose resolution is pushed instead
    for db in (a, b):
        assert [(i.key, i.value) for i in read_items(db)] == [("x", 10), ("y", 20)]
    assert a.get(LIST_DOC_ID).rev_id == b.get(LIST_DOC_ID).rev_id  # type: ignore[union-attr]
    assert [d for e in events for d in e.documents if d.error is not None] == []


@pytest.mark.parametrize("active", ["clerk", "shop"])
@pytest.mark.parametrize("changed_first", [False, True])
async def test_a_new_user_who_syncs_before_changing_anything_takes_the_shops_list(
    peers: Peers, active: str, changed_first: bool
) -> None:
    # the shop's list is its own (seeded from a file); the clerk's is the starter every new database
    # gets. Untouched, it gives way whole, whichever side resolves; changed first, it is a list like
    # any other, and lists that share no ancestor keep the items of both
    shop, clerk = peers.database("shop"), peers.database("clerk")
    assert save_new_list(shop, [StarterItem("Flour", 77, b"shop-flour"), StarterItem("Rice", 40, b"shop-rice")])
    assert save_new_list(clerk, load_starter_inventory())
    if changed_first:
        add_item(clerk, "Saffron", 2)
    passive, db = (shop, clerk) if active == "clerk" else (clerk, shop)
    await peers.replicate(db, await peers.listener(passive), conflict_resolver=ItemMergeResolver())
    names = {i.key for i in read_items(shop)}
    assert names == {i.key for i in read_items(clerk)}
    assert shop.get(LIST_DOC_ID).rev_id == clerk.get(LIST_DOC_ID).rev_id  # type: ignore[union-attr]
    if changed_first:
        assert names == {i.key for i in load_starter_inventory()} | {"Rice", "Saffron"}
    else:
        assert sorted((i.key, i.value) for i in read_items(shop)) == [("Flour", 77), ("Rice", 40)]


def starter_list(db: Database) -> None:
    items = [{"key": k, "value": 1} for k in ("eggs", "flour", "milk", "salt")]
    db.save(LIST_DOC_ID, {"type": "list", "items": items})


def counted_offline(db: Database, edits: int) -> None:
    """What a user does away from the network: an item removed, then many counts."""
    remove_item(db, "milk")
    for n in range(edits):
        set_quantity(db, "eggs", 10 + n)


def resolutions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The documents the item merge was asked to resolve."""
    seen: list[str] = []
    original = ItemMergeResolver.__call__

    def recording(self: ItemMergeResolver, conflict: object) -> object:
        seen.append(conflict.doc_id)  # type: ignore[attr-defined]
        return original(self, conflict)  # type: ignore[arg-type]

    monkeypatch.setattr(ItemMergeResolver, "__call__", recording)
    return seen


@pytest.mark.parametrize("edits", [5, 30])  # 5: nothing pruned, the control
@pytest.mark.parametrize("side", ["active", "passive"])
async def test_more_edits_between_two_syncs_than_a_tree_keeps_arrive_without_a_merge(
    peers: Peers, monkeypatch: pytest.MonkeyPatch, side: str, edits: int
) -> None:
    """Active side (§4.2): the revision the peer holds is kept out of pruning and the history sent
    reaches it, so the passive peer takes the edits without a conflict. Passive side: the
    listener cannot know what each client holds, so its history may not reach the client's
    revision; but the client knew the listener held it, so the listener's revision replaces it.
    Before, past 20 edits, the merge that followed lacked a common ancestor: the counts were lost
    and the removed item came back."""
    a, b = peers.database("a"), peers.database("b")
    starter_list(a)
    listener = await peers.listener(a)
    await peers.replicate(b, listener, conflict_resolver=ItemMergeResolver())
    counted_offline(b if side == "active" else a, edits)
    merged = resolutions(monkeypatch)
    replicator = await peers.replicate(b, listener, conflict_resolver=ItemMergeResolver())
    assert replicator.status.error is None and merged == []
    for db in (a, b):
        assert [(i.key, i.value) for i in read_items(db)] == [("eggs", 9 + edits), ("flour", 1), ("salt", 1)]
        assert not db.get(LIST_DOC_ID).conflicted  # type: ignore[union-attr]
    assert a.get(LIST_DOC_ID).rev_id == b.get(LIST_DOC_ID).rev_id  # type: ignore[union-attr]


async def test_a_peer_revision_made_without_ours_is_still_merged(peers: Peers) -> None:
    """The fast-forward above is only for our revision the peer held: a concurrent edit on both
    sides is still merged item by item."""
    a, b = peers.database("a"), peers.database("b")
    starter_list(a)
    listener = await peers.listener(a)
    await peers.replicate(b, listener, conflict_resolver=ItemMergeResolver())
    counted_offline(a, 30)
    set_quantity(b, "flour", 7)
    await peers.replicate(b, listener, conflict_resolver=ItemMergeResolver())
    for db in (a, b):
        assert [(i.key, i.value) for i in read_items(db)] == [("eggs", 39), ("flour", 7), ("salt", 1)]


@pytest.mark.parametrize(
    ("listener_depth", "client_depth", "edits"),
    [(50, None, 30), (150, 150, 120)],
    ids=["listener-keeps-50", "both-keep-150"],
)
async def test_edits_reach_a_peer_that_keeps_deeper_trees(
    peers: Peers, listener_depth: int, client_depth: int | None, edits: int
) -> None:
    """A receiver accepts a history that skips generations only at its own pruning depth: the
    history reaches what it holds without a gap. Every real ancestor on the way is sent, only
    made-up ones are capped: a cap on real ones (at 100) left a gap that a receiver keeping 150
    revisions refused, and 120 edits stayed here."""
    deep = {"keep_bodies": 20, "validator": validate_list_revision}
    a = peers.database("a", max_depth=listener_depth, **deep)
    b = peers.database("b") if client_depth is None else peers.database("b", max_depth=client_depth, **deep)
    starter_list(a)
    listener = await peers.listener(a)
    await peers.replicate(b, listener, conflict_resolver=ItemMergeResolver())
    counted_offline(b, edits)
    replicator = await peers.replicate(b, listener, conflict_resolver=ItemMergeResolver())
    assert replicator.status.error is None
    assert [(i.key, i.value) for i in read_items(a)] == [("eggs", 9 + edits), ("flour", 1), ("salt", 1)]
    assert a.get(LIST_DOC_ID).rev_id == b.get(LIST_DOC_ID).rev_id  # type: ignore[union-attr]


async def test_edits_made_right_after_an_acknowledged_push_still_reach_the_peer(peers: Peers) -> None:
    """The revision a push just left on the peer is kept out of pruning before its record is written
    (records are written in batches): before, 25 saves pruned it, the next push was refused, and
    the merge that followed brought a removed item back."""
    a, b = peers.database("a"), peers.database("b")
    starter_list(a)
    listener = await peers.listener(a)
    replicator = peers.replicator(b, listener, continuous=True, conflict_resolver=ItemMergeResolver())
    replicator.start()
    await wait_for_activity(replicator, ActivityLevel.IDLE)
    added = add_item(b, "tea", 1)
    await wait_until(lambda: (d := a.get(LIST_DOC_ID)) is not None and d.rev_id == added.rev_id)
    remove_item(b, "tea")
    for n in range(25):
        set_quantity(b, "eggs", 10 + n)
    await replicator.stop()
    await peers.replicate(b, listener, conflict_resolver=ItemMergeResolver())
    for db in (a, b):
        assert [(i.key, i.value) for i in read_items(db)] == [("eggs", 34), ("flour", 1), ("milk", 1), ("salt", 1)]
    assert a.get(LIST_DOC_ID).rev_id == b.get(LIST_DOC_ID).rev_id  # type: ignore[union-attr]


async def test_a_list_taken_whole_from_one_listener_reaches_another_without_a_merge(
    peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client of two listeners: the revision it took from one of them as a replacement of the one
    that listener held goes on from that revision, so the other listener, which holds it too,
    takes it as an edit. Before, it was a conflict there, merged without a base: a removed item
    came back on both listeners."""
    a, b, c = peers.database("a"), peers.database("b"), peers.database("c")
    starter_list(b)
    to_a, to_c = await peers.listener(a), await peers.listener(c)
    await peers.replicate(b, to_a, conflict_resolver=ItemMergeResolver())
    await peers.replicate(b, to_c, conflict_resolver=ItemMergeResolver())
    counted_offline(c, 30)
    merged = resolutions(monkeypatch)
    await peers.replicate(b, to_c, conflict_resolver=ItemMergeResolver())
    await peers.replicate(b, to_a, conflict_resolver=ItemMergeResolver())
    await peers.replicate(b, to_c, conflict_resolver=ItemMergeResolver())
    assert merged == []
    for db in (a, b, c):
        assert [(i.key, i.value) for i in read_items(db)] == [("eggs", 39), ("flour", 1), ("salt", 1)]
        assert not db.get(LIST_DOC_ID).conflicted  # type: ignore[union-attr]
    assert a.get(LIST_DOC_ID).rev_id == b.get(LIST_DOC_ID).rev_id == c.get(LIST_DOC_ID).rev_id  # type: ignore[union-attr]


@pytest.mark.parametrize("edits", [0, 25])
async def test_another_database_at_the_same_address_is_merged_not_taken_as_newer(
    peers: Peers, monkeypatch: pytest.MonkeyPatch, edits: int
) -> None:
    """What a remote held is trusted only for the database that held it: a listener replaced at the
    same URL does not remember the replication (its checkpoint is gone), and a history that ends
    at a first revision cannot go through ours. Both lists are merged, nothing is dropped."""
    a, b, c = peers.database("a"), peers.database("b"), peers.database("c")
    starter_list(a)
    first = await peers.listener(a)
    url, port = first.urls[0], first.port
    await peers.replicate(b, url, conflict_resolver=ItemMergeResolver())
    await first.stop()
    c.save(LIST_DOC_ID, {"type": "list", "items": [{"key": "apples", "value": 2}, {"key": "bread", "value": 1}]})
    for n in range(edits):  # past the pruning depth: the history it sends is cut
        set_quantity(c, "apples", 3 + n)
    await peers.listener(c, port=port)
    merged = resolutions(monkeypatch)
    await peers.replicate(b, url, conflict_resolver=ItemMergeResolver())
    assert merged == [LIST_DOC_ID]
    everything = {"apples", "bread", "eggs", "flour", "milk", "salt"}
    for db in (b, c):
        assert {i.key for i in read_items(db)} == everything


async def test_a_document_purged_and_made_again_on_the_peer_is_merged(
    peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The peer still remembers the replication, but its new first revision cannot descend from the
    one it held: the two lists are merged, not replaced. (Made again and then edited past the
    pruning depth, its history no longer shows that: a known limit, see ``_held_below``.)"""
    a, b = peers.database("a"), peers.database("b")
    starter_list(a)
    listener = await peers.listener(a)
    await peers.replicate(b, listener, conflict_resolver=ItemMergeResolver())
    a.purge(LIST_DOC_ID)
    a.save(LIST_DOC_ID, {"type": "list", "items": [{"key": "apples", "value": 2}]})
    merged = resolutions(monkeypatch)
    await peers.replicate(b, listener, conflict_resolver=ItemMergeResolver())
    assert merged == [LIST_DOC_ID]
    for db in (a, b):
        assert {i.key for i in read_items(db)} == {"apples", "eggs", "flour", "milk", "salt"}


async def test_listener_restart_while_a_continuous_client_runs(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    listener = await peers.listener(a)
    port = listener.port
    replicator = peers.replicator(b, listener, continuous=True)
    seen: list[ActivityLevel] = []
    replicator.add_change_listener(lambda s: seen.append(s.activity))
    replicator.start()
    await wait_for_activity(replicator, ActivityLevel.IDLE)
    await listener.stop()
    await wait_for_activity(replicator, ActivityLevel.OFFLINE)
    b.save("while-away", {"x": 1})
    restarted = await peers.listener(a, port=port)
    assert restarted.port == port
    await wait_until(lambda: a.get("while-away") is not None, timeout=20)
    await wait_for_activity(replicator, ActivityLevel.IDLE)
    assert ActivityLevel.OFFLINE in seen and replicator.status.activity is ActivityLevel.IDLE


async def test_twenty_clients_converge(peers: Peers) -> None:
    hub = peers.database("hub")
    fill(hub, "hub", 20)
    listener = await peers.listener(hub)
    clients = [peers.database(f"c{i}") for i in range(20)]
    for i, db in enumerate(clients):
        fill(db, f"c{i}-", 5)
    await asyncio.gather(*(peers.replicate(db, listener) for db in clients))
    await asyncio.gather(*(peers.replicate(db, listener) for db in clients))
    assert len(hub.doc_ids()) == 20 + 20 * 5
    assert all(same_docs(hub, db) for db in clients)
    await wait_until(lambda: listener.status.connection_count == 0)


async def test_client_that_disconnects_mid_transfer_leaves_the_listener_healthy(peers: Peers) -> None:
    a, b, c = peers.database("a"), peers.database("b"), peers.database("c")
    a.save("big", {"file": a.save_blob(os.urandom(3 * 1024 * 1024), "image/jpeg").to_dict()})
    fill(a, "a", 500)
    listener = await peers.listener(a)
    quitter = peers.replicator(b, listener, type=ReplicatorType.PULL)
    quitter.start()
    await wait_until(lambda: listener.status.active_connection_count == 1)
    session = quitter._session
    assert session is not None
    session.socket.ws.transport.abort()  # the client vanishes
    await quitter.stop()
    await wait_until(lambda: listener.status.connection_count == 0)
    await peers.replicate(c, listener)
    assert same_docs(a, c)


@pytest.mark.parametrize(("kind", "continuous"), [(ReplicatorType.PULL, False), (ReplicatorType.PUSH_AND_PULL, True)])
async def test_what_the_peer_holds_is_remembered_in_the_database_not_in_memory(
    peers: Peers, kind: ReplicatorType, continuous: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The revision the peer holds of each document lives in the database (LiteCore's remote
    ancestors); in memory only a bounded write-behind buffer, and on the listener only the
    revisions a client pushed that its feed has not passed yet."""
    a, b = peers.database("a"), peers.database("b")
    fill(a, "a", 300)
    fill(b, "b", 300)
    listener = await peers.listener(a)
    replicator = peers.replicator(b, listener, type=kind, continuous=continuous)
    held = {"buffer": 0, "listener": 0}
    looked = []

    def measure(_: DocumentReplication) -> None:  # while both sessions are alive
        session = replicator._session
        if session is not None and listener._sessions:
            looked.append(True)
            held["buffer"] = max(held["buffer"], len(session.ctx.remote._pending))
            for passive in listener._sessions:
                held["listener"] = max(held["listener"], len(passive._pushed))

    replicator.add_document_listener(measure)
    caplog.set_level(logging.DEBUG, logger="engine.replication.passive")
    replicator.start()
    await wait_until(lambda: len(b.doc_ids()) == 600)
    if kind.pushes:
        await wait_until(lambda: len(a.doc_ids()) == 600)
    await wait_until(lambda: replicator.status.activity in (ActivityLevel.IDLE, ActivityLevel.STOPPED))
    assert looked
    assert held["buffer"] <= tuning.REMOTE_REVISIONS_BATCH and held["listener"] <= 300
    await replicator.stop()
    on_peer = b.remote_revisions(b.remote_id(replicator.config.url), b.doc_ids())
    expected = [a.get(doc_id).rev_id if a.get(doc_id) else None for doc_id in b.doc_ids()]  # type: ignore[union-attr]
    assert on_peer == expected  # pulled ones, and (pushing) pushed ones, all stored
    assert not [r for r in caplog.records if "did not take" in r.getMessage()]  # every revision was taken


async def test_wrong_password_stops_with_401(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    listener = await peers.listener(a)
    replicator = peers.replicator(b, listener, authenticator=BasicAuthenticator("bob", "not-bobs-pw"), continuous=True)
    replicator.start()
    status = await asyncio.wait_for(replicator.wait_stopped(), 10 * TIME_UNIT)
    assert isinstance(status.error, HTTPStatusError) and status.error.status == 401
    assert status.activity is ActivityLevel.STOPPED


async def test_read_only_listener_refuses_pushes_and_serves_pulls(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    fill(a, "a", 10)
    fill(b, "b", 3)
    listener = await peers.listener(a, read_only=True)
    events: list[DocumentReplication] = []
    replicator = peers.replicator(b, listener, type=ReplicatorType.PULL)
    replicator.start()
    assert (await replicator.wait_stopped()).error is None
    assert len(b.doc_ids()) == 13
    pusher = peers.replicator(b, listener, type=ReplicatorType.PUSH)
    pusher.add_document_listener(events.append)
    pusher.start()
    status = await pusher.wait_stopped()
    assert status.error is not None and "403" in str(status.error)
    assert len(a.doc_ids()) == 10


async def test_pending_documents(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    listener = await peers.listener(a)
    replicator = peers.replicator(b, listener, type=ReplicatorType.PUSH)
    fill(b, "b", 3)
    assert replicator.pending_document_ids() == {"b0", "b1", "b2"}
    assert replicator.is_document_pending("b1")
    replicator.start()
    await replicator.wait_stopped()
    assert replicator.pending_document_ids() == set()
    b.save("b1", {"changed": True})
    assert replicator.pending_document_ids() == {"b1"}


async def test_stop_while_connecting_is_prompt(peers: Peers) -> None:
    b = peers.database("b")
    replicator = peers.replicator(b, "ws://127.0.0.1:9/db", continuous=True, max_attempt_wait=30)
    replicator.start()
    await wait_for_activity(replicator, ActivityLevel.OFFLINE, ActivityLevel.CONNECTING)
    await asyncio.wait_for(replicator.stop(), 2 * TIME_UNIT)
    assert replicator.status.activity is ActivityLevel.STOPPED


async def test_one_shot_gives_up_after_max_attempts(peers: Peers) -> None:
    b = peers.database("b")
    replicator = peers.replicator(b, "ws://127.0.0.1:9/db", max_attempts=2, max_attempt_wait=0.05)
    seen: list[ActivityLevel] = []
    replicator.add_change_listener(lambda s: seen.append(s.activity))
    replicator.start()
    status = await asyncio.wait_for(replicator.wait_stopped(), 10 * TIME_UNIT)
    assert status.error is not None and ActivityLevel.OFFLINE in seen


async def test_a_delta_the_receiver_cannot_apply_is_sent_again_whole(
    peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"text": "z" * 3000, "n": 0}
    a, b, listener = await big_document_in_sync(peers, body)
    forgotten: list[str] = []
    original = b.get_revision

    def forgetful(doc_id: str, rev_id: str):  # type: ignore[no-untyped-def]
        if not forgotten:
            forgotten.append(rev_id)
            return None  # as if the delta's base were gone: the receiver answers 422
        return original(doc_id, rev_id)

    monkeypatch.setattr(b, "get_revision", forgetful)
    current = a.get("big")
    assert current is not None
    a.save("big", {**body, "n": 1}, base_rev=current.rev_id)
    await wait_until(lambda: (d := b.get("big")) is not None and d.body["n"] == 1)
    assert forgotten and listener.stats.deltas_sent >= 1


async def test_push_to_a_gateway_style_peer(peers: Peers, echo_server) -> None:  # type: ignore[no-untyped-def]
    """A peer that never says ``blobs: true`` (like Sync Gateway) gets legacy ``_attachments`` (§4.4)."""
    received: list[tuple[dict[str, str], bytes]] = []
    checkpoints: list[bytes] = []

    def setup(sock):  # type: ignore[no-untyped-def]
        def no_checkpoint(_m):  # type: ignore[no-untyped-def]
            raise BlipError("HTTP", 404, "missing")

        def set_checkpoint(m):  # type: ignore[no-untyped-def]
            checkpoints.append(m.body)
            return Reply({"rev": "0-1"})

        def rev(m):  # type: ignore[no-untyped-def]
            received.append((dict(m.properties), m.body))

        sock.register("getCheckpoint", no_checkpoint)
        sock.register("setCheckpoint", set_checkpoint)
        sock.register("proposeChanges", lambda m: Reply({}, b"[]"))
        sock.register("rev", rev)

    server = await echo_server(setup)
    b = peers.database("b")
    blob = b.save_blob(b"attachment bytes", "text/plain")
    b.save("doc", {"file": blob.to_dict()})
    replicator = peers.replicator(b, server.url, type=ReplicatorType.PUSH, authenticator=None)
    replicator.start()
    assert (await asyncio.wait_for(replicator.wait_stopped(), 10 * TIME_UNIT)).error is None
    ((props, body),) = received
    assert props["id"] == "doc" and props["noconflicts"] == "true"
    stand_in = json.loads(body)["_attachments"]["blob_/file"]
    assert stand_in["digest"] == blob.digest and stand_in["stub"] is True and stand_in["revpos"] == 1
    assert json.loads(checkpoints[-1])["local"] == 1


async def test_document_id_and_function_filters(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    fill(a, "a", 6)
    fill(b, "b", 6)
    listener = await peers.listener(a)
    await peers.replicate(b, listener, doc_ids=frozenset({"a1", "a2", "b1"}))
    assert sorted(d for d in b.doc_ids() if d.startswith("a")) == ["a1", "a2"]
    assert sorted(d for d in a.doc_ids() if d.startswith("b")) == ["b1"]
    c = peers.database("c")
    await peers.replicate(
        c,
        listener,
        pull_filter=lambda doc, _deleted: doc.body.get("n", 0) % 2 == 0,
        type=ReplicatorType.PULL,
    )
    assert all(c.get(d).body["n"] % 2 == 0 for d in c.doc_ids())  # type: ignore[union-attr]
    assert "a0" in c.doc_ids() and "a1" not in c.doc_ids()
    d = peers.database("d")
    fill(d, "d", 4)
    await peers.replicate(d, listener, push_filter=lambda doc, _deleted: doc.id != "d3", type=ReplicatorType.PUSH)
    assert {"d0", "d1", "d2"} <= set(a.doc_ids()) and "d3" not in a.doc_ids()


async def test_pull_filter_sees_each_revision_once_and_refused_pictures_are_not_fetched(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    for i in range(4):
        a.save(f"p{i}", {"n": i, "picture": a.save_blob(os.urandom(1000 + i), "image/jpeg").to_dict()})
    listener = await peers.listener(a)
    seen: list[str] = []

    def keep_even(doc: Document, _deleted: bool) -> bool:
        seen.append(doc.id)
        return doc.body["n"] % 2 == 0

    await peers.replicate(b, listener, pull_filter=keep_even, type=ReplicatorType.PULL)
    assert sorted(seen) == ["p0", "p1", "p2", "p3"]
    assert sorted(b.doc_ids()) == ["p0", "p2"]
    refused = a.get("p1")
    assert refused is not None and not b.has_blob(refused.body["picture"]["digest"])


async def test_reset_checkpoint_starts_over(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    fill(a, "a", 5)
    listener = await peers.listener(a)
    await peers.replicate(b, listener)
    b.purge("a3")
    again = await peers.replicate(b, listener)
    assert b.get("a3") is None and again.pulled == 0  # the checkpoint is past it
    replicator = peers.replicator(b, listener)
    replicator.start(reset_checkpoint=True)
    assert (await replicator.wait_stopped()).error is None
    assert b.get("a3") is not None and replicator.pulled == 1


async def test_database_work_on_a_worker_thread(peers: Peers) -> None:
    """What the desktop app does: no commit on the event loop's thread."""
    a, b = peers.database("a"), peers.database("b")
    fill(a, "a", 50)
    fill(b, "b", 20)
    listener = await peers.listener(a, threaded_database=True)
    replicator = peers.replicator(b, listener, continuous=True, threaded_database=True)
    replicator.start()
    await wait_until(lambda: len(a.doc_ids()) == 70 and len(b.doc_ids()) == 70, timeout=20)
    a.save("late", {})
    await wait_until(lambda: b.get("late") is not None)
    await replicator.stop()


# -- what the peer holds, proposals, and the protocol's loose ends ------------------------


def even(doc: Document, _deleted: bool) -> bool:
    return bool(doc.body.get("n", 0) % 2 == 0)


def odd(doc: Document, _deleted: bool) -> bool:
    return not even(doc, _deleted)


def record_proposals(monkeypatch: pytest.MonkeyPatch) -> list[list[object]]:
    """Every row our listener is proposed, as ``[doc ID, rev ID, parent]``."""
    seen: list[list[object]] = []
    original = PassiveSession.propose_changes

    async def recording(self: PassiveSession, message: Message) -> object:
        seen.extend([row[0], row[1], row[2]] for row in parse_proposed(message.body))
        return await original(self, message)

    monkeypatch.setattr(PassiveSession, "propose_changes", recording)
    return seen


async def test_after_a_restart_edits_are_proposed_on_the_peers_revision(
    peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§3.6, §9: a Couchbase Lite peer refuses any other parent with a bare 409."""
    a, b = peers.database("a"), peers.database("b")
    fill(a, "a", 3)
    listener = await peers.listener(a)
    await peers.replicate(b, listener)  # pulled: b knows what a holds
    proposed = record_proposals(monkeypatch)
    pulled = [b.get(doc_id).rev_id for doc_id in ("a1", "a2")]  # type: ignore[union-attr]
    b.save("a1", {"n": 100})
    b.delete("a2")
    await peers.replicate(b, listener)  # a new replicator: nothing remembered in memory
    assert [(row[0], row[2]) for row in proposed] == list(zip(["a1", "a2"], pulled, strict=True))
    assert a.get("a1").body == {"n": 100} and a.get("a2").deleted  # type: ignore[union-attr]


async def test_a_refused_proposal_is_retried_on_the_peers_revision(
    peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Documents both sides got elsewhere: the first proposal names no parent, the 409 names the
    peer's revision (conflictIncludesRev), and the proposal is made again on it (never a bare rev)."""
    a, b = peers.database("a"), peers.database("b")
    first = RevisionInsert("shared", make_rev_id(None, False, b'{"n":1}'), [], {"n": 1})
    for db in (a, b):
        db.insert_revisions([first])
    b.save("shared", {"n": 2})
    listener = await peers.listener(a)
    proposed = record_proposals(monkeypatch)
    replicator = await peers.replicate(b, listener, type=ReplicatorType.PUSH)
    assert [row[2] for row in proposed] == [None, first.rev_id]
    assert a.get("shared").body == {"n": 2} and replicator.pushed == 1  # type: ignore[union-attr]


async def test_a_requested_revision_that_is_gone_is_answered_with_norev(
    peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§3.8: without the norev a one-shot pull waited at busy forever for it."""
    a, b = peers.database("a"), peers.database("b")
    fill(a, "a", 4)
    listener = await peers.listener(a)
    original = a.revisions_for_sync

    def losing_a2(requests: list[RevisionRequest], **options: object) -> list[object]:
        found = original(requests, **options)  # type: ignore[arg-type]
        return [None if request.doc_id == "a2" else rev for request, rev in zip(requests, found, strict=True)]

    monkeypatch.setattr(a, "revisions_for_sync", losing_a2)
    replicator = peers.replicator(b, listener, type=ReplicatorType.PULL)
    replicator.start()
    status = await asyncio.wait_for(replicator.wait_stopped(), 20 * TIME_UNIT)
    assert status.error is None and sorted(b.doc_ids()) == ["a0", "a1", "a3"] and replicator.pulled == 3


async def test_an_unexpected_failure_stops_the_replicator_with_it(
    peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = peers.database("a"), peers.database("b")
    listener = await peers.listener(a)

    async def broken(*_args: object, **_options: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Puller, "start", broken)
    replicator = peers.replicator(b, listener, continuous=True)
    replicator.start()
    status = await asyncio.wait_for(replicator.wait_stopped(), 20 * TIME_UNIT)
    assert status.activity is ActivityLevel.STOPPED
    assert status.error is not None and "internal error: RuntimeError: boom" in str(status.error)


async def test_changing_the_filter_or_direction_starts_a_new_checkpoint(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    fill(a, "a", 6)
    listener = await peers.listener(a)
    await peers.replicate(b, listener, type=ReplicatorType.PULL, pull_filter=even)
    assert sorted(b.doc_ids()) == ["a0", "a2", "a4"]
    await peers.replicate(b, listener, type=ReplicatorType.PULL, pull_filter=odd)
    assert len(b.doc_ids()) == 6  # the odd ones were not skipped by the other filter's checkpoint
    fill(b, "b", 2)
    await peers.replicate(b, listener, type=ReplicatorType.PUSH)
    assert {"b0", "b1"} <= set(a.doc_ids())


async def test_reset_forgets_what_the_peer_was_known_to_hold(peers: Peers) -> None:
    a, b = peers.database("a"), peers.database("b")
    fill(a, "a", 3)
    listener = await peers.listener(a)
    replicator = await peers.replicate(b, listener)
    remote = b.remote_id(replicator.config.remote_identity)
    assert b.remote_revisions(remote, ["a0"]) != [None]
    b.purge("a0")
    again = peers.replicator(b, listener)
    again.start(reset_checkpoint=True)
    assert (await again.wait_stopped()).error is None
    assert b.remote_revisions(remote, ["a0", "a1"]) == [a.get("a0").rev_id, a.get("a1").rev_id]  # type: ignore[union-attr]


# -- a peer's bad data -------------------------------------------------------------------------------

BAD_LISTS = [{"items": [{"value": 1}, {"key": "Eggs", "value": "many"}]}, {"items": "notalist"}]


def eighteen_items(db: Database) -> None:
    db.save(LIST_DOC_ID, {"type": "list", "items": [{"key": f"item {i}", "value": i} for i in range(18)]})


@pytest.mark.parametrize("bad", BAD_LISTS)
@pytest.mark.parametrize("we_pull", [True, False])
async def test_a_peers_malformed_list_is_refused_and_nothing_else_stops(
    peers: Peers, bad: dict[str, object], we_pull: bool
) -> None:
    """Issue: a raw list with bad rows replicated, merged, and took 16 of 18 items with it on both sides."""
    ours = peers.database("ours")  # as the app opens it: the list's schema is checked
    foreign = peers.database("foreign", durable=False)  # a peer that never checks it
    eighteen_items(ours)
    listener = await peers.listener(foreign if we_pull else ours)
    active = ours if we_pull else foreign
    await peers.replicate(active, listener)
    foreign.save(LIST_DOC_ID, bad)
    foreign.save("other", {"v": 1})
    set_quantity(ours, "item 3", 33)  # a local edit on our side too
    events: list[DocumentReplication] = []
    replicator = peers.replicator(active, listener)
    replicator.add_document_listener(events.append)
    replicator.start()
    status = await asyncio.wait_for(replicator.wait_stopped(), 30 * TIME_UNIT)
    assert status.error is None  # refused per document: the replication itself went on
    items = {item.key: item.value for item in read_items(ours)}
    assert len(items) == 18 and items["item 3"] == 33  # no valid item lost, our edit kept
    assert ours.get("other") is not None  # the other document of the same batch arrived
    refused = {(e.push, d.id): d.error for e in events for d in e.documents if d.error is not None}
    if we_pull:  # refused here; and our edit cannot go on top of the peer's bad revision either
        assert set(refused) == {(False, LIST_DOC_ID), (True, LIST_DOC_ID)}
        assert isinstance(refused[(False, LIST_DOC_ID)], ValidationError)
    else:  # our listener answered the push with 403, as Sync Gateway's validation does
        assert set(refused) == {(True, LIST_DOC_ID)}
        error = refused[(True, LIST_DOC_ID)]
        assert isinstance(error, BlipError) and (error.domain, error.code) == ("HTTP", 403)
    # once the peer mends its list, it flows again
    foreign.save(LIST_DOC_ID, {"type": "list", "items": [{"key": "item 0", "value": 5}]})
    await peers.replicate(active, listener)
    assert [(i.key, i.value) for i in read_items(ours)][:1] == [("item 0", 5)]


class MovingEndpoint:
    """An endpoint resolver that points where the test says, and records what the replicator asks."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.calls: list[bool] = []
        self._announced = asyncio.Event()

    async def resolve(self, *, after_failure: bool) -> str:
        self.calls.append(after_failure)
        if self.url is None:
            raise PeerNotFoundError("not advertised")
        return self.url

    async def wait_announced(self) -> None:
        await self._announced.wait()
        self._announced.clear()

    def announce(self, url: str) -> None:
        self.url = url
        self._announced.set()


async def test_a_replicator_with_an_endpoint_goes_where_it_points(
    peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each attempt asks the endpoint; an announcement ends a retry wait (30 s here) at once."""
    monkeypatch.setattr(tuning, "RETRY_INITIAL_WAIT", 30.0)
    a, b = peers.database("a"), peers.database("b")
    first = await peers.listener(a)
    old_url = first.urls[0]
    endpoint = MovingEndpoint()
    replicator = peers.replicator(
        b, first, continuous=True, remote_name=a.peer_id, endpoint=endpoint, max_attempt_wait=300
    )
    replicator.start()
    offline = await wait_for_activity(replicator, ActivityLevel.OFFLINE)
    assert isinstance(offline.error, PeerNotFoundError) and offline.retry_in == 30  # transient: retried
    endpoint.announce(old_url)
    await wait_for_activity(replicator, ActivityLevel.IDLE)

    await first.stop()
    await wait_for_activity(replicator, ActivityLevel.OFFLINE)
    endpoint.announce(old_url)  # announced where it was: refused, a longer wait
    await wait_until(lambda: replicator.status.retry_in == 60, timeout=10)
    second = await peers.listener(a)
    a.save("after", {"n": 1})
    endpoint.announce(second.urls[0])
    await wait_until(lambda: b.get("after") is not None, timeout=10)
    assert replicator.config.url == second.urls[0]
    # after_failure: whether the attempt before did not get through
    assert endpoint.calls == [False, True, False, True]
