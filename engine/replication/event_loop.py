"""The event loop that runs the engine's own processes: uvloop where it is installed, else asyncio's.

``inventory-sync serve``, ``sync`` and ``browse`` and the app's engine process
run their listener, replicators and discovery on the loop :func:`run` makes.
uvloop (libuv underneath) wakes up and hands data to protocols faster than
asyncio's selector loop, and an edit's trip to a peer is a chain of such
wake-ups: two processes, four messages, two durable commits. In eight paired
runs of ``bench/sync.py`` S3 an edit reached the peer 0.44 ms sooner (median
of the differences, of a 3.5-4.7 ms total); bulk pulls (S1) were as fast on
either loop (see ``docs/notes.md``).

uvloop does not exist on Windows; there, and wherever it is not installed,
asyncio's own loop runs. ``INVENTORY_SYNC_EVENT_LOOP=asyncio`` asks for
asyncio's loop anyway (to tell a loop's bug from ours). The test suite runs on
the loop this module picks, and the accept path, WebSocket, TLS, LiteCore
interop and discovery tests on asyncio's loop as well (``both_loops``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["ENV_VAR", "loop_factory", "loop_name", "run"]

T = TypeVar("T")

log = logging.getLogger(__name__)

#: ``asyncio`` picks asyncio's own loop even where uvloop is installed.
ENV_VAR = "INVENTORY_SYNC_EVENT_LOOP"


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop :func:`run` uses here."""
    if os.environ.get(ENV_VAR, "").strip().lower() == "asyncio":
        return "asyncio"
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a new loop of the kind :func:`loop_name` names."""
    if loop_name() == "uvloop":
        import uvloop  # noqa: PLC0415 - only where it is installed and wanted

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new loop (as :func:`asyncio.run` does) and close the loop."""
    log.debug("running on %s's event loop", loop_name())
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
