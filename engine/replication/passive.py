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
    """Sends the database's changes to a pulling client: batches, caught-up, then live changes (§3.4-3.5).

    A caught-up continuous feed offers a local edit while its commit is still
    being flushed (:meth:`announce`): the peer's answer is on its way back
    while the disk works, and the revision itself is read and sent only once
    the commit has landed. Should that commit fail, the rows never existed and
    the connection is closed (4001, transient), so that the peer, which never
    got them, asks again from its checkpoint.
    """

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
        self.continuous = continuous
        self.batch = max(1, min(batch, 1000))
        self.active_only = active_only
        self.doc_ids = doc_ids
        self.caught_up = False
        #: activeOnly skips tombstones only until the first catch-up; live deletions must flow
        self._was_caught_up = False
        #: the last sequence offered (or passed over)
        self._last = since
        #: waiting for a change, with nothing unread before it
        self._parked = False
        self._changed = asyncio.Event()
        #: the latest sequence known to be committed
        self._committed = 0
        #: the last offer before its commit: (the sequence before it, its last sequence, whether sent)
        self._offered: tuple[int, int, bool] | None = None
        #: offers whose revisions are not sent yet (the connection counts as busy)
        self._offering = 0
        #: ``changes`` messages whose answers are not handled yet
        self._answering = 0
        self._withdrawn = False
        self._closing: asyncio.Task[None] | None = None
        self._commit_seen = asyncio.Event()
        self._in_flight = 0
        self._slot_free = asyncio.Event()
        self._replies: set[asyncio.Task[None]] = set()
        #: replies' revisions go out one batch after another, in feed order: the
        #: peer then stores documents in order (fuller B-tree pages) and its
        #: checkpoint advances steadily
        self._sending = asyncio.Lock()

    @property
    def busy(self) -> bool:
        """Whether changes are being fed: not caught up, or an offer's revisions still to send."""
        return not self.caught_up or self._offering > 0

    @property
    def replying(self) -> bool:
        """Whether answers to ``changes`` are still being handled (revisions the peer asked for)."""
        return self._answering > 0

    def database_changed(self, last_sequence: int) -> None:
        """Wake the feed after a commit up to ``last_sequence`` (called on the event loop)."""
        self._committed = max(self._committed, last_sequence)
        self._commit_seen.set()
        if last_sequence > self._last:  # else offered already (announce) or read already
            self._changed.set()

    def announce(self, after: int, rows: list[ChangeEntry]) -> None:
        """Offer local ``rows`` (those after ``after``) now, before their commit ends, if this feed
        is parked right after ``after`` with a free slot; else the feed reads them once committed."""
        if not (self._parked and not self._changed.is_set() and after == self._last and len(rows) <= self.batch):
            return
        if self._in_flight >= tuning.MAX_CHANGES_IN_FLIGHT or self.session.socket.closed:
            return
        wanted = self._wanted(rows)
        self._last = rows[-1].sequence
        self._offered = (after, self._last, bool(wanted))
        if wanted:
            self._in_flight += 1
            with contextlib.suppress(ReplicationError):  # closing: the next connection reads them again
                self._send_batch(wanted, announced=True)
            self.session.touch()  # after the offer has left

    def withdraw(self, rows: list[ChangeEntry]) -> None:
        """The commit of rows this feed may have offered failed (or runs again after the map grew).

        Rows it passed over without sending are simply read again; rows it sent
        close the connection, as the peer may have asked for them.
        """
        offered = self._offered
        if offered is None or offered[1] != rows[-1].sequence or offered[1] <= self._committed:
            return  # not offered by this feed, or committed after all
        self._offered = None
        if not offered[2]:
            self._last = min(self._last, offered[0])
            return
        if self.session.socket.closed or self._withdrawn:
            return
        self._withdrawn = True
        self._commit_seen.set()
        log.error("a change offered to %s was not committed; closing the connection", self.session.socket.name)
        # 4001, LiteCore's "app transient" (§1 Closing): the peer comes back and resumes
        self._closing = asyncio.ensure_future(self.session.socket.close(4001, "the database failed to commit a change"))

    async def run(self) -> None:
        """Feed changes until caught up (one-shot) or forever (continuous)."""
        session = self.session
        while not session.socket.closed:
            self._changed.clear()
            rows = await session.runner.run(session.db.changes_since, self._last, self.batch)
            if rows:
                self._last = rows[-1].sequence
                if wanted := self._wanted(rows):  # live changes too: every rev answers a requested row (§3.7, §9)
                    await self._take_slot()
                    self._send_batch(wanted, announced=False)
                continue
            if not self.caught_up:
                self.caught_up = True
                if not self._was_caught_up:  # "caught up" is said once (§3.5)
                    self._was_caught_up = True
                    session.socket.send_request("changes", None, b"[]", urgent=True, no_reply=True)
                session.touch()
            if not self.continuous:
                return
            self._parked = True
            try:
                await self._changed.wait()
            finally:
                self._parked = False
            if self.caught_up:
                self.caught_up = False
                session.touch()

    def _wanted(self, rows: list[ChangeEntry]) -> list[ChangeEntry]:
        session = self.session
        return [
            r
            for r in rows
            if not session.pushed_here(r.doc_id, r.rev_id)  # first: it forgets what the feed passes
            and not (self.active_only and r.deleted and not self._was_caught_up)
            and (self.doc_ids is None or r.doc_id in self.doc_ids)
        ]

    async def _take_slot(self) -> None:
        """Wait until fewer than MAX_CHANGES_IN_FLIGHT ``changes`` await replies, then take a slot."""
        while self._in_flight >= tuning.MAX_CHANGES_IN_FLIGHT:
            self._slot_free.clear()
            await self._slot_free.wait()
        self._in_flight += 1

    def _send_batch(self, rows: list[ChangeEntry], *, announced: bool) -> None:
        """Send a ``changes`` message for ``rows``, holding a slot taken by the caller."""
        body = encode_changes_rows(rows, int_flags=self.session.socket.subprotocol.endswith("_3"))
        try:
            future = self.session.socket.send_request(
                "changes", None, body, compressed=len(body) >= tuning.COMPRESS_MIN_BODY, urgent=tuning.CHANGES_URGENT
            )
        except ReplicationError:
            self._free_slot()
            raise
        assert future is not None
        self._answering += 1
        self._offering += 1 if announced else 0
        task = asyncio.create_task(self._answered(rows, future, announced=announced))
        self._replies.add(task)
        task.add_done_callback(lambda done: self._answer_done(done, announced=announced))

    def _free_slot(self) -> None:
        self._in_flight -= 1
        self._slot_free.set()

    def _answer_done(self, task: asyncio.Task[None], *, announced: bool) -> None:
        """An answer was handled, failed, or was cancelled (perhaps before it started)."""
        self._replies.discard(task)
        self._answering -= 1
        self._offering -= 1 if announced else 0
        self.session.touch()

    async def _answered(self, rows: list[ChangeEntry], future: asyncio.Future[Message], *, announced: bool) -> None:
        """Send the revisions the peer asked for in its answer to ``changes``."""
        session = self.session
        try:
            try:
                reply = await future
            finally:
                self._free_slot()
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
        if announced and wanted and not await self._until_committed(rows[-1].sequence):
            return  # never committed: the connection is closing
        if not self.caught_up:  # a bulk transfer; a live change has no next batch to wait for
            await _let_next_batch_go_first()
        async with self._sending:
            await session.sender.send_many(wanted, no_reply_when_plain=True)
        if self.caught_up:  # a live change: out now, not at the end of the loop's turn
            session.socket.flush()

    async def _until_committed(self, sequence: int) -> bool:
        """Wait until the commit of offered rows up to ``sequence`` has landed; False if it failed."""
        while self._committed < sequence and not self._withdrawn:
            self._commit_seen.clear()
            await self._commit_seen.wait()
        return not self._withdrawn

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
        #: feeds ended by unsubChanges that still send revisions the peer asked for
        self._retired: list[ChangesFeeder] = []
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
        remove_announcer = self.db.add_commit_announcer(self)
        self.socket.start()
        try:
            await self.socket.wait_closed()
        finally:
            remove_announcer()
            remove()
            for feeder in self._feeders():
                feeder.cancel()
            if self._feed_task is not None:
                self._feed_task.cancel()

    def _feeders(self) -> list[ChangesFeeder]:
        """The feed and the retired feeds still answering (read from any thread; pruned by touch)."""
        feeder = self.feeder
        return [*self._retired, feeder] if feeder is not None else list(self._retired)

    def _database_changed(self, changes: Changes) -> None:
        feeders = self._feeders()
        if feeders:
            last = changes.last_sequence

            def tell() -> None:
                for feeder in feeders:
                    feeder.database_changed(last)

            self.runner.notify_soon(tell)

    # CommitAnnouncer (engine.db_core): called on the committing thread, inside its write lock

    def announce(self, after: int, rows: list[ChangeEntry]) -> None:
        """A local commit's ``rows`` are being flushed: a caught-up live feed may offer them now."""
        feeder = self.feeder
        if feeder is not None and feeder.continuous:
            self.runner.notify_soon(lambda: feeder.announce(after, rows))

    def withdraw(self, rows: list[ChangeEntry]) -> None:
        """A local commit whose rows were announced failed."""
        feeder = self.feeder
        if feeder is not None and feeder.continuous:
            self.runner.notify_soon(lambda: feeder.withdraw(rows))

    def touch(self) -> None:
        """Recompute whether a replication is in progress; tell the listener when that changes."""
        self._retired = [f for f in self._retired if f.replying]
        feeding = (self.feeder is not None and self.feeder.busy) or bool(self._retired)
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
        """Stop a continuous feed; revisions the peer asked for still go out."""
        if self._feed_task is not None:
            self._feed_task.cancel()
        if self.feeder is not None and self.feeder.replying:
            self._retired.append(self.feeder)
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
        props = {"maxHistory": str(self.db.max_depth), "blobs": "true"}  # as LiteCore's listener answers (§9)
        if self.deltas:
            props["deltas"] = "true"
        return Reply(props, body, compressed=len(body) >= tuning.COMPRESS_MIN_BODY)

    def changes(self, message: Message) -> None:
        """Pushes that allow conflicts are refused: this peer takes ``proposeChanges`` only (§3.5)."""
        if message.body.strip() in (b"", b"[]", b"null"):
            return
        raise BlipError("BLIP", 409, "Use 'proposeChanges' instead")
