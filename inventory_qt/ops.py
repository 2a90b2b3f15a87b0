"""Running asynchronous work from widgets: a task per action, its failure shown in words.

:func:`run_op` is the app's one way to start work from a button or a menu
(Anki ``CollectionOp``): it disables the given widgets, awaits the work on the
asyncio loop that qasync runs in the Qt event loop, re-enables them in
``finally`` and shows a failure with :func:`~inventory_qt.errors.show_error`
(cancellation is silent). It returns the task, so tests can await it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from PySide6.QtWidgets import QWidget

from inventory_qt.errors import show_error

__all__ = ["run_op"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_running: set[asyncio.Task[Any]] = set()


def run_op(
    work: Awaitable[T],
    *,
    parent: QWidget | None = None,
    disable: Sequence[QWidget] = (),
    on_error: Callable[[BaseException], None] | None = None,
    after: Callable[[], None] | None = None,
) -> asyncio.Task[T | None]:
    """Run ``work`` as a task; disable ``disable`` meanwhile; show a failure (or pass it to ``on_error``).

    ``after`` runs last, whatever happened (to set buttons from the new state).
    """

    async def wrapper() -> T | None:
        for widget in disable:
            widget.setEnabled(False)
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if on_error is not None:
                on_error(exc)
            else:
                show_error(parent, exc)
            return None
        finally:
            for widget in disable:
                with contextlib.suppress(RuntimeError):  # the widget was deleted meanwhile (log out)
                    widget.setEnabled(True)
            if after is not None:
                after()

    task = asyncio.ensure_future(wrapper())
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task
