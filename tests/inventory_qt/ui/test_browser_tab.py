"""The Browser tab: URLs refused in words, context menu actions, the trust-on-first-use question."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox, QPushButton
from pytestqt.qtbot import QtBot

from engine.replication.errors import CertificateNotTrustedError
from engine.replication.listener_tls import GeneratedIdentity
from engine.replication.replicator_types import ActivityLevel, ReplicatorStatus
from engine.replication.trust_store import TRUST_STORE_FILE, TrustStore
from inventory_qt.bridge import ListenerState
from inventory_qt.models.peers_model import PeerColumn, PeerInfo
from inventory_qt.settings import TlsMode
from inventory_qt.ui.browser_tab import BrowserTab
from inventory_qt.ui.main_window import MainWindow
from inventory_qt.ui.trust_dialog import TrustDialog
from tests.inventory_qt.conftest import signed_in, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


FINGERPRINT = "AB:" * 31 + "CD"


async def test_peers_by_url_menus_and_trust(qtbot: QtBot, data_dir: Path) -> None:
    window = MainWindow(data_dir)
    qtbot.addWidget(window)
    await window.sign_in("alice", "pw")
    tab = window.browser_tab
    assert tab is not None and window.session is not None
    try:
        for bad in ("http://x/db", "ws://host:99999/db", "ws://[::1/db", "ws://u:p@host:1/db"):
            assert tab.add_url(bad) is None
        assert tab.model.rowCount() == 0
        boxes = [b for b in tab.findChildren(QMessageBox) if b.objectName() == "errorBox"]
        assert any("the port is not a number from 1 to 65535" in b.text() for b in boxes) and len(boxes) == 4
        # a peer nobody listens to: connecting goes offline and retries; kept for the next sign-in
        peer_id = tab.add_url("ws://127.0.0.1:9/userdb")
        assert peer_id is not None and window.session.settings.peers == ("ws://127.0.0.1:9/userdb",)
        await wait_until(lambda: str(tab.model.index(0, 3).data()).startswith("Offline (retrying in "), 15)
        menu = tab.menu_for(0)
        assert [a.text() for a in menu.actions() if a.text()] == [
            "Connect", "Disconnect", "Remove", "Reset checkpoint", "Copy URL"
        ]  # fmt: skip
        assert not menu.actions()[0].isEnabled() and menu.actions()[1].isEnabled()
        next(a for a in menu.actions() if a.text() == "Copy URL").trigger()
        assert QGuiApplication.clipboard().text() == "ws://127.0.0.1:9/userdb"
        await tab.disconnect_row(0)
        assert tab.model.index(0, 3).data() == "Disconnected"
        # trust on first use: the question shows the fingerprint; Trust remembers it and connects again
        replication = tab.replications[peer_id]
        refusal = CertificateNotTrustedError(
            "not trusted yet", host="127.0.0.1", port=9, expected="a certificate trusted on first use",
            seen_fingerprint=FINGERPRINT, trust_key="127.0.0.1:9",
        )  # fmt: skip
        replication.statusChanged.emit(ReplicatorStatus(ActivityLevel.STOPPED, error=refusal))  # as the engine would
        dialog = tab.trust_dialogs[peer_id]
        assert dialog.windowTitle() == "Trust this peer?" and dialog.new_field.text() == FINGERPRINT
        assert dialog.cancel_button.isDefault()
        qtbot.mouseClick(dialog.findChild(QPushButton, "newFingerprintCopy"), Qt.MouseButton.LeftButton)
        assert QGuiApplication.clipboard().text() == FINGERPRINT
        replication.statusChanged.emit(ReplicatorStatus(ActivityLevel.STOPPED, error=refusal))
        assert len(tab.findChildren(TrustDialog)) == 1  # one question per peer at a time
        dialog.trust_button.click()
        store = TrustStore(window.session.db.path / TRUST_STORE_FILE)
        await wait_until(lambda: replication.running)
        assert store.get("127.0.0.1:9") is not None and store.get("127.0.0.1:9").fingerprint == FINGERPRINT  # type: ignore[union-attr]
        # a discovered peer (the discovery merge's events) and Remove
        tab.peer_found(PeerInfo("peer-7", "Shop", "ws://127.0.0.1:10/userdb", discovered=True))
        assert tab.model.rowCount() == 2 and "peer-7" not in tab.replications  # auto-connect is off
        tab.peer_lost("peer-7")
        assert tab.model.rowCount() == 1
        await tab.remove_row(0)
        assert tab.model.rowCount() == 0 and tab.replications == {}
        await wait_until(lambda: window.session is not None and window.session.settings.peers == ())
    finally:
        await window.log_out()


async def tls_listener(window: MainWindow, allow: Path, port: int = 0) -> str:
    """Start ``window``'s listener with its generated identity on 127.0.0.1; return its URL."""
    assert window.session is not None and window.listener_tab is not None and window.bridge is not None
    settings = window.session.settings
    listener = replace(settings.listener, tls_mode=TlsMode.GENERATED, allow_list=str(allow), port=port, advertise=False)
    await window.session.update_settings(replace(settings, listener=listener))
    await window.listener_tab.start(host="127.0.0.1")
    assert window.bridge.state is ListenerState.RUNNING, window.listener_tab.error_label.text()
    assert window.listener_tab.advertised.text() == "No (turned off in Settings)"
    return window.bridge.urls[0]


def status_text(tab: BrowserTab) -> str:
    return str(tab.model.index(0, PeerColumn.STATUS).data())


async def test_trust_on_first_use_asks_and_a_changed_certificate_is_refused_unless_accepted(
    qtbot: QtBot, tmp_path: Path
) -> None:
    allow = tmp_path / "allow.json"
    allow.write_text('{"name": "bob", "password": "bob-pw"}\n')
    alice = await signed_in(qtbot, tmp_path / "a", "alice", "alice-pw")
    bob = await signed_in(qtbot, tmp_path / "b", "bob", "bob-pw")
    tab, listener_tab = bob.browser_tab, alice.listener_tab
    assert tab is not None and listener_tab is not None and alice.bridge is not None and alice.session is not None
    assert bob.session is not None and alice.list_tab is not None
    try:
        url = await tls_listener(alice, allow)
        assert url.startswith("wss://127.0.0.1:")
        fingerprint = alice.bridge.fingerprint
        assert fingerprint and listener_tab.fingerprint.text() == fingerprint  # shown, and copyable
        listener_tab.copy_fingerprint_button.click()
        assert QGuiApplication.clipboard().text() == fingerprint
        # first use: asked, with the fingerprint; Cancel leaves the peer stopped, "not trusted"
        peer_id = tab.add_url(url)
        assert peer_id is not None
        await wait_until(lambda: peer_id in tab.trust_dialogs, 15)
        dialog = tab.trust_dialogs[peer_id]
        assert dialog.new_field.text() == fingerprint and not dialog.changed
        dialog.cancel_button.click()
        assert peer_id not in tab.trust_dialogs
        assert status_text(tab) == f"Error: The peer's certificate is not trusted yet (SHA-256 {fingerprint})."
        assert listener_tab.clients.rowCount() == 0  # refused inside the handshake: no password sent
        # Connect again: asked again; Trust remembers it (by host and port) and syncs
        tab.connect_row(0)
        await wait_until(lambda: peer_id in tab.trust_dialogs, 15)
        tab.trust_dialogs[peer_id].trust_button.click()
        await wait_until(lambda: status_text(tab) == "Connected (idle)", 15)
        key = f"127.0.0.1:{alice.bridge.port}"
        assert TrustStore(bob.session.db.path / TRUST_STORE_FILE).get(key) is not None
        await tab.disconnect_row(0)
        # alice makes a new identity and listens on the same port: a changed certificate is a warning
        port = alice.bridge.port
        assert port is not None
        await listener_tab.stop()
        await alice.session.run(GeneratedIdentity(alice.session.db.path).renew)
        await tls_listener(alice, allow, port)
        renewed = alice.bridge.fingerprint
        assert renewed and renewed != fingerprint
        tab.connect_row(0)
        await wait_until(lambda: peer_id in tab.trust_dialogs, 15)
        warning = tab.trust_dialogs[peer_id]
        assert warning.changed and warning.windowTitle() == "Certificate changed"
        assert warning.old_field is not None and warning.old_field.text() == fingerprint
        assert warning.new_field.text() == renewed
        assert not warning.trust_button.isEnabled()  # refused unless explicitly accepted
        warning.cancel_button.click()
        assert status_text(tab).startswith("Error: The peer's certificate changed since you trusted it")
        assert TrustStore(bob.session.db.path / TRUST_STORE_FILE).get(key).fingerprint == fingerprint  # type: ignore[union-attr]
        # accepted: replaced, and syncing again
        tab.connect_row(0)
        await wait_until(lambda: peer_id in tab.trust_dialogs, 15)
        warning = tab.trust_dialogs[peer_id]
        assert warning.checked_box is not None
        warning.checked_box.setChecked(True)
        warning.trust_button.click()
        await wait_until(lambda: status_text(tab) == "Connected (idle)", 15)
        assert TrustStore(bob.session.db.path / TRUST_STORE_FILE).get(key).fingerprint == renewed  # type: ignore[union-attr]
    finally:
        await bob.log_out()
        await alice.log_out()


async def test_auto_connect_leaves_alone_a_peer_the_user_disconnected(qtbot: QtBot, data_dir: Path) -> None:
    window = await signed_in(qtbot, data_dir, "alice", "pw")
    tab = window.browser_tab
    assert tab is not None and window.session is not None
    settings = window.session.settings
    await window.session.update_settings(replace(settings, replicator=replace(settings.replicator, auto_connect=True)))
    peer = PeerInfo("peer-1", "bob on pc", "ws://127.0.0.1:9/userdb", tls=False, discovered=True)  # nobody there
    try:
        tab.peer_found(peer)  # found on the network: connected by itself, offline and retrying
        await wait_until(lambda: tab.replications["peer-1"].running, 15)
        await tab.disconnect_row(tab.model.row_of("peer-1"))
        assert not tab.replications["peer-1"].running
        tab.peer_found(replace(peer, url="ws://127.0.0.1:10/userdb"))  # announced again (another port)
        assert not tab.replications["peer-1"].running  # the user's Disconnect stands
        tab.connect_row(tab.model.row_of("peer-1"))  # until the user connects it again
        assert tab.replications["peer-1"].running and "peer-1" not in tab.held_back
    finally:
        await window.log_out()
