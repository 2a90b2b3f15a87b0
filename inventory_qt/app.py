"""Application entry point: a main window over the signed-in user's inventory."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtWidgets import QApplication, QHeaderView, QMainWindow, QTableView

from engine.database import Database
from engine.userdata import open_user_database
from inventory_qt import platform_check
from inventory_qt.models.items_model import ItemsModel

__all__ = ["MainWindow", "main"]


class MainWindow(QMainWindow):
    """The inventory list of one user's database."""

    def __init__(self, db: Database, user: str) -> None:
        super().__init__()
        self.setWindowTitle(f"Inventory Sync — {user}")
        self.model = ItemsModel()
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.view.verticalHeader().hide()
        self.setCentralWidget(self.view)
        self.resize(420, 560)
        self.model.load(db)  # a damaged list shows its last valid revision, never a traceback


def main(argv: Sequence[str] | None = None) -> int:
    """Start the app; return its exit code."""
    parser = argparse.ArgumentParser(prog="inventory-sync-app")
    parser.add_argument("--user", default=getpass.getuser())
    parser.add_argument("--data-dir", type=Path, default=None)
    args, qt_args = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    problem = platform_check.check()
    if problem is not None:  # Qt would abort with a misleading message
        sys.stderr.write(f"inventory-sync-app: {problem}\n")
        return 1
    app = QApplication([sys.argv[0], *qt_args])
    app.setApplicationName("Inventory Sync")
    db = open_user_database(args.user, args.data_dir)
    try:
        window = MainWindow(db, args.user)
        window.show()
        return app.exec()
    finally:
        db.close()
