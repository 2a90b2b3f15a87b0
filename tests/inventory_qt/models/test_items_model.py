"""The items model and its proxy: Qt's model tester, in-place updates, quantity validation, search and sort."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtTest import QAbstractItemModelTester
from pytestqt.qtbot import QtBot

from engine.blobs import Blob, digest_of
from engine.inventory import MAX_QUANTITY, Item
from inventory_qt.list_draft import ListState, RowState
from inventory_qt.models.items_model import UNSAVED_MARK, Column, ItemRole, ItemsModel, ItemsProxyModel

FATAL = QAbstractItemModelTester.FailureReportingMode.Fatal
BLOB = Blob(digest_of(b"x"), 1, "image/jpeg")


def quantities(model: ItemsModel) -> dict[str, int]:
    return {
        model.data(model.index(r, 0), ItemRole.KEY): model.data(model.index(r, 0), ItemRole.QUANTITY)
        for r in range(model.rowCount())
    }  # type: ignore[misc]


def test_model_passes_the_qt_model_tester_through_edits_and_rebases(qtbot: QtBot) -> None:
    model = ItemsModel()
    QAbstractItemModelTester(model, FATAL)
    model.set_items([Item("Flour", 3, BLOB), Item("Eggs", 12)])
    assert model.rowCount() == 2 and model.columnCount() == 3
    assert model.data(model.index(0, Column.NAME)) == "Flour"
    assert model.data(model.index(1, Column.QUANTITY)) == "12"
    assert model.data(model.index(0, 0), ItemRole.DIGEST) == BLOB.digest
    assert model.headerData(1, Qt.Orientation.Horizontal) == "Quantity"
    assert model.rowCount(model.index(0, 0)) == 0
    assert model.setData(model.index(0, Column.QUANTITY), 4)
    assert model.data(model.index(0, Column.NAME)) == UNSAVED_MARK + "Flour"
    assert model.data(model.index(0, Column.STATE)) == "Unsaved" and model.dirty
    model.edit(lambda draft: draft.add_item("Milk", 1))
    model.edit(lambda draft: draft.remove_item("Eggs"))
    assert model.data(model.index(1, 0), ItemRole.STATE) == RowState.REMOVED
    assert not model.flags(model.index(1, Column.QUANTITY)) & Qt.ItemFlag.ItemIsEditable
    persistent = QPersistentModelIndex(model.index(0, 0))
    # a peer's change: Eggs removed there (removed here too: agreed), Rice added, Flour changed (clash)
    model.set_state(ListState((Item("Rice", 5), Item("Flour", 9, edit=1)), "2-b"))
    assert [model.data(model.index(r, 0), ItemRole.KEY) for r in range(model.rowCount())] == ["Rice", "Flour", "Milk"]
    assert persistent.isValid() and persistent.data(ItemRole.KEY) == "Flour"  # the view's place survives
    assert model.data(model.index(1, 0), ItemRole.STATE) == RowState.CLASH
    assert model.data(model.index(1, Column.QUANTITY)) == "4 (theirs: 9)"
    model.edit(lambda draft: draft.take_theirs("Flour"))
    model.edit(lambda draft: draft.revert())
    assert quantities(model) == {"Rice": 5, "Flour": 9} and not model.dirty
    model.set_state(ListState((), None))
    assert model.rowCount(QModelIndex()) == 0


def test_an_invalid_quantity_cannot_be_set(qtbot: QtBot) -> None:
    model = ItemsModel()
    model.set_items([Item("Flour", 3)])
    index = model.index(0, Column.QUANTITY)
    for bad in ("abc", "-1", -1, "1\n2", 2.5, None, True, MAX_QUANTITY + 1, "", " "):
        assert not model.setData(index, bad), bad
    assert quantities(model) == {"Flour": 3} and not model.dirty
    assert not model.setData(model.index(0, Column.NAME), 7)  # names are not edited here
    assert model.setData(index, "12") and quantities(model) == {"Flour": 12}
    model.step(0, -100)
    assert quantities(model) == {"Flour": 0}


def test_a_damaged_list_shows_its_problem(qtbot: QtBot) -> None:
    model = ItemsModel()
    errors: list[str] = []
    model.errorChanged.connect(errors.append)
    model.set_state(ListState((Item("Flour", 3),), "3-c", "the stored list is damaged: item 1 has no key"))
    assert model.error_text.startswith("the stored list is damaged") and model.property("errorText") == model.error_text
    model.set_state(ListState((Item("Flour", 3),), "4-d"))
    assert errors[-1] == "" and model.error_text == ""


def test_the_proxy_searches_and_sorts(qtbot: QtBot) -> None:
    model = ItemsModel()
    proxy = ItemsProxyModel()
    proxy.setSourceModel(model)
    QAbstractItemModelTester(proxy, FATAL)
    model.set_items([Item("flour", 30), Item("Eggs", 4), Item("Rice flour", 100)])
    proxy.sort(Column.QUANTITY, Qt.SortOrder.AscendingOrder)
    assert [proxy.index(r, Column.QUANTITY).data(ItemRole.QUANTITY) for r in range(3)] == [
        4,
        30,
        100,
    ]  # numbers, not text
    proxy.sort(Column.NAME, Qt.SortOrder.AscendingOrder)
    assert [proxy.index(r, 0).data(ItemRole.KEY) for r in range(3)] == ["Eggs", "flour", "Rice flour"]
    proxy.set_search("FLOUR ")
    assert [proxy.index(r, 0).data(ItemRole.KEY) for r in range(proxy.rowCount())] == ["flour", "Rice flour"]
    model.edit(lambda draft: draft.add_item("Cornflour", 1))
    assert proxy.rowCount() == 3
    proxy.set_search("")
    assert proxy.rowCount() == 4
