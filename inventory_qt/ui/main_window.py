"""The main window: the sign-in screen, then the List, Listener and Browser tabs with a status bar.

Signing in opens (creating and seeding on first use) the user's database on
the database thread while the sign-in screen shows a progress indicator, then
starts looking for peers on the local network. Log Out stops the listener
(withdrawing its advert), every replication and the discovery browser
concurrently (each with a deadline), closes the database on its thread and returns to the sign-in
screen; closing the window does the same first.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QStackedWidget, QTabWidget

from engine.replication.replicator_types import ActivityLevel
from inventory_qt.bridge import ListenerBridge, ListenerState
from inventory_qt.discovery_bridge import DiscoveryBridge, discovery_interfaces
from inventory_qt.errors import describe_error
from inventory_qt.ops import run_op
from inventory_qt.session import Session, open_session
from inventory_qt.settings import Settings
from inventory_qt.ui.browser_tab import BrowserTab
from inventory_qt.ui.list_tab import ListTab
from inventory_qt.ui.listener_tab import ListenerTab
from inventory_qt.ui.login import LoginWidget
from inventory_qt.ui.settings_dialog import SettingsDialog

__all__ = ["MainWindow"]

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    """See the module docstring."""

    #: signed in (True) or back at the sign-in screen (False)
    signedIn = Signal(bool)  # noqa: N815

    def __init__(self, data_dir: Path | None = None, *, interfaces: Sequence[str] | None = None) -> None:
        super().__init__()
        self.data_dir = data_dir
        #: where discovery advertises and browses (None: every interface; see inventory_qt.discovery_bridge)
        self.interfaces = discovery_interfaces(interfaces)
        self.setWindowTitle("Inventory Sync")
        self.resize(760, 600)
        self.session: Session | None = None
        self.bridge: ListenerBridge | None = None
        self.discovery: DiscoveryBridge | None = None
        self.list_tab: ListTab | None = None
        self.listener_tab: ListenerTab | None = None
        self.browser_tab: BrowserTab | None = None
        self.settings_dialog: SettingsDialog | None = None
        self._closing = False
        self.login = LoginWidget()
        self.tabs = QTabWidget()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.login)
        self.stack.addWidget(self.tabs)
        self.setCentralWidget(self.stack)
        self.summary = QLabel()
        self.statusBar().addPermanentWidget(self.summary, 1)
        self.login.signInRequested.connect(self.sign_in)
        self._build_menu()
        self._signed_in_actions(False)

    def _build_menu(self) -> None:
        menu = self.menuBar().addMenu("&Inventory")
        self.settings_action = QAction("&Settings\u2026", self)
        self.settings_action.setShortcut(QKeySequence.StandardKey.Preferences)
        self.settings_action.triggered.connect(self.open_settings)
        self.log_out_action = QAction("&Log Out", self)
        self.log_out_action.triggered.connect(self.log_out)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        for action in (self.settings_action, self.log_out_action):
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction(quit_action)

    def _signed_in_actions(self, signed_in: bool) -> None:
        self.settings_action.setEnabled(signed_in)
        self.log_out_action.setEnabled(signed_in)

    # -- signing in ----------------------------------------------------------------------------

    def sign_in(self, user: str, password: str) -> asyncio.Task[None | None]:
        """Open the user's inventory off the GUI thread, then show the tabs."""
        self.login.set_busy(True, "Opening your inventory\u2026")
        return run_op(self._sign_in(user, password), on_error=self._sign_in_failed)

    def _sign_in_failed(self, exc: BaseException) -> None:
        self.login.show_problem(describe_error(exc) or "")

    async def _sign_in(self, user: str, password: str) -> None:
        session = await open_session(user, password, self.data_dir)
        if self._closing:
            await session.close()
            return
        self.session = session
        self.bridge = ListenerBridge(session, interfaces=self.interfaces)
        self.discovery = DiscoveryBridge(session, self.interfaces)
        self.list_tab = ListTab(session)
        self.listener_tab = ListenerTab(session, self.bridge)
        self.browser_tab = BrowserTab(session)
        self.browser_tab.set_discovery(self.discovery)
        self.tabs.addTab(self.list_tab, "&List")
        self.tabs.addTab(self.listener_tab, "Lis&tener")
        self.tabs.addTab(self.browser_tab, "&Browser")
        self.bridge.stateChanged.connect(self._listener_state)
        self.bridge.countsChanged.connect(self._update_summary)
        self.browser_tab.peersChanged.connect(self._update_summary)
        self.list_tab.model.dirtyChanged.connect(self._update_summary)
        self.list_tab.view.setFocus()
        session.follow_other_processes()
        session.settingsChanged.connect(self._settings_changed)
        self._listener_settings = session.settings.listener
        run_op(self.discovery.start(), on_error=self._discovery_failed)  # peers then appear by themselves
        await self.list_tab.reload()
        self.setWindowTitle(f"Inventory Sync \u2014 {user}")
        self.login.set_busy(False)
        self.stack.setCurrentWidget(self.tabs)
        self._signed_in_actions(True)
        self._update_summary()
        # the objects made so far live as long as the session: a full collection need not walk them
        # again and again while a large pull runs (one took 100 ms on the GUI thread, bench/ui_lag.py)
        gc.freeze()
        self.signedIn.emit(True)

    def _listener_state(self, _state: int) -> None:
        if self.bridge is not None and self.browser_tab is not None:
            self.browser_tab.model.set_own_urls(self.bridge.urls)
        self._update_summary()

    def _discovery_failed(self, exc: BaseException) -> None:
        log.warning("cannot look for peers on the network: %s", describe_error(exc))
        if self.browser_tab is not None and self.discovery is not None:
            self.browser_tab.show_discovery_state(False)  # shows the problem in words

    def _settings_changed(self, settings: Settings) -> None:
        """New listener settings apply at once to a running listener (restarted, its advert updated)."""
        if settings.listener == self._listener_settings:
            return
        self._listener_settings = settings.listener
        if self.bridge is not None and self.bridge.state is ListenerState.RUNNING and self.listener_tab is not None:
            self.listener_tab.restart()

    # -- status bar ------------------------------------------------------------------------------

    def summary_text(self) -> str:
        """Listener, peers and unsaved edits in one line."""
        if self.bridge is None or self.browser_tab is None or self.list_tab is None:
            return ""
        parts = []
        if self.bridge.state is ListenerState.RUNNING:
            count = self.bridge.status.connection_count
            parts.append(f"Listening on port {self.bridge.port}, {count} client{'s' if count != 1 else ''}")
        else:
            parts.append("Not listening")
        rows = self.browser_tab.model.peers
        if rows:
            activities = [row.status.activity for row in rows]
            connected = sum(a in (ActivityLevel.IDLE, ActivityLevel.BUSY) for a in activities)
            busy = sum(a is ActivityLevel.BUSY for a in activities)
            offline = sum(a is ActivityLevel.OFFLINE for a in activities)
            errors = sum(
                a is ActivityLevel.STOPPED and row.status.error is not None
                for a, row in zip(activities, rows, strict=True)
            )
            text = f"{len(rows)} peer{'s' if len(rows) != 1 else ''}: {connected} connected"
            text += f", {busy} syncing" if busy else ""
            text += f", {offline} offline" if offline else ""
            text += f", {errors} with errors" if errors else ""
            parts.append(text)
        else:
            parts.append("No peers")
        parts.append("Unsaved changes" if self.list_tab.model.dirty else "All changes saved")
        return " \u00b7 ".join(parts)

    def _update_summary(self, *_: object) -> None:
        self.summary.setText(self.summary_text())

    # -- settings ----------------------------------------------------------------------------------

    def open_settings(self) -> SettingsDialog | None:
        """The Settings dialog (not waited for); OK stores the settings for this user."""
        session = self.session
        if session is None:
            return None
        dialog = SettingsDialog(session.settings, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: run_op(session.update_settings(dialog.settings()), parent=self))
        self.settings_dialog = dialog
        dialog.open()
        return dialog

    # -- logging out -------------------------------------------------------------------------------

    def log_out(self) -> asyncio.Task[None | None]:
        """Stop everything, close the database, back to the sign-in screen."""
        return run_op(self._log_out(), parent=self)

    async def _log_out(self) -> None:
        session = self.session
        if session is None:
            return
        self.session = None
        self._signed_in_actions(False)
        self.login.set_busy(True, "Signing out\u2026")
        self.stack.setCurrentWidget(self.login)
        bridge, browser, list_tab, discovery = self.bridge, self.browser_tab, self.list_tab, self.discovery
        if list_tab is not None:
            list_tab.shutdown()
        stops = [bridge.stop()] if bridge is not None else []
        if browser is not None:
            stops.append(browser.stop_all())
        if discovery is not None:
            stops.append(discovery.stop())
        results = await asyncio.gather(*stops, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("while logging out: %s", describe_error(result))
        await session.close()
        while self.tabs.count():
            widget = self.tabs.widget(0)
            self.tabs.removeTab(0)
            if widget is not None:
                widget.deleteLater()
        self.bridge, self.list_tab, self.listener_tab, self.browser_tab = None, None, None, None
        self.discovery = None
        self.summary.clear()
        self.setWindowTitle("Inventory Sync")
        self.login.reset(session.user)
        self.signedIn.emit(False)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        """Log out first (quickly), then close."""
        if self.session is None:
            self._closing = True  # a sign-in still opening closes what it opened
            event.accept()
            return
        event.ignore()
        if not self._closing:
            self._closing = True
            task = self.log_out()
            task.add_done_callback(lambda _: self.close())
