"""The List tab: validated quantity editing, saving one revision, edits that survive a peer's change,
clashes and conflicts settled by the user, pictures, adding and removing, keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from engine import pictures
from engine.database import RevisionInsert
from engine.documents import canonical_json
from engine.inventory import LIST_DOC_ID, list_body, read_items, set_quantity
from engine.revid import make_rev_id
from inventory_qt.list_draft import RowState
from inventory_qt.models.items_model import UNSAVED_MARK, Column
from inventory_qt.ui.delegates import QuantityEditor
from inventory_qt.ui.list_tab import AddItemDialog, ListTab
from inventory_qt.ui.main_window import MainWindow
from tests.inventory_qt.conftest import wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


@asynccontextmanager
async def list_tab(qtbot: QtBot, data_dir: Path, user: str = "alice") -> AsyncIterator[ListTab]:
    window = MainWindow(data_dir)
    qtbot.addWidget(window)
    window.show()
    await window.sign_in(user, "pw")
    assert window.list_tab is not None
    try:
        yield window.list_tab
    finally:
        await window.log_out()


def shown(tab: ListTab) -> dict[str, int]:
    model = tab.model
    return {model.draft_row(r).key: model.draft_row(r).item.value for r in range(model.rowCount())}  # type: ignore[union-attr]


async def test_editing_a_quantity_and_saving_makes_a_new_revision(qtbot: QtBot, data_dir: Path) -> None:
    async with list_tab(qtbot, data_dir) as tab:
        db = tab.session.db
        before = db.get(LIST_DOC_ID)
        tab.select_item("Flour")
        tab.edit_quantity()
        editor = tab.view.findChild(QuantityEditor)
        assert editor is not None
        editor.lineEdit().selectAll()
        qtbot.keyClicks(editor, "4x2 -")  # only digits get in
        assert editor.text() == "42"
        qtbot.keyClick(editor, Qt.Key.Key_Return)  # commits (queued by the delegate), no newline
        await wait_until(lambda: shown(tab)["Flour"] == 42)
        row = tab.model.row_for("Flour")
        assert tab.model.data(tab.model.index(row, Column.NAME)) == UNSAVED_MARK + "Flour"
        assert tab.save_button.isEnabled() and db.get(LIST_DOC_ID) == before  # nothing saved yet
        rev = await tab.save()
        after = db.get(LIST_DOC_ID)
        assert before is not None and after is not None and rev == after.rev_id
        assert int(after.rev_id.split("-")[0]) == int(before.rev_id.split("-")[0]) + 1
        assert {i.key: i.value for i in read_items(db)}["Flour"] == 42
        assert not tab.model.dirty and not tab.save_button.isEnabled()
        assert tab.model.data(tab.model.index(row, Column.NAME)) == "Flour"


async def test_an_invalid_quantity_cannot_be_entered(qtbot: QtBot, data_dir: Path) -> None:
    async with list_tab(qtbot, data_dir) as tab:
        before = shown(tab)
        tab.select_item("Flour")
        tab.edit_quantity()
        editor = tab.view.findChild(QuantityEditor)
        assert editor is not None
        editor.lineEdit().selectAll()
        qtbot.keyClicks(editor, "abc -+.")
        assert editor.text() == str(before["Flour"])  # refused key by key: the value stays
        index = tab.proxy.mapFromSource(tab.model.index(tab.model.row_for("Flour"), Column.QUANTITY))
        assert not tab.proxy.setData(index, "lots") and not tab.proxy.setData(index, -3)
        qtbot.keyClick(editor, Qt.Key.Key_Escape)
        assert shown(tab) == before and not tab.model.dirty


async def test_unsaved_edits_survive_an_incoming_change_to_another_item(qtbot: QtBot, data_dir: Path) -> None:
    async with list_tab(qtbot, data_dir) as tab:
        session = tab.session
        tab.model.setData(tab.model.index(tab.model.row_for("Flour"), Column.QUANTITY), 5)
        await session.run(set_quantity, session.db, "Sugar", 77)  # another writer (a peer, another window)
        await wait_until(lambda: shown(tab)["Sugar"] == 77)
        assert shown(tab)["Flour"] == 5 and tab.model.draft_row(tab.model.row_for("Flour")).state is RowState.EDITED
        # the same item changed on both sides: marked, and the user picks
        await session.run(set_quantity, session.db, "Flour", 1)
        await wait_until(lambda: tab.model.draft.clashes == ["Flour"])
        assert tab.banner.isVisible() or not tab.isVisible()
        with pytest.raises(Exception, match="Keep mine or Take theirs"):
            tab.model.draft.save_request()
        tab.settle("Flour", keep=True)
        await tab.save()
        assert {i.key: i.value for i in read_items(session.db)} | {} == {
            **{i.key: i.value for i in read_items(session.db)},
            "Flour": 5,
            "Sugar": 77,
        }


async def test_a_conflict_between_peers_is_shown_and_the_user_picks(qtbot: QtBot, data_dir: Path) -> None:
    async with list_tab(qtbot, data_dir) as tab:
        db = tab.session.db
        doc = db.get(LIST_DOC_ID)
        tree = db.get_tree(LIST_DOC_ID)
        assert doc is not None and tree is not None
        items = read_items(db)
        theirs = [
            item if item.key not in ("Flour", "Sugar") else type(item)(item.key, item.value + 100, item.image, 99)
            for item in items
        ]
        body = list_body(theirs, doc.body)
        rev = make_rev_id(
            tree.history(doc.rev_id)[1] if len(tree.history(doc.rev_id)) > 1 else None, False, canonical_json(body)
        )
        if rev.split("-")[0] != doc.rev_id.split("-")[0]:  # a sibling of the current revision, as a peer's
            rev = f"{doc.rev_id.split('-')[0]}-{'f' * 40}"
        history = tree.history(doc.rev_id)[1:]
        await tab.session.run(db.insert_revisions, [RevisionInsert(LIST_DOC_ID, rev, history, body)])
        await wait_until(lambda: len(tab.model.draft.clashes) == 2)
        assert db.get(LIST_DOC_ID).conflicted  # type: ignore[union-attr]
        row = tab.model.draft_row(tab.model.row_for("Flour"))
        assert row.state is RowState.CLASH and row.theirs is not None and row.theirs.value == row.item.value + 100  # type: ignore[union-attr]
        tab.settle("Flour", keep=False)
        tab.settle("Sugar", keep=True)
        assert tab.model.draft.clashes == [] and tab.save_button.isEnabled()
        mine_sugar = shown(tab)["Sugar"]
        await tab.save()
        current = db.get(LIST_DOC_ID)
        assert current is not None and not current.conflicted
        values = {i.key: i.value for i in read_items(db)}
        assert values["Flour"] == row.theirs.value and values["Sugar"] == mine_sugar


async def test_pictures_add_remove_and_keys(
    qtbot: QtBot, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with list_tab(qtbot, data_dir) as tab:
        db = tab.session.db
        big = tmp_path / "big.png"
        Image.new("RGB", (2000, 1000), (200, 30, 30)).save(big)
        await tab.set_picture_from("Flour", big)
        row = tab.model.draft_row(tab.model.row_for("Flour"))
        assert row.state is RowState.EDITED and row.item is not None and row.item.image is not None
        # add an item (a taken name cannot be chosen), remove another with Delete
        dialog = tab.ask_new_item()
        assert isinstance(dialog, AddItemDialog)
        dialog.name.setText("Flour")
        assert not dialog.buttons.button(dialog.buttons.StandardButton.Ok).isEnabled()
        dialog.name.setText("Tea")
        dialog.quantity.setValue(3)
        dialog.accept()
        tab.select_item("Sugar")
        qtbot.keyClick(tab.view, Qt.Key.Key_Delete)
        tab.select_item("Rice")
        qtbot.keyClick(tab.view, Qt.Key.Key_Plus)
        qtbot.keyClick(tab.view, Qt.Key.Key_Plus)
        qtbot.keyClick(tab.view, Qt.Key.Key_Minus)
        rice = shown(tab)["Rice"]
        assert tab.model.draft_row(tab.model.row_for("Sugar")).state is RowState.REMOVED
        await tab.save()
        stored = {i.key: i for i in read_items(db)}
        assert "Sugar" not in stored and stored["Tea"].value == 3 and stored["Rice"].value == rice
        image = stored["Flour"].image
        assert image is not None
        with Image.open(__import__("io").BytesIO(db.read_blob(image.digest))) as picture:
            assert picture.format == "JPEG" and max(picture.size) == 1024
        # a file above the size cap is refused in words
        monkeypatch.setattr(pictures, "MAX_PICTURE_FILE", 100)
        await tab.set_picture_from("Rice", big)
        boxes = [box for box in tab.findChildren(QMessageBox) if box.objectName() == "errorBox"]
        assert boxes and "at most" in boxes[-1].text()
        assert not tab.model.dirty
        # Ctrl+F searches
        assert any(s.key() == QKeySequence(QKeySequence.StandardKey.Find) for s in tab.findChildren(QShortcut))
        tab.focus_search()
        qtbot.keyClicks(tab.search, "ric")
        assert tab.proxy.rowCount() == 1
