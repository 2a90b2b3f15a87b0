"""The trust-on-first-use question: a peer's certificate is new, or not the one trusted before.

Shown by the Browser tab when a replication stops with
:class:`~engine.replication.errors.CertificateNotTrustedError` (first use: "Trust
this peer?") or :class:`~engine.replication.errors.CertificateChangedError` (a
warning with the old and the new fingerprint). Fingerprints are in read-only
fields, selectable and copyable, to compare with what the peer's Listener tab
shows. A changed certificate is refused unless the user ticks that they
checked the new fingerprint and then presses "Trust the new certificate";
Cancel (the default button, also Escape) refuses. Opened with ``open()``,
answered through :attr:`QDialog.finished`, never waited for.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.replication.errors import CertificateChangedError, CertificateRefusedError

__all__ = ["TrustDialog"]


def _fingerprint_field(fingerprint: str, name: str) -> tuple[QLineEdit, QHBoxLayout]:
    field = QLineEdit(fingerprint)
    field.setObjectName(name)
    field.setReadOnly(True)
    field.setCursorPosition(0)
    field.setMinimumWidth(field.fontMetrics().horizontalAdvance(fingerprint) // 2)
    copy = QPushButton("Copy")
    copy.setObjectName(f"{name}Copy")
    copy.setAutoDefault(False)
    copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(fingerprint))
    row = QHBoxLayout()
    row.addWidget(field, 1)
    row.addWidget(copy)
    return field, row


class TrustDialog(QDialog):
    """Asks whether to trust a peer's certificate (see the module docstring).

    Args:
        peer: how the peer is named to the user (its name and address).
        error: the refusal, carrying ``seen_fingerprint`` (and, when changed, the old one).
    """

    def __init__(self, peer: str, error: CertificateRefusedError, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.error = error
        self.changed = isinstance(error, CertificateChangedError)
        self.fingerprint = error.seen_fingerprint or ""
        self.setWindowTitle("Certificate changed" if self.changed else "Trust this peer?")
        self.setObjectName("trustDialog")
        self.setWindowModality(Qt.WindowModality.WindowModal)
        layout = QVBoxLayout(self)
        message = QLabel()
        message.setObjectName("trustMessage")
        message.setWordWrap(True)
        message.setTextFormat(Qt.TextFormat.PlainText)
        form = QFormLayout()
        self.new_field, new_row = _fingerprint_field(self.fingerprint, "newFingerprint")
        self.old_field: QLineEdit | None = None
        self.checked_box: QCheckBox | None = None
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        if self.changed:
            assert isinstance(error, CertificateChangedError)
            message.setText(
                f"\u26a0 The certificate of {peer} is not the one you trusted before.\n\n"
                "Someone may be pretending to be this peer to read or change your inventory. If the peer's "
                "owner made a new identity, check the new fingerprint with them (their Listener tab shows "
                "it) before accepting it."
            )
            message.setStyleSheet("color: #c62828")
            self.old_field, old_row = _fingerprint_field(error.old_fingerprint, "oldFingerprint")
            form.addRow("Trusted before (SHA-256):", old_row)
            form.addRow("Shown now (SHA-256):", new_row)
            self.checked_box = QCheckBox("I checked the new fingerprint with the peer's owner")
            self.trust_button = buttons.addButton("Trust the new certificate", QDialogButtonBox.ButtonRole.AcceptRole)
            self.trust_button.setEnabled(False)
            self.checked_box.toggled.connect(self.trust_button.setEnabled)
        else:
            message.setText(
                f"{peer} shows a certificate this computer has not seen before.\n\n"
                "Compare its fingerprint with the one the peer's Listener tab shows. Trust it only if "
                "they match; it is then remembered, and a different certificate will be refused."
            )
            form.addRow("SHA-256 fingerprint:", new_row)
            self.trust_button = buttons.addButton("Trust", QDialogButtonBox.ButtonRole.AcceptRole)
        self.trust_button.setObjectName("trustButton")
        self.cancel_button = buttons.button(QDialogButtonBox.StandardButton.Cancel)
        self.cancel_button.setDefault(True)
        self.trust_button.setAutoDefault(False)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(message)
        layout.addLayout(form)
        if self.checked_box is not None:
            layout.addWidget(self.checked_box)
        layout.addWidget(buttons)
        self.resize(620, self.sizeHint().height())
