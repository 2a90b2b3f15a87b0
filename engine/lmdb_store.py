"""The LMDB environment under a :class:`~engine.database.Database`.

This is the only module that imports :mod:`lmdb`. It owns one environment with
a fixed set of named sub-databases, durable commits, and a memory map that
grows when it fills up: a transaction that hits ``MDB_MAP_FULL`` is aborted,
the map is doubled while no other transaction of this process is open, and
the transaction function runs again from the start. Callers therefore pass
*functions* to :meth:`Store.write`, never hold a write transaction open
themselves, and must keep those functions free of side effects outside the
transaction.

When another process grows the file beyond this process's map, LMDB refuses
to begin transactions (``MDB_MAP_RESIZED``) until this process adopts the new
size, which it may only do while none of its transactions is open. A gate
counts the open transactions, and records how many each thread holds: a
thread about to resize first gives up its own slot and waits only for the
other threads' transactions, and a thread that already holds one goes through
the gate even while a resize waits (the resize is waiting for it). A thread
that still holds an older snapshot when the map has to change gets a
:class:`~engine.errors.StorageError` instead of waiting for itself.

A full file system ends in :class:`~engine.errors.DiskFullError`, never in a
crash: the lock file gets its disk blocks before LMDB maps it (LMDB would
write through a map of a file that has none, and die of SIGBUS), and LMDB's
ENOSPC, or the EIO it reports for a short write, becomes that error. A commit
that fails this way is simply not there; LMDB aborts it and the environment
stays usable, with every commit acknowledged before intact.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import lmdb

from engine.errors import DiskFullError, StorageError

__all__ = ["SUB_DATABASES", "Store", "Txn"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Named sub-databases. ``docs``: doc ID -> summary; ``revs``: doc ID -> revision
#: tree; ``bodies``: doc ID NUL rev ID -> body JSON; ``seqs``: big-endian sequence
#: -> change row; ``blobs``: digest -> blob record; ``blob_chunks``: digest +
#: chunk index -> bytes; ``local``: local (non-replicated) documents; ``remotes``:
#: remote database number + doc ID -> the revision known to be on that remote;
#: ``meta``: database-wide values such as the last sequence and the private UUID.
SUB_DATABASES = (
    "docs",
    "revs",
    "bodies",
    "seqs",
    "blobs",
    "blob_chunks",
    "local",
    "remotes",
    "meta",
)

#: First map size. It only reserves address space; the file grows as used.
INITIAL_MAP_SIZE = 1 << 30
#: Growth stops here (64 GiB); beyond it a write fails with StorageError.
MAX_MAP_SIZE = 1 << 36
#: The size LMDB gives a new ``lock.mdb`` on 64-bit Linux with its default 126
#: reader slots (a 192-byte header holding the first slot, then 125 slots of 64
#: bytes). Should LMDB want more, it enlarges the file; a larger file only gives
#: it more reader slots.
LOCK_FILE_SIZE = 8192
#: An EIO from LMDB counts as a full disk when less than this is left: LMDB
#: reports a short write ("filesystem full?") as EIO.
NEARLY_FULL = 1 << 20

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})

#: (st_dev, st_ino) of the lock file of each environment open in this process.
#: LMDB's locks are POSIX fcntl locks, which the process loses on the first
#: close of *any* descriptor of the file, so these files are never opened
#: again here (not even to allocate them). Opening a store holds ``_opening``.
_open_lock_files: set[tuple[int, int]] = set()
_opening = threading.Lock()


class Txn:
    """A transaction over the named sub-databases (read-only or read-write).

    Gets and puts go through one cursor per sub-database, opened on first use:
    a cursor's ``get``/``put`` cost about half of the transaction's own with a
    ``db`` argument, and a replicated document takes six of them.
    """

    __slots__ = ("_cursors", "_dbs", "_env", "_txn")

    def __init__(self, txn: lmdb.Transaction[bytes], dbs: dict[str, lmdb._Database], env: lmdb.Environment) -> None:
        self._txn = txn
        self._dbs = dbs
        self._env = env
        self._cursors: dict[str, lmdb.Cursor[bytes]] = {}

    def _cursor(self, db: str) -> lmdb.Cursor[bytes]:
        cursor = self._cursors[db] = self._txn.cursor(self._dbs[db])
        return cursor

    def attempt(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a nested write transaction: if it raises, none of its writes are kept.

        The exception propagates; this transaction goes on as if ``fn`` had
        never run. Only for write transactions; do not use ``self`` inside ``fn``.
        """
        child = self._env.begin(write=True, parent=self._txn)
        try:
            result = fn(Txn(child, self._dbs, self._env))
        except BaseException:
            child.abort()
            raise
        child.commit()
        return result

    def get(self, db: str, key: bytes) -> bytes | None:
        """Return the value stored under ``key``, or None."""
        cursor = self._cursors.get(db) or self._cursor(db)
        return cursor.get(key)  # bytes: transactions begin with buffers=False

    def put(self, db: str, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any previous value."""
        cursor = self._cursors.get(db) or self._cursor(db)
        cursor.put(key, value)

    def delete(self, db: str, key: bytes) -> bool:
        """Remove ``key``; return whether it existed."""
        return bool(self._txn.delete(key, db=self._dbs[db]))

    def items_from(self, db: str, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Iterate ``(key, value)`` pairs in key order, from the first key >= ``start``."""
        cursor = self._txn.cursor(db=self._dbs[db])
        if not cursor.set_range(start):
            return
        for key, value in cursor.iternext(keys=True, values=True):
            yield bytes(key), bytes(value)

    def items_prefix(self, db: str, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Iterate the pairs whose key starts with ``prefix``."""
        for key, value in self.items_from(db, prefix):
            if not key.startswith(prefix):
                return
            yield key, value

    def count(self, db: str) -> int:
        """Return the number of entries in ``db``."""
        return int(self._txn.stat(self._dbs[db])["entries"])


class Store:
    """One LMDB environment with the project's named sub-databases."""

    def __init__(self, path: Path, *, durable: bool = True, map_size: int | None = None) -> None:
        """Open (creating if needed) the environment in directory ``path``.

        Args:
            path: directory holding ``data.mdb`` and ``lock.mdb``.
            durable: fsync every commit (the default). Only benchmarks and
                throw-away databases should turn it off.
            map_size: first size of the memory map (default
                :data:`INITIAL_MAP_SIZE`); raised to fit an existing file.

        Raises:
            DiskFullError: no space left on the device to create the files.
            StorageError: the files cannot be opened (corrupt, unreadable,
                already open in this process, or not an LMDB environment).
        """
        self.path = path
        self._gate = threading.Condition()
        #: open transactions of this process (read and write)
        self._readers = 0
        #: how many of them the current thread holds (``depth``)
        self._held = threading.local()
        self._resizing = False
        #: counts the resizes, so threads that all saw MDB_MAP_RESIZED adopt the new size once
        self._generation = 0
        self._write_lock = threading.Lock()
        #: the thread running a write transaction, if any
        self._writer: int | None = None
        self._lock_key: tuple[int, int] | None = None
        with _opening:
            self._open(path, durable=durable, map_size=map_size)

    def _open(self, path: Path, *, durable: bool, map_size: int | None) -> None:
        data_file = path / "data.mdb"
        lock_file = path / "lock.mdb"
        new = False
        try:
            path.mkdir(parents=True, exist_ok=True)
            new = not data_file.exists()
            if map_size is None:
                map_size = INITIAL_MAP_SIZE
            if not new:
                map_size = max(map_size, _round_up_pow2(data_file.stat().st_size * 2))
            if _file_key(lock_file) not in _open_lock_files:
                _allocate_lock_file(lock_file)
            self._env = lmdb.open(
                str(path),
                map_size=map_size,
                max_dbs=len(SUB_DATABASES) + 1,
                sync=durable,
                metasync=durable,
                readahead=False,
                max_spare_txns=4,
            )
            try:
                self._env.reader_check()
                with self._env.begin(write=True) as txn:
                    self._dbs = {name: self._env.open_db(name.encode(), txn=txn) for name in SUB_DATABASES}
            except BaseException:
                self._env.close()  # else this process could not open it again
                raise
            self._lock_key = _file_key(lock_file)
            if self._lock_key is not None:
                _open_lock_files.add(self._lock_key)
        except lmdb.Error as exc:
            error = self._failure(f"cannot open database at {path}", exc)
            if new and isinstance(error, DiskFullError):
                _discard_torn_data_file(data_file)
            raise error from exc
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise DiskFullError(f"cannot open database at {path}: no space left on device") from exc
            raise StorageError(f"cannot open database at {path}: {exc.strerror or exc}") from exc

    @property
    def map_size(self) -> int:
        """Current size of the memory map in bytes."""
        return int(self._env.info()["map_size"])

    def close(self) -> None:
        """Close the environment. Further use raises StorageError."""
        with self._write_lock, self._gate:
            self._env.close()
            with _opening:
                if self._lock_key is not None:
                    _open_lock_files.discard(self._lock_key)
                    self._lock_key = None

    @contextmanager
    def read(self) -> Iterator[Txn]:
        """Open a read-only snapshot for the duration of the ``with`` block."""
        try:
            txn = self._begin(write=False)
        except lmdb.Error as exc:
            raise self._failure(f"database read from {self.path} failed", exc) from exc
        try:
            yield Txn(txn, self._dbs, self._env)
        except lmdb.Error as exc:
            raise self._failure(f"database read from {self.path} failed", exc) from exc
        finally:
            try:
                txn.abort()
            finally:
                self._leave_reader()

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a write transaction and commit it durably.

        If the map fills, the transaction is aborted, the map grows and ``fn``
        runs again, so ``fn`` must only touch the transaction. An exception
        from ``fn`` aborts the transaction and propagates: nothing is written.

        Raises:
            DiskFullError: no space left on the device; nothing was written.
            StorageError: the commit failed, or this thread is already inside
                a write or holds a read snapshot (either could deadlock).
        """
        if self._writer == threading.get_ident():
            raise StorageError("a write was started inside another write (by a conflict resolver?); it would deadlock")
        if self._depth():
            # A writer that must grow the map waits for every open snapshot,
            # this one included, while this thread would wait for the writer.
            raise StorageError("a write was started inside a read; it could deadlock when the map grows")
        with self._write_lock:
            self._writer = threading.get_ident()
            try:
                return self._write_locked(fn)
            finally:
                self._writer = None

    def _write_locked(self, fn: Callable[[Txn], T]) -> T:
        while True:
            try:
                txn = self._begin(write=True)
            except lmdb.Error as exc:
                raise self._failure(f"database write to {self.path} failed", exc) from exc
            try:
                try:
                    result = fn(Txn(txn, self._dbs, self._env))
                    txn.commit()
                    return result
                except BaseException:
                    txn.abort()
                    raise
            except lmdb.MapFullError:
                pass
            except lmdb.Error as exc:
                raise self._failure(f"database write to {self.path} failed", exc) from exc
            finally:
                self._leave_reader()
            self._grow()

    def _failure(self, what: str, exc: lmdb.Error) -> StorageError:
        """The error to raise for ``exc``, an LMDB failure; ``what`` says what failed, naming the path."""
        code = getattr(exc, "code", 0)
        if code in _NO_SPACE or (code == errno.EIO and _nearly_full(self.path)):
            return DiskFullError(f"{what}: no space left on device")
        if isinstance(exc, lmdb.PanicError):
            return StorageError(
                f"{what}: the database cannot be used after a failed write ({exc}); close and reopen it"
            )
        return StorageError(f"{what}: {exc}")

    # -- map growth ---------------------------------------------------------

    def _begin(self, *, write: bool) -> lmdb.Transaction[bytes]:
        """Take a slot in the gate and begin a transaction, adopting a map grown by another process.

        On success the caller owns the slot and must call :meth:`_leave_reader`.
        """
        while True:
            generation = self._enter_reader()
            try:
                return self._env.begin(write=write, buffers=False)
            except lmdb.MapResizedError:
                self._leave_reader()
            except BaseException:
                self._leave_reader()
                raise
            self._adopt_foreign_resize(generation)

    def _depth(self) -> int:
        """How many transactions the current thread holds open."""
        depth: int = getattr(self._held, "depth", 0)
        return depth

    def _enter_reader(self) -> int:
        """Take a slot; return the resize generation seen on entry."""
        depth = self._depth()
        with self._gate:
            # A thread that already holds a slot must not wait: the resize
            # waits for that slot.
            while self._resizing and not depth:
                self._gate.wait()
            self._readers += 1
            generation = self._generation
        self._held.depth = depth + 1
        return generation

    def _leave_reader(self) -> None:
        self._held.depth = self._depth() - 1
        with self._gate:
            self._readers -= 1
            if self._readers == 0:
                self._gate.notify_all()

    def _resize(self, new_size: Callable[[], int], *, unless_since: int | None = None) -> None:
        """Resize the map to ``new_size()`` once no transaction of this process is open.

        With ``unless_since``, do nothing if another thread has resized since
        that generation. The calling thread must hold no slot.
        """
        if self._depth():
            raise StorageError(
                f"the database map at {self.path} must change size (another process grew it?) while this "
                "thread holds an older snapshot; finish that read first"
            )
        with self._gate:
            while self._resizing:
                self._gate.wait()
            if unless_since is not None and self._generation != unless_since:
                return
            self._resizing = True
            try:
                while self._readers:
                    self._gate.wait()
                try:
                    self._env.set_mapsize(new_size())
                except lmdb.Error as exc:
                    raise StorageError(f"cannot resize the database map at {self.path}: {exc}") from exc
                self._generation += 1
            finally:
                self._resizing = False
                self._gate.notify_all()

    def _grow(self) -> None:
        def doubled() -> int:
            size = self.map_size * 2
            if size > MAX_MAP_SIZE:
                raise StorageError("database is full: the map cannot grow beyond 64 GiB")
            log.info("growing database map of %s to %d MiB", self.path, size >> 20)
            return size

        self._resize(doubled)

    def _adopt_foreign_resize(self, generation: int) -> None:
        def adopted() -> int:
            log.info("adopting a map size grown by another process")
            return 0  # LMDB takes the size recorded in the file

        self._resize(adopted, unless_since=generation)


def _allocate_lock_file(lock: Path) -> None:
    """Give LMDB's lock file its disk blocks before LMDB maps it.

    LMDB sizes a new lock file with ftruncate, maps it and writes through the
    map; on a full file system that first write kills the process with SIGBUS.
    Allocated here, a full disk is an OSError (ENOSPC) instead. An existing
    file keeps its size (other processes size their reader table by it); an
    empty one gets :data:`LOCK_FILE_SIZE`. Where this cannot be done, LMDB
    opens the file as before.
    """
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return  # LMDB reports it
    try:
        info = os.fstat(fd)
        if info.st_size and info.st_blocks * 512 >= info.st_size:
            return
        try:
            os.posix_fallocate(fd, 0, info.st_size or LOCK_FILE_SIZE)
        except OSError as exc:
            if exc.errno not in _NO_SPACE:
                log.debug("cannot allocate %s: %s", lock, exc)
                return
            if info.st_blocks:
                # An earlier opener wrote the header; LMDB only goes further
                # into the file once that many readers are open at once.
                log.warning("the disk holding %s is full; its lock file stays sparse", lock)
                return
            raise
    finally:
        os.close(fd)


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _discard_torn_data_file(data_file: Path) -> None:
    """Remove a data file this open created but could not finish.

    A file shorter than LMDB's two meta pages holds nothing and would make
    every later open fail with MDB_INVALID.
    """
    try:
        if data_file.stat().st_size < 2 * mmap.PAGESIZE:
            data_file.unlink()
    except OSError:
        pass


def _nearly_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has (almost) no space left."""
    if not hasattr(os, "statvfs"):
        return False
    try:
        info = os.statvfs(path)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < NEARLY_FULL


def _round_up_pow2(n: int) -> int:
    size = 1
    while size < n:
        size <<= 1
    return size
