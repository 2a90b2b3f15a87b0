"""Pusher: sends local changes to the peer, ``proposeChanges`` first, then each accepted ``rev`` (protocol §3.6-3.7).

Each change is proposed with ``parentRevID`` = the revision the peer is known
to hold (:class:`~engine.replication.remote_revisions.RemoteRevisions`): a
Couchbase Lite peer refuses any other parent with a bare 409 (§9). After a
409 the proposal is retried, as LiteCore's pusher does, when the peer's
revision turns out to be an ancestor of ours: named in the reply, already
learned, or learned later by the puller (the proposal waits for it). A
proposal whose peer revision never becomes an ancestor is a conflict; the
puller brings the peer's revision and its resolution is pushed as a new change.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple

from engine.changes import ChangeEntry, Changes
from engine.json_codec import dumps
from engine.replication import tuning
from engine.replication.active_context import ActiveContext
from engine.replication.blip.connection import Message
from engine.replication.checkpoint import RemoteSequences
from engine.replication.errors import BlipError, ReplicationError
from engine.replication.messages import parse_bool, parse_proposal_reply
from engine.replication.rev_sender import RevOutcome, RevSender
from engine.revid import generation

__all__ = ["Pusher"]

log = logging.getLogger(__name__)


class _Proposal(NamedTuple):
    """A local change and the peer revision it is proposed on top of (None: the peer has no revision)."""

    row: ChangeEntry
    parent: str | None


class Pusher:
    """Pushes the local changes feed from a checkpoint on; continuous pushers follow new changes."""

    def __init__(self, ctx: ActiveContext, since: int) -> None:
        self.ctx = ctx
        self.sequences = RemoteSequences(since)
        self._last_read = since
        self.caught_up = False
        self._said_caught_up = False
        self._proposals = 0
        self._retrying = 0
        self._peer_deltas = False
        self._peer_blobs = True
        self._changed = asyncio.Event()
        self._slots = asyncio.Semaphore(tuning.MAX_CHANGES_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        #: proposals refused with 409 that wait for the puller to learn the peer's revision
        self.waiting: dict[str, ChangeEntry] = {}
        self.sender = RevSender(
            ctx.socket,
            ctx.db,
            ctx.runner,
            on_outcome=self._sent,
            deltas_allowed=lambda: ctx.config.enable_deltas and self._peer_deltas,
            legacy_attachments=lambda: not self._peer_blobs,
        )
        ctx.remote.add_listener(self._remote_changed)

    @property
    def checkpoint(self) -> int:
        """Every local sequence up to this one has been pushed (or needed no push)."""
        return int(self.sequences.checkpoint or 0)

    @property
    def idle(self) -> bool:
        """Caught up with nothing awaiting a reply or the peer's revision."""
        return self.only_waiting and not self.waiting

    @property
    def only_waiting(self) -> bool:
        """Caught up, with nothing in flight: at most proposals waiting for the peer's revision."""
        return self.caught_up and self._proposals == 0 and self._retrying == 0 and self.sender.idle

    def database_changed(self, changes: Changes) -> None:
        """Wake the pusher for new changes (called on the event loop, right after the commit).

        A one-shot replication also pushes what changes while it runs, such as
        the revision that resolves a conflict its puller brought in.
        """
        self.caught_up = False
        self._changed.set()

    async def run(self) -> None:
        """Push, then follow new changes until cancelled (the session ends one-shot runs when idle)."""
        ctx = self.ctx
        while not ctx.socket.closed:
            self._changed.clear()
            rows = await ctx.runner.run(ctx.db.changes_since, self._last_read, tuning.CHANGES_BATCH)
            if rows:
                self._last_read = rows[-1].sequence
                wanted = await self._select(rows)
                if wanted:
                    await self._propose(wanted)
                continue
            if not self._changed.is_set():
                self.caught_up = True
                if not self._said_caught_up:  # an empty proposeChanges says "caught up", once (§9)
                    self._said_caught_up = True
                    ctx.socket.send_request("proposeChanges", None, b"[]", urgent=True, no_reply=True)
                ctx.touch()
            await self._changed.wait()
            ctx.touch()

    async def _select(self, rows: list[ChangeEntry]) -> list[_Proposal]:
        """Rows to propose, with the peer's revision; the others are done at once (filtered, or on the peer)."""
        ctx, config, wanted = self.ctx, self.ctx.config, []
        parents = await ctx.remote.get([row.doc_id for row in rows])
        for row, parent in zip(rows, parents, strict=True):
            skip = parent == row.rev_id or (config.doc_ids is not None and row.doc_id not in config.doc_ids)
            if not skip and parent is not None and generation(parent) >= generation(row.rev_id):
                # the peer holds a newer revision (LiteCore's ChangesFeed skips these): the puller
                # brings it and the resolution is a new change; without a puller it cannot be pushed
                skip = True
                if not config.type.pulls:
                    ctx.report(True, row.doc_id, row.rev_id, row.deleted, _conflict("the peer has a newer revision"))
            if not skip and config.push_filter is not None:
                doc = await ctx.runner.run(ctx.db.get, row.doc_id)
                skip = doc is None or not config.push_filter(doc, row.deleted)
            self.sequences.add(row.sequence, done=skip)
            if not skip:
                wanted.append(_Proposal(row, parent))
        return wanted

    async def _propose(self, proposals: list[_Proposal], *, again: bool = False) -> None:
        await self._slots.acquire()
        self._proposals += 1
        if not again:
            self.ctx.total += len(proposals)
        self.ctx.touch()
        body = dumps([[p.row.doc_id, p.row.rev_id, p.parent or "", p.row.body_size] for p in proposals])
        try:
            future = self.ctx.socket.send_request(
                "proposeChanges",
                {"conflictIncludesRev": "true"},
                body,
                compressed=len(body) >= tuning.COMPRESS_MIN_BODY,
                urgent=tuning.CHANGES_URGENT,
            )
        except ReplicationError:
            self._slots.release()
            self._proposals -= 1
            raise
        assert future is not None
        self._spawn(self._handle_reply(proposals, future))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_reply(self, proposals: list[_Proposal], future: asyncio.Future[Message]) -> None:
        try:
            try:
                reply = await future
            finally:
                self._slots.release()
            if parse_bool(reply.properties.get("deltas")):
                self._peer_deltas = True
            # Couchbase Lite peers say blobs: true; Sync Gateway does not and needs _attachments (§4.4)
            self._peer_blobs = parse_bool(reply.properties.get("blobs"))
            for proposal, (status, theirs) in zip(
                proposals, parse_proposal_reply(reply.body, len(proposals)), strict=True
            ):
                await self._decide(proposal, status, theirs)
        except BlipError as exc:  # the peer refuses pushes (e.g. 403, read-only): nothing more to do here
            log.info("proposeChanges refused: %s", exc)
            self.ctx.fail(exc)
        except ReplicationError as exc:
            log.info("proposeChanges failed: %s", exc)
        finally:
            self._proposals -= 1
            self.ctx.touch()

    async def _decide(self, proposal: _Proposal, status: int, theirs: str | None) -> None:
        row, parent = proposal
        if status == 0:
            known = [parent] if parent else []
            await self.sender.send(row.doc_id, row.rev_id, known=known, sequence=row.sequence, no_conflicts=True)
        elif status == 304:  # the peer already has it
            self.ctx.remote.note(row.doc_id, row.rev_id)
            self._finish(row.sequence)
        elif status == 409:
            await self._refused(proposal, theirs)
        else:
            error = BlipError("HTTP", status, "rejected by the peer")
            self.ctx.report(True, row.doc_id, row.rev_id, row.deleted, error)
            self._finish(row.sequence, synced=False)

    async def _refused(self, proposal: _Proposal, theirs: str | None) -> None:
        """A 409: retry on the peer's revision when it is an ancestor of ours (LiteCore's
        ``shouldRetryConflictWithNewerAncestor``), else wait for the puller to learn it."""
        row, parent = proposal
        tree = await self.ctx.runner.run(self.ctx.db.get_tree, row.doc_id)
        if tree is None or tree.winner().rev_id != row.rev_id:
            self._finish(row.sequence)  # superseded: the newer revision is a change of its own
            return
        if theirs and theirs != parent and tree.is_ancestor(theirs, row.rev_id):
            self.ctx.remote.note(row.doc_id, theirs)
            await self._propose([_Proposal(row, theirs)], again=True)
            return
        if not self.ctx.config.type.pulls:
            self.ctx.report(True, row.doc_id, row.rev_id, row.deleted, _conflict("the peer has another revision"))
            self._finish(row.sequence, synced=False)
            return
        known = (await self.ctx.remote.get([row.doc_id]))[0]
        if known and known not in (parent, row.rev_id) and tree.is_ancestor(known, row.rev_id):
            await self._propose([_Proposal(row, known)], again=True)
        else:
            log.debug("proposal of %r waits for the peer's revision", row.doc_id)
            self.waiting[row.doc_id] = row

    def _remote_changed(self, doc_id: str, rev_id: str) -> None:
        """The puller learned the peer's revision of a document: retry a proposal waiting for it."""
        row = self.waiting.pop(doc_id, None)
        if row is not None:
            self._retrying += 1
            self._spawn(self._retry(row, rev_id))

    async def _retry(self, row: ChangeEntry, theirs: str) -> None:
        try:
            tree = await self.ctx.runner.run(self.ctx.db.get_tree, row.doc_id)
            if tree is None or tree.winner().rev_id != row.rev_id or theirs == row.rev_id:
                self._finish(row.sequence)  # superseded (say, by the resolution of this very conflict), or there
            elif tree.is_ancestor(theirs, row.rev_id):
                await self._propose([_Proposal(row, theirs)], again=True)
            else:
                self.ctx.report(True, row.doc_id, row.rev_id, row.deleted, _conflict("the peer has another revision"))
                self._finish(row.sequence, synced=False)
        finally:
            self._retrying -= 1
            self.ctx.touch()

    def give_up_waiting(self) -> None:
        """Report proposals still waiting for the peer's revision as conflicts (LiteCore does so when
        the connection closes). Their sequences stay pending, so the next replication tries again."""
        waiting, self.waiting = self.waiting, {}
        for row in waiting.values():
            self.ctx.report(True, row.doc_id, row.rev_id, row.deleted, _conflict("the peer has another revision"))
        self.ctx.touch()

    def _sent(self, outcome: RevOutcome) -> None:
        ctx = self.ctx
        if outcome.error is not None and outcome.error.domain == "Network":
            return  # not stored; the next connection pushes it again from the checkpoint
        if outcome.error is None:
            ctx.remote.note(outcome.doc_id, outcome.rev_id)
        superseded = outcome.error is not None and outcome.error.code == 410  # the newer one follows
        if not superseded:
            ctx.report(True, outcome.doc_id, outcome.rev_id, outcome.deleted, outcome.error)
        self._finish(outcome.sequence, synced=outcome.error is None or superseded)

    def _finish(self, sequence: Any, *, synced: bool = True) -> None:
        """Done with a change. One that did not reach the peer (refused, a conflict) keeps its
        sequence pending: the checkpoint stops before it, and the next replication tries again."""
        if synced:
            self.sequences.complete(sequence)
        self.ctx.completed += 1
        self.ctx.touch()

    def cancel(self) -> None:
        """Stop handling replies."""
        for task in list(self._tasks):
            task.cancel()


def _conflict(reason: str) -> BlipError:
    """The error reported for a document the peer refused as a conflict."""
    return BlipError("HTTP", 409, f"conflict: {reason}")
