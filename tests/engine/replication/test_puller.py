"""The puller's bookkeeping, without a network."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path

import pytest

from engine.database import Database
from engine.replication import tuning
from engine.replication.active_context import ActiveContext
from engine.replication.blip.codec import MessageType
from engine.replication.blip.connection import Message
from engine.replication.blip.socket import Reply
from engine.replication.db_runner import DbRunner
from engine.replication.puller import Puller
from engine.replication.remote_revisions import RemoteRevisions
from engine.replication.replicator_types import ReplicatorConfiguration
from engine.revid import make_rev_id

pytestmark = pytest.mark.asyncio


class StubSocket:
    """What the puller asks of its connection: which requests are still arriving."""

    closed = False

    def __init__(self) -> None:
        self.arriving: set[int] = set()

    def register(self, *_args: object) -> None:
        pass

    def receiving_requests_before(self, number: int) -> bool:
        return any(n < number for n in self.arriving)


def changes(number: int, body: bytes) -> Message:
    return Message(number, MessageType.REQUEST, {"Profile": "changes"}, body)


def puller_on(db: Database, socket: StubSocket, runner: DbRunner) -> Puller:
    """A puller of ``db`` whose connection is ``socket``, reporting nowhere."""
    ctx = ActiveContext(
        socket,  # type: ignore[arg-type]
        db,
        runner,
        ReplicatorConfiguration(db, "ws://peer:1/db"),
        report=lambda *_: None,
        touch=lambda: None,
        fail=lambda _: None,
        remote=RemoteRevisions(db, runner, db.remote_id("ws://peer:1/db")),
    )
    return Puller(ctx)


@pytest.mark.parametrize("threaded", [False, True])
async def test_caught_up_waits_for_an_earlier_changes_message_still_arriving(tmp_path: Path, threaded: bool) -> None:
    """§2.5: an empty changes can complete before a longer one the peer sent first; the pull is not
    caught up (a one-shot run would end) until that one has arrived and been answered."""
    db = Database(tmp_path / "db", durable=False)
    socket = StubSocket()
    runner = DbRunner(threaded=threaded)
    puller = puller_on(db, socket, runner)
    try:
        socket.arriving.add(5)  # request 5, a long changes message, has only begun to arrive
        assert puller.handle_changes(changes(6, b"[]")) is None
        assert not puller.caught_up and not puller.idle
        socket.arriving.clear()
        answer = puller.handle_changes(changes(5, b'[[1,"a","%s"]]' % make_rev_id(None, False, b"{}").encode()))
        if threaded:  # the answer waits for the database thread
            assert isinstance(answer, Coroutine) and not puller.caught_up  # received, not yet answered
            answer = await answer
        assert isinstance(answer, Reply) and json.loads(answer.body) == [[]]  # inline: answered at once
        assert puller.caught_up and not puller.idle  # its revision is now awaited
    finally:
        runner.close()
        db.close()


async def test_the_checkpoint_never_passes_a_batch_still_waiting_for_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changes batch held back (too many revisions pending) must keep its place: a later batch
    answered at once, its revisions stored, cannot move the checkpoint past it, or a sync stopped
    then would resume after it and skip its documents (found as 400 missing after Ctrl-C)."""
    monkeypatch.setattr(tuning, "MAX_PENDING_REVS", 2)
    db = Database(tmp_path / "db", durable=False)
    socket = StubSocket()
    runner = DbRunner(threaded=False)
    puller = puller_on(db, socket, runner)
    rev = make_rev_id(None, False, b"{}")

    def batch(number: int, *rows: tuple[int, str]) -> object:
        body = json.dumps([[seq, doc_id, rev] for seq, doc_id in rows]).encode()
        return puller.handle_changes(changes(number, body))

    try:
        assert isinstance(batch(1, (1, "a"), (2, "b")), Reply)  # answered at once: two revisions pending
        held = batch(2, (3, "c"), (4, "d"))
        assert isinstance(held, Coroutine)  # no room: it waits
        waiting = asyncio.ensure_future(held)
        await asyncio.sleep(0)
        for doc_id in ("a", "b"):
            puller._done((doc_id, rev))
        assert puller.checkpoint == 2
        assert isinstance(batch(3, (5, "e"), (6, "f")), Reply)  # room again: answered before batch 2 runs
        for doc_id in ("e", "f"):
            puller._done((doc_id, rev))
        assert puller.checkpoint == 2  # not 6: sequences 3 and 4 are not done
        waiting.cancel()
    finally:
        runner.close()
        db.close()
