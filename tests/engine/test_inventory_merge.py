"""The item-merging conflict resolver, including a three-peer convergence property."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.blobs import digest_of
from engine.conflicts import Conflict, ConflictView, Resolution, default_resolver, resolve_document
from engine.database import Database, InsertResult, RevisionInsert
from engine.documents import Document
from engine.inventory import LIST_DOC_ID, MAX_EDIT, MAX_QUANTITY, check_list_body, read_items, set_quantity
from engine.inventory_merge import ItemMergeResolver, is_valid_list, merge_lists
from engine.replication.rev_finder import find_left_behind, find_proposed, find_revs

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


# -- malformed versions ------------------------------------------------------------

PICTURE = {"@type": "blob", "digest": digest_of(b"picture"), "length": 7, "content_type": "image/jpeg"}
GROCERIES = [
    "Apples", "Bananas", "Bread", "Butter", "Cheddar", "Coffee beans", "Crème fraîche", "Eggs", "Flour",
    "Honey", "Milk", "Oats", "Olive oil", "Pasta", "Rice", "Salt", "Sugar", "Tea",
]  # fmt: skip


def groceries() -> dict[str, Any]:
    """The user's list: 18 items with pictures."""
    return {"type": "list", "items": [{"key": k, "value": 2, "image": PICTURE} for k in GROCERIES]}


def edited(body: dict[str, Any], index: int, value: int, stamp: int) -> dict[str, Any]:
    items = [dict(i) for i in body["items"]]
    items[index] = {**items[index], "value": value, "edit": stamp}
    return {**body, "items": items}


def with_item(body: dict[str, Any], index: int, raw: object) -> dict[str, Any]:
    """``body`` with item ``index`` replaced by ``raw`` (appended when ``index`` is past the end)."""
    items: list[object] = list(body["items"])
    if index < len(items):
        items[index] = raw
    else:
        items.append(raw)
    return {**body, "items": items}


GOOD = {"key": "Milk", "value": 2}
#: Malformed replacements of a version, each from the version it replaces.
MALFORMED_VERSIONS: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
    ("the user's first body", lambda _: {"items": [{"value": 1}, {"key": "Eggs", "value": "many"}]}),
    ("the user's second body", lambda _: {"items": "notalist"}),
    ("no items", lambda b: {k: v for k, v in b.items() if k != "items"}),
    ("items an object", lambda b: {**b, "items": {i["key"]: i for i in b["items"]}}),
    ("items null", lambda b: {**b, "items": None}),
    ("an item not an object", lambda b: with_item(b, 3, "Bread")),
    ("an item null", lambda b: with_item(b, 99, None)),
    ("an item an array", lambda b: with_item(b, 0, ["Apples", 2])),
    ("missing key", lambda b: with_item(b, 4, {"value": 2})),
    ("empty key", lambda b: with_item(b, 4, {**GOOD, "key": ""})),
    ("blank key", lambda b: with_item(b, 4, {**GOOD, "key": " \t "})),
    ("key a number", lambda b: with_item(b, 4, {**GOOD, "key": 4})),
    ("duplicate keys", lambda b: with_item(b, 99, {**b["items"][0], "value": 7})),
    ("non-NFC key", lambda b: with_item(b, 99, {**GOOD, "key": "Cre\u0300me bru\u0302le\u0301e"})),
    ("non-NFC twin of a key", lambda b: with_item(b, 99, {**GOOD, "key": "Cre\u0300me frai\u0302che"})),
    ("key with a newline", lambda b: with_item(b, 99, {**GOOD, "key": "Milk\nEggs"})),
    ("key with NUL", lambda b: with_item(b, 2, {**b["items"][2], "key": "Bread\x00"})),
    ("key with a bidi override", lambda b: with_item(b, 99, {**GOOD, "key": "Milk\u202e"})),
    ("key too long", lambda b: with_item(b, 99, {**GOOD, "key": "M" * 201})),
    ("negative value", lambda b: with_item(b, 5, {**b["items"][5], "value": -1})),
    ("fractional value", lambda b: with_item(b, 5, {**b["items"][5], "value": 1.5})),
    ("string value", lambda b: with_item(b, 5, {**b["items"][5], "value": "many"})),
    ("bool value", lambda b: with_item(b, 5, {**b["items"][5], "value": True})),
    ("huge value", lambda b: with_item(b, 5, {**b["items"][5], "value": 10**30})),
    ("missing value", lambda b: with_item(b, 5, {"key": b["items"][5]["key"]})),
    ("image not a blob", lambda b: with_item(b, 6, {**b["items"][6], "image": "coffee.jpg"})),
    ("image with a bad digest", lambda b: with_item(b, 6, {**b["items"][6], "image": {**PICTURE, "digest": "x"}})),
    ("image with a bad length", lambda b: with_item(b, 6, {**b["items"][6], "image": {**PICTURE, "length": -3}})),
    ("edit a string", lambda b: with_item(b, 7, {**b["items"][7], "edit": "5"})),
    ("edit a bool", lambda b: with_item(b, 7, {**b["items"][7], "edit": True})),
    ("edit negative", lambda b: with_item(b, 7, {**b["items"][7], "edit": -1})),
    ("edit fractional", lambda b: with_item(b, 7, {**b["items"][7], "edit": 2.5})),
]


def conflict(
    local: dict[str, Any] | None, remote: dict[str, Any] | None, base: dict[str, Any] | None, *, local_high: bool
) -> Conflict:
    local_rev, remote_rev = ("3-bbbb", "3-aaaa") if local_high else ("3-aaaa", "3-bbbb")
    return Conflict(
        LIST_DOC_ID,
        local_rev,
        remote_rev,
        None if local is None else Document(LIST_DOC_ID, local_rev, local),
        None if remote is None else Document(LIST_DOC_ID, remote_rev, remote),
        base,
    )


def resolved_body(result: Resolution) -> dict[str, Any] | None:
    return result.body if isinstance(result, Document) else result


@pytest.mark.parametrize("local_high", [True, False])
@pytest.mark.parametrize("malformed_side", ["local", "remote"])
@pytest.mark.parametrize(("shape", "corrupt"), MALFORMED_VERSIONS, ids=[name for name, _ in MALFORMED_VERSIONS])
def test_a_malformed_side_never_costs_valid_items(
    shape: str, corrupt: Callable[[dict[str, Any]], dict[str, Any]], malformed_side: str, local_high: bool
) -> None:
    # the user's case: 18 items; one peer edits an item, the other's version is malformed
    base = groceries()
    valid = edited(base, 9, 40, 1)
    bad = corrupt(edited(base, 12, 0, 1))  # its own edit does not count
    assert not is_valid_list(bad), shape
    local, remote = (bad, valid) if malformed_side == "local" else (valid, bad)
    result = resolved_body(ITEM(conflict(local, remote, base, local_high=local_high)))
    assert result == valid  # the valid side wins whole
    assert len(check_list_body(result)) == 18
    for high, low in ((valid, bad), (bad, valid)):
        assert merge_lists(base, high, low) == valid


@pytest.mark.parametrize("base", [{"items": "notalist"}, {"items": [{"value": 1}]}, None])
def test_a_malformed_or_missing_base_keeps_the_items_of_both_sides(base: dict[str, Any] | None) -> None:
    high = body(("a", 1), ("new", 2))  # with a base, "b" would count as removed here
    low = body(("a", 1), ("b", 1))
    assert merge_lists(base, high, low) == body(("a", 1), ("new", 2), ("b", 1))
    result = resolved_body(ITEM(conflict(high, low, base, local_high=True)))
    assert result == body(("a", 1), ("new", 2), ("b", 1))


def test_both_sides_malformed_falls_back_to_the_default_resolver() -> None:
    for local_high in (True, False):
        c = conflict({"items": "notalist"}, {"items": [{"value": 1}]}, groceries(), local_high=local_high)
        assert ITEM(c) == default_resolver(c)
    assert merge_lists(None, {"items": 1}, {"items": 2}) == {"items": 1}  # the high side, as that rule picks


def test_a_malformed_list_still_beats_a_deletion() -> None:
    # kept, not deleted: its earlier valid revisions stay readable (read_items_or_last_valid)
    bad = {"items": "notalist"}
    assert resolved_body(ITEM(conflict(None, bad, groceries(), local_high=True))) == bad
    assert resolved_body(ITEM(conflict(bad, None, groceries(), local_high=False))) == bad


# hypothesis: valid versions and malformed replacements of them

NAMES = (
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), min_size=1, max_size=6)
    .map(lambda k: unicodedata.normalize("NFC", k))
    .filter(lambda k: bool(k.strip()))
)
VALID_ITEMS = st.fixed_dictionaries(
    {"key": NAMES, "value": st.integers(0, MAX_QUANTITY)},
    optional={"image": st.just(PICTURE), "edit": st.integers(0, 5)},
)
VALID_LISTS = st.lists(VALID_ITEMS, max_size=8, unique_by=lambda i: i["key"]).map(
    lambda items: {"type": "list", "items": items}
)
BAD_NAMES = st.one_of(
    st.sampled_from(["", " ", "\u3000", "\u200d", "e\u0301", "A\u030a", "\u212b", "M" * 201]),
    st.tuples(NAMES, st.sampled_from("\n\r\t\x00\x7f\x85\u2028\u2029\u200b\u202e\u2066\ufeff\ud800\U000e0001")).map(
        "".join
    ),
    st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=1)),
)
BAD_NUMBERS = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=MAX_EDIT + 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
BAD_ITEMS = st.one_of(
    st.one_of(st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)),
    st.builds(lambda good, name: {**good, "key": name}, VALID_ITEMS, BAD_NAMES),
    st.builds(lambda good, value: {**good, "value": value}, VALID_ITEMS, BAD_NUMBERS),
    st.builds(lambda good, stamp: {**good, "edit": stamp}, VALID_ITEMS, BAD_NUMBERS),
    st.builds(
        lambda good, image: {**good, "image": image},
        VALID_ITEMS,
        st.one_of(
            st.text(max_size=3),
            st.integers(),
            st.just({"digest": PICTURE["digest"], "length": 7}),
            st.builds(lambda d: {**PICTURE, "digest": d}, st.text(max_size=8)),
            st.builds(lambda n: {**PICTURE, "length": n}, BAD_NUMBERS.filter(lambda n: n is not None)),
        ),
    ),
    VALID_ITEMS.map(lambda good: {k: v for k, v in good.items() if k != "key"}),
    VALID_ITEMS.map(lambda good: {k: v for k, v in good.items() if k != "value"}),
)


@st.composite
def malformed_versions(draw: st.DrawFn, version: dict[str, Any]) -> dict[str, Any]:
    """A malformed replacement of a valid ``version``."""
    items: list[Any] = list(version["items"])
    how = draw(st.sampled_from(["body", "item", "duplicate"] if items else ["body", "item"]))
    if how == "body":
        other = draw(
            st.one_of(
                st.none(),
                st.integers(),
                st.text(max_size=3),
                st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
            )
        )
        return draw(st.sampled_from([{"type": "list", "items": other}, {"type": "list"}, {"items": other}]))
    if how == "duplicate":
        twin = draw(st.sampled_from(items))
        items.insert(draw(st.integers(0, len(items))), {**twin, "value": draw(st.integers(0, 9))})
    else:
        bad = draw(BAD_ITEMS)
        items.insert(draw(st.integers(0, len(items))), bad)
    return {**version, "items": items}


@settings(max_examples=300, deadline=None)
@given(st.data(), VALID_LISTS, VALID_LISTS, VALID_LISTS, st.booleans(), st.booleans(), st.booleans())
def test_merging_with_a_malformed_side_keeps_every_item_of_the_valid_side(
    data: st.DataObject,
    base: dict[str, Any],
    local: dict[str, Any],
    remote: dict[str, Any],
    malformed_local: bool,
    local_high: bool,
    malformed_base: bool,
) -> None:
    if malformed_base:
        base = data.draw(malformed_versions(base), label="malformed base")
    # valid versions merge into a valid list
    for high, low in ((local, remote), (remote, local)):
        assert is_valid_list(merge_lists(base, high, low))
    merged = resolved_body(ITEM(conflict(local, remote, base, local_high=local_high)))
    assert is_valid_list(merged)
    # one side malformed: the valid side's items all survive
    if malformed_local:
        local = bad = data.draw(malformed_versions(local), label="malformed local")
        valid = remote
    else:
        remote = bad = data.draw(malformed_versions(remote), label="malformed remote")
        valid = local
    assert not is_valid_list(bad)
    results = [resolved_body(ITEM(conflict(local, remote, base, local_high=local_high)))]
    results += [merge_lists(base, valid, bad), merge_lists(base, bad, valid)]
    for result in results:
        assert result is not None and is_valid_list(result)
        for item in valid["items"]:
            assert item in result["items"]


# -- three peers -----------------------------------------------------------------


def pull(active: Database, passive: Database, resolver: object) -> int:
    """What a one-shot pull does to ``active`` (model of the puller); returns the conflicts resolved."""
    resolved = 0
    for doc_id in passive.doc_ids(include_deleted=True):
        current = passive.get(doc_id)
        assert current is not None
        trees = active.read_trees([doc_id])
        known = find_revs(trees, [(doc_id, current.rev_id)])[0]
        if known is None:
            if find_left_behind(trees, [(doc_id, current.rev_id)])[0]:
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
        status, theirs = find_proposed(passive.current_revisions([doc_id]), [(doc_id, current.rev_id, None)])[0]
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
