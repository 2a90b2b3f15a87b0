"""The Listener tab (passive peer): Start and Stop, URLs, certificate, clients.

The buttons follow the listener's state, never a guess: Start is enabled only
when stopped, Stop only when running. Stopping with clients connected asks
first ("There are N connected clients. Stop the listener?"); nothing changes
until the answer, and Cancel leaves everything as it was. A start failure is
shown in words under the buttons, and the state is back to stopped.
"""

from __future__ import annotations

import asyncio

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from inventory_qt.bridge import ClientEvent, ListenerBridge, ListenerState
from inventory_qt.errors import describe_error
from inventory_qt.models.clients_model import ClientsModel
from inventory_qt.ops import run_op
from inventory_qt.session import Session
from inventory_qt.settings import ListenerSettings, TlsMode

__all__ = ["ListenerTab"]

_STATE_WORDS = {
    ListenerState.STOPPED: "Stopped",
    ListenerState.STARTING: "Starting\u2026",
    ListenerState.RUNNING: "Listening",
    ListenerState.STOPPING: "Stopping\u2026",
}


def _settings_words(settings: ListenerSettings, user: str) -> str:
    port = "any free port" if settings.port == 0 else f"port {settings.port}"
    who = f"users in {settings.allow_list}" if settings.allow_list else f"only {user} (same password)"
    parts = [port, f"TLS {settings.tls_mode.value}", f"allowed: {who}"]
    if settings.read_only:
        parts.append("read-only")
    parts.append("delta sync on" if settings.delta_sync else "delta sync off")
    return "Settings: " + ", ".join(parts)


class ListenerTab(QWidget):
    """See the module docstring."""

    def __init__(self, session: Session, bridge: ListenerBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.bridge = bridge
        self.clients = ClientsModel()
        #: the open "Stop the listener?" question, if any
        self.stop_confirmation: QMessageBox | None = None
        self._task: asyncio.Task[None | None] | None = None
        self._build()
        bridge.stateChanged.connect(self._on_state)
        bridge.countsChanged.connect(self._on_counts)
        bridge.client.connect(self._on_client)
        bridge.advertising.advertisedChanged.connect(self._show_advertised)
        bridge.failed.connect(self._stopped_by_failure)
        session.settingsChanged.connect(self._show_settings)
        self._on_state(int(bridge.state))
        self._show_settings()

    def _build(self) -> None:
        self.start_button = QPushButton("&Start")
        self.stop_button = QPushButton("S&top")
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.ask_stop)
        self.state_label = QLabel()
        self.state_label.setObjectName("listenerState")
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c62828")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()
        self.settings_label = QLabel()
        self.settings_label.setWordWrap(True)
        self.settings_label.setStyleSheet("color: #555")

        self._build_details()

        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.state_label, 1)
        url_row = QHBoxLayout()
        url_row.addWidget(self.urls, 1)
        url_row.addWidget(self.copy_url_button, 0, Qt.AlignmentFlag.AlignTop)
        fingerprint_row = QHBoxLayout()
        fingerprint_row.addWidget(self.fingerprint, 1)
        fingerprint_row.addWidget(self.copy_fingerprint_button)
        details = QGroupBox("While listening")
        form = QFormLayout(details)
        form.addRow("Addresses:", url_row)
        form.addRow("Certificate:", fingerprint_row)
        form.addRow("Advertised:", self.advertised)
        form.addRow("Clients:", self.counts)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.error_label)
        layout.addWidget(self.settings_label)
        layout.addWidget(details)
        layout.addWidget(QLabel("Connected clients:"))
        layout.addWidget(self.clients_view, 1)

    def _build_details(self) -> None:
        self.urls = QListWidget()
        self.urls.setMaximumHeight(90)
        self.copy_url_button = QPushButton("Copy &URL")
        self.copy_url_button.clicked.connect(self.copy_url)
        self.fingerprint = QLabel()
        self.fingerprint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fingerprint.setWordWrap(True)
        self.copy_fingerprint_button = QPushButton("Copy &fingerprint")
        self.copy_fingerprint_button.clicked.connect(self.copy_fingerprint)
        self.advertised = QLabel()
        self.advertised.setObjectName("listenerAdvertised")
        self.advertised.setWordWrap(True)
        self.counts = QLabel()
        self.counts.setObjectName("listenerCounts")

        self.clients_view = QTableView()
        self.clients_view.setModel(self.clients)
        self.clients_view.verticalHeader().hide()
        self.clients_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.clients_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)

    # -- state -----------------------------------------------------------------------------

    def _show_settings(self, *_: object) -> None:
        self.settings_label.setText(_settings_words(self.session.settings.listener, self.session.user))

    def _on_state(self, state_value: int) -> None:
        state = ListenerState(state_value)
        running = state is ListenerState.RUNNING
        self.start_button.setEnabled(state is ListenerState.STOPPED)
        self.stop_button.setEnabled(running)
        self.state_label.setText(_STATE_WORDS[state])
        self.urls.clear()
        self.urls.addItems(self.bridge.urls)
        self.copy_url_button.setEnabled(running and bool(self.bridge.urls))
        fingerprint = self.bridge.fingerprint
        if fingerprint:
            self.fingerprint.setText(fingerprint)
        elif self.session.settings.listener.tls_mode is TlsMode.DISABLED:
            self.fingerprint.setText("None: TLS is disabled (plain ws://)")
        else:
            self.fingerprint.setText("Shown while listening")
        self.copy_fingerprint_button.setEnabled(bool(fingerprint))
        self._show_advertised()
        if state is ListenerState.STOPPED:
            self.clients.clear()
        self._on_counts(self.bridge.status.connection_count, self.bridge.status.active_connection_count)

    def _show_advertised(self, *_: object) -> None:
        advertising = self.bridge.advertising
        if self.bridge.state is not ListenerState.RUNNING:
            text = "No"
        elif advertising.name is not None:
            text = f"Yes, as \u201c{advertising.name}\u201d on the local network"
        elif advertising.problem:
            text = f"No: {advertising.problem}"
        elif advertising.starting:
            text = "Not yet (announcing on the local network\u2026)"
        elif not self.session.settings.listener.advertise:
            text = "No (turned off in Settings)"
        else:
            text = "No"
        self.advertised.setText(text)

    def _on_counts(self, connected: int, active: int) -> None:
        self.counts.setText(f"{connected} connected, {active} active")

    def _on_client(self, event: ClientEvent) -> None:
        if event.connected:
            self.clients.client_connected(event.peer, event.user, event.at)
        else:
            self.clients.client_disconnected(event.peer)

    # -- actions --------------------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        words = describe_error(exc)
        if words:
            self.error_label.setText(f"The listener could not start: {words}")
            self.error_label.show()

    def _stopped_by_failure(self, exc: BaseException) -> None:
        words = describe_error(exc)
        if words:
            self.error_label.setText(f"The listener stopped: {words}")
            self.error_label.show()

    def start(self, *, host: str | None = None) -> asyncio.Task[None | None]:
        """Start listening (``host`` limits it to one address, as tests do with 127.0.0.1)."""
        self.error_label.hide()
        self._task = run_op(self.bridge.start(host=host), parent=self, on_error=self._failed)
        return self._task

    def restart(self) -> asyncio.Task[None | None]:
        """Apply new settings to the running listener (a new listener; the advert re-announced)."""
        self.error_label.hide()
        self._task = run_op(self.bridge.restart(), parent=self, on_error=self._failed)
        return self._task

    def ask_stop(self) -> QMessageBox | asyncio.Task[None | None] | None:
        """Stop; with clients connected, ask first (not waited for: the answer decides)."""
        if self.bridge.state is not ListenerState.RUNNING:
            return None
        count = self.bridge.status.connection_count
        if count == 0:
            return self.stop()
        noun = "is 1 connected client" if count == 1 else f"are {count} connected clients"
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Stop the listener?",
            f"There {noun}. Stop the listener?",
            QMessageBox.StandardButton.Cancel,
            self,
        )
        stop = box.addButton("Stop listener", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered() -> None:
            self.stop_confirmation = None
            if box.clickedButton() is stop:
                self.stop()

        box.finished.connect(answered)
        self.stop_confirmation = box
        box.open()
        return box

    def stop(self) -> asyncio.Task[None | None]:
        """Stop at once (no question)."""
        self._task = run_op(self.bridge.stop(), parent=self)
        return self._task

    def copy_url(self) -> None:
        """Copy the selected (or first) URL."""
        item = self.urls.currentItem() or self.urls.item(0)
        if item is not None:
            QGuiApplication.clipboard().setText(item.text())

    def copy_fingerprint(self) -> None:
        """Copy the certificate fingerprint."""
        if self.bridge.fingerprint:
            QGuiApplication.clipboard().setText(self.bridge.fingerprint)
