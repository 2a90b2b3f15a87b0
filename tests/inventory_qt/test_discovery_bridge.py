"""Discovery between two app windows in one process, on 127.0.0.1 only (the conftest's interfaces).

Alice's listener is advertised (TLS, her generated identity); Bob's window lists
it and not his own; with auto-connect on, Bob connects by himself, trusts
Alice's certificate once (kept under her peer ID), syncs an edit, and follows
her listener when it restarts on another port, without being asked again.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from engine.replication.trust_store import TRUST_STORE_FILE, TrustStore, peer_id_key
from inventory_qt.bridge import ListenerState
from inventory_qt.discovery_bridge import discovery_interfaces
from inventory_qt.models.items_model import Column
from inventory_qt.models.peers_model import PeerColumn
from inventory_qt.settings import TlsMode
from inventory_qt.ui.main_window import MainWindow
from tests.inventory_qt.conftest import signed_in, wait_until

pytestmark = [pytest.mark.timeout(90)]

#: mDNS on loopback: registering takes about 1.2 s (probing), a found peer a fraction of that
WAIT = 20


def quantity(window: MainWindow, key: str) -> int | None:
    assert window.list_tab is not None
    model = window.list_tab.model
    row = model.row_for(key)
    item = model.draft_row(row).item if row >= 0 else None
    return None if item is None else item.value


def peer_cell(window: MainWindow, peer_id: str, column: PeerColumn) -> str:
    assert window.browser_tab is not None
    row = window.browser_tab.model.row_of(peer_id)
    return "" if row < 0 else str(window.browser_tab.model.index(row, column).data())


async def edit(window: MainWindow, key: str, value: int) -> None:
    assert window.list_tab is not None
    model = window.list_tab.model
    model.setData(model.index(model.row_for(key), Column.QUANTITY), value)
    await window.list_tab.save()


def test_interfaces_come_from_the_option_else_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert discovery_interfaces(["10.0.0.1"]) == ["10.0.0.1"]
    monkeypatch.setenv("INVENTORY_DISCOVERY_INTERFACES", "127.0.0.1, ::1")
    assert discovery_interfaces() == ["127.0.0.1", "::1"]
    monkeypatch.setenv("INVENTORY_DISCOVERY_INTERFACES", "")
    assert discovery_interfaces() is None


@pytest.mark.asyncio
@pytest.mark.discovery
async def test_two_windows_find_each_other_auto_connect_and_follow_a_restarted_listener(
    qtbot: QtBot, tmp_path: Path
) -> None:
    allow = tmp_path / "allow.json"
    allow.write_text('{"name": "bob", "password": "bob-pw"}\n')
    alice = await signed_in(qtbot, tmp_path / "a", "alice", "alice-pw")
    bob = await signed_in(qtbot, tmp_path / "b", "bob", "bob-pw")
    assert alice.session is not None and alice.bridge is not None and alice.listener_tab is not None
    assert bob.session is not None and bob.bridge is not None and bob.listener_tab is not None
    assert bob.browser_tab is not None and bob.discovery is not None and alice.discovery is not None
    tab = bob.browser_tab
    try:
        alice_id = await alice.session.run(lambda: alice.session.db.peer_id)  # type: ignore[union-attr]
        bob_id = await bob.session.run(lambda: bob.session.db.peer_id)  # type: ignore[union-attr]
        settings = alice.session.settings
        listener = replace(settings.listener, tls_mode=TlsMode.GENERATED, allow_list=str(allow), advertise=True)
        await alice.session.update_settings(replace(settings, listener=listener))
        settings = bob.session.settings
        await bob.session.update_settings(replace(settings, replicator=replace(settings.replicator, auto_connect=True)))
        await wait_until(lambda: bob.discovery is not None and bob.discovery.running, WAIT)
        # both listen and are advertised; Bob lists Alice (found on the network), never himself
        await alice.listener_tab.start(host="127.0.0.1")
        await bob.listener_tab.start(host="127.0.0.1")
        await wait_until(lambda: alice.bridge is not None and alice.bridge.advertised, WAIT)
        assert alice.listener_tab.advertised.text().startswith("Yes, as \u201calice on ")
        await wait_until(lambda: tab.model.row_of(alice_id) >= 0, WAIT)
        info = tab.model.peer_row(tab.model.row_of(alice_id)).info
        assert info.discovered and info.tls and info.fingerprint == alice.bridge.fingerprint
        assert info.url == alice.bridge.urls[0] and info.name.startswith("alice on ")
        assert peer_cell(bob, alice_id, PeerColumn.TLS) == f"TLS {alice.bridge.fingerprint[:8]}…"
        await wait_until(lambda: bob.bridge is not None and bob.bridge.advertised, WAIT)
        assert alice.browser_tab is not None
        await wait_until(lambda: alice.browser_tab is not None and alice.browser_tab.model.row_of(bob_id) >= 0, WAIT)
        assert tab.model.row_of(bob_id) < 0 and all(r.info.peer_id != bob_id for r in tab.model.peers)
        # auto-connect: Bob connects by himself; trust on first use asks once, keyed by Alice's peer ID
        await wait_until(lambda: alice_id in tab.trust_dialogs, WAIT)
        tab.trust_dialogs[alice_id].trust_button.click()
        await wait_until(lambda: peer_cell(bob, alice_id, PeerColumn.STATUS) == "Connected (idle)", WAIT)
        store = TrustStore(bob.session.db.path / TRUST_STORE_FILE)
        assert store.get(peer_id_key(alice_id)) is not None
        await edit(alice, "Flour", 321)
        await wait_until(lambda: quantity(bob, "Flour") == 321, WAIT)
        # Alice's listener restarts on another port: re-announced, followed, no new question
        old_port = alice.bridge.port
        await alice.listener_tab.restart()
        assert alice.bridge.state is ListenerState.RUNNING and alice.bridge.port != old_port
        assert alice.bridge.advertised
        new_address = f"127.0.0.1:{alice.bridge.port}"
        await wait_until(lambda: peer_cell(bob, alice_id, PeerColumn.ADDRESS) == new_address, WAIT)
        await edit(alice, "Sugar", 55)
        await wait_until(lambda: quantity(bob, "Sugar") == 55, WAIT)
        assert peer_cell(bob, alice_id, PeerColumn.STATUS) in ("Connected (idle)", "Busy")
        assert not tab.trust_dialogs
        # Stop withdraws the advert: Bob's running replication keeps the row and retries
        await alice.listener_tab.stop()
        assert not alice.bridge.advertised and alice.listener_tab.advertised.text() == "No"
        await wait_until(lambda: not peer_cell(bob, alice_id, PeerColumn.STATUS).startswith("Connected"), WAIT)
        assert tab.model.row_of(alice_id) >= 0
    finally:
        await bob.log_out()
        await alice.log_out()
    assert bob.discovery is None and alice.session is None


@contextlib.asynccontextmanager
async def listening_advertised(qtbot: QtBot, tmp_path: Path) -> AsyncIterator[MainWindow]:
    """Alice signed in, her listener started on 127.0.0.1 with advertising on; logged out after."""
    alice = await signed_in(qtbot, tmp_path / "a", "alice", "alice-pw")
    assert alice.session is not None and alice.listener_tab is not None
    try:
        settings = alice.session.settings
        await alice.session.update_settings(replace(settings, listener=replace(settings.listener, advertise=True)))
        await alice.listener_tab.start(host="127.0.0.1")
        yield alice
    finally:
        await alice.log_out()


def advertised_port(window: MainWindow) -> int | None:
    assert window.bridge is not None
    advertiser = window.bridge.advertising._advertiser
    return advertiser.port if advertiser is not None else None


@pytest.mark.asyncio
@pytest.mark.discovery
async def test_an_engine_that_ended_takes_its_advert_with_it_and_a_new_start_announces_the_new_port(
    qtbot: QtBot, tmp_path: Path
) -> None:
    async with listening_advertised(qtbot, tmp_path) as alice:
        assert alice.session is not None and alice.bridge is not None and alice.listener_tab is not None
        bridge = alice.bridge
        await wait_until(lambda: bridge.advertised, WAIT)
        pid = alice.session.engine.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        # the listener is gone with its engine: so is its advert (browsers must not try the dead port)
        await wait_until(lambda: bridge.state is ListenerState.STOPPED and not bridge.advertised, WAIT)
        assert advertised_port(alice) is None and alice.listener_tab.advertised.text().startswith("No")
        await alice.listener_tab.start(host="127.0.0.1")
        await wait_until(lambda: bridge.advertised, WAIT)
        assert advertised_port(alice) == bridge.port


@pytest.mark.asyncio
@pytest.mark.discovery
async def test_a_listener_restarted_while_its_advert_is_probing_is_announced_on_its_new_port(
    qtbot: QtBot, tmp_path: Path
) -> None:
    async with listening_advertised(qtbot, tmp_path) as alice:
        assert alice.bridge is not None and alice.listener_tab is not None
        bridge = alice.bridge
        assert bridge.advertising.starting  # probing its name takes about a second
        old_port = bridge.port
        await alice.listener_tab.restart()
        assert bridge.state is ListenerState.RUNNING and bridge.port != old_port
        await wait_until(lambda: bridge.advertised, WAIT)
        assert advertised_port(alice) == bridge.port
