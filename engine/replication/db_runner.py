"""Running database calls from asyncio code: inline, or on one worker thread.

Inline is fastest (LMDB calls take microseconds) and suits the command line
and benchmarks; a desktop app passes a thread so that no commit ever runs on
the GUI thread. Change notifications, which arrive on the committing thread,
are carried back to the event loop with :meth:`DbRunner.notify_soon`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["DbRunner"]

P = ParamSpec("P")
T = TypeVar("T")


class DbRunner:
    """Runs database work for one replication: inline or on a worker thread."""

    def __init__(self, *, threaded: bool = False) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="db") if threaded else None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def inline(self) -> bool:
        """Whether calls run on the caller's thread (a caller may then skip the ``await``)."""
        return self._executor is None

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` and return its result."""
        if self._executor is None:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def bind(self) -> None:
        """Remember the running loop, for :meth:`notify_soon` from other threads."""
        self._loop = asyncio.get_running_loop()

    def notify_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the event loop, from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            callback()
        else:
            loop.call_soon_threadsafe(callback)

    def close(self) -> None:
        """Stop the worker thread (if any)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
