from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtTest import QAbstractItemModelTester
from pytestqt.qtbot import QtBot

from engine.blobs import Blob, digest_of
from engine.database import Database
from engine.documents import Document
from engine.errors import StorageError
from engine.inventory import LIST_DOC_ID, Item, set_quantity
from engine.revtree import RevTree
from inventory_qt.models.items_model import ItemRole, ItemsModel


def test_model_passes_the_qt_model_tester(qtbot: QtBot) -> None:
    model = ItemsModel()
    QAbstractItemModelTester(model, QAbstractItemModelTester.FailureReportingMode.Fatal)
    blob = Blob(digest_of(b"x"), 1, "image/jpeg")
    model.set_items([Item("Flour", 3, blob), Item("Eggs", 12)])
    assert model.rowCount() == 2 and model.columnCount() == 2
    assert model.data(model.index(0, 0)) == "Flour"
    assert model.data(model.index(1, 1)) == 12
    assert model.data(model.index(0, 0), ItemRole.DIGEST) == blob.digest
    assert model.data(model.index(1, 0), ItemRole.ITEM) == Item("Eggs", 12)
    assert model.headerData(1, Qt.Orientation.Horizontal) == "Quantity"
    assert model.rowCount(model.index(0, 0)) == 0
    model.set_items([])
    assert model.rowCount(QModelIndex()) == 0


class DamagedList:
    """A database whose current list (and, with ``older``, the revision before) is malformed,
    as a list stored before lists were checked could be."""

    def __init__(self, db: Database, bad: dict[str, object], *, older: bool = False) -> None:
        self.db = db
        self.bad = bad
        tree = db.get_tree(LIST_DOC_ID)
        current = db.get(LIST_DOC_ID)
        assert tree is not None and current is not None
        self.damaged = set(tree.history(current.rev_id)[: 2 if older else 1])

    def get(self, doc_id: str) -> Document | None:
        doc = self.db.get(doc_id)
        return dataclasses.replace(doc, body=self.bad) if doc and doc.rev_id in self.damaged else doc

    def get_revision(self, doc_id: str, rev_id: str) -> Document | None:
        doc = self.db.get_revision(doc_id, rev_id)
        return dataclasses.replace(doc, body=self.bad) if doc and rev_id in self.damaged else doc

    def get_tree(self, doc_id: str) -> RevTree | None:
        return self.db.get_tree(doc_id)


class Unreadable:
    def get(self, doc_id: str) -> Document | None:
        raise StorageError("disk on fire")


def test_a_damaged_list_shows_its_last_valid_items_and_says_so(qtbot: QtBot, tmp_path: Path) -> None:
    db = Database(tmp_path / "db", durable=False, keep_bodies=20)
    try:
        db.save(LIST_DOC_ID, {"type": "list", "items": [{"key": "Flour", "value": 3}]})
        set_quantity(db, "Flour", 4)
        model = ItemsModel()
        QAbstractItemModelTester(model, QAbstractItemModelTester.FailureReportingMode.Fatal)
        errors: list[str] = []
        model.errorChanged.connect(errors.append)
        model.load(db)
        assert model.rowCount() == 1 and model.data(model.index(0, 1)) == 4
        assert model.error_text == "" and errors == []
        for bad in ({"items": [{"value": 1}, {"key": "Eggs", "value": "many"}]}, {"items": "notalist"}):
            model.load(DamagedList(db, bad))  # type: ignore[arg-type]
            assert model.rowCount() == 1 and model.data(model.index(0, 1)) == 3  # the revision before
            assert model.error_text.startswith("the stored list is damaged: ")
            assert model.property("errorText") == model.error_text
        model.load(DamagedList(db, {"items": "notalist"}, older=True))  # type: ignore[arg-type]
        assert model.rowCount() == 0 and "no earlier valid revision" in model.error_text  # nothing valid left
        model.load(Unreadable())  # type: ignore[arg-type]
        assert model.rowCount() == 0 and "disk on fire" in model.error_text
        model.load(db)
        assert model.rowCount() == 1 and model.error_text == ""
        assert errors[0].startswith("the stored list is damaged: ") and errors[-1] == ""
    finally:
        db.close()
