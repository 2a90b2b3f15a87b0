"""The Settings dialog: the listener's and the replicator's settings, stored per user.

OK checks the values (:func:`inventory_qt.settings.validate`) and lists what
cannot work instead of closing; fields that do not apply to the chosen mode
are disabled. A running listener picks up new settings at its next start.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from inventory_qt.settings import ListenerSettings, ReplicatorSettings, Settings, TlsMode, Validation, validate

__all__ = ["SettingsDialog"]

_TLS_WORDS = {
    TlsMode.DISABLED: "Disabled (plain ws://)",
    TlsMode.ANONYMOUS: "Anonymous (a new self-signed certificate each start)",
    TlsMode.GENERATED: "Generated (a self-signed certificate kept for this user)",
    TlsMode.IMPORTED: "Imported identity file (PKCS#12)",
}
_VALIDATION_WORDS = {
    Validation.SELF_SIGNED: "Accept self-signed certificates",
    Validation.CA: "Certificates signed by a CA file",
    Validation.PINNED: "Only the pinned certificate",
    Validation.TOFU: "Trust on first use (ask, then remember)",
}


class _FileField(QWidget):
    """A path with a Browse... button."""

    def __init__(self, caption: str, name_filter: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QLineEdit()
        self.browse = QPushButton("Browse\u2026")
        self._caption = caption
        self._filter = name_filter
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.browse)
        self.browse.clicked.connect(self._pick)

    def _pick(self) -> None:
        dialog = QFileDialog(self, self._caption, self.edit.text(), self._filter)
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.fileSelected.connect(self.edit.setText)
        dialog.open()

    def text(self) -> str:
        """The path typed or chosen."""
        return self.edit.text().strip()


class SettingsDialog(QDialog):
    """Edits a :class:`Settings`; :meth:`settings` reads the fields back."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._peers = settings.peers
        self._build()
        self._show(settings)

    def _build(self) -> None:
        self.tls_mode = QComboBox()
        for mode, words in _TLS_WORDS.items():
            self.tls_mode.addItem(words, mode)
        self.identity_file = _FileField("Identity file", "PKCS#12 identities (*.p12 *.pfx);;All files (*)")
        self.identity_password = QLineEdit()
        self.identity_password.setEchoMode(QLineEdit.EchoMode.Password)
        self.identity_password.setPlaceholderText("kept in memory for this session only")
        self.port = QSpinBox()
        self.port.setRange(0, 65535)
        self.port.setSpecialValueText("any free port")
        self.allow_list = _FileField("Allow list", "Allow lists (*.json *.jsonl);;All files (*)")
        self.allow_list.edit.setPlaceholderText("none: only your own user name and password")
        self.allow_list.edit.setToolTip(
            "Without an allow list, peers sign in with the user name and password you signed in with."
        )
        self.read_only = QCheckBox("Read-only (peers may pull, not push)")
        self.delta_sync = QCheckBox("Delta sync (send only what changed in a document)")
        self.advertise = QCheckBox("Advertise on the local network")
        listener = QGroupBox("Listener (other devices sync with this one)")
        form = QFormLayout(listener)
        form.addRow("&TLS:", self.tls_mode)
        form.addRow("&Identity file:", self.identity_file)
        form.addRow("Identity &password:", self.identity_password)
        form.addRow("P&ort:", self.port)
        form.addRow("&Allow list:", self.allow_list)
        form.addRow(self.read_only)
        form.addRow(self.delta_sync)
        form.addRow(self.advertise)

        replicator = self._build_replicator()

        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #c62828")
        self.problems.hide()
        note = QLabel("A running listener restarts with new settings at once; its clients reconnect by themselves.")
        note.setStyleSheet("color: #555")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._check_and_accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(listener)
        layout.addWidget(replicator)
        layout.addWidget(self.problems)
        layout.addWidget(note)
        layout.addWidget(self.buttons)
        self.tls_mode.currentIndexChanged.connect(self._enable)
        self.validation.currentIndexChanged.connect(self._enable)

    def _build_replicator(self) -> QGroupBox:
        self.validation = QComboBox()
        for mode, words in _VALIDATION_WORDS.items():
            self.validation.addItem(words, mode)
        self.pinned = _FileField("Pinned certificate", "Certificates (*.pem *.crt *.cer *.der);;All files (*)")
        self.ca_file = _FileField("CA file", "Certificates (*.pem *.crt *.cer);;All files (*)")
        self.auto_connect = QCheckBox("Connect automatically to peers found on the network")
        replicator = QGroupBox("Browser (this device syncs with others)")
        form = QFormLayout(replicator)
        form.addRow("&Certificates:", self.validation)
        form.addRow("Pinned certi&ficate:", self.pinned)
        form.addRow("C&A file:", self.ca_file)
        form.addRow(self.auto_connect)
        return replicator

    def _show(self, settings: Settings) -> None:
        listener, replicator = settings.listener, settings.replicator
        self.tls_mode.setCurrentIndex(self.tls_mode.findData(listener.tls_mode))
        self.identity_file.edit.setText(listener.identity_file)
        self.identity_password.setText(listener.identity_password)
        self.port.setValue(listener.port)
        self.allow_list.edit.setText(listener.allow_list)
        self.read_only.setChecked(listener.read_only)
        self.delta_sync.setChecked(listener.delta_sync)
        self.advertise.setChecked(listener.advertise)
        self.validation.setCurrentIndex(self.validation.findData(replicator.validation))
        self.pinned.edit.setText(replicator.pinned_certificate)
        self.ca_file.edit.setText(replicator.ca_file)
        self.auto_connect.setChecked(replicator.auto_connect)
        self._enable()

    def _enable(self) -> None:
        imported = self.tls_mode.currentData() == TlsMode.IMPORTED
        self.identity_file.setEnabled(imported)
        self.identity_password.setEnabled(imported)
        self.pinned.setEnabled(self.validation.currentData() == Validation.PINNED)
        self.ca_file.setEnabled(self.validation.currentData() == Validation.CA)

    def settings(self) -> Settings:
        """The settings as the fields show them."""
        listener = ListenerSettings(
            tls_mode=TlsMode(str(self.tls_mode.currentData())),
            identity_file=self.identity_file.text(),
            identity_password=self.identity_password.text(),
            port=self.port.value(),
            allow_list=self.allow_list.text(),
            read_only=self.read_only.isChecked(),
            delta_sync=self.delta_sync.isChecked(),
            advertise=self.advertise.isChecked(),
        )
        replicator = ReplicatorSettings(
            validation=Validation(str(self.validation.currentData())),
            pinned_certificate=self.pinned.text(),
            ca_file=self.ca_file.text(),
            auto_connect=self.auto_connect.isChecked(),
        )
        return Settings(listener, replicator, self._peers)

    def _check_and_accept(self) -> None:
        problems = validate(self.settings())
        if problems:
            self.problems.setText("\n".join(problems))
            self.problems.show()
            return
        self.accept()
