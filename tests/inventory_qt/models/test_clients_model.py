"""The connected-clients model under Qt's model tester."""

from __future__ import annotations

from PySide6.QtTest import QAbstractItemModelTester
from pytestqt.qtbot import QtBot

from inventory_qt.models.clients_model import ClientsModel


def test_clients_come_and_go(qtbot: QtBot) -> None:
    model = ClientsModel()
    QAbstractItemModelTester(model, QAbstractItemModelTester.FailureReportingMode.Fatal)
    model.client_connected("127.0.0.1:50000", "bob", 0.0)
    model.client_connected("[::1]:50001", None, 0.0)
    assert model.rowCount() == 2 and model.data(model.index(0, 0)) == "bob"
    assert model.data(model.index(1, 0)) == "(anonymous)" and model.data(model.index(1, 1)) == "[::1]:50001"
    model.client_disconnected("127.0.0.1:50000")
    assert model.rowCount() == 1
    model.clear()
    assert model.rowCount() == 0
