from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from engine.seeding import load_starter_inventory
from engine.userdata import open_user_database
from inventory_qt.app import MainWindow


def test_main_window_shows_the_users_list(qtbot: QtBot, tmp_path: Path) -> None:
    with open_user_database("bob", tmp_path) as db:
        window = MainWindow(db, "bob")
        qtbot.addWidget(window)
        window.show()
        assert "bob" in window.windowTitle()
        assert window.model.rowCount() == len(load_starter_inventory())
