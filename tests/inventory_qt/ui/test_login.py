"""The sign-in screen: Sign In only with both fields; Return moves on, then signs in."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot

from inventory_qt.ui.login import LoginWidget


def test_sign_in_needs_both_fields_and_return_moves_on(qtbot: QtBot) -> None:
    login = LoginWidget()
    qtbot.addWidget(login)
    login.show()
    requests: list[tuple[str, str]] = []
    login.signInRequested.connect(lambda user, password: requests.append((user, password)))
    assert not login.sign_in_button.isEnabled()
    login.user.setFocus()
    qtbot.keyClicks(login.user, "alice")
    assert not login.sign_in_button.isEnabled()
    qtbot.keyClick(login.user, Qt.Key.Key_Return)
    assert login.focusWidget() is login.password and requests == []
    qtbot.keyClicks(login.password, "pw")
    assert login.sign_in_button.isEnabled()
    login.user.setText("   ")
    assert not login.sign_in_button.isEnabled()  # a name of spaces is no name
    login.user.setText(" alice ")
    qtbot.keyClick(login.password, Qt.Key.Key_Return)
    assert requests == [("alice", "pw")]
    login.set_busy(True, "Opening your inventory\u2026")
    assert not login.sign_in_button.isEnabled() and not login.user.isEnabled() and login.progress.isVisible()
    login.show_problem("Wrong.")
    assert login.sign_in_button.isEnabled() and not login.progress.isVisible() and login.status.text() == "Wrong."
    login.reset("alice")
    assert login.password.text() == "" and login.user.text() == "alice"


def test_the_explanation_is_shown_whole_at_any_window_size(qtbot: QtBot) -> None:
    login = LoginWidget()
    qtbot.addWidget(login)
    login.show()
    hint = next(label for label in login.findChildren(QLabel) if "Sign in to open" in label.text())
    for width, height in ((860, 620), (500, 400), (1400, 900)):
        login.resize(width, height)
        qtbot.waitUntil(lambda w=width, h=height: login.size() == QSize(w, h))
        QApplication.processEvents()
        assert hint.height() >= hint.heightForWidth(hint.width())  # every wrapped line fits
