"""The peers model: Qt's model tester, status words and colours, our own listener never listed."""

from __future__ import annotations

from PySide6.QtTest import QAbstractItemModelTester
from pytestqt.qtbot import QtBot

from engine.replication.errors import HTTPStatusError, TransportError
from engine.replication.replicator_types import ActivityLevel, Progress, ReplicatorStatus
from inventory_qt.models.peers_model import PeerColumn, PeerInfo, PeerRole, PeersModel, manual_peer
from inventory_qt.peer_status import PeerState

FATAL = QAbstractItemModelTester.FailureReportingMode.Fatal


def status_text(model: PeersModel, row: int = 0) -> str:
    return str(model.data(model.index(row, PeerColumn.STATUS)))


def test_model_passes_the_tester_and_words_every_state(qtbot: QtBot) -> None:
    model = PeersModel()
    QAbstractItemModelTester(model, FATAL)
    info = manual_peer("ws://[fe80::1]:4984/userdb")
    assert model.upsert_peer(info)
    assert model.data(model.index(0, PeerColumn.ADDRESS)) == "[fe80::1]:4984"  # IPv6 stays in brackets
    assert status_text(model) == "Disconnected"
    model.set_status(info.peer_id, ReplicatorStatus(ActivityLevel.CONNECTING))
    assert status_text(model) == "Connecting\u2026"
    model.set_status(info.peer_id, ReplicatorStatus(ActivityLevel.BUSY, Progress(5, 20)))
    assert status_text(model) == "Busy: 5 of 20" and model.data(model.index(0, 3), PeerRole.PROGRESS) == (5, 20)
    model.set_status(info.peer_id, ReplicatorStatus(ActivityLevel.IDLE, Progress(20, 20)))
    assert status_text(model) == "Connected (idle)" and model.data(model.index(0, 3), PeerRole.PROGRESS) is None
    refused = TransportError("cannot connect")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    model.set_status(info.peer_id, ReplicatorStatus(ActivityLevel.OFFLINE, error=refused, retry_in=4.0))
    assert status_text(model).startswith("Offline (retrying in ")
    assert "nobody is listening" in status_text(model)
    assert model.data(model.index(0, 0), PeerRole.STATE) == PeerState.OFFLINE
    model.set_status(info.peer_id, ReplicatorStatus(ActivityLevel.STOPPED, error=HTTPStatusError(401, "unauthorized")))
    assert status_text(model) == "Error: Wrong user name or password."
    model.set_status(info.peer_id, ReplicatorStatus())
    assert status_text(model) == "Disconnected"
    # discovery updates a row in place, then removes it
    assert model.upsert_peer(PeerInfo(info.peer_id, "Shop", info.url, tls=True, fingerprint="AB:CD", discovered=True))
    assert model.rowCount() == 1 and model.data(model.index(0, 0)) == "Shop"
    model.remove_peer(info.peer_id)
    assert model.rowCount() == 0


def test_our_own_listener_is_never_listed(qtbot: QtBot) -> None:
    model = PeersModel()
    QAbstractItemModelTester(model, FATAL)
    mine, other = manual_peer("ws://127.0.0.1:5000/userdb"), manual_peer("ws://127.0.0.1:6000/userdb")
    assert model.upsert_peer(mine) and model.upsert_peer(other)
    model.set_own_urls([mine.url])
    assert [row.info.url for row in model.peers] == [other.url]
    assert not model.upsert_peer(mine)
    model.set_own_peer_id("peer-42")
    assert not model.upsert_peer(PeerInfo("peer-42", "me", "ws://10.0.0.2:5000/userdb", discovered=True))
