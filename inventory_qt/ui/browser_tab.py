"""The Browser tab (active peer): peers, each with a continuous replication and its status.

"Connect to URL..." adds a peer by hand (kept in the settings for the next
sign-in); peers found on the network (:mod:`inventory_qt.discovery_bridge`)
arrive through :meth:`BrowserTab.peer_found` and :meth:`BrowserTab.peer_lost`,
are followed by their peer ID wherever they listen, and are connected at once
when "auto-connect" is on; our own listener is never listed. Double-click or Enter connects; the context menu offers
Connect, Disconnect (stops, keeps the replicator: Connect resumes from its
checkpoint), Remove, Reset checkpoint and Copy URL. A certificate refused as
new or changed (trust on first use) asks the user, showing its fingerprint
(:meth:`BrowserTab.ask_trust`, :class:`~inventory_qt.ui.trust_dialog.TrustDialog`);
the answer goes to the trust store and the peer is connected again.
"""

from __future__ import annotations

import asyncio
import logging

from PySide6.QtCore import QEvent, QModelIndex, QObject, QPoint, Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeyEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.replication.errors import (
    CertificateChangedError,
    CertificateNotTrustedError,
    CertificateRefusedError,
    ConfigurationError,
)
from engine.replication.replicator_types import ActivityLevel, ReplicatorStatus, check_url
from engine.replication.trust_store import TRUST_STORE_FILE
from inventory_qt.bridge import PeerReplication
from inventory_qt.discovery_bridge import DiscoveryBridge
from inventory_qt.engine_config import record_trust
from inventory_qt.errors import show_error
from inventory_qt.models.peers_model import PeerColumn, PeerInfo, PeersModel, manual_peer
from inventory_qt.ops import run_op
from inventory_qt.session import Session
from inventory_qt.settings import Settings
from inventory_qt.ui.delegates import PeerStatusDelegate
from inventory_qt.ui.trust_dialog import TrustDialog

__all__ = ["BrowserTab"]

log = logging.getLogger(__name__)


class _EnterConnects(QObject):
    def __init__(self, tab: BrowserTab) -> None:
        super().__init__(tab)
        self._tab = tab

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if (
            event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        ):
            index = self._tab.view.currentIndex()
            if index.isValid():
                self._tab.connect_row(index.row())
                return True
        return False


class BrowserTab(QWidget):
    """See the module docstring."""

    #: some peer's status changed (for the status bar)
    peersChanged = Signal()  # noqa: N815

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.model = PeersModel()
        self.replications: dict[str, PeerReplication] = {}
        self.dialog: QInputDialog | None = None
        self._asking: set[str] = set()
        #: the open trust questions, by peer ID (one per peer at a time)
        self.trust_dialogs: dict[str, TrustDialog] = {}
        #: the discovery browser (:meth:`set_discovery`), through which discovered peers are followed
        self.discovery: DiscoveryBridge | None = None
        self._auto_connect = session.settings.replicator.auto_connect
        #: peers auto-connect leaves alone until the user connects them: disconnected by the
        #: user, or whose certificate question the user cancelled
        self.held_back: set[str] = set()
        session.settingsChanged.connect(self._settings_changed)
        self._build()
        for url in session.settings.peers:
            self.model.upsert_peer(manual_peer(url))

    def _build(self) -> None:
        self.connect_url_button = QPushButton("Connect to &URL\u2026")
        self.connect_url_button.clicked.connect(self.ask_url)
        self.connect_button = QPushButton("&Connect")
        self.disconnect_button = QPushButton("&Disconnect")
        self.connect_button.clicked.connect(lambda: self._on_current(self.connect_row))
        self.disconnect_button.clicked.connect(lambda: self._on_current(self.disconnect_row))
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.verticalHeader().hide()
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(PeerColumn.NAME, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(PeerColumn.ADDRESS, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(PeerColumn.TLS, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(PeerColumn.STATUS, QHeaderView.ResizeMode.Stretch)
        self.view.setItemDelegateForColumn(PeerColumn.STATUS, PeerStatusDelegate(self.view))
        self.view.doubleClicked.connect(lambda index: self.connect_row(index.row()))
        self.view.installEventFilter(_EnterConnects(self))
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.hint = hint = QLabel(
            "Double-click a peer (or press Enter) to sync with it continuously; right-click for more. "
            "Peers found on the network appear here by themselves."
        )
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #555")
        buttons = QHBoxLayout()
        buttons.addWidget(self.connect_url_button)
        buttons.addStretch(1)
        buttons.addWidget(self.connect_button)
        buttons.addWidget(self.disconnect_button)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.view, 1)
        layout.addWidget(hint)

    def _on_current(self, action: object) -> None:
        index = self.view.currentIndex()
        if index.isValid() and callable(action):
            action(index.row())

    # -- peers ----------------------------------------------------------------------------------

    def add_url(self, url: str, *, connect: bool = True) -> str | None:
        """Add a peer by URL (and connect); return its peer ID, or None if refused (shown in words)."""
        url = url.strip()
        try:
            check_url(url, tls=url.lower().startswith("wss://"))
        except ConfigurationError as exc:
            show_error(self, exc)
            return None
        info = manual_peer(url)
        if not self.model.upsert_peer(info):
            show_error(self, ConfigurationError(f"{url} is this app's own listener"))
            return None
        if url not in self.session.settings.peers:
            self._store_peers([*self.session.settings.peers, url])
        if connect:
            self.connect_row(self.model.row_of(info.peer_id))
        return info.peer_id

    def set_discovery(self, discovery: DiscoveryBridge) -> None:
        """List the peers ``discovery`` finds; connect to them through it (following them when they move)."""
        self.discovery = discovery
        discovery.peerFound.connect(self.peer_found)
        discovery.peerLost.connect(self.peer_lost)
        discovery.runningChanged.connect(self.show_discovery_state)
        self.show_discovery_state(discovery.running)

    def show_discovery_state(self, running: bool) -> None:
        discovery = self.discovery
        if discovery is None:
            return
        if running:
            self.model.set_own_peer_id(discovery.own_peer_id)
        if discovery.problem:
            self.hint.setText(f"Peers on the network cannot be found: {discovery.problem}")
            self.hint.setStyleSheet("color: #c62828")

    def _settings_changed(self, settings: Settings) -> None:
        """Auto-connect just turned on: connect to the discovered peers not connected yet."""
        if settings.replicator.auto_connect and not self._auto_connect:
            for row in self.model.peers:
                if row.info.discovered:
                    self._connect_automatically(row.info.peer_id)
        self._auto_connect = settings.replicator.auto_connect

    def peer_found(self, info: PeerInfo) -> None:
        """A discovered peer appeared or changed; auto-connect if asked to."""
        if self.model.upsert_peer(info) and self.session.settings.replicator.auto_connect:
            self._connect_automatically(info.peer_id)

    def _connect_automatically(self, peer_id: str) -> None:
        """Auto-connect: a peer not replicating yet, unless the user stopped it or refused its certificate."""
        replication = self.replications.get(peer_id)
        if peer_id not in self.held_back and (replication is None or not replication.running):
            self._connect(self.model.row_of(peer_id))

    def peer_lost(self, peer_id: str) -> None:
        """A discovered peer left the network; a running replication keeps its row and retries."""
        replication = self.replications.get(peer_id)
        if replication is None or not replication.running:
            self.model.remove_peer(peer_id)

    def _store_peers(self, urls: list[str]) -> None:
        from dataclasses import replace  # noqa: PLC0415

        run_op(self.session.update_settings(replace(self.session.settings, peers=tuple(urls))), parent=self)

    def ask_url(self) -> QInputDialog:
        """Connect to URL...: asks for ws://host:port/db (not waited for)."""
        dialog = QInputDialog(self)
        dialog.setWindowTitle("Connect to URL")
        dialog.setLabelText("Peer address (ws://host:port/userdb; IPv6 hosts in brackets):")
        dialog.setTextValue("ws://")
        dialog.setInputMode(QInputDialog.InputMode.TextInput)
        dialog.setTextEchoMode(QLineEdit.EchoMode.Normal)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.textValueSelected.connect(self.add_url)
        self.dialog = dialog
        dialog.open()
        return dialog

    def _replication(self, row: int) -> PeerReplication:
        info = self.model.peer_row(row).info
        replication = self.replications.get(info.peer_id)
        if replication is None:
            remote_name, interfaces = None, None
            if info.discovered:
                # followed by its peer ID: a peer restarted on another port is reconnected, its
                # checkpoint and its trusted certificate are the peer's, not its address's
                remote_name = info.peer_id
                interfaces = self.discovery.interfaces if self.discovery is not None else None
            replication = PeerReplication(
                self.session, info.url, remote_name=remote_name, follow=info.discovered, interfaces=interfaces
            )
            peer_id = info.peer_id
            replication.statusChanged.connect(lambda status: self._on_status(peer_id, status))
            self.replications[peer_id] = replication
        return replication

    def _on_status(self, peer_id: str, status: ReplicatorStatus) -> None:
        self.model.set_status(peer_id, status)
        self.peersChanged.emit()
        error = status.error
        if status.activity is ActivityLevel.STOPPED and isinstance(
            error, CertificateNotTrustedError | CertificateChangedError
        ):
            self.ask_trust(peer_id, error)

    def ask_trust(self, peer_id: str, error: CertificateRefusedError) -> TrustDialog | None:
        """Trust on first use: the peer's certificate was refused as new or changed; ask (not waited for).

        Trust records the fingerprint in the trust store under the refusal's
        ``trust_key`` (the peer ID for a discovered peer, else host and port), on
        the database thread, and connects again; a changed certificate replaces
        the old one only when the user ticked that they checked it. Cancel leaves
        the peer stopped with the refusal shown in words.
        """
        row = self.model.row_of(peer_id)
        if row < 0 or peer_id in self.trust_dialogs or not error.trust_key or not error.seen_fingerprint:
            return None
        info = self.model.peer_row(row).info
        peer = info.name if info.name == info.address else f"{info.name} ({info.address})"
        dialog = TrustDialog(peer, error, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.trust_dialogs[peer_id] = dialog

        def answered(result: int) -> None:
            self.trust_dialogs.pop(peer_id, None)
            if result == QDialog.DialogCode.Accepted:
                run_op(self._trust(peer_id, error), parent=self)
            else:  # not asked again when the peer is announced again; Connect asks again
                self.held_back.add(peer_id)

        dialog.finished.connect(answered)
        dialog.open()
        return dialog

    async def _trust(self, peer_id: str, error: CertificateRefusedError) -> None:
        assert error.trust_key is not None and error.seen_fingerprint is not None
        await self.session.run(
            record_trust,
            self.session.db.path / TRUST_STORE_FILE,
            error.trust_key,
            error.seen_fingerprint,
            subject=error.seen_subject,
            replace=isinstance(error, CertificateChangedError),
        )
        self.connect_row(self.model.row_of(peer_id))

    def connect_row(self, row: int) -> None:
        """Connect (or resume) continuous push and pull with the peer at ``row`` (the user asked)."""
        if 0 <= row < self.model.rowCount():
            self.held_back.discard(self.model.peer_row(row).info.peer_id)
            self._connect(row)

    def _connect(self, row: int) -> None:
        if 0 <= row < self.model.rowCount():
            self._replication(row).connect_peer()  # a configuration that cannot work comes back as the row's error

    def disconnect_row(self, row: int) -> asyncio.Task[None | None]:
        """Stop, keeping the replicator and its checkpoint (auto-connect then leaves it alone)."""
        replication = self._replication(row)
        self.held_back.add(self.model.peer_row(row).info.peer_id)
        return run_op(replication.disconnect_peer(), parent=self)

    def reset_row(self, row: int) -> asyncio.Task[None | None]:
        """Sync everything again from the start."""
        replication = self._replication(row)
        return run_op(replication.reset_checkpoint(), parent=self)

    def remove_row(self, row: int) -> asyncio.Task[None | None]:
        """Stop and forget the peer."""
        info = self.model.peer_row(row).info

        async def remove() -> None:
            replication = self.replications.pop(info.peer_id, None)
            self.model.remove_peer(info.peer_id)
            if info.url in self.session.settings.peers:
                self._store_peers([u for u in self.session.settings.peers if u != info.url])
            if replication is not None:
                await replication.remove()
            self.peersChanged.emit()

        return run_op(remove(), parent=self)

    def copy_url(self, row: int) -> None:
        """Copy the peer's URL."""
        QGuiApplication.clipboard().setText(self.model.peer_row(row).info.url)

    def menu_for(self, row: int) -> QMenu:
        """The context menu of a peer (the desktop equivalent of the sample's swipe)."""
        replication = self.replications.get(self.model.peer_row(row).info.peer_id)
        running = replication is not None and replication.running
        menu = QMenu(self)
        menu.addAction("Connect", lambda: self.connect_row(row)).setEnabled(not running)
        menu.addAction("Disconnect", lambda: self.disconnect_row(row)).setEnabled(running)
        menu.addAction("Remove", lambda: self.remove_row(row))
        menu.addAction("Reset checkpoint", lambda: self.reset_row(row))
        menu.addSeparator()
        menu.addAction("Copy URL", lambda: self.copy_url(row))
        return menu

    def _context_menu(self, point: QPoint) -> None:
        index: QModelIndex = self.view.indexAt(point)
        if not index.isValid():
            return
        self.view.setCurrentIndex(index)
        menu = self.menu_for(index.row())
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(self.view.viewport().mapToGlobal(point))

    async def stop_all(self) -> None:
        """Log out: stop every replication (concurrently)."""
        replications = list(self.replications.values())
        self.replications.clear()
        await asyncio.gather(*(r.remove() for r in replications), return_exceptions=True)
