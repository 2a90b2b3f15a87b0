"""RemoteRevisions: what the peer holds of each document, for one replicator (protocol §3.6, §9).

The pusher names the peer's revision as ``parentRevID``; a Couchbase Lite peer
answers anything else with a bare 409. The revisions live in the database
(:mod:`engine.db_remotes`), so they survive restarts. Pulled revisions are
recorded in the commit that stores them; what a push acknowledges, or what
the peer offers while we already have it, is noted in the database at once
and written behind in batches (a commit per pushed revision would cost a
disk flush each), always before the checkpoint that covers it. Listeners
(the pusher) hear of every change, to retry proposals the peer refused for
want of the right parent (LiteCore's ``docRemoteAncestorChanged``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from engine.database import Database
from engine.replication import tuning
from engine.replication.db_runner import DbRunner

__all__ = ["RemoteRevisions"]

log = logging.getLogger(__name__)

#: Called with (doc ID, rev ID) whenever the peer's revision of a document is learned.
RemoteListener = Callable[[str, str], None]


class RemoteRevisions:
    """The revision the peer holds of each document, as the database remembers it, and when to write it."""

    def __init__(self, db: Database, runner: DbRunner, remote_id: int) -> None:
        self.db = db
        self.runner = runner
        self.remote_id = remote_id
        self._listeners: list[RemoteListener] = []
        self._flush_task: asyncio.Task[None] | None = None

    def add_listener(self, listener: RemoteListener) -> None:
        """Call ``listener(doc ID, rev ID)`` whenever the peer's revision of a document is learned."""
        self._listeners.append(listener)

    async def get(self, doc_ids: Sequence[str]) -> list[str | None]:
        """The peer's revision of each document, or None when unknown."""
        return await self.runner.run(self.db.remote_revisions, self.remote_id, doc_ids)

    def note(self, doc_id: str, rev_id: str) -> None:
        """The peer holds ``rev_id`` (it took our push, or offered a revision we have): noted now
        (reads and pruning see it at once), written soon."""
        waiting = self.db.note_remote_revision(self.remote_id, doc_id, rev_id)
        if waiting >= tuning.REMOTE_REVISIONS_BATCH and self._flush_task is None:
            self._flush_task = asyncio.create_task(self._flush_soon(), name="remote revisions")
        self._tell(doc_id, rev_id)

    def stored(self, revisions: Sequence[tuple[str, str]]) -> None:
        """Pulled revisions ``(doc ID, rev ID)`` were stored with their remote records in one commit: tell listeners."""
        for doc_id, rev_id in revisions:
            self._tell(doc_id, rev_id)

    def _tell(self, doc_id: str, rev_id: str) -> None:
        for listener in self._listeners:
            listener(doc_id, rev_id)

    async def _flush_soon(self) -> None:
        try:
            await self.flush()
        finally:
            self._flush_task = None

    async def flush(self) -> None:
        """Write what is noted, including what is noted while it writes (before a checkpoint is
        saved, and when a session ends)."""
        while written := await self.runner.run(self.db.write_noted_remote_revisions, self.remote_id):
            log.debug("remembered %d revisions on remote #%d", written, self.remote_id)
