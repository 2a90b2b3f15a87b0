"""The sign-in screen: user name and password; Sign In only when both are filled; Return moves on."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["LoginWidget"]


class LoginWidget(QWidget):
    """Asks for a user name and a password; :attr:`signInRequested` carries them."""

    signInRequested = Signal(str, str)  # noqa: N815

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("<h2>Inventory Sync</h2>")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint = QLabel(
            "Sign in to open your inventory on this computer. A new name starts a new inventory. "
            "Your password is also what other devices use to sync with you; it is not stored."
        )
        hint.setWordWrap(True)
        self.user = QLineEdit()
        self.user.setObjectName("user")
        self.user.setMaxLength(64)
        self.password = QLineEdit()
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.sign_in_button = QPushButton("Sign &In")
        self.sign_in_button.setDefault(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy: opening or creating takes as long as it takes
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setAlignment(Qt.AlignmentFlag.AlignCenter)
        form = QFormLayout()
        form.addRow("&User name:", self.user)
        form.addRow("&Password:", self.password)
        box = QWidget()
        box.setMaximumWidth(420)
        inner = QVBoxLayout(box)
        inner.addWidget(title)
        inner.addWidget(hint)
        inner.addLayout(form)
        inner.addWidget(self.sign_in_button)
        inner.addWidget(self.progress)
        inner.addWidget(self.status)
        # centred by stretches, not by an alignment flag: an aligned widget gets the height of its
        # size hint, too short for the wrapped hint at the width it is given (its last line was cut)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(box, 4)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addLayout(row)
        layout.addStretch(2)
        self.user.textChanged.connect(self._update)
        self.password.textChanged.connect(self._update)
        self.user.returnPressed.connect(self.password.setFocus)
        self.password.returnPressed.connect(self.submit)
        self.sign_in_button.clicked.connect(self.submit)
        self._busy = False
        self._update()

    def _update(self) -> None:
        ready = bool(self.user.text().strip()) and bool(self.password.text())
        self.sign_in_button.setEnabled(ready and not self._busy)

    def submit(self) -> None:
        """Sign in if both fields are filled (Return in the password field)."""
        if self.sign_in_button.isEnabled():
            self.signInRequested.emit(self.user.text().strip(), self.password.text())

    def set_busy(self, busy: bool, text: str = "") -> None:
        """Show the progress indicator (and lock the fields) while signing in or out."""
        self._busy = busy
        self.progress.setVisible(busy)
        self.user.setEnabled(not busy)
        self.password.setEnabled(not busy)
        self.status.setStyleSheet("")
        self.status.setText(text)
        self._update()

    def show_problem(self, text: str) -> None:
        """Say why signing in failed."""
        self.set_busy(False)
        self.status.setStyleSheet("color: #c62828")
        self.status.setText(text)

    def reset(self, user: str = "") -> None:
        """Back to an empty form (after Log Out the password is gone)."""
        self.set_busy(False)
        self.user.setText(user)
        self.password.clear()
        (self.password if user else self.user).setFocus()
