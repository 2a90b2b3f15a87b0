"""Following changes that other processes commit to the same database files.

Several processes may open one database (say ``inventory-sync serve`` and
``inventory-sync set`` in another terminal). LMDB tells none of them about
the others' commits, so listeners and replicators poll for them: one key
read per interval, and the usual change notifications when something is new.
"""

from __future__ import annotations

import asyncio
import logging

from engine.database import Database
from engine.errors import EngineError
from engine.replication import tuning
from engine.replication.db_runner import DbRunner

__all__ = ["follow_external_changes"]

log = logging.getLogger(__name__)


async def follow_external_changes(db: Database, runner: DbRunner, interval: float | None = None) -> None:
    """Until cancelled: every ``interval`` seconds, announce what other processes committed to ``db``.

    ``interval`` defaults to :data:`tuning.EXTERNAL_CHANGES_INTERVAL`, read at the call.
    """
    if interval is None:
        interval = tuning.EXTERNAL_CHANGES_INTERVAL
    failing = False
    while True:
        await asyncio.sleep(interval)
        try:
            await runner.run(db.poll_external_changes)
            failing = False
        except EngineError as exc:  # closed or unreadable: the owner of the database will hear of it
            if not failing:  # once per failing spell, not twice a second
                log.warning("cannot check %s for changes by other processes: %s", db.path, exc)
            failing = True
