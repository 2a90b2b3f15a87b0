from __future__ import annotations

import pytest

from engine.database import Database
from engine.errors import InventoryError
from engine.inventory import (
    LIST_DOC_ID,
    MAX_QUANTITY,
    Item,
    StarterItem,
    add_item,
    parse_items,
    parse_quantity,
    read_items,
    remove_item,
    save_new_list,
    set_picture,
    set_quantity,
)


@pytest.fixture
def seeded(db: Database) -> Database:
    assert save_new_list(db, [StarterItem("Flour", 3, b"jpeg-a"), StarterItem("Eggs", 12, b"jpeg-b")])
    return db


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (7, 7), ("12", 12), (" 5 ", 5), (MAX_QUANTITY, MAX_QUANTITY)])
def test_parse_quantity_accepts(value: object, expected: int) -> None:
    assert parse_quantity(value) == expected


@pytest.mark.parametrize("value", [-1, "-1", "1.5", 1.5, True, None, "", "abc", "\uff11\uff12", MAX_QUANTITY + 1, "+3"])
def test_parse_quantity_refuses(value: object) -> None:
    with pytest.raises(InventoryError):
        parse_quantity(value)


def test_seeded_list_shape(seeded: Database) -> None:
    doc = seeded.get(LIST_DOC_ID)
    assert doc is not None
    assert doc.body["type"] == "list"
    first = doc.body["items"][0]
    assert first["key"] == "Flour" and first["value"] == 3
    assert first["image"]["@type"] == "blob" and first["image"]["content_type"] == "image/jpeg"
    assert seeded.read_blob(first["image"]["digest"]) == b"jpeg-a"


def test_seeding_twice_never_duplicates(seeded: Database) -> None:
    assert not save_new_list(seeded, [StarterItem("Other", 1, b"x")])
    assert [i.key for i in read_items(seeded)] == ["Flour", "Eggs"]


def test_edits(seeded: Database) -> None:
    set_quantity(seeded, "Eggs", 30)
    add_item(seeded, "Milk", "2")
    remove_item(seeded, "Flour")
    blob = seeded.save_blob(b"new picture", "image/jpeg")
    set_picture(seeded, "Milk", blob)
    items = read_items(seeded)
    assert [(i.key, i.value) for i in items] == [("Eggs", 30), ("Milk", 2)]
    assert items[1].image == blob


def test_bad_edits_change_nothing(seeded: Database) -> None:
    before = seeded.get(LIST_DOC_ID)
    for edit in (
        lambda: set_quantity(seeded, "Nope", 1),
        lambda: set_quantity(seeded, "Eggs", -5),
        lambda: set_quantity(seeded, "Eggs", "many"),
        lambda: add_item(seeded, "Eggs", 1),
        lambda: add_item(seeded, " ", 1),
        lambda: remove_item(seeded, "Nope"),
    ):
        with pytest.raises(InventoryError):
            edit()
    assert seeded.get(LIST_DOC_ID) == before


def test_edit_reapplies_on_top_of_a_concurrent_change(seeded: Database) -> None:
    # a peer's change lands between our read and our save: both edits survive
    doc = seeded.get(LIST_DOC_ID)
    assert doc is not None
    original_get = seeded.get
    calls = {"n": 0}

    def racing_get(doc_id: str):  # type: ignore[no-untyped-def]
        result = original_get(doc_id)
        calls["n"] += 1
        if calls["n"] == 1:
            body = dict(doc.body)
            body["items"] = [dict(i) for i in body["items"]]
            body["items"][0]["value"] = 99
            seeded.save(LIST_DOC_ID, body)
        return result

    seeded.get = racing_get  # type: ignore[method-assign]
    set_quantity(seeded, "Eggs", 1)
    seeded.get = original_get  # type: ignore[method-assign]
    assert [(i.key, i.value) for i in read_items(seeded)] == [("Flour", 99), ("Eggs", 1)]


def test_parse_items_rejects_malformed_lists() -> None:
    for body in (
        {},
        {"items": "x"},
        {"items": [1]},
        {"items": [{"key": "", "value": 1}]},
        {"items": [{"key": "a", "value": -1}]},
    ):
        with pytest.raises(InventoryError):
            parse_items(body)
    assert parse_items({"items": [{"key": "a", "value": 1}]}) == [Item("a", 1)]
