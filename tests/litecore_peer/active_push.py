"""The active side of a push: LiteCore's Pusher with proposeChanges (protocol §3.6, §3.7, §9).

The pusher reads the changes feed from the local checkpoint, skips documents whose current
revision is already the remote's (ChangesFeed::getRemoteRevID) and proposes the rest with
``proposeChanges`` (``conflictIncludesRev: true``, rows ``[docID, revID, parentRevID, bodySize]``,
parent = the remembered remote ancestor or ``""``), urgent and compressed, at most 5 lists in
flight (1 once caught up); caught up is an empty urgent NoReply ``proposeChanges``. A document
with a revision on its way holds its next change until that one is done (``_pushingDocs``). A 0
sends the ``rev`` with ``noconflicts`` and history back to the remote ancestor (at most 10 in
flight), a 304 marks the remote ancestor, a 409 is a conflict — retried when a
``{"status":409,"rev":...}`` (LiteCore 3.1) or the puller (a ``changes`` row naming a revision
this side has, RevFinder::findRevs -> Pusher::_docRemoteAncestorChanged) reveals an ancestor of
the proposed revision that the peer has; with a puller running a refused sequence stays
unfinished, as LiteCore leaves it for a later attempt. A pushed revision becomes the remote ancestor.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from tests.litecore_peer.connection import BlipConnection, ConnectionClosedError
from tests.litecore_peer.outgoing import OutgoingRev, RevSender
from tests.litecore_peer.store import Change, generation

if TYPE_CHECKING:
    from tests.litecore_peer.active import StrictReplicator

__all__ = ["ActivePusher"]

#: tuning::kDefaultChangeBatchSize, kMaxChangeListsInFlight, kMaxRevsInFlight.
CHANGE_BATCH = 200
MAX_CHANGE_LISTS_IN_FLIGHT = 5
MAX_REVS_IN_FLIGHT = 10


class ActivePusher:
    """Pushes the replicator's store to the peer over one connection."""

    def __init__(self, repl: StrictReplicator, conn: BlipConnection, sender: RevSender, since: int) -> None:
        self.repl = repl
        self.store = repl.store
        self.conn = conn
        self.sender = sender
        self.last_read = since
        self.pending: set[int] = set()
        self.caught_up = False
        self.max_history = 20
        self.deltas_ok = False
        self.legacy_attachments = False
        self._lists_in_flight = 0
        self._revs_in_flight = 0
        self._wake = asyncio.Event()
        self._rev_slots = asyncio.Semaphore(MAX_REVS_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        #: Documents with a revision on its way, and the next change waiting behind it.
        self._pushing: dict[str, Change | None] = {}
        #: Refused (409) proposals to retry if the puller learns the peer's revision.
        self._might_retry: dict[str, Change] = {}

    @property
    def busy(self) -> bool:
        return not self.caught_up or self._lists_in_flight > 0 or self._revs_in_flight > 0 or bool(self._tasks)

    @property
    def checkpoint_local(self) -> int:
        return min(self.pending) - 1 if self.pending else self.last_read

    async def run(self) -> None:
        remove = self.store.add_observer(lambda _change: self._wake.set())
        try:
            while self.conn.is_open:
                limit = 1 if self.caught_up else MAX_CHANGE_LISTS_IN_FLIGHT
                if self._lists_in_flight >= limit:
                    await self._wait()
                    continue
                self._wake.clear()
                raw = self.store.changes_since(self.last_read, CHANGE_BATCH)
                if raw:
                    self.last_read = raw[-1].sequence
                    rows = self._select(raw)
                    if rows:
                        self._spawn(self._propose(rows))
                    if len(raw) == CHANGE_BATCH:
                        continue
                if not self.caught_up:
                    self.caught_up = True
                    self.conn.send_no_reply("proposeChanges", [("conflictIncludesRev", "true")], b"[]", urgent=True)
                    self.repl.changed()
                if not self.continuous_mode():
                    return
                await self._wait()
        finally:
            remove()

    def continuous_mode(self) -> bool:
        return self.repl.continuous

    async def _wait(self) -> None:
        await self._wake.wait()
        self._wake.clear()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._wake.set()
            self.repl.changed()

        task.add_done_callback(done)

    def _select(self, raw: list[Change]) -> list[tuple[Change, str | None]]:
        """The changes to propose now, with their parents. A document that already has a revision
        on its way waits for it to finish (Pusher::gotChanges's ``_pushingDocs``/``nextRev``)."""
        rows = []
        for row in raw:
            if row.doc_id in self._pushing:
                held = self._pushing[row.doc_id]
                if held is not None:
                    self.pending.discard(held.sequence)
                self._pushing[row.doc_id] = row
                self.pending.add(row.sequence)
                continue
            parent = self.store.remote_ancestor(self.repl.url, row.doc_id)
            if self._should_push(row, parent):
                self._pushing[row.doc_id] = None
                rows.append((row, parent))
        return rows

    def _done(self, row: Change, *, completed: bool = True) -> None:
        """Pusher::doneWithRev: the document's next revision, if one waited, goes now."""
        if completed:
            self.pending.discard(row.sequence)
        following = self._pushing.pop(row.doc_id, None)
        if following is not None:
            self.pending.discard(following.sequence)
            parent = self.store.remote_ancestor(self.repl.url, row.doc_id)
            if self._should_push(following, parent):
                self._pushing[row.doc_id] = None
                self._spawn(self._propose([(following, parent)]))

    def _should_push(self, row: Change, ancestor: str | None) -> bool:
        """Whether to propose this change (ChangesFeed::getRemoteRevID); marks it pending."""
        if ancestor == row.rev_id or self.store.is_conflicted(row.doc_id):
            return False
        if ancestor is not None and generation(ancestor) >= generation(row.rev_id):
            return False
        self.pending.add(row.sequence)
        return True

    async def _propose(self, rows: list[tuple[Change, str | None]]) -> None:
        body = []
        for row, parent in rows:
            entry: list[Any] = [row.doc_id, row.rev_id]
            if parent or row.body_size > 0:
                entry.append(parent or "")
            if row.body_size > 0:
                entry.append(row.body_size)
            body.append(entry)
        self._lists_in_flight += 1
        try:
            reply = await self.conn.request(
                "proposeChanges",
                [("conflictIncludesRev", "true")],
                json.dumps(body).encode(),
                compressed=True,
                urgent=True,
            )
        finally:
            self._lists_in_flight -= 1
        if reply.is_error:
            self.repl.errors.append(f"proposeChanges refused: {reply.error}")
            for row, _parent in rows:
                self._done(row, completed=False)
            return
        self.max_history = max(1, reply.get_int("maxHistory", 20))
        self.legacy_attachments = not reply.get_bool("blobs")
        self.deltas_ok = self.deltas_ok or reply.get_bool("deltas")
        answers = reply.json()
        answers = answers if isinstance(answers, list) else []
        for index, (row, parent) in enumerate(rows):
            self._answer(row, parent, answers[index] if index < len(answers) else 0)

    def _answer(self, row: Change, parent: str | None, answer: Any) -> None:
        status, server_rev = answer, None
        if isinstance(answer, dict):
            status, server_rev = answer.get("status", 0), answer.get("rev")
        elif not isinstance(answer, int):
            status = 0
        if status == 0:
            self._spawn(self._send_rev(row, parent))
        elif status == 304:
            self.store.set_remote_ancestor(self.repl.url, row.doc_id, row.rev_id)
            self._done(row)
        elif status == 409:
            self._conflict(row, parent, server_rev if isinstance(server_rev, str) else None)
        else:
            self.repl.errors.append(f"proposed rev {row.doc_id} {row.rev_id} rejected with status {status}")
            self._done(row)

    def _conflict(self, row: Change, parent: str | None, server_rev: str | None) -> None:
        """Pusher::shouldRetryConflictWithNewerAncestor."""
        ancestry = self.store.ancestry(row.doc_id, row.rev_id)
        if server_rev is not None and server_rev != parent and server_rev in ancestry:
            self._spawn(self._propose([(row, server_rev)]))  # 3.1: the peer said what it has
            return
        if self.repl.pull:
            known = self.store.remote_ancestor(self.repl.url, row.doc_id)
            if known is not None and known != parent and known in ancestry:
                self._spawn(self._propose([(row, known)]))  # the puller learnt it meanwhile
                return
            self._might_retry[row.doc_id] = row
        self.repl.conflicts.add(row.doc_id)
        # With a puller, LiteCore leaves the sequence unfinished for a later attempt.
        self._done(row, completed=not self.repl.pull)

    def remote_ancestor_changed(self, doc_id: str, rev_id: str) -> None:
        """Pusher::_docRemoteAncestorChanged: retry a refused push the peer's revision now explains."""
        row = self._might_retry.pop(doc_id, None)
        if row is None or doc_id in self._pushing:
            return
        current = self.store.get(doc_id)
        if current is None or current[0] != row.rev_id or rev_id not in self.store.ancestry(doc_id, row.rev_id):
            return
        self.repl.conflicts.discard(doc_id)
        self.pending.add(row.sequence)
        self._pushing[doc_id] = None
        self._spawn(self._propose([(row, rev_id)]))

    async def _send_rev(self, row: Change, parent: str | None) -> None:
        rev = OutgoingRev(
            row.doc_id,
            row.rev_id,
            row.sequence,
            (parent,) if parent else (),
            True,
            self.max_history,
            self.deltas_ok,
            self.legacy_attachments,
        )
        async with self._rev_slots:
            self._revs_in_flight += 1
            try:
                reply = await self.sender.send(rev)
            except ConnectionClosedError:
                return
            finally:
                self._revs_in_flight -= 1
        if reply is not None and not reply.is_error:
            self.repl.pushed += 1
            self.store.set_remote_ancestor(self.repl.url, row.doc_id, row.rev_id)
        self._done(row)
        if reply is None or not reply.is_error:
            return
        domain, code, text = reply.error
        if code == 409 or (domain, code) == ("LiteCore", 8):
            self.repl.conflicts.add(row.doc_id)
        else:
            self.repl.errors.append(f"rev {row.doc_id} {row.rev_id} refused: {domain} {code} {text}")
