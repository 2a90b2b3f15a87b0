"""Fixtures for the desktop app's tests: async tests run on a qasync loop, so Qt and asyncio share one loop.

Pitfall (../shared/stack.md §4): never use a blocking qtbot wait (waitSignal, waitUntil, qWait) inside an
async test; await :func:`wait_until` or a signal turned into a future instead. Every test has a timeout.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import qasync
from PySide6.QtCore import SignalInstance
from PySide6.QtWidgets import QApplication

from tests.conftest import TIME_UNIT, wait_until

__all__ = ["next_emission", "wait_until"]


def _outlive_pyside_6_12_refcount_bug() -> None:
    """PySide6 6.12.0 under Python 3.11 drops a reference to None (and to a bool argument) on every
    void call, so a long test session aborts with "none_dealloc" or "bool_dealloc" once the counts
    reach zero (pyproject.toml keeps the app below 6.12; docs/notes.md). Where that version is
    installed anyway, give the three singletons references enough to outlive the session, as Python
    3.12 made them immortal. Does nothing elsewhere."""
    import ctypes  # noqa: PLC0415

    import PySide6  # noqa: PLC0415

    if sys.version_info >= (3, 12) or not PySide6.__version__.startswith("6.12."):
        return
    for singleton in (None, True, False):
        ctypes.c_ssize_t.from_address(id(singleton)).value += 1 << 40  # ob_refcnt, the first field


_outlive_pyside_6_12_refcount_bug()


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


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory for users' databases."""
    return tmp_path / "data"
