"""ActiveSession: one connection of a replicator, from checkpoint to completion or disconnection.

Protocol §3.0 (start-up) and §3.12 (flows, completion).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from engine.changes import Changes
from engine.errors import EngineError
from engine.replication import tuning
from engine.replication.active_context import ActiveContext
from engine.replication.attachments import AttachmentServer
from engine.replication.blip.socket import BlipSocket
from engine.replication.checkpoint import Checkpoint, checkpoint_id
from engine.replication.checkpointer import Checkpointer
from engine.replication.db_runner import DbRunner
from engine.replication.errors import ConnectionClosedError
from engine.replication.puller import Puller
from engine.replication.pusher import Pusher
from engine.replication.remote_revisions import RemoteRevisions
from engine.replication.replicator_types import ReplicatorConfiguration

__all__ = ["ActiveSession", "replication_checkpoint_id"]

log = logging.getLogger(__name__)


def replication_checkpoint_id(config: ReplicatorConfiguration) -> str:
    """The checkpoint ID of a configuration (§6): local database, remote, direction and filters.

    Changing the direction, the document IDs or a filter function starts a new
    checkpoint: a checkpoint reached with another filter would skip documents
    that filter had left out. Filter functions are told apart by module and
    qualified name.
    """
    doc_ids = sorted(config.doc_ids) if config.doc_ids is not None else None
    filters = [config.type.value, doc_ids, _function_name(config.push_filter), _function_name(config.pull_filter)]
    return checkpoint_id(config.database.uuid, config.remote_identity, filters)


def _function_name(function: object) -> str | None:
    if function is None:
        return None
    return f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', type(function).__qualname__)}"


class ActiveSession:
    """Runs pusher, puller and checkpointer over one open connection."""

    def __init__(
        self,
        socket: BlipSocket,
        config: ReplicatorConfiguration,
        runner: DbRunner,
        remote: RemoteRevisions,
        *,
        report: Callable[[bool, str, str, bool, EngineError | None], None],
        on_progress: Callable[[bool, int, int], None],
        reset_checkpoint: bool = False,
    ) -> None:
        self.socket = socket
        self.config = config
        self.reset_checkpoint = reset_checkpoint
        self.on_progress = on_progress
        self.ctx = ActiveContext(socket, config.database, runner, config, report, self._touch, self._fail, remote)
        self._failure: BaseException | None = None
        self.pusher: Pusher | None = None
        self.puller: Puller | None = Puller(self.ctx) if config.type.pulls else None
        self.checkpointer = Checkpointer(config.database, runner, socket, replication_checkpoint_id(config))
        self._started = False
        self._done = asyncio.Event()
        self._settle_scheduled = False
        self.idle = False

    def _touch(self) -> None:
        """Work started or finished: settle idle/busy and progress once, at the end of this event-loop turn."""
        if not self._settle_scheduled:
            self._settle_scheduled = True
            asyncio.get_running_loop().call_soon(self._settle)

    def _settle(self) -> None:
        self._settle_scheduled = False
        pusher, puller = self.pusher, self.puller
        puller_idle = puller is None or puller.idle
        # proposals waiting for the peer's revision (pusher.waiting) wait for the puller; once it
        # is idle they can only move when the peer changes, which a one-shot run does not wait for
        pusher_idle = pusher is None or pusher.idle or (pusher.only_waiting and puller_idle)
        if pusher is not None and pusher.waiting and pusher_idle and self._started and not self.config.continuous:
            pusher.give_up_waiting()
        self.idle = self._started and pusher_idle and puller_idle
        self.on_progress(self.idle, self.ctx.completed, self.ctx.total)
        if self.idle and not self.config.continuous:
            self._done.set()

    def _fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
            self._done.set()

    def checkpoint(self) -> Checkpoint:
        """The checkpoint reached so far."""
        local = self.pusher.checkpoint if self.pusher is not None else self.checkpointer.saved.local
        remote = self.puller.checkpoint if self.puller is not None else self.checkpointer.saved.remote
        return Checkpoint(local, remote)

    async def run(self) -> None:
        """Replicate; return once a one-shot replication is complete and closed with 1000.

        Raises:
            ConnectionClosedError: the connection ended first (always, for a continuous one).
            ReplicationError: the peer refused a request.
        """
        ctx = self.ctx
        ctx.runner.bind()
        AttachmentServer(ctx.db, ctx.runner).register(self.socket)
        if self.puller is not None:
            self.puller.register()
        self.socket.start()
        tasks: list[asyncio.Task[None]] = []
        remove = ctx.db.add_change_listener(self._database_changed)
        try:
            if self.reset_checkpoint:  # what the peer was known to hold goes with the checkpoint
                await ctx.runner.run(ctx.db.forget_remote, ctx.remote.remote_id)
            start = await self.checkpointer.load(reset=self.reset_checkpoint)
            if self.checkpointer.peer_forgot:  # it may be another database: what "it" held may not hold
                log.info("%s does not remember this replication; starting over", self.socket.name)
                await ctx.runner.run(ctx.db.forget_remote, ctx.remote.remote_id)
            if self.config.type.pushes:
                self.pusher = Pusher(ctx, start.local)
                tasks.append(asyncio.create_task(self.pusher.run(), name="pusher"))
            if self.puller is not None:
                empty = await ctx.runner.run(lambda: ctx.db.last_sequence == 0)
                await self.puller.start(start.remote, empty_database=empty)
            self._started = True
            self._touch()
            tasks.append(asyncio.create_task(self._save_periodically(), name="checkpoints"))
            await self._wait(tasks)
            await self.save_checkpoint()
            await self.socket.close(1000)
        finally:
            remove()
            for task in tasks:
                task.cancel()
            if self.pusher is not None:
                self.pusher.cancel()
                if self.pusher.waiting:  # the connection ends: they are conflicts for now (as LiteCore reports them)
                    self.pusher.give_up_waiting()
            with contextlib.suppress(Exception):
                checkpoint = self.checkpoint()  # what the records flushed next cover
                await ctx.remote.flush()
                if not self.socket.closed:
                    await self.checkpointer.save(checkpoint)

    async def _wait(self, tasks: list[asyncio.Task[None]]) -> None:
        closed = asyncio.create_task(self.socket.wait_closed())
        done = asyncio.create_task(self._done.wait())
        try:
            while True:
                finished, _ = await asyncio.wait([closed, done, *tasks], return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    if task in tasks and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if done in finished:
                    if self._failure is not None:
                        raise self._failure
                    return
                if closed in finished:
                    raise ConnectionClosedError(
                        f"connection to {self.socket.name} closed ({self.socket.close_code})",
                        code=self.socket.close_code,
                    )
                tasks = [t for t in tasks if not t.done()]
        finally:
            closed.cancel()
            done.cancel()

    async def save_checkpoint(self) -> None:
        """Save the checkpoint reached, after what the peer is known to hold (which it covers)."""
        checkpoint = self.checkpoint()
        await self.ctx.remote.flush()
        await self.checkpointer.save(checkpoint)

    async def _save_periodically(self) -> None:
        while True:
            await asyncio.sleep(tuning.CHECKPOINT_INTERVAL)
            await self.save_checkpoint()

    def _database_changed(self, changes: Changes) -> None:
        pusher = self.pusher
        if pusher is not None:
            self.ctx.runner.notify_soon(lambda: pusher.database_changed(changes))
