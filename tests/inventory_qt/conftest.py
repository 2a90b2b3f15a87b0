"""Fixtures for the desktop app's tests: async tests run on a qasync loop, so Qt and asyncio share one loop.

Pitfall (../shared/stack.md §4): never use a blocking qtbot wait (waitSignal, waitUntil, qWait) inside an
async test; await :func:`wait_until` or a signal turned into a future instead. Every test has a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import qasync
from PySide6.QtCore import SignalInstance
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from inventory_qt.discovery_bridge import INTERFACES_ENV, DiscoveryBridge, ListenerAdvertising
from inventory_qt.settings import TlsMode
from inventory_qt.ui.main_window import MainWindow
from tests.conftest import TIME_UNIT, wait_until

__all__ = ["next_emission", "signed_in", "wait_until"]


def _qasync_loop() -> asyncio.AbstractEventLoop:
    app = QApplication.instance() or QApplication([])
    return qasync.QEventLoop(app)  # type: ignore[no-any-return]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Async tests under tests/inventory_qt run on a qasync loop (the app's)."""
    return {"qasync": _qasync_loop}


async def next_emission(signal: SignalInstance, timeout: float = 5.0) -> tuple[Any, ...]:
    """Wait for ``signal``'s next emission (its arguments), failing after ``timeout * TIME_UNIT`` s."""
    future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

    def fire(*args: Any) -> None:
        if not future.done():
            future.set_result(args)

    signal.connect(fire)
    try:
        return await asyncio.wait_for(future, timeout * TIME_UNIT)
    finally:
        signal.disconnect(fire)


@pytest.fixture(autouse=True)
def discovery_on_loopback(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Discovery (windows and the screenshot subprocess) on 127.0.0.1 only: nothing leaves the machine.

    Only tests marked ``discovery`` browse and advertise in this process: in the others a
    peer advertised on 127.0.0.1 by another test process of the machine would add rows
    to the Browser tab, and their listeners' adverts would show up in that process.
    """
    monkeypatch.setenv(INTERFACES_ENV, "127.0.0.1")
    if request.node.get_closest_marker("discovery") is None:

        async def not_browsing(self: DiscoveryBridge) -> None:
            return None

        def not_advertising(self: ListenerAdvertising, *_: object) -> asyncio.Future[None]:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        monkeypatch.setattr(DiscoveryBridge, "start", not_browsing)
        monkeypatch.setattr(ListenerAdvertising, "start", not_advertising)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory for users' databases."""
    return tmp_path / "data"


async def signed_in(qtbot: QtBot, data_dir: Path, user: str, password: str, *, tls: bool = False) -> MainWindow:
    """A shown window signed in as ``user`` (its database in ``data_dir``).

    Its listener serves plain ``ws://`` unless ``tls``: tests of other things need no trust
    question; the default (TLS with a generated identity) has tests of its own.
    """
    window = MainWindow(data_dir)
    qtbot.addWidget(window)
    window.show()
    await window.sign_in(user, password)
    assert window.session is not None, window.login.status.text()
    if not tls:
        await plain_listener(window)
    return window


async def plain_listener(window: MainWindow) -> None:
    """Have ``window``'s listener serve plain ``ws://``."""
    assert window.session is not None
    settings = window.session.settings
    await window.session.update_settings(
        replace(settings, listener=replace(settings.listener, tls_mode=TlsMode.DISABLED))
    )
