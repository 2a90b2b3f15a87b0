"""RemoteRevisions: what the peer holds of each document, for one replicator (protocol §3.6, §9).

The pusher names the peer's revision as ``parentRevID``; a Couchbase Lite peer
answers anything else with a bare 409. The revisions live in the database
(:mod:`engine.db_remotes`), so they survive restarts. Pulled revisions are
recorded in the commit that stores them; what a push acknowledges, or what
the peer offers while we already have it, is written behind in batches (a
commit per pushed revision would cost a disk flush each) and always before the
checkpoint that covers it. Listeners (the pusher) hear of every change, to
retry proposals the peer refused for want of the right parent (LiteCore's
``docRemoteAncestorChanged``).
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
    """The revision the peer holds of each document: stored, plus what is waiting to be written."""

    def __init__(self, db: Database, runner: DbRunner, remote_id: int) -> None:
        self.db = db
        self.runner = runner
        self.remote_id = remote_id
        self._pending: dict[str, str] = {}
        self._flushing: dict[str, str] = {}
        self._listeners: list[RemoteListener] = []
        self._flush_task: asyncio.Task[None] | None = None

    def add_listener(self, listener: RemoteListener) -> None:
        """Call ``listener(doc ID, rev ID)`` whenever the peer's revision of a document is learned."""
        self._listeners.append(listener)

    async def get(self, doc_ids: Sequence[str]) -> list[str | None]:
        """The peer's revision of each document, or None when unknown."""
        stored = await self.runner.run(self.db.remote_revisions, self.remote_id, doc_ids)
        pending, flushing = self._pending, self._flushing
        if not pending and not flushing:
            return stored
        return [pending.get(d) or flushing.get(d) or s for d, s in zip(doc_ids, stored, strict=True)]

    def note(self, doc_id: str, rev_id: str) -> None:
        """The peer holds ``rev_id`` (it took our push, or offered a revision we have): write it soon."""
        self._pending[doc_id] = rev_id
        if len(self._pending) >= tuning.REMOTE_REVISIONS_BATCH and self._flush_task is None:
            self._flush_task = asyncio.create_task(self._flush_soon(), name="remote revisions")
        self._tell(doc_id, rev_id)

    def stored(self, revisions: Sequence[tuple[str, str]]) -> None:
        """Pulled revisions ``(doc ID, rev ID)`` were stored with their remote marks in one commit: tell listeners."""
        pending, flushing, listeners = self._pending, self._flushing, self._listeners
        for doc_id, rev_id in revisions:
            if doc_id in flushing:  # a write in progress holds an older value: write this one after it
                pending[doc_id] = rev_id
            elif pending:
                pending.pop(doc_id, None)
            for listener in listeners:
                listener(doc_id, rev_id)

    def _tell(self, doc_id: str, rev_id: str) -> None:
        for listener in self._listeners:
            listener(doc_id, rev_id)

    async def _flush_soon(self) -> None:
        try:
            await self.flush()
        finally:
            self._flush_task = None

    async def flush(self) -> None:
        """Write what is waiting (before a checkpoint is saved, and when a session ends)."""
        while self._pending:
            batch, self._pending = self._pending, {}
            self._flushing.update(batch)
            try:
                await self.runner.run(self.db.set_remote_revisions, self.remote_id, list(batch.items()))
            except BaseException:
                self._pending = {**batch, **self._pending}  # not written: keep them for the next attempt
                raise
            finally:
                for doc_id in batch:
                    self._flushing.pop(doc_id, None)
            log.debug("remembered %d revisions on remote #%d", len(batch), self.remote_id)
