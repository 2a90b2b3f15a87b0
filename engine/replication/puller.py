"""Puller: fetches the peer's changes with ``subChanges``, answers each ``changes``, stores the revisions.

Protocol §3.4-3.8.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from engine.changes import ChangeEntry
from engine.database import InsertResult
from engine.documents import Document
from engine.json_codec import dumps
from engine.replication import tuning
from engine.replication.active_context import ActiveContext
from engine.replication.blip.connection import Message
from engine.replication.blip.socket import Reply
from engine.replication.checkpoint import RemoteSequences
from engine.replication.errors import BlipError
from engine.replication.messages import (
    IncomingRevision,
    encode_changes_reply,
    parse_changes_rows,
)
from engine.replication.rev_finder import find_left_behind, find_revs
from engine.replication.rev_receiver import Inserter, RevReceiver
from engine.revtree import RevTree

__all__ = ["Puller"]

log = logging.getLogger(__name__)


class Puller:
    """Pulls from a checkpoint on; continuous pullers keep receiving live changes."""

    def __init__(self, ctx: ActiveContext) -> None:
        self.ctx = ctx
        self.sequences = RemoteSequences()
        self._caught_up_pending = False
        self._caught_up_number = 0
        self._batches = 0
        self._requested: dict[tuple[str, str], Any] = {}
        self._room = asyncio.Event()
        self._room.set()
        self.inserter = Inserter(
            ctx.db,
            ctx.runner,
            remote=ctx.config.url,
            remote_id=ctx.remote.remote_id,
            resolver=ctx.config.conflict_resolver,
            on_inserted=self._inserted,
            on_idle=ctx.touch,
        )
        self.receiver = RevReceiver(
            ctx.socket,
            ctx.db,
            ctx.runner,
            self.inserter,
            no_conflicts=False,
            accept=self._accept if ctx.config.pull_filter is not None else None,
        )

    @property
    def checkpoint(self) -> Any:
        """The peer's sequence up to which every change was handled."""
        return self.sequences.checkpoint

    @property
    def caught_up(self) -> bool:
        """The peer said it is caught up, and every ``changes`` it sent before has arrived and been answered.

        Messages complete in any order (§2.5): an empty ``changes`` can overtake
        a longer one sent before it, so the requests numbered below it count too.
        """
        return (
            self._caught_up_pending
            and self._batches == 0
            and not self.ctx.socket.receiving_requests_before(self._caught_up_number)
        )

    @property
    def idle(self) -> bool:
        """Caught up with nothing requested or being stored."""
        return self.caught_up and not self._requested and self.inserter.idle

    def register(self) -> None:
        """Handle ``changes``, ``rev`` and ``norev`` on the socket (before it starts, so nothing is missed)."""
        self.ctx.socket.register("changes", self.handle_changes)
        self.ctx.socket.register("norev", self.handle_norev)
        self.receiver.register()

    async def start(self, since: Any, *, empty_database: bool) -> None:
        """Ask the peer for its changes after sequence ``since`` (None: all of them) (§3.4)."""
        self.sequences = RemoteSequences(since)
        config = self.ctx.config
        props = {"batch": str(tuning.CHANGES_BATCH), "versioning": "rev-trees", "revocations": "true"}
        if since is not None:
            props["since"] = dumps(since).decode()
        if config.continuous:
            props["continuous"] = "true"
        if empty_database and since is None:  # nothing to delete here: skip tombstones (§3.4)
            props["activeOnly"] = "true"
        body = dumps({"docIDs": sorted(config.doc_ids)}) if config.doc_ids is not None else b""
        await self.ctx.socket.request("subChanges", props, body)

    def handle_changes(self, message: Message) -> Any:
        """Say which revisions we need (an empty list means caught up, §3.5)."""
        rows = parse_changes_rows(message.body)
        if not rows:  # caught up, once every earlier batch has arrived and been answered
            self._caught_up_pending = True
            self._caught_up_number = message.number
            self._apply_caught_up()
            return None
        self._batches += 1
        # each row keeps its place in the peer's order from now on (§6): a batch held back for room
        # must stop the checkpoint even while a later one is answered and stored before it
        self.sequences.add_all([(row.sequence, False) for row in rows])
        if self.ctx.runner.inline and len(self._requested) < tuning.MAX_PENDING_REVS:
            # the usual case: answered at once, no task and no event-loop turn (edit-to-peer latency)
            offered = self._offered(rows)
            entries, behind = self._decide(rows, offered, self.ctx.db.read_trees([r.doc_id for r in offered]))
            return self._answered(entries) if not behind else self._answer_later(entries, behind)
        return self._answer_changes(rows)

    def _apply_caught_up(self) -> None:
        if self.caught_up:
            self.ctx.touch()

    async def _answer_changes(self, rows: list[ChangeEntry]) -> Reply:
        """Hold the reply while too many revisions are pending (back-pressure), then list what we need."""
        try:
            while len(self._requested) >= tuning.MAX_PENDING_REVS:
                self._room.clear()
                await self._room.wait()
            offered = self._offered(rows)
            trees = await self.ctx.runner.run(self.ctx.db.read_trees, [r.doc_id for r in offered])
            entries, behind = self._decide(rows, offered, trees)
        except BaseException:
            self._batches -= 1
            self._apply_caught_up()
            raise
        return await self._answer_later(entries, behind)

    def _offered(self, rows: list[ChangeEntry]) -> list[ChangeEntry]:
        """The rows to look up: neither removals nor outside the document IDs asked for."""
        doc_ids = self.ctx.config.doc_ids
        return [r for r in rows if not r.removed and (doc_ids is None or r.doc_id in doc_ids)]

    def _decide(
        self, rows: list[ChangeEntry], offered: list[ChangeEntry], trees: list[RevTree | None]
    ) -> tuple[list[list[str] | None], list[tuple[str, str]]]:
        """Per row, what we know of it (None: not wanted); and revisions we have that we left behind."""
        offered_ids = [(r.doc_id, r.rev_id) for r in offered]
        diff = find_revs(trees, offered_ids)
        have = [row for row, d in zip(offered_ids, diff, strict=True) if d is None]
        for doc_id, rev_id in have:  # the peer holds a revision we have too (RevFinder::findRevs)
            self.ctx.remote.note(doc_id, rev_id)
        behind = find_left_behind([t for t, d in zip(trees, diff, strict=True) if d is None], have)
        entries: list[list[str] | None]
        if len(offered) == len(rows):  # the usual case: every row was looked up, in order
            entries = diff
        else:
            wanted = dict(zip(offered_ids, diff, strict=True))
            entries = [wanted.get((row.doc_id, row.rev_id)) if not row.removed else None for row in rows]
        requested = self._requested
        for row, entry in zip(rows, entries, strict=True):
            if entry is not None:
                requested[(row.doc_id, row.rev_id)] = row.sequence
        self.sequences.complete_all([row.sequence for row, entry in zip(rows, entries, strict=True) if entry is None])
        self.ctx.total += len(entries) - entries.count(None)
        return entries, [row for row, b in zip(have, behind, strict=True) if b]

    async def _answer_later(self, entries: list[list[str] | None], behind: list[tuple[str, str]]) -> Reply:
        """Resolve what we left behind before answering (it may change what we hold)."""
        try:
            await self._resolve_left_behind(behind)
        except BaseException:
            self._batches -= 1
            self._apply_caught_up()
            raise
        return self._answered(entries)

    def _answered(self, entries: list[list[str] | None]) -> Reply:
        """The reply to a changes message, once decided: the batch is done."""
        self._batches -= 1
        self._apply_caught_up()
        self.ctx.touch()
        # as LiteCore's RevFinder: the history we keep (c4db_getMaxRevTreeDepth), so that a sender's
        # history reaches what we hold or leaves a gap only where we accept one (§4.2)
        props = {"maxHistory": str(self.ctx.db.max_depth), "blobs": "true"}
        if self.ctx.config.enable_deltas:
            props["deltas"] = "true"
        body = encode_changes_reply(entries)
        return Reply(props, body, compressed=len(body) >= tuning.COMPRESS_MIN_BODY)

    async def _resolve_left_behind(self, behind: list[tuple[str, str]]) -> None:
        """Offered revisions we have but resolved against earlier are resolved again (``RevTree.is_left_behind``).

        Without this, a peer that settled on such a revision and we would
        never agree: it refuses our branch (409) and offers one we think we have.
        """
        for doc_id, rev_id in behind:
            await self.inserter.resolve(doc_id, rev_id)

    def handle_norev(self, message: Message) -> None:
        """The peer cannot send a revision it offered (§3.8): that change is done.

        410 (superseded) is no failure: the newer revision comes in a later ``changes``.
        """
        key = (message.properties.get("id", ""), message.properties.get("rev", ""))
        if key in self._requested:
            status = message.properties.get("error", "404")
            code = int(status) if status.isdigit() else 404
            if code != 410:
                error = BlipError("HTTP", code, message.properties.get("reason", ""))
                self.ctx.report(False, key[0], key[1], False, error)
            self._done(key, synced=code == 410)

    def _accept(self, rev: IncomingRevision, body: dict[str, Any]) -> bool:
        pull_filter = self.ctx.config.pull_filter
        assert pull_filter is not None
        if pull_filter(Document(rev.doc_id, rev.rev_id, body, rev.deleted), rev.deleted):
            return True
        self._done((rev.doc_id, rev.rev_id))
        return False

    def _inserted(self, revs: Sequence[IncomingRevision], results: Sequence[InsertResult]) -> None:
        """A batch of received revisions was stored (or refused): each is done (see :meth:`_done`)."""
        report, requested, sequences = self.ctx.report, self._requested, self.sequences
        stored = []
        done = 0
        for rev, result in zip(revs, results, strict=True):  # _done inline: this runs for every pulled revision
            error = result.error
            if error is None:  # stored with its remote mark, in the same commit
                stored.append((rev.doc_id, rev.rev_id))
            report(False, rev.doc_id, rev.rev_id, rev.deleted, error)
            sequence = requested.pop((rev.doc_id, rev.rev_id), None)
            if sequence is not None:
                done += 1
                if error is None:
                    sequences.complete(sequence)
        self.ctx.remote.stored(stored)
        self._finished(done)

    def _done(self, key: tuple[str, str], *, synced: bool = True) -> None:
        """Done with a requested revision. One that was not stored keeps its sequence pending:
        the checkpoint stops before it, and the next replication asks for it again."""
        sequence = self._requested.pop(key, None)
        if sequence is None:
            return
        if synced:
            self.sequences.complete(sequence)
        self._finished(1)

    def _finished(self, count: int) -> None:
        """``count`` requested revisions are done: progress, and maybe room for more."""
        if not count:
            return
        self.ctx.completed += count
        if len(self._requested) < tuning.MAX_PENDING_REVS:
            self._room.set()
        self.ctx.touch()
