"""The engine's own asyncio loop, on its own thread: replication never runs on the GUI thread.

The app now runs its listener and replicators in a child process
(:mod:`inventory_qt.engine_process`); this thread is where they run with
``ENGINE_MODE = "thread"`` (the design before, kept for comparison: during a
50,000-document pull the GUI thread still waited 20-56 ms at a time for the
GIL, docs/notes.md).

qasync runs the app's asyncio work inside the Qt event loop, but the
replication protocol itself (reading sockets, decoding BLIP frames and JSON,
deciding what to ask for) handles whatever a socket read brought in one go:
measured with ``bench/ui_lag.py``, that blocked the GUI thread for 130-215 ms
at a time during a 5,000-document pull. So the listener and the replicators
run on this loop instead; the GUI loop awaits their calls
(:meth:`EngineThread.call`) and hears of their events through queued Qt
signals (:mod:`inventory_qt.bridge`). Python switches threads at least every
5 ms when both want to run, which bounds what the engine can take from the
GUI thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["EngineThread"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds :meth:`EngineThread.stop` waits for the thread to end.
JOIN_TIMEOUT = 5.0


class EngineThread:
    """An asyncio loop running on a thread of its own until :meth:`stop`."""

    def __init__(self, name: str = "engine") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            pending = [task for task in asyncio.all_tasks(self._loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    @property
    def running(self) -> bool:
        """Whether the loop accepts work."""
        return self._thread.is_alive() and not self._loop.is_closed()

    async def call(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run the coroutine ``work()`` on the engine loop; await its result from the caller's loop.

        Cancelling the caller cancels the work.
        """
        future = asyncio.run_coroutine_threadsafe(work(), self._loop)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Call ``fn(*args)`` on the engine loop (where it may start tasks)."""
        self._loop.call_soon_threadsafe(fn, *args)

    async def stop(self) -> None:
        """Cancel what still runs there, stop the loop and wait (a bounded time) for the thread."""
        if self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, JOIN_TIMEOUT)
        if self._thread.is_alive():
            log.warning("the engine thread did not end within %.0f s", JOIN_TIMEOUT)
