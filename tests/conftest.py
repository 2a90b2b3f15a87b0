"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")

import asyncio
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from engine.database import Database
from engine.replication import event_loop

#: Scans everything logged at debug level for secrets and document bodies.
pytest_plugins = ["tests.log_scan"]

# CI explores the same examples on every run (a failure there is reproducible);
# runs elsewhere keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

#: The read-only shared folder next to the project (absent on other clones).
SHARED = Path(__file__).resolve().parents[2] / "shared"
SEED_DATA = SHARED / "seed-data"

#: For websockets clients and servers a test opens itself (the engine's own never log at debug
#: level): at debug level websockets prints every header, credentials included, and every frame.
RAW_WEBSOCKETS_LOG = logging.getLogger("tests.raw_websockets")
RAW_WEBSOCKETS_LOG.setLevel(logging.INFO)

#: Every timeout in the suite is a multiple of this, scaled on slow machines.
TIME_UNIT = float(os.environ.get("INVENTORY_TEST_TIME_UNIT", "1.0"))


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The loops an asyncio test runs on: the engine's own (``event_loop.run``'s: uvloop where it
    is installed), and asyncio's too for tests marked ``both_loops`` (what Windows runs), or
    asyncio's alone for tests marked ``asyncio_loop`` (they reach into its transports)."""
    if item.get_closest_marker("asyncio_loop"):
        return {"asyncio": asyncio.new_event_loop}
    factories = {event_loop.loop_name(): event_loop.loop_factory()}
    if item.get_closest_marker("both_loops"):
        factories["asyncio"] = asyncio.new_event_loop
    return factories


def needs_shared(path: Path) -> pytest.MarkDecorator:
    """Skip a test when ``path`` (under ../shared) is not on this machine."""
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not present: ../shared is only on the team's machines")


@pytest.fixture(autouse=True)
def stopped_edit_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Edit stamps from a clock stopped at 0 (``engine.list_schema.next_edit_stamp``): each edit
    counts one above the list, so a list's revision IDs, which digest its stamps, are the same at
    every run and tests that meet a conflict meet the same one. Tests of the clock set their own;
    programs a test starts run on the real clock."""
    monkeypatch.setattr("engine.list_schema._now_ms", lambda: 0)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A fresh database in a temporary directory."""
    database = Database(tmp_path / "db")
    yield database
    database.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until it holds, failing after ``timeout * TIME_UNIT`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout * TIME_UNIT
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


#: Saves ``{"by": "other"}`` under each given document ID, as another process would.
_SAVE_IN_OTHER_PROCESS = """
import sys
from engine.database import Database
with Database(sys.argv[1], durable=False) as db:
    for doc_id in sys.argv[2:]:
        db.save(doc_id, {"by": "other"})
"""
_PROJECT = Path(__file__).resolve().parents[1]


def _other_process_command(path: Path, doc_ids: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-c", _SAVE_IN_OTHER_PROCESS, str(path), *doc_ids]


def save_in_other_process(path: Path, *doc_ids: str) -> None:
    """Save documents into the database at ``path`` from a separate Python process."""
    subprocess.run(_other_process_command(path, doc_ids), check=True, cwd=_PROJECT, timeout=60 * TIME_UNIT)


async def save_in_other_process_async(path: Path, *doc_ids: str) -> None:
    """:func:`save_in_other_process` without blocking the event loop."""
    proc = await asyncio.create_subprocess_exec(*_other_process_command(path, doc_ids), cwd=_PROJECT)
    assert await asyncio.wait_for(proc.wait(), 60 * TIME_UNIT) == 0
