"""The passive side of a replication (protocol §3): what a listener does for one client.

PassiveSession answers checkpoint requests (§3.1-3.3), accepts pushes after
``proposeChanges`` (§3.6) through a RevReceiver, and serves pulls with a
ChangesFeeder (§3.4-3.5) and a RevSender. Passive peers never resolve
conflicts: they refuse them with 409 (§4.5).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from engine.changes import ChangeEntry, Changes
from engine.database import Database, InsertResult
from engine.errors import ConflictError, InvalidDocumentError
from engine.json_codec import dumps, loads
from engine.replication import tuning
from engine.replication.attachments import AttachmentServer
from engine.replication.blip.connection import Message
from engine.replication.blip.socket import BlipSocket, Reply
from engine.replication.db_runner import DbRunner
from engine.replication.errors import BlipError, ReplicationError
from engine.replication.messages import (
    IncomingRevision,
    bad_request,
    encode_changes_rows,
    encode_proposal_reply,
    parse_bool,
    parse_changes_reply,
    parse_json,
    parse_proposed,
)
from engine.replication.rev_finder import find_proposed
from engine.replication.rev_receiver import Inserter, RevReceiver
from engine.replication.rev_sender import RevOutcome, RevSender
from engine.revtree import InsertStatus

__all__ = ["ChangesFeeder", "PassiveSession"]

log = logging.getLogger(__name__)

PEER_CHECKPOINT_PREFIX = "peer-checkpoint/"
_DEFAULT_COLLECTIONS = ("_default", "_default._default")


class ChangesFeeder:
    """Sends the database's changes to a pulling client: batches, caught-up, then live changes (§3.4-3.5)."""

    def __init__(
        self,
        session: PassiveSession,
        *,
        since: int,
        continuous: bool,
        batch: int,
        active_only: bool,
        doc_ids: set[str] | None,
    ) -> None:
        self.session = session
        self.since = since
        self.continuous = continuous
        self.batch = max(1, min(batch, 1000))
        self.active_only = active_only
        self.doc_ids = doc_ids
        self.caught_up = False
        #: activeOnly skips tombstones only until the first catch-up; live deletions must flow
        self._was_caught_up = False
        self._changed = asyncio.Event()
        self._slots = asyncio.Semaphore(tuning.MAX_CHANGES_IN_FLIGHT)
        self._replies: set[asyncio.Task[None]] = set()
        #: replies' revisions go out one batch after another, in feed order: the
        #: peer then stores documents in order (fuller B-tree pages) and its
        #: checkpoint advances steadily
        self._sending = asyncio.Lock()

    def database_changed(self) -> None:
        """Wake the feed (called on the event loop)."""
        self._changed.set()

    async def run(self) -> None:
        """Feed changes until caught up (one-shot) or forever (continuous)."""
        session = self.session
        last = self.since
        while not session.socket.closed:
            self._changed.clear()
            rows = await session.runner.run(session.db.changes_since, last, self.batch)
            if rows:
                last = rows[-1].sequence
                wanted = [
                    r
                    for r in rows
                    if not session.pushed_here(r.doc_id, r.rev_id)  # first: it forgets what the feed passes
                    and not (self.active_only and r.deleted and not self._was_caught_up)
                    and (self.doc_ids is None or r.doc_id in self.doc_ids)
                ]
                if wanted:  # live changes too: every rev answers a requested row (§3.7, §9)
                    await self._send_batch(wanted)
                continue
            if not self.caught_up:
                self.caught_up = True
                if not self._was_caught_up:  # "caught up" is said once (§3.5)
                    self._was_caught_up = True
                    session.socket.send_request("changes", None, b"[]", urgent=True, no_reply=True)
                session.touch()
            if not self.continuous:
                return
            await self._changed.wait()
            if self.caught_up:
                self.caught_up = False
                session.touch()

    async def _send_batch(self, rows: list[ChangeEntry]) -> None:
        await self._slots.acquire()
        body = encode_changes_rows(rows, int_flags=self.session.socket.subprotocol.endswith("_3"))
        future = self.session.socket.send_request(
            "changes", None, body, compressed=len(body) >= tuning.COMPRESS_MIN_BODY, urgent=tuning.CHANGES_URGENT
        )
        assert future is not None
        task = asyncio.create_task(self._handle_reply(rows, future))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    async def _handle_reply(self, rows: list[ChangeEntry], future: asyncio.Future[Message]) -> None:
        session = self.session
        try:
            try:
                reply = await future
            finally:
                self._slots.release()
            entries = parse_changes_reply(reply.body, len(rows))
        except ReplicationError as exc:  # refused, gone, or a malformed answer: these rows are not sent
            log.info("changes not taken by %s: %s", session.socket.name, exc)
            return
        if parse_bool(reply.properties.get("deltas")):
            session.peer_accepts_deltas = True
        with contextlib.suppress(ValueError):
            session.max_history = max(1, int(reply.properties.get("maxHistory", tuning.MAX_HISTORY)))
        wanted = [
            (row.doc_id, row.rev_id, entry, row.sequence)
            for row, entry in zip(rows, entries, strict=True)
            if isinstance(entry, list)
        ]
        if not self.caught_up:  # a bulk transfer; a live change has no next batch to wait for
            await _let_next_batch_go_first()
        async with self._sending:
            await session.sender.send_many(wanted, no_reply_when_plain=True)
        session.touch()

    def cancel(self) -> None:
        """Stop sending replies' revisions."""
        for task in list(self._replies):
            task.cancel()


async def _let_next_batch_go_first() -> None:
    """Yield once, so that the feed, woken by the slot a reply freed, queues its next batch first.

    The peer then gets that batch ahead of this reply's revisions and answers it
    while it still works through them: the sender is never left waiting for work.
    """
    await asyncio.sleep(0)


class PassiveSession:
    """Serves one client connection of a listener."""

    def __init__(
        self,
        socket: BlipSocket,
        db: Database,
        runner: DbRunner,
        *,
        read_only: bool = False,
        deltas: bool = True,
        on_activity: Callable[[PassiveSession], None] | None = None,
    ) -> None:
        self.socket = socket
        self.db = db
        self.runner = runner
        self.read_only = read_only
        self.deltas = deltas
        self.on_activity = on_activity
        self.peer_accepts_deltas = False
        self.max_history = tuning.MAX_HISTORY
        self.busy = False
        self._collection_aware: bool | None = None
        self.feeder: ChangesFeeder | None = None
        self._feed_task: asyncio.Task[None] | None = None
        self.sender = RevSender(
            socket,
            db,
            runner,
            on_outcome=self._rev_sent,
            deltas_allowed=lambda: self.deltas and self.peer_accepts_deltas,
            max_history=lambda: self.max_history,
        )
        remote = f"client:{socket.name}"
        #: revisions this client pushed that the feed has not passed yet: the feed does not
        #: offer them back (LiteCore's passive feed skips the changes its own connection made)
        self._pushed: dict[str, str] = {}
        self.inserter = Inserter(
            db, runner, remote=remote, resolver=None, on_idle=self.touch, on_inserted=self._received_from_client
        )
        self.receiver = RevReceiver(socket, db, runner, self.inserter, no_conflicts=True, read_only=read_only)
        self.attachments = AttachmentServer(db, runner)
        handlers: dict[str, Callable[[Message], Any]] = {
            "getCheckpoint": self.get_checkpoint,
            "setCheckpoint": self.set_checkpoint,
            "getCollections": self.get_collections,
            "subChanges": self.sub_changes,
            "unsubChanges": self.unsub_changes,
            "proposeChanges": self.propose_changes,
            "changes": self.changes,
            "norev": lambda _m: None,
            "rev": self.receiver.handle_rev,
            "getAttachment": self.attachments.get_attachment,
            "proveAttachment": self.attachments.prove_attachment,
        }
        for profile, handler in handlers.items():
            socket.register(profile, self._in_collection(handler))
        socket.register("PING", lambda _m: None)

    async def run(self) -> None:
        """Serve until the client disconnects."""
        self.runner.bind()
        remove = self.db.add_change_listener(self._database_changed)
        self.socket.start()
        try:
            await self.socket.wait_closed()
        finally:
            remove()
            if self.feeder is not None:
                self.feeder.cancel()
            if self._feed_task is not None:
                self._feed_task.cancel()

    def _database_changed(self, _changes: Changes) -> None:
        feeder = self.feeder
        if feeder is not None:
            self.runner.notify_soon(feeder.database_changed)

    def touch(self) -> None:
        """Recompute whether a replication is in progress; tell the listener when that changes."""
        feeding = self.feeder is not None and not self.feeder.caught_up
        busy = feeding or not self.sender.idle or not self.inserter.idle
        if busy != self.busy:
            self.busy = busy
            if self.on_activity is not None:
                self.on_activity(self)

    def _received_from_client(self, revs: Sequence[IncomingRevision], results: Sequence[InsertResult]) -> None:
        feeder = self.feeder
        if feeder is None or not (feeder.continuous or not feeder.caught_up):
            return
        for rev, result in zip(revs, results, strict=True):
            if result.status in (InsertStatus.ADDED, InsertStatus.FILLED):
                self._pushed[rev.doc_id] = rev.rev_id

    def pushed_here(self, doc_id: str, rev_id: str) -> bool:
        """Whether the client pushed this revision on this connection (then the feed skips it, once)."""
        return self._pushed.pop(doc_id, None) == rev_id if self._pushed else False

    def _rev_sent(self, outcome: RevOutcome) -> None:
        if outcome.error is not None:
            log.debug("%s did not take %s %s: %s", self.socket.name, outcome.doc_id, outcome.rev_id, outcome.error)
        if self.sender.in_flight == 0:
            self.touch()

    # -- collections (§3.0, §3.3) ----------------------------------------------------

    def _in_collection(self, handler: Callable[[Message], Any]) -> Callable[[Message], Any]:
        def check(message: Message) -> Any:
            if self._collection_aware is None:
                self._collection_aware = message.profile == "getCollections"
            elif message.profile == "getCollections":
                raise bad_request("getCollections must be the first message")
            collection = message.properties.get("collection")
            if self._collection_aware and message.profile != "getCollections" and collection != "0":
                raise bad_request("missing or unknown collection")
            if not self._collection_aware and collection is not None:
                raise bad_request("collection given without getCollections")
            return handler(message)

        return check

    async def get_collections(self, message: Message) -> Reply:
        """Answer checkpoints for the default collection; null for others (§3.3)."""
        body = parse_json(message.body, "getCollections")
        ids = body.get("checkpoint_ids") if isinstance(body, dict) else None
        names = body.get("collections") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not isinstance(names, list) or not ids or len(ids) != len(names):
            raise bad_request("getCollections needs checkpoint_ids and collections of equal length")
        if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names + ids):
            raise bad_request("invalid collection list")
        out: list[Any] = []
        for client, name in zip(ids, names, strict=True):
            if name not in _DEFAULT_COLLECTIONS:
                out.append(None)
                continue
            stored = await self.runner.run(self.db.get_local, PEER_CHECKPOINT_PREFIX + client)
            out.append({} if stored is None else {**stored.body, "rev": stored.rev})
        return Reply({}, dumps(out))

    # -- checkpoints (§3.1-3.2, §6) -------------------------------------------------

    async def get_checkpoint(self, message: Message) -> Reply:
        """Return the client's stored checkpoint and its MVCC rev, or ``HTTP``/404."""
        client = message.properties.get("client")
        if not client:
            raise bad_request("missing client")
        stored = await self.runner.run(self.db.get_local, PEER_CHECKPOINT_PREFIX + client)
        if stored is None:
            raise BlipError("HTTP", 404, "missing")
        return Reply({"rev": stored.rev}, dumps(stored.body))

    async def set_checkpoint(self, message: Message) -> Reply:
        """Store the client's checkpoint if ``rev`` matches (else ``HTTP``/409)."""
        client = message.properties.get("client")
        if not client:
            raise bad_request("missing client")
        body = parse_json(message.body, "setCheckpoint")
        if not isinstance(body, dict):
            raise bad_request("checkpoint body is not an object")
        rev = message.properties.get("rev") or None
        try:
            new_rev = await self.runner.run(self.db.put_local, PEER_CHECKPOINT_PREFIX + client, body, rev=rev)
        except ConflictError:
            raise BlipError("HTTP", 409, "revision ID mismatch") from None
        except InvalidDocumentError as exc:
            raise bad_request(str(exc)) from None
        return Reply({"rev": new_rev})

    # -- pulls (§3.4-3.5) ---------------------------------------------------------------

    def sub_changes(self, message: Message) -> None:
        """Start feeding changes; the empty reply goes out at once."""
        props = message.properties
        versioning = props.get("versioning")
        if versioning not in (None, "", "rev-trees"):
            raise BlipError("LiteCore", 501, "Incompatible document versioning")
        if props.get("filter"):
            raise BlipError("LiteCore", 501, "Filtering not supported")
        since: Any = 0
        if props.get("since"):
            try:
                since = loads(props["since"])
            except ValueError:
                raise bad_request("invalid since") from None
        doc_ids = None
        if message.body:
            body = parse_json(message.body, "subChanges")
            listed = body.get("docIDs") if isinstance(body, dict) else None
            if not isinstance(listed, list) or not all(isinstance(d, str) for d in listed):
                raise bad_request("docIDs must be a list of strings")
            doc_ids = set(listed)
        try:
            batch = int(props.get("batch", tuning.CHANGES_BATCH))
        except ValueError:
            batch = tuning.CHANGES_BATCH
        if self.feeder is not None and self._feed_task is not None:
            self.feeder.cancel()
            self._feed_task.cancel()
        self.feeder = ChangesFeeder(
            self,
            since=since if isinstance(since, int) and not isinstance(since, bool) and since > 0 else 0,
            continuous=parse_bool(props.get("continuous")),
            batch=batch,
            active_only=parse_bool(props.get("activeOnly")),
            doc_ids=doc_ids,
        )
        self._feed_task = asyncio.create_task(self.feeder.run(), name=f"feed {self.socket.name}")
        self.touch()

    def unsub_changes(self, _message: Message) -> None:
        """Stop a continuous feed."""
        if self._feed_task is not None:
            self._feed_task.cancel()
        self.feeder = None
        self.touch()

    # -- pushes (§3.6) ----------------------------------------------------------------------

    async def propose_changes(self, message: Message) -> Reply | None:
        """Decide which proposed revisions to accept (§3.6)."""
        if self.read_only:
            raise BlipError("HTTP", 403, "this peer is read-only")
        rows = parse_proposed(message.body)
        if not rows:
            return None
        currents = await self.runner.run(self.db.current_revisions, [row[0] for row in rows])
        proposals = find_proposed(currents, [(d, r, p) for d, r, p, _ in rows])
        include_rev = parse_bool(message.properties.get("conflictIncludesRev"))
        body = encode_proposal_reply(proposals, include_rev=include_rev)
        self.touch()
        props = {"maxHistory": str(tuning.MAX_HISTORY), "blobs": "true"}  # as LiteCore's listener answers (§9)
        if self.deltas:
            props["deltas"] = "true"
        return Reply(props, body, compressed=len(body) >= tuning.COMPRESS_MIN_BODY)

    def changes(self, message: Message) -> None:
        """Pushes that allow conflicts are refused: this peer takes ``proposeChanges`` only (§3.5)."""
        if message.body.strip() in (b"", b"[]", b"null"):
            return
        raise BlipError("BLIP", 409, "Use 'proposeChanges' instead")
