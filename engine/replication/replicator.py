"""Replicator: the active peer (protocol §3.0, §3.12), with Couchbase Lite's lifecycle.

``start()`` connects and replicates; ``stop()`` ends cleanly from any state.
Status goes ``connecting`` -> ``busy``/``idle``; a one-shot replication stops
when both directions are done. Transient failures (refused, cut, timed out,
listener stopped, HTTP 408, 429 and 5xx) go ``offline`` and retry with
exponential backoff up to the configured wait, or after the peer's
``Retry-After`` if that is longer; permanent ones (401 ``unauthorized``, 403, a
refused certificate, an incompatible protocol) stop with the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

from engine.changes import ChangeEntry
from engine.errors import EngineError
from engine.replication import tuning
from engine.replication.active_session import ActiveSession, replication_checkpoint_id
from engine.replication.blip.websocket import connect
from engine.replication.checkpointer import Checkpointer
from engine.replication.db_runner import DbRunner
from engine.replication.errors import (
    BlipError,
    ConnectionClosedError,
    HandshakeError,
    HTTPStatusError,
    ReplicationError,
    TransportError,
)
from engine.replication.external_changes import follow_external_changes
from engine.replication.remote_revisions import RemoteRevisions
from engine.replication.replicator_types import (
    ActivityLevel,
    DocumentReplication,
    Progress,
    ReplicatedDocument,
    ReplicatorConfiguration,
    ReplicatorStatus,
)
from engine.replication.server_validation import connection_error

__all__ = ["Replicator", "is_transient"]

log = logging.getLogger(__name__)

#: WebSocket close codes after which retrying cannot help (§1 Closing).
_PERMANENT_CLOSE_CODES = frozenset({1002, 1003, 1008, 1009, 4002})
#: HTTP statuses worth retrying.
_TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})


def is_transient(error: BaseException) -> bool:
    """Whether retrying later may succeed."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return False
    if isinstance(error, HTTPStatusError):
        return error.status in _TRANSIENT_HTTP
    if isinstance(error, ConnectionClosedError):
        return error.code not in _PERMANENT_CLOSE_CODES
    if isinstance(error, HandshakeError | BlipError):
        return False
    return isinstance(error, TransportError | OSError | TimeoutError)


class Replicator:
    """Replicates a database with a listener, one-shot or continuous."""

    def __init__(self, config: ReplicatorConfiguration) -> None:
        self.config = config
        self._status = ReplicatorStatus()
        self._task: asyncio.Task[None] | None = None
        self._session: ActiveSession | None = None
        self._status_listeners: list[Callable[[ReplicatorStatus], None]] = []
        self._document_listeners: list[Callable[[DocumentReplication], None]] = []
        self._pending_reports: dict[bool, list[ReplicatedDocument]] = {True: [], False: []}
        self._flush_scheduled = False
        self._progress_scheduled = False
        self._latest = (False, 0, 0)
        self._stopped = asyncio.Event()
        self._stopped.set()
        self.pushed = 0
        self.pulled = 0

    # -- observing ---------------------------------------------------------------------------

    @property
    def status(self) -> ReplicatorStatus:
        """Activity, progress and the last error."""
        return self._status

    @property
    def protocol(self) -> str | None:
        """The BLIP subprotocol of the current connection (``BLIP_3+CBMobile_3``...), or None."""
        session = self._session
        return None if session is None else session.socket.subprotocol

    def add_change_listener(self, listener: Callable[[ReplicatorStatus], None]) -> Callable[[], None]:
        """Call ``listener`` on every status change; return a function that removes it."""
        self._status_listeners.append(listener)
        return lambda: self._status_listeners.remove(listener) if listener in self._status_listeners else None

    def add_document_listener(self, listener: Callable[[DocumentReplication], None]) -> Callable[[], None]:
        """Call ``listener`` with the documents replicated in each direction; return a remover."""
        self._document_listeners.append(listener)
        return lambda: self._document_listeners.remove(listener) if listener in self._document_listeners else None

    def _set_status(
        self,
        activity: ActivityLevel,
        *,
        progress: Progress | None = None,
        error: ReplicationError | None = None,
        retry_in: float | None = None,
    ) -> None:
        status = ReplicatorStatus(activity, progress or self._status.progress, error, retry_in)
        if status == self._status:
            return
        self._status = status
        for listener in list(self._status_listeners):
            try:
                listener(status)
            except Exception:
                log.exception("replicator status listener failed")

    def _report(self, push: bool, doc_id: str, rev_id: str, deleted: bool, error: EngineError | None) -> None:
        """Count a replicated document; listeners hear of them in batches, once per event-loop turn."""
        if error is None:
            if push:
                self.pushed += 1
            else:
                self.pulled += 1
        if not self._document_listeners:
            return
        self._pending_reports[push].append(ReplicatedDocument(doc_id, rev_id, deleted, error))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_reports)

    def _flush_reports(self) -> None:
        self._flush_scheduled = False
        for push, documents in self._pending_reports.items():
            if documents:
                event = DocumentReplication(push, tuple(documents))
                documents.clear()
                for listener in list(self._document_listeners):
                    try:
                        listener(event)
                    except Exception:
                        log.exception("document listener failed")

    def _progress(self, idle: bool, completed: int, total: int) -> None:
        """Note progress; listeners hear of it once per event-loop turn."""
        self._latest = (idle, completed, total)
        if not self._progress_scheduled:
            self._progress_scheduled = True
            asyncio.get_running_loop().call_soon(self._publish_progress)

    def _publish_progress(self) -> None:
        self._progress_scheduled = False
        if (
            self._task is None
            or self._task.done()
            or self._status.activity in (ActivityLevel.STOPPED, ActivityLevel.OFFLINE)
        ):
            return
        idle, completed, total = self._latest
        self._set_status(ActivityLevel.IDLE if idle else ActivityLevel.BUSY, progress=Progress(completed, total))

    # -- pending documents -------------------------------------------------------------------

    def _pending_rows(self) -> list[ChangeEntry]:
        db, config = self.config.database, self.config
        session = self._session
        if session is not None and session.pusher is not None:
            since = session.pusher.checkpoint
        else:
            saved = Checkpointer.read_local(db, replication_checkpoint_id(config))
            since = saved.local if saved else 0
        rows = [r for r in db.changes_since(since) if config.doc_ids is None or r.doc_id in config.doc_ids]
        known = db.remote_revisions(db.remote_id(config.remote_identity), [r.doc_id for r in rows])
        return [row for row, theirs in zip(rows, known, strict=True) if theirs != row.rev_id]

    def pending_document_ids(self) -> set[str]:
        """IDs of local documents with changes not yet pushed."""
        if not self.config.type.pushes:
            return set()
        return {row.doc_id for row in self._pending_rows()}

    def is_document_pending(self, doc_id: str) -> bool:
        """Whether ``doc_id`` has a change not yet pushed."""
        return doc_id in self.pending_document_ids()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, *, reset_checkpoint: bool = False) -> None:
        """Start replicating (in the running event loop)."""
        if self._task is not None and not self._task.done():
            return
        self._stopped.clear()
        self._set_status(ActivityLevel.CONNECTING, progress=Progress(), error=None)
        self._task = asyncio.create_task(self._run(reset_checkpoint), name=f"replicator {self.config.url}")

    async def stop(self) -> None:
        """Stop promptly and cleanly, whatever the current state."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_status(ActivityLevel.STOPPED, error=self._status.error)
        self._stopped.set()

    async def wait_stopped(self) -> ReplicatorStatus:
        """Wait until the replicator has stopped; return the final status."""
        await self._stopped.wait()
        return self._status

    async def _run(self, reset_checkpoint: bool) -> None:
        runner = DbRunner(threaded=self.config.threaded_database)
        follower = asyncio.create_task(follow_external_changes(self.config.database, runner), name="external changes")
        attempt, error, got_through = 0, None, True
        try:
            db = self.config.database
            remote = RemoteRevisions(db, runner, await runner.run(db.remote_id, self.config.remote_identity))
            while True:
                attempt += 1
                self._set_status(ActivityLevel.CONNECTING, error=error)
                try:
                    self._session = None
                    await self._follow_endpoint(after_failure=not got_through)
                    await self._connect_and_replicate(runner, remote, reset_checkpoint)
                    error = None
                    break  # a one-shot replication completed
                except (ReplicationError, OSError, TimeoutError, EngineError) as exc:
                    error = _as_replication_error(exc)
                    got_through = self._session is not None
                    if got_through:  # start the backoff again, keep the checkpoint
                        attempt, reset_checkpoint = 1, False
                    if not is_transient(exc) or attempt >= self.config.attempts_allowed:
                        log.info("replication with %s stopped: %s", self.config.url, error)
                        break
                    wait = min(self.config.max_attempt_wait, tuning.RETRY_INITIAL_WAIT * 2 ** (attempt - 1))
                    if isinstance(exc, HTTPStatusError) and exc.retry_after is not None:
                        # a 429 or 503 says when: sooner earns another refusal (LiteCore ignores it)
                        wait = max(wait, min(exc.retry_after, tuning.MAX_RETRY_AFTER))
                    log.info("replication with %s offline (%s); retrying in %.1f s", self.config.url, error, wait)
                    self._set_status(ActivityLevel.OFFLINE, error=error, retry_in=wait)
                    await self._wait_to_retry(wait)
        except Exception as exc:  # a defect of ours: stop with it rather than hang at busy
            log.exception("replication with %s failed", self.config.url)
            error = ReplicationError(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            follower.cancel()
            self._session = None
            runner.close()
            if not _cancelling():
                self._set_status(ActivityLevel.STOPPED, error=error)
            self._stopped.set()

    async def _follow_endpoint(self, *, after_failure: bool) -> None:
        """With an endpoint resolver, connect where the peer is now: its URL replaces the last one."""
        endpoint = self.config.endpoint
        if endpoint is None:
            return
        url = await endpoint.resolve(after_failure=after_failure)
        if url != self.config.url:
            log.info("%s is now at %s (was %s)", self.config.remote_identity, url, self.config.url)
            self.config = dataclasses.replace(self.config, url=url)  # checks the URL as the first was

    async def _wait_to_retry(self, wait: float) -> None:
        """Wait before the next attempt; a followed peer announced meanwhile ends the wait."""
        endpoint = self.config.endpoint
        if endpoint is None:
            await asyncio.sleep(wait)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(endpoint.wait_announced(), wait)

    async def _connect_and_replicate(self, runner: DbRunner, remote: RemoteRevisions, reset_checkpoint: bool) -> None:
        """One connection: returns when a one-shot replication completed, raises when it ended otherwise."""
        config = self.config
        headers = dict(config.headers)
        if config.authenticator is not None:
            headers.update(config.authenticator.headers())
        self._session = None
        parts = urlsplit(config.url)
        host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "wss" else 80)
        # a context per connection: the certificate checks need the host and port
        # a discovered peer (an endpoint) is trusted by its peer ID, whatever its address
        peer_id = config.remote_name if config.endpoint is not None else None
        context = (
            None
            if config.tls is None
            else config.tls.client_context(host, port, config.client_identity, peer_id=peer_id)
        )
        try:
            socket = await connect(config.url, headers=headers, ssl=context, ping_interval=config.heartbeat)
        except ssl.SSLError as exc:  # a refused certificate stops for good; see is_transient
            raise connection_error(exc, host, port) from None
        session = ActiveSession(
            socket,
            config,
            runner,
            remote,
            report=self._report,
            on_progress=self._progress,
            reset_checkpoint=reset_checkpoint,
        )
        self._session = session
        try:
            await session.run()
        except asyncio.CancelledError:
            await asyncio.shield(socket.close(1000, "stopped"))
            raise
        finally:
            if not socket.closed:
                await socket.close(1011 if not session.idle else 1000)


def _cancelling() -> bool:
    """Whether the running task is being cancelled (``stop()`` then sets the final status itself)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _as_replication_error(exc: BaseException) -> ReplicationError:
    if isinstance(exc, ReplicationError):
        return exc
    if isinstance(exc, ssl.SSLError):
        return HandshakeError(f"TLS failed: {exc}")
    if isinstance(exc, OSError | TimeoutError):
        return TransportError(str(exc) or type(exc).__name__)
    return ReplicationError(str(exc))
