"""The item-merging conflict resolver, including a three-peer convergence property."""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.blobs import digest_of
from engine.conflicts import Conflict, Resolution, default_resolver
from engine.documents import Document
from engine.inventory import LIST_DOC_ID, MAX_EDIT, MAX_QUANTITY, check_list_body
from engine.inventory_merge import ItemMergeResolver, is_valid_list, merge_lists
from engine.seeding import starter_list_revision

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


@pytest.mark.parametrize("local_high", [True, False])
@pytest.mark.parametrize("starter_side", ["local", "remote"])
def test_an_untouched_starter_list_gives_way_whole(starter_side: str, local_high: bool) -> None:
    starter, shop = body(("Flour", 12), ("Honey", 3)), body(("Flour", 77), ("Rice", 40))
    local, remote = (starter, shop) if starter_side == "local" else (shop, starter)
    case = conflict(local, remote, None, local_high=local_high)
    untouched = case.local_rev_id if starter_side == "local" else case.remote_rev_id
    assert resolved_body(ItemMergeResolver(untouched=untouched)(case)) == shop  # whichever peer resolves
    # a starter list changed since is a list like any other: without a base, the items of both
    assert len(resolved_body(ItemMergeResolver(untouched="1-other")(case))["items"]) == 3  # type: ignore[index]
    # a malformed side still yields first, even to the untouched starter list
    bad = conflict(local if starter_side == "local" else {"items": "x"}, remote if starter_side == "remote" else {"items": "x"}, None, local_high=local_high)  # fmt: skip
    assert resolved_body(ItemMergeResolver(untouched=untouched)(bad)) == starter


def test_the_starter_list_as_a_new_database_gets_it_is_the_default() -> None:
    rev_id, starter = starter_list_revision(), body(("Flour", 12))  # the resolver goes by the revision ID
    case = dataclasses.replace(
        conflict(starter, body(("Rice", 40)), None, local_high=False),
        local_rev_id=rev_id,
        local=Document(LIST_DOC_ID, rev_id, starter),
    )
    assert resolved_body(ItemMergeResolver()(case)) == body(("Rice", 40))
