from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.blobs import digest_of
from engine.database import Database
from engine.documents import Document
from engine.errors import InventoryError
from engine.inventory import (
    LIST_DOC_ID,
    MAX_EDIT,
    InvalidListError,
    Item,
    ListReading,
    StarterItem,
    add_item,
    check_list_body,
    parse_items,
    parse_quantity,
    read_items,
    read_items_or_last_valid,
    remove_item,
    save_new_list,
    set_picture,
    set_quantity,
)
from engine.inventory_merge import merge_lists


@pytest.fixture
def seeded(db: Database) -> Database:
    assert save_new_list(db, [StarterItem("Flour", 3, b"jpeg-a"), StarterItem("Eggs", 12, b"jpeg-b")])
    return db


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


def test_a_name_in_nfc_or_not_names_one_item(seeded: Database) -> None:
    decomposed, composed = "e\u0301clair", "\u00e9clair"
    add_item(seeded, decomposed, 2)
    doc = seeded.get(LIST_DOC_ID)
    assert doc is not None and doc.body["items"][-1]["key"] == composed  # stored in NFC
    with pytest.raises(InventoryError, match="already exists"):
        add_item(seeded, composed, 1)
    set_quantity(seeded, composed, 5)
    set_picture(seeded, decomposed, None)
    assert read_items(seeded)[-1] == Item(composed, 5, None, read_items(seeded)[-1].edit)
    remove_item(seeded, decomposed)
    assert [i.key for i in read_items(seeded)] == ["Flour", "Eggs"]
    check_list_body(seeded.get(LIST_DOC_ID).body)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "name",
    [
        "Milk\n",
        "\tMilk",
        "Mi\x00lk",
        "Milk\u2028",
        "Mi\u200blk",
        "abc\u202edcb",
        "\u200d",
        "",
        "  ",
        "x" * 201,
        None,
        3,
    ],
)
def test_writers_refuse_bad_names(seeded: Database, name: object) -> None:
    before = seeded.get(LIST_DOC_ID)
    for edit in (
        lambda: add_item(seeded, name, 1),  # type: ignore[arg-type]
        lambda: set_quantity(seeded, name, 1),  # type: ignore[arg-type]
        lambda: set_picture(seeded, name, None),  # type: ignore[arg-type]
        lambda: remove_item(seeded, name),  # type: ignore[arg-type]
    ):
        with pytest.raises(InventoryError):
            edit()
    assert seeded.get(LIST_DOC_ID) == before


def test_writers_accept_names_with_joiners(seeded: Database) -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    add_item(seeded, family, 1)
    assert read_items(seeded)[-1].key == family


def test_save_new_list_normalizes_names_and_refuses_duplicates_in_nfc(db: Database) -> None:
    with pytest.raises(InventoryError, match="appears twice"):
        save_new_list(db, [StarterItem("e\u0301clair", 1, b"a"), StarterItem("\u00e9clair", 2, b"b")])
    with pytest.raises(InventoryError):
        save_new_list(db, [StarterItem("Flour", 1, b"a"), StarterItem("Eggs\n", 2, b"b")])
    assert db.get(LIST_DOC_ID) is None
    assert not db.has_blob(digest_of(b"a"))  # names are checked before pictures are stored
    assert save_new_list(db, [StarterItem("e\u0301clair", 1, b"a")])
    assert [i.key for i in read_items(db)] == ["\u00e9clair"]


def test_parse_quantity_refuses_a_number_too_long_to_convert() -> None:
    with pytest.raises(InventoryError):
        parse_quantity("9" * 5000)
    with pytest.raises(InventoryError):
        parse_quantity(10**5000)
    assert parse_quantity("000000000000000000007") == 7


def test_edit_stamps_stop_at_the_largest(db: Database) -> None:
    db.save(LIST_DOC_ID, {"type": "list", "items": [{"key": "a", "value": 1, "edit": MAX_EDIT}]})
    set_quantity(db, "a", 2)
    assert read_items(db) == [Item("a", 2, None, MAX_EDIT)]


# -- reading a damaged list --------------------------------------------------------


class Tampered:
    """A database whose stored bodies of some revisions are replaced (None: the body is gone),
    as lists saved before they were checked, or by another program, could be."""

    def __init__(self, db: Database, bodies: dict[str, object]) -> None:
        self.db = db
        self.bodies = bodies

    def _swap(self, doc: Document | None) -> Document | None:
        if doc is None or doc.rev_id not in self.bodies:
            return doc
        body = self.bodies[doc.rev_id]
        return None if body is None else dataclasses.replace(doc, body=body)  # type: ignore[arg-type]

    def get(self, doc_id: str) -> Document | None:
        return self._swap(self.db.get(doc_id))

    def get_revision(self, doc_id: str, rev_id: str) -> Document | None:
        return self._swap(self.db.get_revision(doc_id, rev_id))

    def __getattr__(self, name: str) -> object:
        return getattr(self.db, name)


@pytest.fixture
def history_db(tmp_path: Path) -> Iterator[Database]:
    """A database keeping the bodies of 20 ancestors, as user databases do."""
    database = Database(tmp_path / "history", durable=False, keep_bodies=20)
    yield database
    database.close()


def save_revisions(db: Database, *lists: tuple[str, ...]) -> list[str]:
    revs: list[str] = []
    for names in lists:
        revs.append(db.save(LIST_DOC_ID, list_of(*names), base_rev=revs[-1] if revs else None).rev_id)
    return revs


def list_of(*names: str) -> dict[str, object]:
    return {"type": "list", "items": [{"key": name, "value": 1} for name in names]}


USER_BODIES = [{"items": [{"value": 1}, {"key": "Eggs", "value": "many"}]}, {"items": "notalist"}]


@pytest.mark.parametrize("bad", USER_BODIES)
def test_readers_and_writers_say_the_stored_list_is_damaged(seeded: Database, bad: dict[str, object]) -> None:
    current = seeded.get(LIST_DOC_ID)
    assert current is not None
    damaged: Any = Tampered(seeded, {current.rev_id: bad})
    with pytest.raises(InvalidListError, match="the stored list is damaged: "):
        read_items(damaged)
    for edit in (
        lambda: set_quantity(damaged, "Eggs", 1),
        lambda: add_item(damaged, "Milk", 1),
        lambda: remove_item(damaged, "Eggs"),
        lambda: set_picture(damaged, "Eggs", None),
    ):
        with pytest.raises(InvalidListError, match="the stored list is damaged: "):
            edit()
    assert seeded.get(LIST_DOC_ID) == current


def test_read_items_or_last_valid_on_a_valid_list(seeded: Database) -> None:
    reading = read_items_or_last_valid(seeded)
    assert reading.items == read_items(seeded) and not reading.damaged and reading.problem is None
    assert reading.rev_id == seeded.get(LIST_DOC_ID).rev_id  # type: ignore[union-attr]


def test_read_items_or_last_valid_without_a_list(db: Database) -> None:
    assert read_items_or_last_valid(db) == ListReading([], None, None)
    db.save(LIST_DOC_ID, list_of("a"))
    db.delete(LIST_DOC_ID, base_rev=db.get(LIST_DOC_ID).rev_id)  # type: ignore[union-attr]
    assert read_items_or_last_valid(db) == ListReading([], None, None)


@pytest.mark.parametrize("bad", USER_BODIES)
def test_read_items_or_last_valid_walks_back_to_the_newest_valid_revision(history_db: Database, bad: object) -> None:
    revs = save_revisions(history_db, ("a",), ("a", "b"), ("a", "b", "c"), ("a", "b", "c", "d"))
    # the two newest are damaged: the one before them is shown
    damaged: Any = Tampered(history_db, {revs[3]: bad, revs[2]: {"items": [{"key": "x", "value": -1}]}})
    reading = read_items_or_last_valid(damaged)
    assert [i.key for i in reading.items] == ["a", "b"]
    assert reading.rev_id == revs[1] and reading.damaged
    assert reading.problem is not None and reading.problem.startswith("the stored list is damaged: ")
    assert "last valid revision" in reading.problem
    # nothing valid left: no items, and the problem says so
    nothing: Any = Tampered(history_db, dict.fromkeys(revs, bad))
    reading = read_items_or_last_valid(nothing)
    assert reading.items == [] and reading.rev_id is None
    assert reading.problem is not None and "no earlier valid revision" in reading.problem


def test_read_items_or_last_valid_skips_revisions_whose_bodies_are_gone(history_db: Database) -> None:
    revs = save_revisions(history_db, ("a",), ("a", "b"), ("a", "b", "c"), ("a", "b", "c", "d"))
    reading = read_items_or_last_valid(Tampered(history_db, {revs[3]: {"items": 1}, revs[2]: None}))  # type: ignore[arg-type]
    assert [i.key for i in reading.items] == ["a", "b"] and reading.rev_id == revs[1]
    all_gone: Any = Tampered(history_db, {revs[3]: {"items": 1}, revs[2]: None, revs[1]: None, revs[0]: None})
    reading = read_items_or_last_valid(all_gone)
    assert reading.items == [] and reading.damaged


def test_read_items_or_last_valid_with_the_default_bodies_kept(tmp_path: Path) -> None:
    db = Database(tmp_path / "db", durable=False, keep_bodies=1)
    try:
        revs = save_revisions(db, ("a",), ("a", "b"), ("a", "b", "c"))
        assert db.get_revision(LIST_DOC_ID, revs[0]) is None  # dropped
        reading = read_items_or_last_valid(Tampered(db, {revs[2]: {"items": 1}}))  # type: ignore[arg-type]
        assert [i.key for i in reading.items] == ["a", "b"]
    finally:
        db.close()


def test_read_items_or_last_valid_stops_at_a_deletion(history_db: Database) -> None:
    first = history_db.save(LIST_DOC_ID, list_of("old"))
    gone = history_db.delete(LIST_DOC_ID, base_rev=first.rev_id)
    again = history_db.save(LIST_DOC_ID, list_of("new"), base_rev=gone.rev_id)
    reading = read_items_or_last_valid(Tampered(history_db, {again.rev_id: {"items": 1}}))  # type: ignore[arg-type]
    assert reading.items == [] and reading.damaged


def test_the_inventory_module_does_not_import_the_database() -> None:
    # so that the database can check list revisions with validate_list_revision
    code = "import engine.inventory, sys; assert 'engine.database' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("a_first", [True, False])
def test_of_two_edits_of_one_item_made_apart_the_later_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, a_first: bool
) -> None:
    # two peers edit Eggs from the same list without seeing each other's edit: the stamps are
    # clock times (both above the list's), so the merge keeps the later edit, whichever revision
    # ID is higher (before, both got the same counter and the higher revision ID won)
    peers = [Database(tmp_path / "a"), Database(tmp_path / "b")]
    try:
        for peer in peers:
            save_new_list(peer, [StarterItem("Flour", 3, b"jpeg-a"), StarterItem("Eggs", 12, b"jpeg-b")])
        base = peers[0].get(LIST_DOC_ID)
        assert base is not None
        times = {"a": 1_800_000_000_000, "b": 1_800_000_001_000}  # b one second later
        if not a_first:
            times = {"a": times["b"], "b": times["a"]}
        for name, peer, value in (("a", peers[0], 3), ("b", peers[1], 4)):
            monkeypatch.setattr("engine.list_schema._now_ms", lambda t=times[name]: t)
            set_quantity(peer, "Eggs", value)
        later = 4 if a_first else 3
        bodies = [peer.get(LIST_DOC_ID).body for peer in peers]  # type: ignore[union-attr]
        for high, low in (bodies, bodies[::-1]):
            merged = {item["key"]: item["value"] for item in merge_lists(base.body, high, low)["items"]}
            assert merged == {"Flour": 3, "Eggs": later}
        monkeypatch.setattr("engine.list_schema._now_ms", lambda: 0)  # a clock far behind
        set_quantity(peers[0], "Eggs", 5)  # still above every stamp in its list: the newer state
        assert read_items(peers[0])[1].edit == times["a"] + 1
    finally:
        for peer in peers:
            peer.close()


def test_spaces_around_a_typed_name_are_dropped(seeded: Database) -> None:
    with pytest.raises(InventoryError, match="already exists"):
        add_item(seeded, "  Flour ", 3)  # not a second item that looks like Flour
    set_quantity(seeded, "\u00a0Eggs\u3000", 7)
    add_item(seeded, " Saffron ", 2)
    assert [(i.key, i.value) for i in read_items(seeded)] == [("Flour", 3), ("Eggs", 7), ("Saffron", 2)]


def test_a_stored_name_with_spaces_around_it_is_found_as_typed(db: Database) -> None:
    # a list from elsewhere may hold such names: the exact one is found first, never its neighbour
    db.save(LIST_DOC_ID, {"type": "list", "items": [{"key": "Flour", "value": 3}, {"key": "Flour ", "value": 5}]})
    remove_item(db, "Flour ")
    assert [i.key for i in read_items(db)] == ["Flour"]
    db.save(LIST_DOC_ID, {"type": "list", "items": [{"key": " Tea", "value": 1}]})
    set_quantity(db, " Tea", 2)
    with pytest.raises(InventoryError, match="no item named 'Tea'"):
        set_quantity(db, "Tea", 4)  # another name
    assert [(i.key, i.value) for i in read_items(db)] == [(" Tea", 2)]
