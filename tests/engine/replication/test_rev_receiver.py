"""The Inserter: batched inserts, replies, and outcomes reported for revisions nobody waits for."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine.database import Database, InsertResult, RevisionInsert
from engine.errors import StorageError
from engine.replication.db_runner import DbRunner
from engine.replication.errors import BlipError
from engine.replication.messages import IncomingRevision
from engine.replication.rev_receiver import Inserter
from tests.conftest import TIME_UNIT

pytestmark = pytest.mark.asyncio


def incoming(doc_id: str, rev_id: str = "1-aa") -> tuple[IncomingRevision, RevisionInsert]:
    rev = IncomingRevision(doc_id, rev_id, [], False, None, None, False, b"{}")
    return rev, RevisionInsert(doc_id, rev_id, [], {"n": doc_id})


def make_inserter(db: Database, outcomes: list[tuple[str, InsertResult]]) -> Inserter:
    return Inserter(
        db,
        DbRunner(),
        remote="peer",
        resolver=None,
        on_inserted=lambda revs, results: outcomes.extend(
            (rev.doc_id, r) for rev, r in zip(revs, results, strict=True)
        ),
    )


async def until_idle(inserter: Inserter) -> None:
    async with asyncio.timeout(10 * TIME_UNIT):
        while not inserter.idle:
            await asyncio.sleep(0.001)


async def test_revisions_with_and_without_replies_are_stored_together(tmp_path: Path) -> None:
    db = Database(tmp_path / "db", durable=False)
    try:
        outcomes: list[tuple[str, InsertResult]] = []
        inserter = make_inserter(db, outcomes)
        commits: list[Any] = []
        db.add_change_listener(commits.append)
        inserter.submit_no_reply(*incoming("a"))
        waited = inserter.submit(*incoming("b"))
        inserter.submit_no_reply(*incoming("c"))
        assert await asyncio.wait_for(waited, 10 * TIME_UNIT) is None
        await until_idle(inserter)
        assert [doc_id for doc_id, result in outcomes if result.error is None] == ["a", "b", "c"]
        assert len(commits) == 1 and db.document_count() == 3
    finally:
        db.close()


async def test_a_failed_batch_reports_every_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = Database(tmp_path / "db", durable=False)
    try:
        outcomes: list[tuple[str, InsertResult]] = []
        inserter = make_inserter(db, outcomes)

        def broken(*_args: object, **_kwargs: object) -> list[InsertResult]:
            raise StorageError("disk gone")

        monkeypatch.setattr(db, "insert_revisions", broken)
        inserter.submit_no_reply(*incoming("a"))
        waited = inserter.submit(*incoming("b"))
        with pytest.raises(BlipError) as refused:
            await asyncio.wait_for(waited, 10 * TIME_UNIT)
        assert refused.value.code == 500
        await until_idle(inserter)
        # the NoReply revision's outcome still reaches the puller, which would otherwise wait for it forever
        assert [(doc_id, isinstance(result.error, StorageError)) for doc_id, result in outcomes] == [
            ("a", True),
            ("b", True),
        ]
    finally:
        db.close()
