"""The sync engine's child process: it dies -> said in words, restartable; log out ends it; commits reach the app."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from engine.list_schema import LIST_DOC_ID
from inventory_qt import engine_process, session
from inventory_qt.bridge import ListenerState
from inventory_qt.engine_protocol import EngineStoppedError, Poke
from inventory_qt.models.items_model import Column
from inventory_qt.ui.main_window import MainWindow
from tests.inventory_qt.conftest import next_emission, plain_listener, wait_until

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]


async def signed_in(qtbot: QtBot, data_dir: Path, user: str, password: str) -> MainWindow:
    window = MainWindow(data_dir)
    qtbot.addWidget(window)
    await window.sign_in(user, password)
    assert window.session is not None, window.login.status.text()
    await plain_listener(window)
    return window


def gone(pid: int) -> bool:
    """Whether no process ``pid`` exists (an ended child that was not reaped still does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def quantity(window: MainWindow, key: str) -> int | None:
    assert window.list_tab is not None
    model = window.list_tab.model
    item = model.draft_row(model.row_for(key)).item
    return None if item is None else item.value


async def test_a_dead_engine_is_said_in_words_and_starts_again(qtbot: QtBot, data_dir: Path) -> None:
    window = await signed_in(qtbot, data_dir, "alice", "pw")
    assert window.session is not None and window.listener_tab is not None and window.bridge is not None
    assert window.browser_tab is not None
    engine = window.session.engine
    assert engine.mode == "process" and engine.pid is not None  # started at sign-in
    try:
        await window.listener_tab.start(host="127.0.0.1")
        assert window.bridge.state is ListenerState.RUNNING
        window.browser_tab.add_url("ws://127.0.0.1:9/userdb")  # nobody there: offline, retrying
        await wait_until(lambda: "Offline" in str(window.browser_tab.model.index(0, 3).data()), 15)  # type: ignore[union-attr]
        first = engine.pid
        assert first is not None and not gone(first)
        ended = next_emission(window.bridge.failed, 15)
        os.kill(first, signal.SIGKILL)
        (error,) = await ended
        assert isinstance(error, EngineStoppedError)
        # the listener stopped, its tab says why and can start again; the peer row says why too
        assert window.bridge.state is ListenerState.STOPPED and window.listener_tab.start_button.isEnabled()
        assert "The listener stopped: The sync engine stopped unexpectedly" in window.listener_tab.error_label.text()
        await wait_until(lambda: "stopped unexpectedly" in str(window.browser_tab.model.index(0, 3).data()))  # type: ignore[union-attr]
        assert "with errors" in window.summary.text()
        await window.listener_tab.start(host="127.0.0.1")
        assert window.bridge.state is ListenerState.RUNNING and engine.pid not in (None, first)
        window.browser_tab.connect_row(0)
        await wait_until(lambda: "Offline" in str(window.browser_tab.model.index(0, 3).data()), 15)  # type: ignore[union-attr]
    finally:
        await window.log_out()


async def test_log_out_ends_the_engine_process(qtbot: QtBot, data_dir: Path) -> None:
    window = await signed_in(qtbot, data_dir, "alice", "pw")
    assert window.session is not None and window.listener_tab is not None
    engine = window.session.engine
    await window.listener_tab.start(host="127.0.0.1")
    pid = engine.pid
    assert pid is not None and not gone(pid)
    await window.log_out()
    assert gone(pid) and not engine.running


async def test_an_engine_that_does_not_answer_is_killed_at_log_out(
    qtbot: QtBot, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_process, "SHUTDOWN_TIMEOUT", 0.2)
    monkeypatch.setattr(engine_process, "KILL_TIMEOUT", 0.5)
    window = await signed_in(qtbot, data_dir, "alice", "pw")
    assert window.session is not None and window.listener_tab is not None and window.bridge is not None
    engine = window.session.engine
    await window.listener_tab.start(host="127.0.0.1")
    pid = engine.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # frozen: it neither answers nor ends when terminated
    monkeypatch.setattr("inventory_qt.bridge.STOP_TIMEOUT", 0.2)
    await window.log_out()
    assert gone(pid) and window.session is None and window.bridge is None


async def test_documents_the_engine_pulls_reach_the_list_at_once_and_saves_are_pushed_at_once(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_polling(*_: object) -> None:  # the app's own half-second poll: not the path tested
        return None

    monkeypatch.setattr(session, "follow_external_changes", no_polling)
    # the engine processes' own looks for the app's commits come after the test's time out: a save can
    # reach the other window only because the app pokes its engine
    monkeypatch.setattr(engine_process, "EXTERNAL_CHANGES_INTERVAL", 3600.0)
    alice = await signed_in(qtbot, tmp_path / "a", "alice", "alice-pw")
    bob = await signed_in(qtbot, tmp_path / "b", "alice", "alice-pw")  # the same user on another computer
    assert alice.listener_tab is not None and alice.bridge is not None and alice.list_tab is not None
    assert bob.browser_tab is not None and bob.list_tab is not None and bob.session is not None
    try:
        await alice.listener_tab.start(host="127.0.0.1")
        bob.browser_tab.add_url(alice.bridge.urls[0])
        await wait_until(lambda: str(bob.browser_tab.model.index(0, 3).data()) == "Connected (idle)", 15)  # type: ignore[union-attr]
        pokes: list[object] = []
        sent = bob.session.engine._send
        monkeypatch.setattr(bob.session.engine, "_send", lambda m: (pokes.append(m), sent(m)))
        model = alice.list_tab.model
        model.setData(model.index(model.row_for("Flour"), Column.QUANTITY), 777)
        await alice.list_tab.save()
        # alice's engine process pushes it, bob's pulls and commits it, and tells bob's window
        while quantity(bob, "Flour") != 777:
            changes = (await next_emission(bob.session.changed, 10))[0]
            if LIST_DOC_ID in changes.doc_ids:
                await next_emission(bob.list_tab.loaded, 10)
        # a save in bob's window tells his engine process to look now
        model = bob.list_tab.model
        model.setData(model.index(model.row_for("Rice"), Column.QUANTITY), 5)
        await bob.list_tab.save()
        assert any(isinstance(m, Poke) for m in pokes)
        while quantity(alice, "Rice") != 5:
            await next_emission(alice.list_tab.loaded, 10)
    finally:
        await bob.log_out()
        await alice.log_out()


async def test_an_engine_that_ends_while_the_listener_restarts_leaves_it_stopped(
    qtbot: QtBot, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = await signed_in(qtbot, data_dir, "alice", "pw")
    assert window.session is not None and window.listener_tab is not None and window.bridge is not None
    bridge = window.bridge
    try:
        await window.listener_tab.start(host="127.0.0.1")
        pid = window.session.engine.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # the restart's stop waits for an answer that never comes
        restarting = window.listener_tab.restart()
        await wait_until(lambda: bridge.state is ListenerState.STOPPING)
        os.kill(pid, signal.SIGKILL)
        await restarting
        # the buttons are usable again: stopped, with Start enabled, and Start works
        assert bridge.state is ListenerState.STOPPED and window.listener_tab.start_button.isEnabled()
        await window.listener_tab.start(host="127.0.0.1")
        assert bridge.state is ListenerState.RUNNING
    finally:
        await window.log_out()
