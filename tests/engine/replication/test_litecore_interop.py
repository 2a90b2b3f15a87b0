"""Our listener and replicator against strict doubles of a LiteCore 3.0 peer (tests/litecore_peer).

The doubles record anything a real Couchbase Lite 3.0 peer would refuse or choke on as a
violation (and close with 4002, as LiteCore does after an assertion). Every scenario here must end
with no violation and with the data where a real peer would have it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from engine.conflicts import Conflict, Resolution, default_resolver
from engine.database import Database, RevisionInsert
from engine.inventory import LIST_DOC_ID, read_items, save_new_list, set_quantity
from engine.inventory_merge import ItemMergeResolver
from engine.replication.listener import URLEndpointListener
from engine.replication.listener_tls import GeneratedIdentity, serving_addresses
from engine.replication.replicator import Replicator
from engine.replication.replicator_types import ActivityLevel, DocumentReplication, ReplicatorType
from engine.replication.server_validation import ServerValidation
from engine.replication.tls import KeyType, TLSIdentity, server_context
from engine.seeding import load_starter_inventory
from tests.conftest import TIME_UNIT, wait_until
from tests.engine.replication.conftest import Peers, wait_for_activity
from tests.litecore_peer import ClientTLS, PeerStore, StrictListener, StrictReplicator, limit_like_mbedtls2
from tests.litecore_peer import store as litecore_store

pytestmark = [pytest.mark.asyncio, pytest.mark.both_loops]  # the engine runs on either (tests/conftest.py)

USER, PASSWORD = "bob", "secret"  # the users of peers.listener()
TIMEOUT = 10 * TIME_UNIT
THIRD_PARTY_REV = "1-" + "3a" * 20


@pytest_asyncio.fixture
async def strict_listener() -> AsyncIterator[StrictListener]:
    listener = await StrictListener(PeerStore("litecore"), users={USER: PASSWORD}).start()
    yield listener
    await listener.stop()


async def run_ours(peers: Peers, db: Database, url: str, **options: object) -> Replicator:
    """One-shot replication by our replicator; stopped if it does not finish in time."""
    replicator = peers.replicator(db, url, **options)
    replicator.start()
    try:
        await asyncio.wait_for(replicator.wait_stopped(), 2 * TIMEOUT)
    except TimeoutError:
        await replicator.stop()
        pytest.fail(f"our replicator did not finish: {replicator.status}")
    return replicator


async def run_strict(store: PeerStore, listener: URLEndpointListener, **options: bool) -> StrictReplicator:
    """One-shot replication by the strict LiteCore replicator against our listener."""
    replicator = StrictReplicator(store, listener.urls[0], USER, PASSWORD, **options)
    await asyncio.wait_for(replicator.run(), TIMEOUT)
    return replicator


async def reach(condition: Callable[[], bool], violations: list[str], what: str) -> None:
    """Wait for ``condition``; fail early, with the violations, if the double recorded any."""
    try:
        await wait_until(lambda: condition() or bool(violations), TIMEOUT)
    except AssertionError:
        pytest.fail(f"{what}: not reached in time; violations: {violations}")
    assert violations == [], f"{what}: {violations}"
    assert condition(), what


def body_of(db: Database, doc_id: str) -> dict[str, object] | None:
    doc = db.get(doc_id)
    return None if doc is None or doc.deleted else doc.body


def deleted_in(db: Database, doc_id: str) -> bool:
    doc = db.get(doc_id)
    return doc is not None and doc.deleted


def store_body(store: PeerStore, doc_id: str) -> object:
    current = store.get(doc_id)
    return None if current is None or current[2] else current[1]


# -- (1) a LiteCore continuous pull from our listener, with live edits -------------------------------


async def test_continuous_pull_by_litecore_sees_every_live_edit(peers: Peers) -> None:
    db = peers.database("ours")
    db.save("before", {"v": 0})
    listener = await peers.listener(db)
    store = PeerStore("litecore")
    replicator = StrictReplicator(store, listener.urls[0], USER, PASSWORD, push=False, continuous=True)
    await asyncio.wait_for(replicator.start(), TIMEOUT)
    try:
        await reach(lambda: store_body(store, "before") == {"v": 0}, replicator.violations, "initial pull")
        for i in range(3):
            db.save("live", {"i": i})
            await reach(lambda i=i: store_body(store, "live") == {"i": i}, replicator.violations, f"live edit {i}")
        db.delete("before")
        await reach(lambda: store.get("before") is not None and store.get("before")[2], replicator.violations, "delete")
    finally:
        await asyncio.wait_for(replicator.stop(), TIMEOUT)
    assert replicator.violations == [] and replicator.errors == []


async def test_litecore_pull_asks_for_an_edit_offered_before_its_commit_and_gets_it_after(
    peers: Peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our listener offers a live edit while its commit is flushed; the revision follows the commit."""
    db = peers.database("ours")
    first = db.save("live", {"i": 0})
    listener = await peers.listener(db)
    store = PeerStore("litecore")
    replicator = StrictReplicator(store, listener.urls[0], USER, PASSWORD, push=False, continuous=True)
    await asyncio.wait_for(replicator.start(), TIMEOUT)
    landing = threading.Event()
    write = db._store.write

    def held_write(fn: Callable[..., object]) -> object:
        def then_wait(txn: object) -> object:
            result = fn(txn)
            landing.wait(TIMEOUT)  # the offer has gone; the commit waits
            return result

        return write(then_wait)

    try:
        await reach(lambda: store_body(store, "live") == {"i": 0}, replicator.violations, "initial pull")
        monkeypatch.setattr(db._store, "write", held_write)
        saving = asyncio.ensure_future(asyncio.to_thread(db.save, "live", {"i": 1}, base_rev=first.rev_id))
        puller = replicator.puller
        assert puller is not None
        await reach(lambda: sum(puller.pending.values()) > 0, replicator.violations, "the offer, before the commit")
        assert not saving.done() and store_body(store, "live") == {"i": 0}
        landing.set()
        await saving
        monkeypatch.undo()
        await reach(lambda: store_body(store, "live") == {"i": 1}, replicator.violations, "the revision, after it")
    finally:
        landing.set()
        await asyncio.wait_for(replicator.stop(), TIMEOUT)
    assert replicator.violations == [] and replicator.errors == []


# -- (2) our replicator restarted: it must remember what the LiteCore listener has ---------------------


@pytest.mark.parametrize("second", [ReplicatorType.PUSH, ReplicatorType.PUSH_AND_PULL])
async def test_restarted_replicator_pushes_edits_and_deletions(
    peers: Peers, strict_listener: StrictListener, second: ReplicatorType
) -> None:
    db = peers.database("ours")
    for i in range(3):
        db.save(f"doc{i}", {"v": 0})
    first = await run_ours(peers, db, strict_listener.url, type=ReplicatorType.PUSH_AND_PULL)
    assert strict_listener.violations == [] and first.status.error is None
    assert strict_listener.store.get("doc0") is not None
    db.save("doc0", {"v": 1})
    db.delete("doc1")
    restarted = await run_ours(peers, db, strict_listener.url, type=second)
    assert strict_listener.violations == []
    assert restarted.status.error is None, restarted.status.error
    store = strict_listener.store
    assert store_body(store, "doc0") == {"v": 1}, (
        "the edit was refused (proposed with a parent the peer does not have?)"
    )
    assert store.get("doc1") is not None and store.get("doc1")[2], "the deletion did not arrive"  # type: ignore[index]
    assert store.get("doc0")[0] == db.get("doc0").rev_id  # type: ignore[index,union-attr]


@pytest.mark.parametrize("depth", [20, 50])
async def test_more_edits_than_our_tree_keeps_reach_litecore_as_a_fast_forward(
    peers: Peers, strict_listener: StrictListener, monkeypatch: pytest.MonkeyPatch, depth: int
) -> None:
    """§4.2: the history reaches the revision the peer holds, with the generations our pruning
    skipped filled in as LiteCore fills them; else the peer refuses the revision as a conflict.
    A peer configured to keep deeper trees accepts a gap only deeper: there is none."""
    monkeypatch.setattr(litecore_store, "PRUNE_DEPTH", depth)
    db = peers.database("ours")
    db.save("doc", {"v": 0})
    first = await run_ours(peers, db, strict_listener.url, type=ReplicatorType.PUSH_AND_PULL)
    assert first.status.error is None and strict_listener.violations == []
    for v in range(1, 31):
        db.save("doc", {"v": v})
    tree = db.get_tree("doc")
    assert tree is not None and len(tree) < 30  # pruned
    again = await run_ours(peers, db, strict_listener.url, type=ReplicatorType.PUSH)
    assert strict_listener.violations == []
    assert again.status.error is None, again.status.error
    store = strict_listener.store
    assert store_body(store, "doc") == {"v": 30} and not store.is_conflicted("doc")
    assert store.get("doc")[0] == db.get("doc").rev_id  # type: ignore[index,union-attr]


async def test_more_edits_on_litecore_than_its_history_carries_replace_ours_without_a_conflict(
    peers: Peers, strict_listener: StrictListener
) -> None:
    """A LiteCore listener sends at most maxHistory (20) ancestors, which cannot reach our revision
    after 30 edits there; it held our revision, so its own replaces ours: no conflict, nothing made
    here to push back, the same revision on both sides."""
    db = peers.database("ours")
    db.save("doc", {"v": 0})
    first = await run_ours(peers, db, strict_listener.url, type=ReplicatorType.PUSH_AND_PULL)
    assert first.status.error is None and strict_listener.violations == []
    store = strict_listener.store
    for v in range(1, 31):
        store.put("doc", {"v": v})
    current = store.get("doc")[0]  # type: ignore[index]
    asked: list[str] = []

    def resolver(conflict: Conflict) -> Resolution:
        asked.append(conflict.doc_id)
        return default_resolver(conflict)

    again = await run_ours(
        peers, db, strict_listener.url, type=ReplicatorType.PUSH_AND_PULL, conflict_resolver=resolver
    )
    assert strict_listener.violations == [] and again.status.error is None, again.status.error
    assert asked == [], "taken as a conflict"
    doc = db.get("doc")
    assert doc is not None and doc.rev_id == current and doc.body == {"v": 30} and not doc.conflicted
    assert store.get("doc")[0] == current and not store.is_conflicted("doc")  # type: ignore[index]


async def test_a_concurrent_list_edit_merges_from_what_litecore_held_past_its_short_history(
    peers: Peers, strict_listener: StrictListener
) -> None:
    """The LiteCore listener removes an item and counts 30 times; we change another item. Its
    20-entry history cannot reach the list we share, so the item merge starts from the revision
    it was known to hold: the removal stays, both edits stay, and the merge goes back to it as a
    fast-forward on its branch."""
    db = peers.database("ours")
    items = [{"key": key, "value": 1} for key in ("eggs", "flour", "milk")]
    db.save(LIST_DOC_ID, {"type": "list", "items": items})
    first = await run_ours(peers, db, strict_listener.url, conflict_resolver=ItemMergeResolver())
    assert first.status.error is None and strict_listener.violations == []
    store = strict_listener.store
    for n in range(30):
        store.put(
            LIST_DOC_ID, {"type": "list", "items": [{"key": "eggs", "value": 10 + n}, {"key": "flour", "value": 1}]}
        )
    set_quantity(db, "flour", 7)
    again = await run_ours(peers, db, strict_listener.url, conflict_resolver=ItemMergeResolver())
    assert strict_listener.violations == [] and again.status.error is None, again.status.error
    assert [(i.key, i.value) for i in read_items(db)] == [("eggs", 39), ("flour", 7)]
    assert store.get(LIST_DOC_ID)[0] == db.get(LIST_DOC_ID).rev_id  # type: ignore[index,union-attr]
    assert not store.is_conflicted(LIST_DOC_ID)


async def test_an_untouched_starter_list_takes_a_litecore_listeners_list_whole(
    peers: Peers, strict_listener: StrictListener
) -> None:
    """A new user's database holds the starter list; the LiteCore peer's list is its own. The
    starter gives way whole: our list becomes the peer's revision, and nothing goes back."""
    db = peers.database("new user")
    assert save_new_list(db, load_starter_inventory())
    shop = {"type": "list", "items": [{"key": "Flour", "value": 77}, {"key": "Rice", "value": 40}]}
    store = strict_listener.store
    store.put(LIST_DOC_ID, shop)
    done = await run_ours(peers, db, strict_listener.url, conflict_resolver=ItemMergeResolver())
    assert done.status.error is None and strict_listener.violations == []
    assert [(i.key, i.value) for i in read_items(db)] == [("Flour", 77), ("Rice", 40)]
    assert store.get(LIST_DOC_ID)[0] == db.get(LIST_DOC_ID).rev_id  # type: ignore[index,union-attr]
    assert store_body(store, LIST_DOC_ID) == shop and not store.is_conflicted(LIST_DOC_ID)


async def test_a_database_keeping_deeper_trees_asks_litecore_for_that_much_history(
    peers: Peers, strict_listener: StrictListener
) -> None:
    """Our puller tells the sender the history it keeps (maxHistory = its tree depth, as LiteCore's
    RevFinder does): with 50, LiteCore's 30 edits arrive with every ancestor back to ours."""
    db = peers.database("ours", max_depth=50)
    db.save("doc", {"v": 0})
    held = db.get("doc").rev_id  # type: ignore[union-attr]
    first = await run_ours(peers, db, strict_listener.url, type=ReplicatorType.PUSH_AND_PULL)
    assert first.status.error is None
    for v in range(1, 31):
        strict_listener.store.put("doc", {"v": v})
    again = await run_ours(peers, db, strict_listener.url, type=ReplicatorType.PULL)
    assert again.status.error is None and strict_listener.violations == []
    doc, tree = db.get("doc"), db.get_tree("doc")
    assert doc is not None and tree is not None and doc.body == {"v": 30}
    line = tree.history(doc.rev_id)
    assert line[-1] == held and [int(r.partition("-")[0]) for r in line] == list(range(31, 0, -1))


@pytest.mark.parametrize("depth", [20, 50])
async def test_litecore_pushes_more_edits_than_a_history_holds_to_our_listener(peers: Peers, depth: int) -> None:
    """Our listener's proposeChanges reply tells the pusher its tree depth as maxHistory, as
    LiteCore's listener says its own. LiteCore's 30 edits made on ours: told 50, it sends every
    ancestor back to ours; told 20, it sends 18 and ours after a gap (the revision itself counts),
    which our listener accepts at that depth (§4.2, LiteCore's findCommonAncestor). Either way a
    fast-forward here."""
    db = peers.database("ours", max_depth=depth)
    db.save("doc", {"v": 0})
    held = db.get("doc").rev_id  # type: ignore[union-attr]
    listener = await peers.listener(db)
    store = PeerStore("litecore")
    first = await run_strict(store, listener)
    assert first.violations == [] and first.errors == []
    for v in range(1, 31):
        store.put("doc", {"v": v})
    second = await run_strict(store, listener, pull=False)
    assert second.violations == [] and second.errors == [] and second.conflicts == set()
    doc, tree = db.get("doc"), db.get_tree("doc")
    assert doc is not None and tree is not None and not doc.conflicted
    assert doc.body == {"v": 30} and doc.rev_id == store.get("doc")[0]  # type: ignore[index]
    line = tree.history(doc.rev_id)  # told 20: 18 ancestors, then ours after the gap
    expected = list(range(31, 0, -1)) if depth == 50 else [*range(31, 12, -1), 1]
    assert [int(r.partition("-")[0]) for r in line] == expected and line[-1] == held


async def test_edits_right_after_a_push_reach_litecore_as_a_fast_forward(
    peers: Peers, strict_listener: StrictListener
) -> None:
    """What a push just left on LiteCore is noted at once, so the 25 saves that follow, before its
    record is written, cannot prune it: the next push names it, its history reaches it, and LiteCore
    takes the edits as they are (generation 27). Before, the push was refused (409) and the
    conflict was resolved into a merge revision of generation 3 on both sides."""
    db = peers.database("ours")
    db.save("doc", {"v": 0})
    replicator = peers.replicator(db, strict_listener.url, continuous=True, type=ReplicatorType.PUSH_AND_PULL)
    replicator.start()
    await wait_for_activity(replicator, ActivityLevel.IDLE)
    pushed = db.save("doc", {"v": 1}).rev_id
    await reach(lambda: strict_listener.store.get("doc")[0] == pushed, strict_listener.violations, "the push")  # type: ignore[index]
    for v in range(2, 27):
        db.save("doc", {"v": v})
    await replicator.stop()
    again = await run_ours(peers, db, strict_listener.url, type=ReplicatorType.PUSH_AND_PULL)
    assert again.status.error is None and strict_listener.violations == []
    current = db.get("doc")
    assert current is not None and current.body == {"v": 26} and current.rev_id.startswith("27-")
    assert strict_listener.store.get("doc")[0] == current.rev_id  # type: ignore[index]
    assert not strict_listener.store.is_conflicted("doc")


async def test_what_we_took_from_one_litecore_listener_reaches_another_as_a_fast_forward(
    peers: Peers, strict_listener: StrictListener
) -> None:
    """The revision a LiteCore listener made 30 edits past ours goes on from ours here (its cut line is
    linked to ours), so a second LiteCore listener that holds ours takes it with the history filled
    back to ours: no 409, no conflict there. Before, ours was closed instead, and the second
    listener refused the push as a conflict."""
    db = peers.database("ours")
    db.save("doc", {"v": 0})
    other = await StrictListener(PeerStore("litecore-2"), users={USER: PASSWORD}).start()
    try:
        for url in (strict_listener.url, other.url):
            done = await run_ours(peers, db, url, type=ReplicatorType.PUSH_AND_PULL)
            assert done.status.error is None
        for v in range(1, 31):
            strict_listener.store.put("doc", {"v": v})
        current = strict_listener.store.get("doc")[0]  # type: ignore[index]
        for url in (strict_listener.url, other.url):
            done = await run_ours(peers, db, url, type=ReplicatorType.PUSH_AND_PULL)
            assert done.status.error is None, done.status.error
        assert strict_listener.violations == [] and other.violations == []
        assert other.store.get("doc")[0] == current and not other.store.is_conflicted("doc")  # type: ignore[index]
        assert other.store.get("doc")[1] == {"v": 30}  # type: ignore[index]
    finally:
        await other.stop()


# -- (3) a document both sides got from a third peer, then edited on our side ---------------------------


async def test_edit_of_a_document_both_got_from_a_third_peer(peers: Peers, strict_listener: StrictListener) -> None:
    db = peers.database("ours")
    db.insert_revisions([RevisionInsert("shared", THIRD_PARTY_REV, [], {"from": "third"})])
    strict_listener.store.insert_revision("shared", THIRD_PARTY_REV, [], {"from": "third"})
    db.save("shared", {"from": "ours"})
    replicator = await run_ours(peers, db, strict_listener.url, type=ReplicatorType.PUSH_AND_PULL)
    assert strict_listener.violations == []
    assert replicator.status.error is None, replicator.status.error
    assert store_body(strict_listener.store, "shared") == {"from": "ours"}
    assert strict_listener.store.get("shared")[0] == db.get("shared").rev_id  # type: ignore[index,union-attr]


async def test_litecore_edit_of_a_document_both_got_from_a_third_peer(peers: Peers) -> None:
    db = peers.database("ours")
    db.insert_revisions([RevisionInsert("shared", THIRD_PARTY_REV, [], {"from": "third"})])
    listener = await peers.listener(db)
    store = PeerStore("litecore")
    store.insert_revision("shared", THIRD_PARTY_REV, [], {"from": "third"})
    store.put("shared", {"from": "litecore"})
    replicator = await run_strict(store, listener)
    assert replicator.violations == [] and replicator.errors == []
    assert replicator.conflicts == set()
    assert body_of(db, "shared") == {"from": "litecore"}


# -- (4) one-shot both ways: pictures, deletions, a concurrent edit -----------------------------------


def fill_ours(db: Database) -> tuple[bytes, bytes]:
    picture = os.urandom(40_000)
    note = b"a note, easily compressed " * 500
    db.save("our-photo", {"picture": db.save_blob(picture, "image/jpeg").to_dict()})
    db.save("our-note", {"file": db.save_blob(note, "text/plain").to_dict()})
    db.save("our-gone", {"v": 1})
    db.delete("our-gone")
    db.save("shared", {"v": 0})
    return picture, note


def fill_store(store: PeerStore) -> bytes:
    picture = os.urandom(70_000)
    store.put("their-photo", {"items": [{"picture": store.add_blob(picture, "image/png")}]})
    store.put("their-gone", {"v": 1})
    store.delete("their-gone")
    return picture


def assert_converged(db: Database, store: PeerStore, doc_id: str) -> None:
    ours, theirs = db.get(doc_id), store.get(doc_id)
    assert ours is not None and theirs is not None
    assert (ours.rev_id, ours.deleted) == (theirs[0], theirs[2]), f"{doc_id}: {ours} vs {theirs}"
    assert not ours.conflicted and not store.is_conflicted(doc_id)


async def test_one_shot_both_ways_with_litecore_replicator(peers: Peers) -> None:
    db = peers.database("ours")
    our_picture, our_note = fill_ours(db)
    listener = await peers.listener(db)
    store = PeerStore("litecore")
    their_picture = fill_store(store)
    first = await run_strict(store, listener)
    assert first.violations == [] and first.errors == []
    assert store.blob(store.get("our-photo")[1]["picture"]["digest"]) == our_picture  # type: ignore[index]
    assert store.blob(store.get("our-note")[1]["file"]["digest"]) == our_note  # type: ignore[index]
    assert store.get("our-gone") is not None and store.get("our-gone")[2]  # type: ignore[index]
    assert db.read_blob(body_of(db, "their-photo")["items"][0]["picture"]["digest"]) == their_picture  # type: ignore[index]
    assert deleted_in(db, "their-gone")
    # A concurrent edit: LiteCore, the active side, resolves it (protocol §4.6) and pushes the result.
    db.save("shared", {"v": "ours"})
    store.put("shared", {"v": "litecore"})
    store.put("shared", {"v": "litecore", "again": True})
    second = await run_strict(store, listener)
    third = await run_strict(store, listener)
    assert second.violations == [] and third.violations == [] and third.errors == []
    assert_converged(db, store, "shared")
    assert body_of(db, "shared") == {"v": "litecore", "again": True}
    assert deleted_in(db, "their-gone")


async def test_one_shot_both_ways_with_litecore_listener(peers: Peers, strict_listener: StrictListener) -> None:
    db = peers.database("ours")
    store = strict_listener.store
    our_picture, our_note = fill_ours(db)
    their_picture = fill_store(store)
    first = await run_ours(peers, db, strict_listener.url, type=ReplicatorType.PUSH_AND_PULL)
    assert strict_listener.violations == [] and first.status.error is None
    assert store.blob(store.get("our-photo")[1]["picture"]["digest"]) == our_picture  # type: ignore[index]
    assert store.blob(store.get("our-note")[1]["file"]["digest"]) == our_note  # type: ignore[index]
    assert db.read_blob(body_of(db, "their-photo")["items"][0]["picture"]["digest"]) == their_picture  # type: ignore[index]
    assert deleted_in(db, "their-gone") and store.get("our-gone")[2]  # type: ignore[index]
    # A concurrent edit: we are the active side now, so we resolve it and push the result.
    store.put("shared", {"v": "litecore"})
    db.save("shared", {"v": "ours"})
    db.save("shared", {"v": "ours", "again": True})
    events: list[DocumentReplication] = []
    replicator = peers.replicator(db, strict_listener.url, type=ReplicatorType.PUSH_AND_PULL)
    replicator.add_document_listener(events.append)
    replicator.start()
    await asyncio.wait_for(replicator.wait_stopped(), 2 * TIMEOUT)
    # one run: the refused proposal waits, the pulled revision is merged, the merge goes out
    assert strict_listener.violations == [] and replicator.status.error is None
    assert [d for e in events for d in e.documents if d.error is not None] == []
    assert_converged(db, store, "shared")
    assert body_of(db, "shared") == {"v": "ours", "again": True}


# -- (5) our replicator, continuous, against a LiteCore listener ------------------------------------


async def test_continuous_against_litecore_listener(peers: Peers, strict_listener: StrictListener) -> None:
    db = peers.database("ours")
    store = strict_listener.store
    db.save("early", {"v": 0})
    store.put("theirs", {"v": 0})
    replicator = peers.replicator(db, strict_listener.url, continuous=True, type=ReplicatorType.PUSH_AND_PULL)
    replicator.start()
    violations = strict_listener.violations
    await reach(lambda: store_body(store, "early") == {"v": 0}, violations, "initial push")
    await reach(lambda: body_of(db, "theirs") == {"v": 0}, violations, "initial pull")
    for i in range(1, 4):
        db.save("early", {"v": i})
        await reach(lambda i=i: store_body(store, "early") == {"v": i}, violations, f"our live edit {i}")
        store.put("theirs", {"v": i})
        await reach(lambda i=i: body_of(db, "theirs") == {"v": i}, violations, f"their live edit {i}")
    db.delete("early")
    await reach(lambda: store.get("early") is not None and store.get("early")[2], violations, "our deletion")  # type: ignore[index]
    store.delete("theirs")
    await reach(lambda: deleted_in(db, "theirs"), violations, "their deletion")
    await wait_for_activity(replicator, ActivityLevel.IDLE, timeout=10)
    await replicator.stop()
    assert replicator.status.error is None and violations == []


# -- (6) our listener serving a LiteCore push, then an edit after the LiteCore replicator restarts ------


async def test_litecore_push_then_edit_after_restart(peers: Peers) -> None:
    db = peers.database("ours")
    listener = await peers.listener(db)
    store = PeerStore("litecore")
    for i in range(20):
        store.put(f"doc{i}", {"v": 0})
    first = await run_strict(store, listener, pull=False)
    assert first.violations == [] and first.errors == [] and first.pushed == 20
    assert body_of(db, "doc5") == {"v": 0}
    store.put("doc5", {"v": 1})
    store.delete("doc6")
    restarted = await run_strict(store, listener, pull=False)
    assert restarted.violations == [] and restarted.errors == []
    assert restarted.conflicts == set() and restarted.pushed == 2
    assert body_of(db, "doc5") == {"v": 1} and deleted_in(db, "doc6")


# -- (9) over TLS, as a Couchbase Lite 3.0 peer speaks it (mbedTLS 2.x) ------------------------------


async def test_litecore_replicator_syncs_with_our_generated_tls_identity(peers: Peers) -> None:
    """TLS 1.2 with mbedTLS 2.x's suites, the certificate pinned, and the host matched the way
    mbedTLS 2.x does (DNS names only): the identity our listener generates passes all three."""
    db = peers.database("ours")
    db.save("doc", {"n": 1})
    identity = GeneratedIdentity(db.path).load_or_create(serving_addresses("127.0.0.1"))
    listener = await peers.listener(db, tls=identity)
    assert listener.urls[0].startswith("wss://127.0.0.1:")
    store = PeerStore("litecore")
    store.put("theirs", {"n": 2})
    tls = ClientTLS(pinned=identity.certificate_der)
    replicator = StrictReplicator(store, listener.urls[0], USER, PASSWORD, tls=tls)
    await asyncio.wait_for(replicator.run(), TIMEOUT)
    assert replicator.violations == [] and replicator.errors == []
    assert store_body(store, "doc") == {"n": 1} and body_of(db, "theirs") == {"n": 2}


async def test_litecore_replicator_refuses_a_certificate_that_is_not_pinned(peers: Peers) -> None:
    listener = await peers.listener(peers.database("ours"), tls=TLSIdentity.create_self_signed(["127.0.0.1"]))
    other = TLSIdentity.create_self_signed(["127.0.0.1"])
    replicator = StrictReplicator(
        PeerStore("x"), listener.urls[0], USER, PASSWORD, tls=ClientTLS(other.certificate_der)
    )
    await asyncio.wait_for(replicator.run(), TIMEOUT)
    assert replicator.violations == ["the listener's certificate is not the pinned one"]  # the double's own check
    assert listener.stats.revs_sent == 0


async def test_our_replicator_syncs_with_a_litecore_tls_listener(peers: Peers) -> None:
    """A Couchbase Lite 3.0 listener: TLS 1.2 at most, mbedTLS 2.x's suites, an RSA key as its
    anonymous identity has; our replicator pins its certificate."""
    identity = TLSIdentity.create_self_signed(["127.0.0.1"], key_type=KeyType.RSA_2048)
    store = PeerStore("litecore")
    store.put("theirs", {"n": 2})
    strict = await StrictListener(
        store, users={USER: PASSWORD}, tls=limit_like_mbedtls2(server_context(identity))
    ).start()
    try:
        db = peers.database("ours")
        db.save("doc", {"n": 1})
        replicator = await run_ours(peers, db, strict.url, tls=ServerValidation.pinned(identity.certificate))
        assert replicator.status.error is None, replicator.status.error
        assert strict.violations == []
        assert store_body(store, "doc") == {"n": 1} and body_of(db, "theirs") == {"n": 2}
    finally:
        await strict.stop()
