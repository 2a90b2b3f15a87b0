"""The main window: signing in seeds a new user off the GUI thread, and Log Out stops everything."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QMessageBox
from pytestqt.qtbot import QtBot

from engine.seeding import load_starter_inventory
from engine.userdata import database_exists
from inventory_qt.bridge import ListenerState
from inventory_qt.models.items_model import Column
from inventory_qt.models.peers_model import PeerColumn
from inventory_qt.ui.main_window import MainWindow
from tests.inventory_qt.conftest import signed_in, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


async def test_signing_in_seeds_a_new_user_and_log_out_closes_everything(qtbot: QtBot, data_dir: Path) -> None:
    window = MainWindow(data_dir)
    qtbot.addWidget(window)
    window.show()
    assert not database_exists("carol", data_dir)
    task = window.sign_in("carol", "pw")
    assert window.login.progress.isVisible()  # the progress shows while the database opens on its thread
    await task
    assert window.session is not None and window.list_tab is not None and window.listener_tab is not None
    assert database_exists("carol", data_dir)
    assert window.list_tab.model.rowCount() == len(load_starter_inventory())
    assert window.stack.currentWidget() is window.tabs and "carol" in window.windowTitle()
    assert "Not listening" in window.summary.text() and "All changes saved" in window.summary.text()
    assert "password=<hidden>" in repr(window.session)
    session, bridge = window.session, window.bridge
    await window.listener_tab.start(host="127.0.0.1")
    assert bridge is not None and bridge.state is ListenerState.RUNNING
    await window.log_out()
    assert window.session is None and session.closed and bridge.state is ListenerState.STOPPED
    assert window.stack.currentWidget() is window.login and window.tabs.count() == 0
    assert window.login.user.text() == "carol" and window.login.password.text() == ""
    # signing in again opens the same inventory
    await window.sign_in("carol", "pw")
    assert window.list_tab is not None and window.list_tab.model.rowCount() == len(load_starter_inventory())
    await window.log_out()


async def test_a_bad_user_name_is_said_in_words(qtbot: QtBot, data_dir: Path) -> None:
    window = MainWindow(data_dir)
    qtbot.addWidget(window)
    await window.sign_in("bad\x00name", "pw")
    assert window.session is None and "control characters" in window.login.status.text()
    assert window.login.sign_in_button.isEnabled() is False  # the password field was not filled in the form


def quantity(window: MainWindow, key: str) -> int | None:
    assert window.list_tab is not None
    model = window.list_tab.model
    row = model.row_for(key)
    item = model.draft_row(row).item if row >= 0 else None
    return None if item is None else item.value


def peer_words(window: MainWindow) -> str:
    assert window.browser_tab is not None
    return str(window.browser_tab.model.index(0, PeerColumn.STATUS).data())


def menu_action(menu: QMenu, text: str) -> QAction:
    return next(action for action in menu.actions() if action.text() == text)


async def test_two_windows_sync_through_a_listener_and_a_replicator(qtbot: QtBot, tmp_path: Path) -> None:
    allow = tmp_path / "allow.json"
    allow.write_text('{"name": "bob", "password": "bob-pw"}\n')
    alice = await signed_in(qtbot, tmp_path / "alice-data", "alice", "alice-pw")
    bob = await signed_in(qtbot, tmp_path / "bob-data", "bob", "bob-pw")
    assert alice.session is not None and alice.listener_tab is not None and alice.bridge is not None
    assert bob.browser_tab is not None and bob.list_tab is not None and alice.list_tab is not None
    try:
        settings = alice.session.settings
        await alice.session.update_settings(
            replace(settings, listener=replace(settings.listener, allow_list=str(allow)))
        )
        # alice listens on 127.0.0.1; bob connects by URL with his own credentials
        await alice.listener_tab.start(host="127.0.0.1")
        assert alice.bridge.state is ListenerState.RUNNING
        assert not alice.listener_tab.start_button.isEnabled() and alice.listener_tab.stop_button.isEnabled()
        url = alice.bridge.urls[0]
        assert url.startswith("ws://127.0.0.1:") and alice.listener_tab.urls.item(0).text() == url
        peer_id = bob.browser_tab.add_url(url)
        assert peer_id is not None
        await wait_until(lambda: peer_words(bob) == "Connected (idle)", 15)
        # the Listener tab shows one connected client, with bob's name
        await wait_until(lambda: alice.listener_tab.clients.rowCount() == 1)
        assert alice.listener_tab.clients.index(0, 0).data() == "bob"
        assert alice.listener_tab.counts.text().startswith("1 connected")
        # an edit saved in one window appears in the other, both ways
        alice.list_tab.model.setData(
            alice.list_tab.model.index(alice.list_tab.model.row_for("Flour"), Column.QUANTITY), 321
        )
        await alice.list_tab.save()
        await wait_until(lambda: quantity(bob, "Flour") == 321, 15)
        # bob's unsaved edit survives alice's change to another item
        bob.list_tab.model.setData(bob.list_tab.model.index(bob.list_tab.model.row_for("Rice"), Column.QUANTITY), 5)
        alice.list_tab.model.setData(
            alice.list_tab.model.index(alice.list_tab.model.row_for("Sugar"), Column.QUANTITY), 55
        )
        await alice.list_tab.save()
        await wait_until(lambda: quantity(bob, "Sugar") == 55, 15)
        assert quantity(bob, "Rice") == 5 and bob.list_tab.model.dirty
        await bob.list_tab.save()
        await wait_until(lambda: quantity(alice, "Rice") == 5, 15)
        # Stop asks first; Cancel keeps everything as it was
        box = alice.listener_tab.ask_stop()
        assert isinstance(box, QMessageBox) and box.text() == "There is 1 connected client. Stop the listener?"
        box.button(QMessageBox.StandardButton.Cancel).click()
        assert alice.listener_tab.stop_confirmation is None
        assert alice.bridge.state is ListenerState.RUNNING and alice.listener_tab.stop_button.isEnabled()
        assert alice.listener_tab.clients.rowCount() == 1
        await wait_until(lambda: peer_words(bob) == "Connected (idle)")  # still connected, done with the last edit
        # Disconnect from the context menu: Disconnected; Connect resumes from the checkpoint
        replication = bob.browser_tab.replications[peer_id]
        pulled_before = replication.pulled
        menu_action(bob.browser_tab.menu_for(0), "Disconnect").trigger()
        await wait_until(lambda: peer_words(bob) == "Disconnected")
        await wait_until(lambda: alice.listener_tab.clients.rowCount() == 0)
        alice.list_tab.model.setData(
            alice.list_tab.model.index(alice.list_tab.model.row_for("Oats"), Column.QUANTITY), 99
        )
        await alice.list_tab.save()
        assert quantity(bob, "Oats") != 99
        menu_action(bob.browser_tab.menu_for(0), "Connect").trigger()
        await wait_until(lambda: quantity(bob, "Oats") == 99, 15)
        await wait_until(lambda: peer_words(bob) == "Connected (idle)")
        assert replication.pulled == pulled_before + 1  # only what changed
        # Stop, confirmed: bob's peer goes offline and says when it retries
        box = alice.listener_tab.ask_stop()
        assert isinstance(box, QMessageBox)
        next(b for b in box.buttons() if b.text() == "Stop listener").click()
        await wait_until(lambda: alice.bridge is not None and alice.bridge.state is ListenerState.STOPPED)
        assert alice.listener_tab.start_button.isEnabled() and not alice.listener_tab.stop_button.isEnabled()
        await wait_until(lambda: peer_words(bob).startswith("Offline (retrying in "), 15)
        assert "Offline" in bob.summary.text() or "offline" in bob.summary.text()
    finally:
        await bob.log_out()
        await alice.log_out()


async def test_a_wrong_password_and_a_busy_port_are_said_in_words(qtbot: QtBot, tmp_path: Path) -> None:
    alice = await signed_in(qtbot, tmp_path / "a", "alice", "alice-pw")
    mallory = await signed_in(qtbot, tmp_path / "m", "mallory", "guess")
    other = await signed_in(qtbot, tmp_path / "o", "alice", "alice-pw")
    assert alice.listener_tab is not None and alice.bridge is not None and mallory.browser_tab is not None
    assert other.session is not None and other.listener_tab is not None and other.bridge is not None
    try:
        await alice.listener_tab.start(host="127.0.0.1")
        mallory.browser_tab.add_url(alice.bridge.urls[0])
        await wait_until(lambda: peer_words(mallory) == "Error: Wrong user name or password.", 15)
        # the same port again: the start fails in words, the buttons stay consistent
        settings = other.session.settings
        await other.session.update_settings(
            replace(settings, listener=replace(settings.listener, port=alice.bridge.port or 0))
        )
        await other.listener_tab.start(host="127.0.0.1")
        assert other.bridge.state is ListenerState.STOPPED
        assert other.listener_tab.start_button.isEnabled() and not other.listener_tab.stop_button.isEnabled()
        assert "already in use" in other.listener_tab.error_label.text()
        # our own listener is not a peer
        assert alice.browser_tab is not None and alice.browser_tab.add_url(alice.bridge.urls[0]) is None
        assert alice.browser_tab.model.rowCount() == 0
    finally:
        for window in (alice, mallory, other):
            await window.log_out()


async def test_a_new_users_listener_serves_tls_with_a_lasting_identity(qtbot: QtBot, tmp_path: Path) -> None:
    window = await signed_in(qtbot, tmp_path / "a", "alice", "alice-pw", tls=True)
    assert window.listener_tab is not None and window.bridge is not None
    try:
        await window.listener_tab.start(host="127.0.0.1")
        assert window.bridge.urls and all(url.startswith("wss://") for url in window.bridge.urls)
        fingerprint = window.bridge.fingerprint
        assert fingerprint and fingerprint in window.listener_tab.fingerprint.text()
        await window.listener_tab.stop()
        await window.listener_tab.start(host="127.0.0.1")
        assert window.bridge.fingerprint == fingerprint  # kept with the database: peers keep trusting it
    finally:
        await window.log_out()
