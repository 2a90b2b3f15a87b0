"""The item-merging conflict resolver, including a three-peer convergence property."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.conflicts import default_resolver
from engine.database import Database, InsertResult, RevisionInsert
from engine.database_sync import ConflictView
from engine.inventory import LIST_DOC_ID, read_items, set_quantity
from engine.inventory_merge import ItemMergeResolver, merge_lists
from engine.resolution import resolve_document

ITEM = ItemMergeResolver()


def body(*items: tuple[str, int]) -> dict[str, object]:
    return {"type": "list", "items": [{"key": k, "value": v} for k, v in items]}


def test_edits_to_different_items_both_survive() -> None:
    base = body(("a", 1), ("b", 1), ("c", 1))
    merged = merge_lists(base, body(("a", 5), ("b", 1), ("c", 1)), body(("a", 1), ("b", 7), ("c", 1)))
    assert merged == body(("a", 5), ("b", 7), ("c", 1))


def test_same_item_changed_on_both_sides_high_side_wins() -> None:
    base = body(("a", 1))
    assert merge_lists(base, body(("a", 5)), body(("a", 7))) == body(("a", 5))


def test_additions_and_removals() -> None:
    base = body(("a", 1), ("b", 1))
    high = body(("a", 1), ("b", 1), ("new-high", 2))
    low = body(("a", 1))  # removed b
    assert merge_lists(base, high, low) == body(("a", 1), ("new-high", 2))
    edited_and_removed = merge_lists(base, body(("a", 1), ("b", 9)), body(("a", 1)))
    assert edited_and_removed == body(("a", 1), ("b", 9))  # an edit beats a removal


def test_without_a_base_everything_is_kept() -> None:
    assert merge_lists(None, body(("a", 1)), body(("b", 2))) == body(("a", 1), ("b", 2))


def test_the_newer_edit_of_an_item_wins_even_when_it_restores_an_old_value() -> None:
    base = {"type": "list", "items": [{"key": "a", "value": 0}]}
    restored = {"type": "list", "items": [{"key": "a", "value": 0, "edit": 2}]}  # 0 -> 1 -> 0
    older = {"type": "list", "items": [{"key": "a", "value": 1, "edit": 1}]}
    assert merge_lists(base, older, restored)["items"] == [{"key": "a", "value": 0, "edit": 2}]
    assert merge_lists(base, restored, older)["items"] == [{"key": "a", "value": 0, "edit": 2}]


def test_top_level_properties_merge_too() -> None:
    base = {"type": "list", "items": [], "title": "shop"}
    assert merge_lists(base, {**base, "title": "kitchen"}, {**base, "note": "x"}) == {
        "type": "list",
        "title": "kitchen",
        "note": "x",
        "items": [],
    }


# -- three peers -----------------------------------------------------------------


def pull(active: Database, passive: Database, resolver: object) -> int:
    """What a one-shot pull does to ``active`` (model of the puller); returns the conflicts resolved."""
    resolved = 0
    for doc_id in passive.doc_ids(include_deleted=True):
        current = passive.get(doc_id)
        assert current is not None
        known = active.revs_diff([(doc_id, current.rev_id)])[0]
        if known is None:
            if active.left_behind([(doc_id, current.rev_id)])[0]:
                resolve_document(active, doc_id, current.rev_id, resolver)  # type: ignore[arg-type]
                resolved += 1
            continue
        rev = passive.revision_for_sync(doc_id, current.rev_id, known=set(known))
        assert rev is not None
        insert = RevisionInsert(doc_id, rev.rev_id, rev.history, json.loads(rev.body), rev.deleted)
        calls: list[str] = []

        def resolve(view: ConflictView, result: InsertResult, calls: list[str] = calls) -> None:
            calls.append(result.doc_id)  # as the puller's Inserter does: in the inserting transaction
            resolve_document(view, result.doc_id, result.rev_id, resolver)  # type: ignore[arg-type]

        result = active.insert_revisions([insert], resolve=resolve)[0]
        assert result.error is None, result.error
        resolved += len(calls)
    return resolved


def push(active: Database, passive: Database) -> None:
    """What a one-shot push does (model of the pusher): passive peers refuse conflicts."""
    for doc_id in active.doc_ids(include_deleted=True):
        current = active.get(doc_id)
        tree = active.get_tree(doc_id)
        assert current is not None and tree is not None
        status, theirs = passive.propose_changes([(doc_id, current.rev_id, None)])[0]
        if status == 304 or (status == 409 and (theirs is None or not tree.is_ancestor(theirs, current.rev_id))):
            continue
        rev = active.revision_for_sync(doc_id, current.rev_id, known={theirs} if theirs else set())
        assert rev is not None
        insert = RevisionInsert(doc_id, rev.rev_id, rev.history, json.loads(rev.body), rev.deleted, no_conflicts=True)
        assert passive.insert_revisions([insert])[0].error is None


def sync(active: Database, passive: Database, resolver: object) -> int:
    push(active, passive)
    resolved = pull(active, passive, resolver)
    push(active, passive)
    return resolved


KEYS = [f"item-{i}" for i in range(6)]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("edit"), st.integers(0, 2), st.integers(0, len(KEYS) - 1), st.integers(0, 99)),
        st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps)
def test_three_peers_converge_and_keep_every_edit_to_distinct_items(
    tmp_path_factory: pytest.TempPathFactory, plan: list[tuple[str, int, int, int]]
) -> None:
    root = tmp_path_factory.mktemp("peers")
    peers = [Database(root / name, durable=False, keep_bodies=20) for name in "abc"]
    try:
        peers[0].save(LIST_DOC_ID, body(*((key, 0) for key in KEYS)))  # pictures travel separately
        for other in peers[1:]:
            sync(other, peers[0], ITEM)
        conflicts = 0
        last_edit: dict[str, tuple[int, int]] = {}
        editors: dict[str, set[int]] = {}
        for action, a, b, value in plan:
            if action == "edit":
                set_quantity(peers[a], KEYS[b], value)
                last_edit[KEYS[b]] = (a, value)
                editors.setdefault(KEYS[b], set()).add(a)
            elif a != b:
                conflicts += sync(peers[a], peers[b], ITEM)
        for _ in range(3):  # let everything settle: a ring of syncs, three times over
            for a, b in ((0, 1), (1, 2), (2, 0)):
                conflicts += sync(peers[a], peers[b], ITEM)
        event("conflicts resolved" if conflicts else "no conflict")
        docs = [p.get(LIST_DOC_ID) for p in peers]
        assert all(d is not None for d in docs)
        assert len({d.rev_id for d in docs if d}) == 1, "peers did not converge"
        assert all(not d.conflicted for d in docs if d)
        final = {item.key: item.value for item in read_items(peers[0])}
        assert set(final) == set(KEYS)
        for key, (_, value) in last_edit.items():
            if len(editors[key]) == 1:
                assert final[key] == value, f"the only edit of {key} was lost"
    finally:
        for peer in peers:
            peer.close()


def test_concurrent_edits_on_two_peers_both_survive(tmp_path: Path) -> None:
    a, b = (
        Database(tmp_path / "a", durable=False, keep_bodies=20),
        Database(tmp_path / "b", durable=False, keep_bodies=20),
    )
    try:
        a.save(LIST_DOC_ID, body(("x", 0), ("y", 0)))
        sync(b, a, ITEM)
        set_quantity(a, "x", 1)
        set_quantity(b, "y", 2)
        push(b, a)  # refused: the passive side never accepts a conflict
        assert [(i.key, i.value) for i in read_items(a)] == [("x", 1), ("y", 0)]
        pull(b, a, ITEM)
        assert [(i.key, i.value) for i in read_items(b)] == [("x", 1), ("y", 2)]
        push(b, a)
        assert a.get(LIST_DOC_ID).rev_id == b.get(LIST_DOC_ID).rev_id  # type: ignore[union-attr]
    finally:
        a.close()
        b.close()


def test_default_resolver_also_converges(tmp_path: Path) -> None:
    a, b = Database(tmp_path / "a", durable=False), Database(tmp_path / "b", durable=False)
    try:
        a.save(LIST_DOC_ID, body(("x", 0), ("y", 0)))
        sync(b, a, default_resolver)
        set_quantity(a, "x", 1)
        set_quantity(b, "y", 2)
        sync(b, a, default_resolver)
        sync(b, a, default_resolver)
        assert a.get(LIST_DOC_ID).rev_id == b.get(LIST_DOC_ID).rev_id  # type: ignore[union-attr]
    finally:
        a.close()
        b.close()
