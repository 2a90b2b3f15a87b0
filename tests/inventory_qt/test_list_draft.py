"""The draft of unsaved edits: rebasing onto a peer's change keeps local edits, marks clashes; saving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.database import Database
from engine.errors import InventoryError
from engine.inventory import LIST_DOC_ID, Item, read_items, set_quantity
from engine.userdata import open_database
from inventory_qt.list_draft import ListDraft, ListState, RowState, read_list_state, save_draft

FLOUR, EGGS, MILK = Item("Flour", 3), Item("Eggs", 12), Item("Milk", 2)


def state(*items: Item, rev: str = "1-a") -> ListState:
    return ListState(tuple(items), rev)


def by_key(draft: ListDraft) -> dict[str, tuple[RowState, int | None, int | None]]:
    return {
        row.key: (row.state, row.item.value if row.item else None, row.theirs.value if row.theirs else None)
        for row in draft.rows()
    }


def test_local_edits_survive_a_change_to_another_item() -> None:
    draft = ListDraft()
    draft.rebase(state(FLOUR, EGGS))
    draft.set_quantity("Flour", 5)
    draft.rebase(state(FLOUR, Item("Eggs", 6, edit=1), rev="2-b"))
    assert by_key(draft) == {"Flour": (RowState.EDITED, 5, None), "Eggs": (RowState.SAVED, 6, None)}
    assert draft.dirty and draft.clashes == []


def test_an_item_changed_on_both_sides_is_marked_and_either_side_can_win() -> None:
    draft = ListDraft()
    draft.rebase(state(FLOUR, EGGS))
    draft.set_quantity("Flour", 5)
    draft.rebase(state(Item("Flour", 9, edit=1), EGGS, rev="2-b"))
    assert by_key(draft)["Flour"] == (RowState.CLASH, 5, 9)
    with pytest.raises(InventoryError, match="Keep mine or Take theirs"):
        draft.save_request()
    draft.keep_mine("Flour")
    assert by_key(draft)["Flour"] == (RowState.EDITED, 5, None)
    request = draft.save_request()
    assert request.edits["Flour"].value == 5 and request.base["Flour"].value == 9
    draft.set_quantity("Flour", 6)
    draft.rebase(state(Item("Flour", 1, edit=2), EGGS, rev="3-c"))
    draft.take_theirs("Flour")
    assert by_key(draft)["Flour"] == (RowState.SAVED, 1, None) and not draft.dirty


def test_the_same_change_on_both_sides_is_no_clash() -> None:
    draft = ListDraft()
    draft.rebase(state(FLOUR, EGGS))
    draft.set_quantity("Flour", 9)
    draft.remove_item("Eggs")
    draft.rebase(state(Item("Flour", 9, edit=1), rev="2-b"))
    assert by_key(draft) == {"Flour": (RowState.SAVED, 9, None)} and not draft.dirty


def test_removed_there_edited_here_can_be_kept() -> None:
    draft = ListDraft()
    draft.rebase(state(FLOUR, EGGS))
    draft.set_quantity("Eggs", 7)
    draft.rebase(state(FLOUR, rev="2-b"))
    assert by_key(draft)["Eggs"] == (RowState.CLASH, 7, None)
    draft.keep_mine("Eggs")
    assert by_key(draft)["Eggs"] == (RowState.ADDED, 7, None)


def test_add_remove_undo_and_revert() -> None:
    draft = ListDraft()
    draft.rebase(state(FLOUR))
    draft.add_item("Milk", 2)
    with pytest.raises(InventoryError, match="already exists"):
        draft.add_item("Milk", 1)
    draft.remove_item("Flour")
    assert by_key(draft) == {"Flour": (RowState.REMOVED, 3, None), "Milk": (RowState.ADDED, 2, None)}
    draft.remove_item("Milk")  # an item added here goes at once
    assert "Milk" not in by_key(draft)
    draft.undo("Flour")
    assert not draft.dirty
    draft.set_quantity("Flour", 4)
    assert draft.step("Flour", -10, 100) == 0
    draft.set_quantity("Flour", 3)  # back to what is stored: nothing to save
    assert not draft.dirty
    draft.set_picture("Flour", b"\xff\xd8jpeg")
    assert draft.dirty and draft.picture(draft.rows()[0].item.image.digest)  # type: ignore[union-attr]
    draft.revert()
    assert not draft.dirty and by_key(draft) == {"Flour": (RowState.SAVED, 3, None)}


@pytest.fixture
def listdb(tmp_path: Path) -> Iterator[Database]:
    db = open_database(tmp_path / "db")
    db.save(LIST_DOC_ID, {"type": "list", "items": [FLOUR.to_dict(), EGGS.to_dict()]})
    yield db
    db.close()


def test_save_writes_one_revision_with_every_edit(listdb: Database) -> None:
    draft = ListDraft()
    draft.rebase(read_list_state(listdb))
    before = listdb.get(LIST_DOC_ID)
    draft.set_quantity("Flour", 5)
    draft.add_item("Milk", 2)
    draft.remove_item("Eggs")
    draft.set_picture("Milk", b"\xff\xd8not really a jpeg")
    request = draft.save_request()
    result = save_draft(listdb, request)
    after = listdb.get(LIST_DOC_ID)
    assert before is not None and after is not None and result.rev_id == after.rev_id
    assert int(after.rev_id.split("-")[0]) == int(before.rev_id.split("-")[0]) + 1
    items = read_items(listdb)
    assert [(i.key, i.value) for i in items] == [("Flour", 5), ("Milk", 2)]
    assert items[1].image is not None and listdb.has_blob(items[1].image.digest)
    assert items[0].edit == items[1].edit > 0  # one edit stamp for the save
    draft.saved(request, result)
    assert not draft.dirty and draft.rev_id == after.rev_id


def test_a_save_over_a_change_to_an_edited_item_saves_nothing(listdb: Database) -> None:
    draft = ListDraft()
    draft.rebase(read_list_state(listdb))
    draft.set_quantity("Flour", 5)
    request = draft.save_request()
    set_quantity(listdb, "Eggs", 1)  # another item: the save goes on top
    result = save_draft(listdb, request)
    assert result.rev_id is not None
    draft.saved(request, result)
    assert not draft.dirty and {i.key: i.value for i in read_items(listdb)} == {"Flour": 5, "Eggs": 1}
    draft.set_quantity("Flour", 6)
    request = draft.save_request()
    set_quantity(listdb, "Flour", 8)  # the edited item: nothing saved, the caller rebases
    result = save_draft(listdb, request)
    assert result.rev_id is None and {i.key: i.value for i in read_items(listdb)}["Flour"] == 8
    draft.saved(request, result)
    assert draft.clashes == ["Flour"]
