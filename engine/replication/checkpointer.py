"""Checkpointer: reads, reconciles and saves a replication's checkpoint, locally and on the peer (protocol §6)."""

from __future__ import annotations

import logging

from engine.database import Database
from engine.json_codec import dumps, loads
from engine.replication.blip.socket import BlipSocket
from engine.replication.checkpoint import Checkpoint, reconcile
from engine.replication.db_runner import DbRunner
from engine.replication.errors import BlipError

__all__ = ["LOCAL_CHECKPOINT_PREFIX", "Checkpointer"]

log = logging.getLogger(__name__)

LOCAL_CHECKPOINT_PREFIX = "checkpoint/"


class Checkpointer:
    """Keeps one replication's checkpoint in the local database and on the peer."""

    def __init__(self, db: Database, runner: DbRunner, socket: BlipSocket, checkpoint_id: str) -> None:
        self.db = db
        self.runner = runner
        self.socket = socket
        self.checkpoint_id = checkpoint_id
        self.local_doc_id = LOCAL_CHECKPOINT_PREFIX + checkpoint_id
        self.saved = Checkpoint()
        #: found a local checkpoint but none on the peer: the peer does not remember this
        #: replication (another database at the same address, or its checkpoints were lost)
        self.peer_forgot = False
        self._remote_rev: str | None = None

    @staticmethod
    def read_local(db: Database, checkpoint_id: str) -> Checkpoint | None:
        """The checkpoint stored locally, or None."""
        stored = db.get_local(LOCAL_CHECKPOINT_PREFIX + checkpoint_id)
        return None if stored is None else Checkpoint.from_json(stored.body)

    async def _fetch_remote(self) -> Checkpoint | None:
        try:
            reply = await self.socket.request("getCheckpoint", {"client": self.checkpoint_id})
        except BlipError as exc:
            if exc.domain == "HTTP" and exc.code == 404:  # protocol §3.1: no checkpoint yet
                self._remote_rev = None
                return None
            raise
        assert reply is not None
        self._remote_rev = reply.properties.get("rev") or None
        try:
            return Checkpoint.from_json(loads(reply.body))
        except ValueError:
            return None

    async def load(self, *, reset: bool = False) -> Checkpoint:
        """Where to start: the reconciled local and remote checkpoints (none when ``reset``)."""
        local = None if reset else await self.runner.run(self.read_local, self.db, self.checkpoint_id)
        remote = await self._fetch_remote()
        self.peer_forgot = local is not None and remote is None
        start = Checkpoint() if reset else reconcile(local, remote)
        self.saved = start
        log.debug("checkpoint %s starts at local=%s remote=%s", self.checkpoint_id, start.local, start.remote)
        return start

    async def save(self, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` on the peer, then locally, unless nothing changed."""
        if checkpoint == self.saved:
            return
        body = checkpoint.to_json()
        for attempt in range(2):
            props = {"client": self.checkpoint_id, "rev": self._remote_rev or ""}
            try:
                reply = await self.socket.request("setCheckpoint", props, dumps(body))
            except BlipError as exc:
                if exc.code == 409 and attempt == 0:  # protocol §3.2: read the current rev and retry
                    await self._fetch_remote()
                    continue
                raise
            assert reply is not None
            self._remote_rev = reply.properties.get("rev") or None
            break
        await self.runner.run(self.db.put_local, self.local_doc_id, body)
        self.saved = checkpoint
