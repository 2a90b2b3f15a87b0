"""The Browser tab: URLs refused in words, context menu actions, the trust-on-first-use question."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from engine.replication.errors import ReplicationError
from engine.replication.replicator_types import ActivityLevel, ReplicatorStatus
from inventory_qt.models.peers_model import PeerInfo
from inventory_qt.ui.main_window import MainWindow
from tests.inventory_qt.conftest import wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


class CertificateRefusedError(ReplicationError):
    """What the TLS module's refusal will carry (a fingerprint, and whether it changed)."""

    def __init__(self, fingerprint: str, *, changed: bool) -> None:
        super().__init__("certificate refused")
        self.fingerprint = fingerprint
        self.changed = changed


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
        assert any("Port out of range" in b.text() for b in boxes) and len(boxes) == 4
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
        replication.statusChanged.emit(  # as the engine reports a refusal
            ReplicatorStatus(ActivityLevel.STOPPED, error=CertificateRefusedError("AB:CD:EF", changed=False))
        )
        box = next(b for b in tab.findChildren(QMessageBox) if b.windowTitle() == "Trust this peer?")
        assert "AB:CD:EF" in box.text()
        next(b for b in box.buttons() if b.text() == "Trust").click()
        assert tab.trusted == {"ws://127.0.0.1:9/userdb": "AB:CD:EF"}
        assert replication.running
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
