"""The passive side of a pull: LiteCore's Pusher in passive mode with its ChangesFeed (protocol §3.4, §3.5, §3.12).

After ``subChanges`` it sends ``changes`` batches of at most ``batch`` rows ``[seq, docID, revID,
deleted?, bodySize?]`` (``deleted`` written only when true or when a body size follows, as a JSON
boolean: ``enc << change->deleted()`` in Pusher::sendChanges, where protocol.md §3.5 describes
Sync Gateway's integer flags), urgent and compressed, with at most 5 lists unanswered (1 once caught up,
Pusher::_maybeGetMoreChanges), then an empty ``[]`` NoReply ``changes`` when caught up. With
``activeOnly`` tombstones are skipped, but only in the initial dump (ChangesFeed). Continuous:
every later change goes through ``changes`` too; changes this connection's own client pushed are
not echoed back (ChangesFeed::getObservedChanges ignores non-external changes). A ``rev`` (or a
``norev``) goes only for a row the client asked for in its reply, with ``history`` back to an
ancestor the client listed; at most 10 ``rev`` messages are in flight (tuning::kMaxRevsInFlight).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tests.litecore_peer.blip import Message
from tests.litecore_peer.connection import BlipConnection, ConnectionClosedError
from tests.litecore_peer.outgoing import OutgoingRev, RevSender
from tests.litecore_peer.store import Change, PeerStore

__all__ = ["PassiveFeed"]

log = logging.getLogger(__name__)

MAX_CHANGE_LISTS_IN_FLIGHT = 5
MAX_REVS_IN_FLIGHT = 10
DEFAULT_MAX_HISTORY = 20


class PassiveFeed:
    """Serves one ``subChanges``: change lists, then the revisions the client asks for."""

    def __init__(
        self,
        conn: BlipConnection,
        store: PeerStore,
        sender: RevSender,
        *,
        since: int,
        continuous: bool,
        batch: int,
        active_only: bool,
        doc_ids: set[str] | None,
        origin: object,
        record: Callable[[str], None],
    ) -> None:
        self.conn = conn
        self.store = store
        self.sender = sender
        self.last = since
        self.continuous = continuous
        self.batch = max(batch, 1)
        self.active_only = active_only
        self.doc_ids = doc_ids
        self.origin = origin
        self.record = record
        self.caught_up = False
        self.deltas_ok = False
        self.revs_sent = 0
        self._lists_in_flight = 0
        self._wake = asyncio.Event()
        self._rev_slots = asyncio.Semaphore(MAX_REVS_IN_FLIGHT)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        remove = self.store.add_observer(lambda _change: self._wake.set())
        try:
            while self.conn.is_open:
                limit = 1 if self.caught_up else MAX_CHANGE_LISTS_IN_FLIGHT
                if self._lists_in_flight >= limit:
                    await self._wait()
                    continue
                self._wake.clear()
                rows = self._next_rows()
                if rows:
                    self._send_changes(rows)
                    continue
                if not self.caught_up:
                    # Pusher::gotChanges: an empty list announces "caught up".
                    self.caught_up = True
                    self.conn.send_no_reply("changes", [], b"[]", urgent=True)
                    if not self.continuous:
                        break
                await self._wait()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            remove()

    async def _wait(self) -> None:
        await self._wake.wait()
        self._wake.clear()

    def _next_rows(self) -> list[Change]:
        while True:
            raw = self.store.changes_since(self.last, self.batch, skip_deleted=self.active_only and not self.caught_up)
            if not raw:
                return []
            self.last = raw[-1].sequence
            rows = [
                row
                for row in raw
                if (self.doc_ids is None or row.doc_id in self.doc_ids)
                and not (self.caught_up and row.origin is self.origin)
            ]
            if rows:
                return rows

    def _send_changes(self, rows: list[Change]) -> None:
        body = []
        for row in rows:
            entry: list[Any] = [row.sequence, row.doc_id, row.rev_id]
            if row.deleted or row.body_size > 0:
                entry.append(row.deleted)
            if row.body_size > 0:
                entry.append(row.body_size)
            body.append(entry)
        self._lists_in_flight += 1
        # queued now, ahead of a caught-up [] that follows (Pusher::gotChanges queues them in this order)
        reply = self.conn.send_request(
            "changes", [], json.dumps(body, separators=(",", ":")).encode(), compressed=True, urgent=True
        )
        task = asyncio.ensure_future(self._changes_round(rows, reply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _changes_round(self, rows: list[Change], pending: Awaitable[Message]) -> None:
        try:
            reply = await pending
        except ConnectionClosedError:
            return
        finally:
            self._lists_in_flight -= 1
            self._wake.set()
        if reply.is_error:
            self.record(f"client refused a changes list: {reply.error}")
            return
        self._handle_reply(rows, reply)

    def _handle_reply(self, rows: list[Change], reply: Message) -> None:
        answers = reply.json()
        if not isinstance(answers, list):
            self.record(f"changes reply body is not a JSON array: {reply.body[:80]!r}")
            return
        max_history = reply.get_int("maxHistory", DEFAULT_MAX_HISTORY)
        if reply.get_bool("deltas"):
            self.deltas_ok = True
        for row, answer in zip(rows, answers, strict=False):
            if isinstance(answer, list):
                known = tuple(a for a in answer if isinstance(a, str))
                rev = OutgoingRev(
                    row.doc_id,
                    row.rev_id,
                    row.sequence,
                    known,
                    False,
                    max_history,
                    self.deltas_ok,
                    legacy_attachments=not reply.get_bool("blobs"),
                )
                task = asyncio.ensure_future(self._send_rev(rev))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif answer not in (0, None, 409):
                self.record(f"changes reply entry for {row.doc_id} {row.rev_id} is {answer!r}")

    async def _send_rev(self, rev: OutgoingRev) -> None:
        async with self._rev_slots:
            try:
                reply = await self.sender.send(rev)
            except ConnectionClosedError:
                return
        self.revs_sent += 1
        if reply is not None and reply.is_error:
            log.info("client refused rev %s %s: %s", rev.doc_id, rev.rev_id, reply.error)
