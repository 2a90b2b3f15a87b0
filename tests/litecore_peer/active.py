"""A strict double of a Couchbase Lite 3.0 Replicator (LiteCore's active side).

Replicator.cc and Checkpointer.cc as seen on the wire (protocol §3, §6, §9): upgrade with
challenge auth (:mod:`.handshake`); ``getCheckpoint`` first, uncompressed, ``client=cp-<base64
SHA-1>``; then the puller (:mod:`.active_pull`) and the pusher (:mod:`.active_push`); at the end
``setCheckpoint`` with the revision ``getCheckpoint`` returned (one re-read and retry after a
409) and a close with 1000. The revision known to be on the remote is kept in the
:class:`PeerStore` per remote URL, so a new replicator on the same store still knows it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from typing import Any

from tests.litecore_peer.active_pull import ActivePuller
from tests.litecore_peer.active_push import ActivePusher
from tests.litecore_peer.connection import BlipConnection, ConnectionClosedError
from tests.litecore_peer.handshake import HandshakeError, Upgraded, client_handshake
from tests.litecore_peer.outgoing import RevSender
from tests.litecore_peer.store import PeerStore
from tests.litecore_peer.tls import ClientTLS

__all__ = ["StrictReplicator"]

log = logging.getLogger(__name__)


class StrictReplicator:
    """An active replicator on a :class:`PeerStore`; see the module docstring."""

    def __init__(
        self,
        store: PeerStore,
        url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        push: bool = True,
        pull: bool = True,
        continuous: bool = False,
        tls: ClientTLS | None = None,
    ) -> None:
        self.store = store
        self.tls = tls
        self.url = url
        self.username = username
        self.password = password
        self.push = push
        self.pull = pull
        self.continuous = continuous
        #: Everything the peer did that a real LiteCore replicator would refuse or choke on.
        self.violations: list[str] = []
        #: Replication errors a LiteCore replicator would report (HTTP failures, refused lists...).
        self.errors: list[str] = []
        self.notes: list[str] = []
        #: Documents whose push the peer refused with 409.
        self.conflicts: set[str] = set()
        #: (docID, pulled revID, new revID or None) for each conflict resolved after a pull.
        self.resolved: list[tuple[str, str, str | None]] = []
        self.pushed = 0
        self.pulled = 0
        self.upgraded: Upgraded | None = None
        self.connection: BlipConnection | None = None
        self.checkpoint_id = (
            "cp-" + base64.b64encode(hashlib.sha1(json.dumps([store.uuid.hex(), url]).encode()).digest()).decode()
        )
        self.puller: ActivePuller | None = None
        self.pusher: ActivePusher | None = None
        self._checkpoint_rev: str | None = None
        self._progress = asyncio.Event()
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- public control ----------------------------------------------------------------------

    async def run(self) -> None:
        """One-shot replication: returns when done and the socket is closed."""
        await self._session()

    async def start(self) -> None:
        """Start (continuous) replication; returns once both directions have started."""
        self._task = asyncio.ensure_future(self._session())
        await self._started.wait()

    async def stop(self) -> None:
        """Save the checkpoint, close with 1000 and wait for the session to end."""
        self._stop.set()
        if self._task is not None:
            await self._task

    @property
    def close_received(self) -> tuple[int, str] | None:
        return self.connection.close_received if self.connection else None

    @property
    def idle(self) -> bool:
        """Both directions caught up with nothing in flight."""
        return not any(worker is not None and worker.busy for worker in (self.pusher, self.puller))

    def changed(self) -> None:
        self._progress.set()

    # -- the session -------------------------------------------------------------------------

    async def _session(self) -> None:
        try:
            reader, writer, self.upgraded = await client_handshake(
                self.url, self.username, self.password, violations=self.violations, tls=self.tls
            )
        except (HandshakeError, OSError) as exc:
            self.errors.append(f"connection failed: {exc}")
            self._started.set()
            return
        conn = BlipConnection(reader, writer, client=True, violations=self.violations, name="StrictReplicator")
        self.connection = conn
        sender = RevSender(conn, self.store)
        conn.register("getAttachment", sender.handle_get_attachment)
        try:
            await self._replicate(conn, sender)
        except ConnectionClosedError:
            pass
        finally:
            self._started.set()
            if conn.is_open:
                await conn.close(1000)
            else:
                await conn.close(timeout=2.0)

    async def _replicate(self, conn: BlipConnection, sender: RevSender) -> None:
        local = self.store.checkpoints.get(self.checkpoint_id)
        had_checkpoint = local is not None
        if self.pull:
            self.puller = ActivePuller(self, conn, since=None, active_only=self.store.is_empty and not had_checkpoint)
        conn.start()
        remote = await self._get_checkpoint(conn)
        if remote is False:
            return
        local_seq, remote_seq = _validate(local, remote if isinstance(remote, dict) else None)
        if self.puller is not None:
            self.puller.since = remote_seq
            await self.puller.start(continuous=self.continuous)
        workers: list[asyncio.Future[Any]] = []
        if self.push:
            self.pusher = ActivePusher(self, conn, sender, local_seq)
            workers.append(asyncio.ensure_future(self.pusher.run()))
        self._started.set()
        try:
            await self._wait_until_finished(conn)
        finally:
            for worker in workers:
                worker.cancel()
        if conn.is_open:
            await self._save_checkpoint(conn)

    async def _wait_until_finished(self, conn: BlipConnection) -> None:
        while conn.is_open:
            if self._stop.is_set():
                return
            if not self.continuous and self.idle:
                return
            if self.puller is not None and self.puller.failed:
                return
            self._progress.clear()
            waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(e.wait()) for e in (self._progress, self._stop)]
            waiters.append(asyncio.ensure_future(asyncio.shield(conn.closed)))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    # -- checkpoints (Checkpointer.cc, protocol §6) ------------------------------------------

    async def _get_checkpoint(self, conn: BlipConnection) -> dict[str, Any] | bool | None:
        reply = await conn.request("getCheckpoint", [("client", self.checkpoint_id)])
        if reply.is_error:
            domain, code, text = reply.error
            if (domain, code) == ("HTTP", 404):
                self._checkpoint_rev = None
                return None
            self.errors.append(f"getCheckpoint failed: {domain} {code} {text}")
            return False
        self._checkpoint_rev = reply.get("rev")
        body = reply.json()
        return body if isinstance(body, dict) else None

    def _checkpoint_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"time": int(time.time())}
        local = self.store.checkpoints.get(self.checkpoint_id, {})
        if self.pusher is not None:
            body["local"] = self.pusher.checkpoint_local
        elif local.get("local"):
            body["local"] = local["local"]
        remote = self.puller.checkpoint_remote if self.puller is not None else local.get("remote")
        if remote is not None:
            body["remote"] = remote
        if not body.get("local"):
            body.pop("local", None)
        return body

    async def _save_checkpoint(self, conn: BlipConnection) -> None:
        body = self._checkpoint_body()
        data = json.dumps(body, separators=(",", ":")).encode()
        for _attempt in range(2):
            props = [("client", self.checkpoint_id)]
            if self._checkpoint_rev:
                props.append(("rev", self._checkpoint_rev))
            reply = await conn.request("setCheckpoint", props, data)
            if not reply.is_error:
                self._checkpoint_rev = reply.get("rev")
                self.store.checkpoints[self.checkpoint_id] = body
                return
            if reply.error[:2] != ("HTTP", 409):
                break
            if await self._get_checkpoint(conn) is False:
                break
        self.errors.append(f"setCheckpoint failed: {reply.error}")


def _validate(local: dict[str, Any] | None, remote: dict[str, Any] | None) -> tuple[int, Any]:
    """Checkpoint::validateWith, simplified: the lower ``local``, ``remote`` only if both agree."""
    if local is None:
        return 0, None
    if remote is None:
        return 0, None
    local_seq = min(int(local.get("local") or 0), int(remote.get("local") or 0))
    remote_seq = local.get("remote") if local.get("remote") == remote.get("remote") else None
    return local_seq, remote_seq
