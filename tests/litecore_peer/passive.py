"""A strict double of a Couchbase Lite 3.0 URLEndpointListener (LiteCore's passive replicator).

Upgrade as REST/Server.cc (see :mod:`.handshake`), then per connection (protocol §3):

- the first request must be ``getCheckpoint`` or ``getCollections`` (a 3.0 listener has no
  ``getCollections`` handler: ``BLIP``/404, which 3.1 clients take as "no collections");
- ``getCheckpoint``/``setCheckpoint`` as Replicator+Checkpoints.cc: peer checkpoints per client
  ID, revisions ``<n>-cc``, ``HTTP``/404 when missing, ``HTTP``/409 "revision ID mismatch";
- ``proposeChanges`` as RevFinder::findProposedChange (304 / 0 / 409), replied with
  ``maxHistory=20``, ``blobs=true`` and ``deltas=true`` (deltas on the first reply only, as
  RevFinder's ``_announcedDeltaSupport``). A conflict is a *bare* ``409`` even when the request
  says ``conflictIncludesRev`` — what the real 3.0 peer did (§9); ``conflict_includes_rev=True``
  gives LiteCore 3.1's ``{"status":409,"rev":...}`` instead;
- ``changes`` (a push that allows conflicts) -> ``BLIP``/409: the listener is in no-conflicts mode;
- ``rev`` only for an entry a ``proposeChanges`` reply accepted with 0, carrying ``noconflicts``
  (see :mod:`.incoming` for the rest); ``norev`` likewise;
- ``subChanges`` serves a pull (see :mod:`.passive_feed`); ``getAttachment`` serves blobs.

A violation is recorded in :attr:`StrictListener.violations` and the connection is closed with
4002. (LiteCore itself treats a ``rev`` without ``noconflicts`` as no-conflicts anyway and only
warns about a non-empty NoReply ``proposeChanges``; the double reports both, as asked.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import Counter
from collections.abc import Coroutine, Mapping
from typing import Any

from tests.litecore_peer.blip import Message
from tests.litecore_peer.connection import BlipConnection
from tests.litecore_peer.handshake import HandshakeError, server_handshake
from tests.litecore_peer.incoming import IncomingRevs
from tests.litecore_peer.outgoing import RevSender
from tests.litecore_peer.passive_feed import PassiveFeed
from tests.litecore_peer.store import PeerStore, generation

__all__ = ["PassiveSession", "StrictListener"]

log = logging.getLogger(__name__)

_LITECORE_UNSUPPORTED = 19
_LITECORE_REMOTE_ERROR = 26


class StrictListener:
    """A LiteCore 3.0 listener on 127.0.0.1 (port 0) serving one in-memory database.

    Args:
        store: the database served.
        users: Basic-auth user names and passwords (default ``{"bob": "pw"}``; ``{}`` = no auth).
        database: the database name in the URL (``ws://127.0.0.1:PORT/<database>``).
        conflict_includes_rev: answer a proposed conflict as LiteCore 3.1 does,
            ``{"status":409,"rev":...}``, instead of the 3.0 peer's bare ``409``.
    """

    def __init__(
        self,
        store: PeerStore,
        users: Mapping[str, str] | None = None,
        database: str = "db",
        *,
        conflict_includes_rev: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.store = store
        #: a server context (limit it with tls.limit_like_mbedtls2 to speak as mbedTLS 2.x does)
        self.tls = tls
        self.users = dict(users) if users is not None else {"bob": "pw"}
        self.database = database
        self.conflict_includes_rev = conflict_includes_rev
        #: Everything a client did that a real LiteCore listener would refuse or choke on.
        self.violations: list[str] = []
        #: Odd but tolerated things (logged by LiteCore, not fatal).
        self.notes: list[str] = []
        #: HTTP status of every upgrade response, in order (e.g. ``[401, 101]``).
        self.statuses: list[int] = []
        self.sessions: list[PassiveSession] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls is not None else 'ws'}://127.0.0.1:{self.port}/{self.database}"

    async def start(self) -> StrictListener:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            await session.conn.close(1001, "listener stopped", timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine for the life of the listener."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def close_codes(self) -> list[tuple[int, str] | None]:
        """Per connection: the close frame the listener sent, if any."""
        return [session.conn.close_sent for session in self.sessions]

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            try:
                status, upgraded = await server_handshake(
                    reader, writer, database=self.database, users=self.users or None
                )
            except HandshakeError as exc:
                self.notes.append(f"bad upgrade request: {exc}")
                writer.close()
                return
            self.statuses.append(status)
            if upgraded is None:
                await writer.drain()
                writer.close()
                return
            conn = BlipConnection(reader, writer, client=False, violations=self.violations, name="StrictListener")
            session = PassiveSession(self, conn)
            self.sessions.append(session)
            conn.start()
            await conn.wait_closed()
        finally:
            if task is not None:
                self._tasks.discard(task)


class PassiveSession:
    """One client connection of a :class:`StrictListener`."""

    def __init__(self, listener: StrictListener, conn: BlipConnection) -> None:
        self.listener = listener
        self.store = listener.store
        self.conn = conn
        self.requests = 0
        self.accepted: Counter[tuple[str, str]] = Counter()
        self.received: list[str] = []
        self._announced_deltas = False
        self.incoming = IncomingRevs(conn, self.store, passive=True, no_incoming_conflicts=True, origin=self)
        self.sender = RevSender(conn, self.store)
        self.feed: PassiveFeed | None = None
        conn.before_dispatch = self._first_request
        for profile, handler in {
            "getCheckpoint": self._get_checkpoint,
            "setCheckpoint": self._set_checkpoint,
            "proposeChanges": self._propose_changes,
            "changes": self._changes,
            "rev": self._rev,
            "norev": self._norev,
            "subChanges": self._sub_changes,
            "getAttachment": self.sender.handle_get_attachment,
        }.items():
            conn.register(profile, handler)

    def _first_request(self, msg: Message) -> bool:
        self.requests += 1
        if self.requests == 1 and msg.profile not in ("getCheckpoint", "getCollections"):
            self.conn.violation(
                f"first request is {msg.profile!r}: a LiteCore replicator always starts with getCheckpoint "
                "(or getCollections) (protocol §3.0, §9)"
            )
            return False
        return True

    # -- checkpoints (Replicator+Checkpoints.cc, protocol §3.1/§3.2) -----------------------------

    def _get_checkpoint(self, msg: Message) -> None:
        client = msg.get("client")
        if not client:
            self.conn.reply_error(msg, "BLIP", 400, "missing checkpoint ID")
            return
        stored = self.store.peer_checkpoints.get(client)
        if stored is None:
            self.conn.reply_error(msg, "HTTP", 404)
            return
        self.conn.reply(msg, [("rev", stored[0])], stored[1])

    def _set_checkpoint(self, msg: Message) -> None:
        client = msg.get("client")
        if not client:
            self.conn.reply_error(msg, "BLIP", 400, "missing checkpoint ID")
            return
        stored = self.store.peer_checkpoints.get(client)
        actual = stored[0] if stored else ""
        if (msg.get("rev") or "") != actual:
            self.conn.reply_error(msg, "HTTP", 409, "revision ID mismatch")
            return
        new_rev = f"{(generation(actual) if actual else 0) + 1}-cc"
        self.store.peer_checkpoints[client] = (new_rev, msg.body)
        self.conn.reply(msg, [("rev", new_rev)])

    # -- push from the client (RevFinder, IncomingRev) -------------------------------------------

    def _propose_changes(self, msg: Message) -> None:
        rows = msg.json()
        if msg.no_reply:
            if rows:
                self.conn.violation(
                    f"non-empty NoReply proposeChanges ({len(rows) if isinstance(rows, list) else '?'} rows): "
                    "nothing can be accepted, so any rev for them would be unsolicited"
                )
            return
        if not isinstance(rows, list):
            if msg.body != b"null":
                self.conn.reply_error(msg, "BLIP", 400, "Invalid JSON body")
            else:
                self.conn.reply(msg)
            return
        if not rows:
            self.conn.reply(msg)  # caught up
            return
        statuses: list[Any] = []
        for row in rows:
            status = self._proposed_status(msg, row)
            if status is None:
                return
            statuses.append(status)
        while statuses and statuses[-1] == 0:
            statuses.pop()
        # RevFinder sends maxHistory=20 (protocol.md §3.5 says 50; the code and §9 say 20).
        props = [("maxHistory", "20"), ("blobs", "true")]
        if not self._announced_deltas:
            props.append(("deltas", "true"))
            self._announced_deltas = True
        self.conn.reply(msg, props, json.dumps(statuses, separators=(",", ":")).encode(), compressed=True)

    def _proposed_status(self, msg: Message, row: Any) -> Any:
        if not isinstance(row, list) or len(row) < 2 or not all(isinstance(v, str) for v in row[:2]):
            self.conn.violation(f"proposeChanges row {row!r} is not [docID, revID, parentRevID?, bodySize?]")
            self.conn.reply_error(msg, "LiteCore", _LITECORE_REMOTE_ERROR, "Invalid entry in incoming change list")
            return None
        doc_id, rev_id = row[0], row[1]
        parent = row[2] if len(row) > 2 and isinstance(row[2], str) and row[2] else None
        if not 1 <= len(doc_id.encode()) <= 255 or "-" not in rev_id:
            self.conn.violation(f"Invalid docID/revID '{doc_id}' #{rev_id} in incoming change list")
            self.conn.reply_error(msg, "LiteCore", _LITECORE_REMOTE_ERROR, "Invalid docID/revID")
            return None
        current = self.store.get(doc_id)
        current_rev = current[0] if current else None
        # RevFinder::findProposedChange (rev trees)
        if current_rev == rev_id:
            return 304
        if current_rev == parent or (parent is None and (current is None or current[2])):
            self.accepted[(doc_id, rev_id)] += 1
            return 0
        if self.listener.conflict_includes_rev and msg.get_bool("conflictIncludesRev") and current_rev:
            return {"status": 409, "rev": current_rev}
        return 409

    def _changes(self, msg: Message) -> None:
        # RevFinder::handleChangesNow: in no-conflicts mode "changes" must be "proposeChanges".
        self.conn.reply_error(msg, "BLIP", 409)

    async def _rev(self, msg: Message) -> None:
        key = (msg.get("id") or "", msg.get("rev") or "")
        if self.accepted[key] <= 0:
            self.conn.violation(
                f"unsolicited rev {key[0]} {key[1]}: no proposeChanges reply accepted it with status 0 "
                "(LiteCore's passive puller: 'underflow decrementing _pendingRevMessages')"
            )
            return
        self.accepted[key] -= 1
        if not msg.get_bool("noconflicts"):
            self.conn.violation(f"rev {key[0]} {key[1]} after proposeChanges without 'noconflicts'")
            return
        result = await self.incoming.receive(msg)
        if result.resend_expected:
            self.accepted[key] += 1
        if result.ok:
            self.received.append(f"{key[0]} {key[1]}")
        else:
            log.info("refused rev %s %s: %s", key[0], key[1], result.error)

    def _norev(self, msg: Message) -> None:
        key = (msg.get("id") or "", msg.get("rev") or "")
        if self.accepted[key] <= 0:
            self.conn.violation(f"unsolicited norev {key[0]} {key[1]}: no proposeChanges reply accepted it")
            return
        self.accepted[key] -= 1
        self.conn.reply(msg)

    # -- pull by the client (passive Pusher) ---------------------------------------------------

    def _sub_changes(self, msg: Message) -> None:
        versioning = msg.get("versioning")
        if versioning and versioning != "rev-trees":
            self.conn.reply_error(msg, "LiteCore", 501, "Incompatible document versioning.")
            return
        if msg.get("filter"):
            self.conn.reply_error(msg, "LiteCore", _LITECORE_UNSUPPORTED, "Filtering not supported")
            return
        if self.feed is not None:
            self.conn.violation("second subChanges on one connection")
            return
        body = msg.json()
        doc_ids = body.get("docIDs") if isinstance(body, dict) else None
        self.feed = PassiveFeed(
            self.conn,
            self.store,
            self.sender,
            since=max(msg.get_int("since"), 0),
            continuous=msg.get_bool("continuous"),
            batch=msg.get_int("batch", 200),
            active_only=msg.get_bool("activeOnly"),
            doc_ids=set(doc_ids) if isinstance(doc_ids, list) else None,
            origin=self,
            record=self.listener.notes.append,
        )
        self.conn.reply(msg)
        self.listener.spawn(self.feed.run())
