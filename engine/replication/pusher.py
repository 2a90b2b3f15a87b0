"""Pusher: sends local changes to the peer, ``proposeChanges`` first, then each accepted ``rev`` (protocol §3.6-3.7)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from engine.changes import ChangeEntry, Changes
from engine.replication import tuning
from engine.replication.active_context import ActiveContext
from engine.replication.blip.connection import Message
from engine.replication.checkpoint import RemoteSequences
from engine.replication.errors import BlipError, ReplicationError
from engine.replication.messages import encode_json, parse_bool, parse_proposal_reply
from engine.replication.rev_sender import RevOutcome, RevSender

__all__ = ["Pusher"]

log = logging.getLogger(__name__)


class Pusher:
    """Pushes the local changes feed from a checkpoint on; continuous pushers follow new changes."""

    def __init__(self, ctx: ActiveContext, since: int) -> None:
        self.ctx = ctx
        self.sequences = RemoteSequences(since)
        self._last_read = since
        self.caught_up = False
        self._said_caught_up = False
        self._proposals = 0
        self._peer_deltas = False
        self._peer_blobs = True
        self._changed = asyncio.Event()
        self._slots = asyncio.Semaphore(tuning.MAX_CHANGES_IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self.sender = RevSender(
            ctx.socket,
            ctx.db,
            ctx.runner,
            on_outcome=self._sent,
            deltas_allowed=lambda: ctx.config.enable_deltas and self._peer_deltas,
            legacy_attachments=lambda: not self._peer_blobs,
        )

    @property
    def checkpoint(self) -> int:
        """Every local sequence up to this one has been pushed (or needed no push)."""
        return int(self.sequences.checkpoint or 0)

    @property
    def idle(self) -> bool:
        """Caught up with nothing awaiting a reply."""
        return self.caught_up and self._proposals == 0 and self.sender.idle

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

    async def _select(self, rows: list[ChangeEntry]) -> list[ChangeEntry]:
        """Rows to propose; the others are done at once (filtered, or already on the peer)."""
        config, wanted = self.ctx.config, []
        for row in rows:
            skip = self.ctx.remote_revs.get(row.doc_id) == row.rev_id or (
                config.doc_ids is not None and row.doc_id not in config.doc_ids
            )
            if not skip and config.push_filter is not None:
                doc = await self.ctx.runner.run(self.ctx.db.get, row.doc_id)
                skip = doc is None or not config.push_filter(doc, row.deleted)
            self.sequences.add(row.sequence, done=skip)
            if not skip:
                wanted.append(row)
        return wanted

    async def _propose(self, rows: list[ChangeEntry]) -> None:
        await self._slots.acquire()
        self._proposals += 1
        self.ctx.total += len(rows)
        self.ctx.touch()
        proposal = [[r.doc_id, r.rev_id, self.ctx.remote_revs.get(r.doc_id, ""), r.body_size] for r in rows]
        body = encode_json(proposal)
        future = self.ctx.socket.send_request(
            "proposeChanges",
            {"conflictIncludesRev": "true"},
            body,
            compressed=len(body) >= tuning.COMPRESS_MIN_BODY,
            urgent=tuning.CHANGES_URGENT,
        )
        assert future is not None
        task = asyncio.create_task(self._handle_reply(rows, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_reply(self, rows: list[ChangeEntry], future: asyncio.Future[Message]) -> None:
        try:
            try:
                reply = await future
            finally:
                self._slots.release()
            if parse_bool(reply.properties.get("deltas")):
                self._peer_deltas = True
            # Couchbase Lite peers say blobs: true; Sync Gateway does not and needs _attachments (§4.4)
            self._peer_blobs = parse_bool(reply.properties.get("blobs"))
            for row, (status, theirs) in zip(rows, parse_proposal_reply(reply.body, len(rows)), strict=True):
                await self._decide(row, status, theirs)
        except BlipError as exc:  # the peer refuses pushes (e.g. 403, read-only): nothing more to do here
            log.info("proposeChanges refused: %s", exc)
            self.ctx.fail(exc)
        except ReplicationError as exc:
            log.info("proposeChanges failed: %s", exc)
        finally:
            self._proposals -= 1
            self.ctx.touch()

    async def _decide(self, row: ChangeEntry, status: int, theirs: str | None) -> None:
        ctx = self.ctx
        known = ctx.remote_revs.get(row.doc_id)
        if status == 0:
            known_revs = [known] if known else []
            await self.sender.send(row.doc_id, row.rev_id, known=known_revs, sequence=row.sequence, no_conflicts=True)
        elif status == 304:
            ctx.remote_revs[row.doc_id] = row.rev_id
            self._finish(row.sequence)
        elif status == 409 and theirs and await self._is_ancestor(row.doc_id, theirs, row.rev_id):
            # protocol §3.6: the peer is behind us on the same branch; send it anyway
            ctx.remote_revs[row.doc_id] = theirs
            await self.sender.send(row.doc_id, row.rev_id, known=[theirs], sequence=row.sequence, no_conflicts=True)
        else:
            error = BlipError("HTTP", status, "conflict" if status == 409 else "rejected by the peer")
            ctx.report(True, row.doc_id, row.rev_id, row.deleted, error)
            self._finish(row.sequence)

    async def _is_ancestor(self, doc_id: str, ancestor: str, rev_id: str) -> bool:
        tree = await self.ctx.runner.run(self.ctx.db.get_tree, doc_id)
        return tree is not None and tree.is_ancestor(ancestor, rev_id)

    def _sent(self, outcome: RevOutcome) -> None:
        ctx = self.ctx
        if outcome.error is not None and outcome.error.domain == "Network":
            return  # not stored; the next connection pushes it again from the checkpoint
        if outcome.error is None:
            ctx.remote_revs[outcome.doc_id] = outcome.rev_id
        if outcome.error is None or outcome.error.code != 410:  # 410: superseded, the newer one follows
            ctx.report(True, outcome.doc_id, outcome.rev_id, outcome.deleted, outcome.error)
        self._finish(outcome.sequence)

    def _finish(self, sequence: Any) -> None:
        self.sequences.complete(sequence)
        self.ctx.completed += 1
        self.ctx.touch()

    def cancel(self) -> None:
        """Stop handling replies."""
        for task in list(self._tasks):
            task.cancel()
