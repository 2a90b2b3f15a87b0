"""RemoteRevisions: what the peer holds, noted in the database and written in batches."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.database import Database
from engine.replication.db_runner import DbRunner
from engine.replication.remote_revisions import RemoteRevisions

pytestmark = pytest.mark.asyncio


async def test_flush_writes_what_is_noted_while_it_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A revision the peer acknowledges while a flush writes (the database on a worker thread) is
    written by that flush too: a checkpoint saved after it may cover that revision."""
    with Database(tmp_path / "db") as db:
        runner = DbRunner(threaded=True)
        try:
            remote = RemoteRevisions(db, runner, db.remote_id("peer"))
            a, b = db.save("a", {"n": 1}).rev_id, db.save("b", {"n": 1}).rev_id
            remote.note("a", a)
            writing, go_on = threading.Event(), threading.Event()
            write = db._store.write

            def held_write(fn: Any) -> Any:
                writing.set()
                go_on.wait(5)
                return write(fn)

            monkeypatch.setattr(db._store, "write", held_write)
            flush = asyncio.create_task(remote.flush())
            await asyncio.get_running_loop().run_in_executor(None, writing.wait, 5)
            remote.note("b", b)  # acknowledged while the first batch is written
            go_on.set()
            await flush
            monkeypatch.undo()
            assert db.write_noted_remote_revisions(remote.remote_id) == 0  # nothing left in memory
            assert db.remote_revisions(remote.remote_id, ["a", "b"]) == [a, b]
        finally:
            runner.close()
