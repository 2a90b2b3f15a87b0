"""Following commits that other processes make to the same database files."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from engine.changes import Changes, ChangeSource
from engine.database import Database
from engine.replication.db_runner import DbRunner
from engine.replication.external_changes import follow_external_changes
from tests.conftest import save_in_other_process_async, wait_until

pytestmark = pytest.mark.asyncio


async def test_commits_by_another_process_are_announced(tmp_path: Path) -> None:
    db = Database(tmp_path / "db", durable=False)
    seen: list[Changes] = []
    db.add_change_listener(seen.append)
    follower = asyncio.create_task(follow_external_changes(db, DbRunner(), interval=0.01))
    try:
        await save_in_other_process_async(tmp_path / "db", "from-elsewhere")
        await wait_until(lambda: any("from-elsewhere" in c.doc_ids for c in seen))
        assert all(c.source is ChangeSource.EXTERNAL for c in seen)
    finally:
        follower.cancel()
        db.close()


async def test_a_closed_database_is_reported_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = Database(tmp_path / "db", durable=False)
    db.close()
    polls = 0

    class CountingRunner(DbRunner):
        async def run(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal polls
            polls += 1
            return await super().run(fn, *args, **kwargs)

    with caplog.at_level(logging.WARNING, logger="engine.replication.external_changes"):
        follower = asyncio.create_task(follow_external_changes(db, CountingRunner(), interval=0.001))
        await wait_until(lambda: polls >= 5)
        follower.cancel()
    assert len([r for r in caplog.records if "cannot check" in r.getMessage()]) == 1
