"""Receiving revisions (protocol §3.7): IncomingRev checks and completes them, the Inserter stores them.

IncomingRev parses a ``rev``, applies a delta against its base (``HTTP``/422
when the base is unknown), drops reserved properties and fetches missing
blobs before anything is stored. The Inserter stores revisions in batches,
one transaction each, and answers every ``rev`` once its batch has committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from engine.blobs import Blob, iter_blob_refs, may_refer_to_blobs
from engine.conflicts import ConflictResolver, ConflictView, resolve_document
from engine.database import Database, InsertResult, RevisionInsert
from engine.errors import BlobError, ConflictError, EngineError, InvalidDocumentError, ValidationError
from engine.replication import tuning
from engine.replication.attachments import AttachmentFetcher
from engine.replication.blip.connection import Message
from engine.replication.blip.socket import BlipSocket, Reply
from engine.replication.db_runner import DbRunner
from engine.replication.delta import DeltaError, apply_delta
from engine.replication.errors import BlipError
from engine.replication.messages import IncomingRevision, parse_json, parse_rev, strip_special_properties

__all__ = ["Inserter", "RevReceiver"]

log = logging.getLogger(__name__)

#: Called after each batch of revisions is stored (or refused), with the revisions and their results in order.
InsertCallback = Callable[[Sequence[IncomingRevision], Sequence[InsertResult]], None]


def _blip_error(exc: EngineError) -> BlipError:
    """How a refused revision is reported to its sender."""
    if isinstance(exc, ConflictError):
        return BlipError("HTTP", 409, "conflict")
    if isinstance(exc, ValidationError):  # as Sync Gateway answers what its validation refuses
        return BlipError("HTTP", 403, str(exc))
    if isinstance(exc, InvalidDocumentError):
        return BlipError("HTTP", 400, str(exc))
    if isinstance(exc, BlobError):
        return BlipError("HTTP", 400, "missing or damaged attachment")
    return BlipError("HTTP", 500, "internal error")


class Inserter:
    """Stores received revisions in batches and resolves conflicts they cause."""

    def __init__(
        self,
        db: Database,
        runner: DbRunner,
        *,
        remote: str,
        remote_id: int | None = None,
        resolver: ConflictResolver | None,
        on_inserted: InsertCallback | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.runner = runner
        self.remote = remote
        #: the number of the remote database whose revisions these are (a replicator's peer)
        self.remote_id = remote_id
        self.resolver = resolver
        self.on_inserted = on_inserted
        self.on_idle = on_idle
        self._queue: list[tuple[IncomingRevision, RevisionInsert, asyncio.Future[Reply | None] | None]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        """Whether nothing is queued or being stored."""
        return not self._queue and (self._task is None or self._task.done())

    def submit(self, rev: IncomingRevision, insert: RevisionInsert) -> asyncio.Future[Reply | None]:
        """Queue a revision; the future resolves (or fails) once it is stored."""
        future: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        self._enqueue(rev, insert, future)
        return future

    def submit_no_reply(self, rev: IncomingRevision, insert: RevisionInsert) -> None:
        """Queue a revision nobody waits for (a NoReply ``rev``); the outcome goes to ``on_inserted`` only."""
        self._queue.append((rev, insert, None))  # _enqueue inline: this runs for every pulled revision
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="inserter")

    def _enqueue(
        self, rev: IncomingRevision, insert: RevisionInsert, future: asyncio.Future[Reply | None] | None
    ) -> None:
        self._queue.append((rev, insert, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="inserter")

    async def _run(self) -> None:
        try:
            await self._insert_all()
        finally:
            self._task = None
            if self.on_idle is not None and not self._queue:
                self.on_idle()

    async def _insert_all(self) -> None:
        resolve = self._resolve if self.resolver is not None else None
        while self._queue:
            batch, self._queue = self._queue[: tuning.INSERT_BATCH], self._queue[tuning.INSERT_BATCH :]
            try:
                results = await self.runner.run(
                    self.db.insert_revisions,
                    [b[1] for b in batch],
                    remote=self.remote,
                    remote_id=self.remote_id,
                    resolve=resolve,
                )
            except EngineError as exc:
                log.error("storing %d received revisions failed: %s", len(batch), exc)
                results = [InsertResult(b[0].doc_id, b[0].rev_id, error=exc) for b in batch]
            if self.on_inserted is not None:
                self.on_inserted([b[0] for b in batch], results)
            for (_, _, future), result in zip(batch, results, strict=True):
                if future is None or future.done():
                    continue
                if result.error is None:
                    future.set_result(None)
                else:
                    future.set_exception(_blip_error(result.error))

    async def resolve(self, doc_id: str, rev_id: str) -> None:
        """Resolve a conflict between our current revision and ``rev_id``, a revision we already have."""
        assert self.resolver is not None
        try:
            await self.runner.run(resolve_document, self.db, doc_id, rev_id, self.resolver)
        except EngineError as exc:
            log.warning("could not resolve the conflict on %r: %s", doc_id, exc)

    def _resolve(self, view: ConflictView, result: InsertResult) -> None:
        """Resolve a conflict a received revision caused, in the transaction that stores it (§4.5-4.6)."""
        assert self.resolver is not None
        resolve_document(view, result.doc_id, result.rev_id, self.resolver)


class RevReceiver:
    """Handles ``rev`` messages from the peer (IncomingRev)."""

    def __init__(
        self,
        socket: BlipSocket,
        db: Database,
        runner: DbRunner,
        inserter: Inserter,
        *,
        no_conflicts: bool,
        read_only: bool = False,
        accept: Callable[[IncomingRevision, dict[str, Any]], bool] | None = None,
    ) -> None:
        self.socket = socket
        self.db = db
        self.runner = runner
        self.inserter = inserter
        self.no_conflicts = no_conflicts
        self.read_only = read_only
        self.accept = accept
        self.fetcher = AttachmentFetcher(db, runner, socket)
        self.revs_received = 0
        self.bytes_received = 0
        self.deltas_received = 0

    def register(self) -> None:
        """Handle ``rev`` on the socket."""
        self.socket.register("rev", self.handle_rev)

    def handle_rev(self, message: Message) -> Any:
        """Check a revision and queue it; the reply goes out once it is stored.

        ``accept`` (a pull filter) may turn a revision down: it is then
        answered without being stored.
        """
        if self.read_only:
            raise BlipError("HTTP", 403, "this peer is read-only")
        raw = message.body
        rev = parse_rev(message.properties, raw)
        self.revs_received += 1
        self.bytes_received += len(raw)
        if rev.delta_src is None:
            body = parse_json(raw, "rev") if raw else {}
            if not isinstance(body, dict):
                raise BlipError("HTTP", 400, "revision body is not an object")
            if b'"_' in raw or b"\\u" in raw:  # else no key can start with "_"
                body = strip_special_properties(body)
            if self.accept is not None and not self.accept(rev, body):
                return None
            blobs = _blobs_of(body) if may_refer_to_blobs(raw) else []
            if not blobs:  # the usual case: no task, no await
                if message.no_reply:  # as Sync Gateway and our listener send plain revisions (§3.7)
                    self.inserter.submit_no_reply(rev, self._insert(rev, body))
                    return None
                return self.inserter.submit(rev, self._insert(rev, body))
            return self._store_with_blobs(rev, body, blobs)
        return self._apply_delta(rev)

    async def _apply_delta(self, rev: IncomingRevision) -> Reply | None:
        assert rev.delta_src is not None
        base = await self.runner.run(self.db.get_revision, rev.doc_id, rev.delta_src)
        if base is None or base.deleted:
            raise BlipError("HTTP", 422, "delta base unknown")
        try:
            body = apply_delta(base.body, parse_json(rev.body, "delta"))
        except DeltaError as exc:
            raise BlipError("HTTP", 422, str(exc)) from None
        if not isinstance(body, dict):
            raise BlipError("HTTP", 422, "delta does not give an object")
        self.deltas_received += 1
        body = strip_special_properties(body)
        if self.accept is not None and not self.accept(rev, body):
            return None
        return await self._store_with_blobs(rev, body, _blobs_of(body))

    async def _store_with_blobs(self, rev: IncomingRevision, body: dict[str, Any], blobs: list[Blob]) -> Reply | None:
        """Fetch the blobs we lack, then store the revision with them."""
        fetched = await self.fetcher.fetch_missing(rev.doc_id, blobs)
        try:
            return await self.inserter.submit(rev, self._insert(rev, body, fetched))
        finally:
            self.fetcher.release(fetched)

    def _insert(
        self, rev: IncomingRevision, body: dict[str, Any], new_blobs: list[tuple[bytes, bytes]] | None = None
    ) -> RevisionInsert:
        no_conflicts = self.no_conflicts or rev.no_conflicts
        # parse_rev validated the revision ID and history (protocol §3.7): ids_checked
        return RevisionInsert(
            rev.doc_id, rev.rev_id, rev.history, body, rev.deleted, no_conflicts, new_blobs or (), True
        )


def _blobs_of(body: dict[str, Any]) -> list[Blob]:
    try:
        return [Blob.from_dict(ref) for ref in iter_blob_refs(body)]
    except InvalidDocumentError as exc:
        raise BlipError("HTTP", 400, str(exc)) from None
