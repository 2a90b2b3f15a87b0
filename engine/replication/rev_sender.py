"""RevSender: sends revisions to the peer as ``rev`` messages and collects their replies (protocol §3.7, §5).

It builds each revision's history up to an ancestor the peer is known to have,
sends a delta against that ancestor when the peer accepts deltas and the
delta is smaller, resends the full body when the peer cannot apply a delta
(``HTTP``/422), and keeps at most a window of revisions awaiting replies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.blobs import may_refer_to_blobs
from engine.database import Database
from engine.database_sync import RevisionRequest, SyncRevision
from engine.json_codec import dumps, loads
from engine.replication import tuning
from engine.replication.blip.connection import Message
from engine.replication.blip.socket import BlipSocket
from engine.replication.db_runner import DbRunner
from engine.replication.delta import create_delta, delta_size
from engine.replication.errors import BlipError, ConnectionClosedError
from engine.replication.messages import add_legacy_attachments, rev_properties
from engine.revid import generation

__all__ = ["RevOutcome", "RevSender"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RevOutcome:
    """What happened to one revision sent: stored by the peer, or refused with an error."""

    doc_id: str
    rev_id: str
    sequence: Any
    deleted: bool = False
    error: BlipError | None = None


class RevSender:
    """Sends revisions and reports each outcome to ``on_outcome``."""

    def __init__(
        self,
        socket: BlipSocket,
        db: Database,
        runner: DbRunner,
        *,
        on_outcome: Callable[[RevOutcome], None],
        deltas_allowed: Callable[[], bool],
        max_history: Callable[[], int] = lambda: tuning.MAX_HISTORY,
        legacy_attachments: Callable[[], bool] = lambda: False,
    ) -> None:
        self.socket = socket
        self.db = db
        self.runner = runner
        self.on_outcome = on_outcome
        self.deltas_allowed = deltas_allowed
        self.max_history = max_history
        self.legacy_attachments = legacy_attachments
        self.in_flight = 0
        self._in_flight_bytes = 0
        self._room = asyncio.Event()
        self._room.set()
        self.revs_sent = 0
        self.bytes_sent = 0
        self.deltas_sent = 0

    @property
    def idle(self) -> bool:
        """Whether no revision awaits a reply."""
        return self.in_flight == 0

    async def send(
        self, doc_id: str, rev_id: str, *, known: Sequence[str], sequence: Any, no_conflicts: bool = False
    ) -> None:
        """Send one revision (waiting for room in the window); its outcome is reported later."""
        await self.send_many([(doc_id, rev_id, known, sequence)], no_conflicts=no_conflicts)

    async def send_many(
        self,
        items: Sequence[tuple[str, str, Sequence[str], Any]],
        *,
        no_conflicts: bool = False,
        no_reply_when_plain: bool = False,
    ) -> None:
        """Send revisions ``(doc ID, rev ID, revisions the peer has, sequence)``, read in one go.

        With ``no_reply_when_plain``, revisions without blobs that go whole
        are sent NoReply, as Sync Gateway does (protocol §3.7); their outcome
        is reported as soon as they are queued.
        """
        deltas = self.deltas_allowed()
        requests = [RevisionRequest(d, r, k, k[0] if k and deltas else None) for d, r, k, _ in items]
        revs = await self.runner.run(self.db.revisions_for_sync, requests, max_history=self.max_history())
        for count, ((doc_id, rev_id, _, sequence), rev) in enumerate(zip(items, revs, strict=True), start=1):
            if count % tuning.REV_SEND_SLICE == 0:
                # let the socket write what is queued, so that the peer works on
                # these revisions while we prepare the rest
                await asyncio.sleep(0)
            if rev is None:  # superseded meanwhile: the peer gets the newer revision from the feed
                self._send_norev(doc_id, rev_id, sequence)
                continue
            while (
                self.in_flight >= tuning.MAX_REVS_IN_FLIGHT or self._in_flight_bytes >= tuning.MAX_REV_BYTES_IN_FLIGHT
            ):
                self._room.clear()
                await self._room.wait()
            self._send(
                rev,
                sequence,
                no_conflicts=no_conflicts,
                use_delta=rev.base_rev_id is not None,
                no_reply=no_reply_when_plain and not may_refer_to_blobs(rev.body),
            )

    def _send_norev(self, doc_id: str, rev_id: str, sequence: Any) -> None:
        """Tell the peer a revision it asked for cannot be sent (protocol §3.8), as LiteCore's pusher does:
        every requested ``rev`` is answered by a ``rev`` or a ``norev``, or the peer waits for it forever."""
        error = BlipError("HTTP", 410, "revision is gone")
        props = {
            "id": doc_id,
            "rev": rev_id,
            "sequence": dumps(sequence).decode(),
            "error": "410",
            "reason": error.message,
        }
        try:
            self.socket.send_request("norev", props, no_reply=True)
        except ConnectionClosedError as exc:
            error = BlipError("Network", 0, str(exc))
        self.on_outcome(RevOutcome(doc_id, rev_id, sequence, error=error))

    def _send(
        self, rev: SyncRevision, sequence: Any, *, no_conflicts: bool, use_delta: bool, no_reply: bool = False
    ) -> None:
        body, delta_src = rev.body, None
        if may_refer_to_blobs(body) and self.legacy_attachments():  # a peer like Sync Gateway (§4.4)
            body = dumps(add_legacy_attachments(loads(body), generation(rev.rev_id)))
            use_delta = False
        if use_delta and rev.base_body is not None and not rev.deleted and len(rev.body) >= tuning.MIN_DELTA_BODY:
            delta = create_delta(loads(rev.base_body), loads(rev.body))
            if delta_size(delta) < len(rev.body):
                body, delta_src = dumps(delta), rev.base_rev_id
        props = rev_properties(
            rev.doc_id,
            rev.rev_id,
            rev.history,
            sequence=sequence,
            deleted=rev.deleted,
            no_conflicts=no_conflicts,
            delta_src=delta_src,
        )
        no_reply = no_reply and delta_src is None
        try:
            future = self.socket.send_request(
                "rev", props, body, compressed=len(body) >= tuning.COMPRESS_MIN_BODY, no_reply=no_reply
            )
        except ConnectionClosedError as exc:
            error = BlipError("Network", 0, str(exc))
            self.on_outcome(RevOutcome(rev.doc_id, rev.rev_id, sequence, rev.deleted, error))
            return
        self.revs_sent += 1
        self.bytes_sent += len(body)
        self.deltas_sent += delta_src is not None
        if future is None:
            self.on_outcome(RevOutcome(rev.doc_id, rev.rev_id, sequence, rev.deleted))
            return
        self.in_flight += 1
        self._in_flight_bytes += len(body)
        future.add_done_callback(
            lambda done: self._replied(done, rev, sequence, no_conflicts=no_conflicts, size=len(body), delta=delta_src)
        )

    def _replied(
        self,
        done: asyncio.Future[Message],
        rev: SyncRevision,
        sequence: Any,
        *,
        no_conflicts: bool,
        size: int,
        delta: str | None,
    ) -> None:
        self.in_flight -= 1
        self._in_flight_bytes -= size
        self._room.set()
        error: BlipError | None = None
        if done.cancelled():
            error = BlipError("Network", 0, "cancelled")
        elif isinstance(exc := done.exception(), BlipError):
            error = exc
        elif exc is not None:
            error = BlipError("Network", 0, str(exc))
        if error is not None and delta is not None and error.code in (404, 422) and not self.socket.closed:
            log.debug("peer could not apply the delta for %r; sending the full body", rev.doc_id)
            self._send(rev, sequence, no_conflicts=no_conflicts, use_delta=False)
            return
        self.on_outcome(RevOutcome(rev.doc_id, rev.rev_id, sequence, rev.deleted, error))
