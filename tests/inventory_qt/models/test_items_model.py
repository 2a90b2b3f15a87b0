from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtTest import QAbstractItemModelTester
from pytestqt.qtbot import QtBot

from engine.blobs import Blob, digest_of
from engine.inventory import Item
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
