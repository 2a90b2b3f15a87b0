"""The Settings dialog as it first opens."""

from __future__ import annotations

from PySide6.QtWidgets import QLineEdit
from pytestqt.qtbot import QtBot

from inventory_qt.settings import Settings
from inventory_qt.ui.settings_dialog import SettingsDialog


def test_every_placeholder_fits_its_field(qtbot: QtBot) -> None:
    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    fields = [edit for edit in dialog.findChildren(QLineEdit) if edit.placeholderText() and edit.isVisible()]
    assert fields
    for edit in fields:
        room = edit.contentsRect().width() - edit.textMargins().left() - edit.textMargins().right() - 8
        assert edit.fontMetrics().horizontalAdvance(edit.placeholderText()) <= room, edit.placeholderText()
