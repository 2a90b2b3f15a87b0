"""The LMDB store: map growth by this and by other processes, and a full disk."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from engine.database import Database
from engine.errors import StorageError
from engine.lmdb_store import Store, Txn
from tests.conftest import TIME_UNIT

T = TypeVar("T")

_PROJECT = Path(__file__).resolve().parents[2]
SMALL_MAP = 1 << 20
#: rows of 1000 bytes the other process adds: about 4 MiB, well beyond SMALL_MAP
GROWTH_ROWS = 3000

#: Adds GROWTH_ROWS rows to ``bodies`` in one transaction, with the default (1 GiB) map.
_GROW_IN_OTHER_PROCESS = """
import sys
from pathlib import Path
from engine.lmdb_store import Store

store = Store(Path(sys.argv[1]), durable=False)

def fill(txn):
    start = txn.count("bodies")
    for i in range(start, start + int(sys.argv[2])):
        txn.put("bodies", b"other-%06d" % i, bytes(1000))

store.write(fill)
store.close()
"""


def grow_in_other_process(path: Path, rows: int = GROWTH_ROWS) -> None:
    """Let another process write enough to the store at ``path`` to outgrow a SMALL_MAP."""
    subprocess.run(
        [sys.executable, "-c", _GROW_IN_OTHER_PROCESS, str(path), str(rows)],
        check=True,
        cwd=_PROJECT,
        timeout=60 * TIME_UNIT,
    )


class Guarded:
    """Runs blocking calls in threads and fails, instead of hanging, when one does not finish."""

    def __init__(self) -> None:
        self.stuck = False

    def start(self, fn: Callable[[], T]) -> Callable[[], T]:
        """Start ``fn`` in a thread; return a function that waits for its result (or its exception)."""
        outcome: dict[str, object] = {}

        def target() -> None:
            try:
                outcome["value"] = fn()
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()

        def result() -> T:
            thread.join(20 * TIME_UNIT)
            if thread.is_alive():
                self.stuck = True
                pytest.fail(f"{getattr(fn, '__name__', fn)} did not finish: deadlocked")
            if "error" in outcome:
                raise outcome["error"]  # type: ignore[misc]
            return outcome["value"]  # type: ignore[return-value]

        return result

    def run(self, fn: Callable[[], T]) -> T:
        return self.start(fn)()


@pytest.fixture
def guard() -> Guarded:
    return Guarded()


@pytest.fixture
def store(tmp_path: Path, guard: Guarded) -> Iterator[Store]:
    """A store with a 1 MiB map (closed afterwards unless a thread is stuck in it)."""
    opened = Store(tmp_path / "s", map_size=SMALL_MAP)
    yield opened
    if not guard.stuck:
        opened.close()


def wait_until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20 * TIME_UNIT
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


def count_bodies(store: Store) -> int:
    with store.read() as txn:
        return txn.count("bodies")


def put_mine(txn: Txn) -> None:
    txn.put("meta", b"mine", b"1")


# -- a map grown by another process -------------------------------------------


def test_read_after_another_process_grew_the_map(store: Store, guard: Guarded) -> None:
    store.write(put_mine)
    grow_in_other_process(store.path)
    assert guard.run(lambda: count_bodies(store)) == GROWTH_ROWS
    assert store.map_size > SMALL_MAP
    with store.read() as txn:
        assert txn.get("meta", b"mine") == b"1"


def test_write_after_another_process_grew_the_map(store: Store, guard: Guarded) -> None:
    grow_in_other_process(store.path)
    guard.run(lambda: store.write(put_mine))
    with store.read() as txn:
        assert txn.get("meta", b"mine") == b"1"
        assert txn.count("bodies") == GROWTH_ROWS


def test_threads_reading_at_once_adopt_the_new_size_once(store: Store, guard: Guarded) -> None:
    grow_in_other_process(store.path)
    start = threading.Barrier(4)

    def read() -> int:
        start.wait(20 * TIME_UNIT)
        return count_bodies(store)

    results = [guard.start(read) for _ in range(4)]
    assert [result() for result in results] == [GROWTH_ROWS] * 4
    assert store._generation == 1


def test_a_long_read_keeps_its_snapshot_while_the_new_size_waits_for_it(store: Store, guard: Guarded) -> None:
    opened, finish = threading.Event(), threading.Event()

    def long_read() -> tuple[int, int]:
        with store.read() as txn:
            before = txn.count("bodies")
            opened.set()
            assert finish.wait(20 * TIME_UNIT)
            return before, txn.count("bodies")

    long_result = guard.start(long_read)
    assert opened.wait(20 * TIME_UNIT)
    grow_in_other_process(store.path)
    new_read = guard.start(lambda: count_bodies(store))
    wait_until(lambda: store._resizing)  # the adoption waits for the long read
    finish.set()
    assert long_result() == (0, 0)  # its snapshot, untouched by the resize
    assert new_read() == GROWTH_ROWS


def test_a_read_nested_in_a_read_passes_a_waiting_resize(store: Store, guard: Guarded) -> None:
    opened, nest = threading.Event(), threading.Event()

    def outer_read() -> bytes | None:
        with store.read():
            opened.set()
            assert nest.wait(20 * TIME_UNIT)
            with store.read() as inner:  # the resize waits for this thread: it must not wait for the resize
                return inner.get("meta", b"mine")

    outer = guard.start(outer_read)
    assert opened.wait(20 * TIME_UNIT)

    def fill_map(txn: Txn) -> None:  # outgrows the 1 MiB map: the writer must grow it
        for i in range(GROWTH_ROWS):
            txn.put("bodies", b"mine-%06d" % i, bytes(1000))
        put_mine(txn)

    writer = guard.start(lambda: store.write(fill_map))
    wait_until(lambda: store._resizing)
    nest.set()
    assert outer() is None
    writer()
    assert count_bodies(store) == GROWTH_ROWS
    assert store.map_size > SMALL_MAP


def test_a_nested_read_that_needs_the_new_size_is_an_error(store: Store, guard: Guarded) -> None:
    def nested() -> int:
        with store.read():
            grow_in_other_process(store.path)
            with pytest.raises(StorageError, match="older snapshot"):
                count_bodies(store)
        return count_bodies(store)

    assert guard.run(nested) == GROWTH_ROWS


def test_a_write_inside_a_read_is_refused(store: Store) -> None:
    with store.read(), pytest.raises(StorageError, match="inside a read"):
        store.write(put_mine)
    with store.read() as txn:
        assert txn.get("meta", b"mine") is None


def test_database_serves_while_another_process_outgrows_its_map(
    tmp_path: Path, guard: Guarded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.lmdb_store.INITIAL_MAP_SIZE", SMALL_MAP)
    database = Database(tmp_path / "db")
    database.save("before", {"v": 1})
    grow_in_other_process(database.path)

    def serve() -> tuple[bool, int, int]:
        found = database.get("before") is not None
        database.save("after", {"v": 2})
        return found, database.document_count(), database.last_sequence

    assert guard.run(serve) == (True, 2, 2)
    database.close()


# -- the lock file ----------------------------------------------------------------


def _posix_locks_on(path: Path) -> list[str]:
    inode = path.stat().st_ino
    with open("/proc/locks") as locks:
        return [line for line in locks if f":{inode} " in line and f" {os.getpid()} " in line]


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs Linux's /proc/locks")
def test_a_second_open_in_this_process_keeps_the_first_ones_locks(store: Store) -> None:
    # LMDB's fcntl locks go with the first close of any descriptor of lock.mdb
    # in this process: the lock file must not be opened again while in use
    held = _posix_locks_on(store.path / "lock.mdb")
    assert held
    with pytest.raises(StorageError, match="already open"):
        Store(store.path)
    assert _posix_locks_on(store.path / "lock.mdb") == held
    store.close()
    again = Store(store.path)  # closed, it may be opened again
    try:
        assert _posix_locks_on(again.path / "lock.mdb")
    finally:
        again.close()


# -- a full disk ----------------------------------------------------------------
#
# The scenarios (tests/engine/disk_full_scenario.py) run in a process of their
# own with a private mount namespace, on a 2 MiB tmpfs nothing else sees.


def _mount_tmpfs_command(mount_point: Path, *command: str) -> list[str]:
    script = 'mount -t tmpfs -o size=2m tmpfs "$1" && shift && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(mount_point), *command]


@pytest.fixture(scope="module")
def tiny_tmpfs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip unless this process may mount a tmpfs in a private mount namespace (root on Linux)."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        pytest.skip("needs Linux and unshare(1) to mount a small tmpfs")
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs in a private mount namespace")
    probe = subprocess.run(
        _mount_tmpfs_command(tmp_path_factory.mktemp("probe"), "true"),
        capture_output=True,
        text=True,
        timeout=30 * TIME_UNIT,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a private mount namespace here: {probe.stderr.strip()}")


def run_on_full_disk(tmp_path: Path, scenario: str) -> dict[str, Any]:
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    command = [sys.executable, "-m", "tests.engine.disk_full_scenario", str(mount_point), scenario]
    proc = subprocess.run(
        _mount_tmpfs_command(mount_point, *command),
        cwd=_PROJECT,
        capture_output=True,
        text=True,
        timeout=60 * TIME_UNIT,
        check=False,
    )
    status = signal.Signals(-proc.returncode).name if proc.returncode < 0 else proc.returncode
    assert proc.returncode == 0, f"the {scenario} scenario ended with {status}: {proc.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def assert_disk_full(error: dict[str, Any], path: str) -> None:
    assert error["disk_full"], error
    assert "no space left on device" in error["message"]
    assert path in error["message"]


@pytest.mark.usefixtures("tiny_tmpfs")
def test_creating_a_database_on_a_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    outcomes = run_on_full_disk(tmp_path, "create")["outcomes"]
    # free space from none to 16 pages: the lock file, the meta pages, the
    # first commits, and finally the first save each fail in turn
    assert not outcomes[0]["created"] and outcomes[-1]["created"]
    for outcome in outcomes:
        if not outcome["created"]:
            assert_disk_full(outcome["error"], outcome["path"])
        # with space again, the database opens and works (no torn file left behind)
        expected = ["first", "second"] if outcome["created"] else ["second"]
        assert outcome.get("after_freeing") == expected, outcome


@pytest.mark.usefixtures("tiny_tmpfs")
def test_a_commit_on_a_full_disk_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    result = run_on_full_disk(tmp_path, "commits")
    assert result["errors"] and result["failed"][0] == "big"
    for error in result["errors"]:
        assert_disk_full(error, result["path"])
    # LMDB reports the short write of the big value as EIO, not ENOSPC
    assert result["errors"][0]["cause_code"] == errno.EIO
    assert result["acknowledged"] > 20  # some saves after "big" were acknowledged on the full disk
    assert result["failed_absent"] and result["ids_after_failure"]
    assert result["missing_after_reopen"] == []
    assert result["failed_absent_after_reopen"] and result["ids_after_reopen"]
    assert result["saved_after_reopen"]
