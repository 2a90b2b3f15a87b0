"""The core of a :class:`~engine.database.Database`: storage, observers, reads and record writes.

Records (see ``engine/lmdb_store.py`` for the sub-databases): ``docs`` holds
``seq,flags,winning rev``; ``revs`` the revision tree; ``bodies`` the canonical
JSON of each kept revision under ``doc ID NUL rev ID``; ``seqs`` one feed row
``flags,size,rev,doc ID`` per document under its latest sequence.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from engine.blobstore import BlobStore
from engine.changes import ChangeEntry, Changes, ChangeSource
from engine.documents import Document, check_doc_id, decode_body
from engine.errors import EngineError
from engine.lmdb_store import Store, Txn
from engine.revtree import DEFAULT_KEEP_BODIES, DEFAULT_MAX_DEPTH, RevTree

__all__ = [
    "CONFLICTED_FLAG",
    "DELETED_FLAG",
    "SEQ_DB",
    "UNSET",
    "ChangeListener",
    "CommitAnnouncer",
    "DatabaseCore",
    "Validator",
    "body_key",
    "decode_summary",
    "seq_key",
    "unique_ids",
]

log = logging.getLogger(__name__)

ChangeListener = Callable[[Changes], None]
#: Checks a revision before it is stored: ``(doc ID, body, deleted)``; raises
#: ValidationError to refuse it (see :class:`DatabaseCore`).
Validator = Callable[[str, dict[str, Any], bool], None]
T = TypeVar("T")
U = TypeVar("U")


class CommitAnnouncer(Protocol):
    """Hears of a local transaction's feed rows while its commit is still being flushed.

    A replication feed offers them to its peer at once, so that the peer's
    answer travels while the flush is under way (an edit reaches the peer
    sooner, and no revision leaves before it is durable: bodies are read only
    after the commit). Both methods run on the committing thread while it holds
    the database's commit lock; they must be quick and must not raise.
    """

    def announce(self, after: int, rows: list[ChangeEntry]) -> None:
        """``rows`` (the feed rows after sequence ``after``) are about to be committed."""

    def withdraw(self, rows: list[ChangeEntry]) -> None:
        """The commit of announced ``rows`` failed: they never existed."""


#: A local transaction with more feed rows than this is not announced (an import,
#: not an edit): feeds read it once committed, in their own batches.
ANNOUNCE_MAX_ROWS = 100

SEQ_DB = "seqs"
DELETED_FLAG = 1
CONFLICTED_FLAG = 2


def seq_key(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


def body_key(raw_id: bytes, rev_id: str) -> bytes:
    return raw_id + b"\x00" + rev_id.encode()


class _Unset:
    pass


UNSET: Any = _Unset()


class DatabaseCore:
    """Storage, observers, reads and record writes shared by every database operation."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durable: bool = True,
        max_depth: int = DEFAULT_MAX_DEPTH,
        keep_bodies: int = DEFAULT_KEEP_BODIES,
        validator: Validator | None = None,
    ) -> None:
        """Open or create the database in directory ``path``.

        Args:
            path: the database directory.
            durable: fsync every commit (default). Turn off only for scratch data.
            max_depth: revisions kept below each leaf before pruning (default 20).
            keep_bodies: ancestors of each leaf whose bodies are kept for delta
                sync (default 1: the parent).
            validator: checks every revision before it is stored: local saves,
                revisions received from peers, and the results of conflict
                resolution. It raises ValidationError to refuse one.

        Raises:
            StorageError: the directory cannot be opened as a database.
        """
        if max_depth < 1 or keep_bodies < 0:
            raise ValueError("max_depth must be >= 1 and keep_bodies >= 0")
        self.path = Path(path)
        self.name = self.path.name
        self.max_depth = max_depth
        self.keep_bodies = keep_bodies
        self.validator = validator
        self._store = Store(self.path, durable=durable)
        self.blobs = BlobStore(self._store)
        self._listeners: list[ChangeListener] = []
        self._announcers: list[CommitAnnouncer] = []
        self._listeners_lock = threading.Lock()
        self._commit_lock = threading.RLock()
        self.uuid: bytes = self._store.write(self._ensure_uuid)
        #: the last sequence observers have heard of; a higher one in the file was
        #: committed by another process
        self._known_seq = self.last_sequence

    @staticmethod
    def _ensure_uuid(txn: Txn) -> bytes:
        value = txn.get("meta", b"uuid")
        if value is None:
            value = os.urandom(16)
            txn.put("meta", b"uuid", value)
        return value

    def validate(self, doc_id: str, body: dict[str, Any], deleted: bool) -> None:
        """Run the validator on a revision about to be stored.

        Raises:
            ValidationError: the validator refuses it.
        """
        if self.validator is not None:
            self.validator(doc_id, body, deleted)

    def close(self) -> None:
        """Close the database files."""
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def add_change_listener(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` after each committed transaction; return a function that removes it.

        Listeners run on the thread that committed; they must be quick and
        must not raise (exceptions are logged and swallowed).
        """
        return self._register(self._listeners, listener)

    def add_commit_announcer(self, announcer: CommitAnnouncer) -> Callable[[], None]:
        """Tell ``announcer`` of each local transaction's feed rows before its commit's flush;
        return a function that removes it (see :class:`CommitAnnouncer`)."""
        return self._register(self._announcers, announcer)

    def _register(self, registry: list[U], item: U) -> Callable[[], None]:
        with self._listeners_lock:
            registry.append(item)

        def remove() -> None:
            with self._listeners_lock:
                if item in registry:
                    registry.remove(item)

        return remove

    def _commit(self, fn: Callable[[Txn], tuple[T, Changes]]) -> T:
        """Run a write transaction, then notify observers of its Changes, in commit order.

        Changes another process committed since the last notification are
        announced first (as EXTERNAL), so observers never miss them. A local
        transaction's rows go to the commit announcers just before the commit.
        """
        announced: list[list[ChangeEntry]] = []
        attempts = 0

        def run(txn: Txn) -> tuple[int, T, Changes]:
            nonlocal attempts
            attempts += 1
            before = self._last_seq(txn)
            result, changes = fn(txn)
            if announced:  # ``fn`` runs again (the map grew): what was offered may not hold any more
                withdrawn = announced.pop()
                self._tell_announcers(lambda a: a.withdraw(withdrawn))
            elif (
                attempts == 1
                and self._announcers
                and changes.source is ChangeSource.LOCAL
                and changes.last_sequence > before
            ):
                rows = self._rows_after(txn, before, ANNOUNCE_MAX_ROWS + 1)
                if len(rows) <= ANNOUNCE_MAX_ROWS:
                    announced.append(rows)
                    self._tell_announcers(lambda a: a.announce(before, rows))
            return before, result, changes

        with self._commit_lock:
            try:
                before, result, changes = self._store.write(run)
            except BaseException:
                if announced:
                    withdrawn = announced[-1]
                    self._tell_announcers(lambda a: a.withdraw(withdrawn))
                raise
            if before > self._known_seq:
                try:
                    self._announce_external(self._known_seq, before)
                except EngineError as exc:  # committed all the same: observers hear of this commit
                    log.warning("cannot read what another process committed to %s: %s", self.path, exc)
            self._known_seq = max(self._known_seq, before, changes.last_sequence)
            self._notify(changes)
            return result

    def _tell_announcers(self, call: Callable[[CommitAnnouncer], None]) -> None:
        self._call_each(self._announcers, call, "commit announcer")

    def _call_each(self, registry: list[U], call: Callable[[U], None], what: str) -> None:
        """``call`` each registered item, logging and swallowing what it raises."""
        with self._listeners_lock:
            items = list(registry)
        for item in items:
            try:
                call(item)
            except Exception:
                log.exception("%s failed", what)

    def poll_external_changes(self) -> bool:
        """Tell observers about changes other processes committed to these files; return whether any.

        LMDB lets several processes share a database but tells none of them
        about the others' commits; whoever needs to follow them (a listener,
        a replicator, the app) calls this now and then. It costs one key read
        when nothing changed. Purges by other processes are not seen.
        """
        with self._commit_lock:
            latest = self.last_sequence
            if latest <= self._known_seq:
                return False
            self._announce_external(self._known_seq, latest)
            self._known_seq = latest
            return True

    def _announce_external(self, since: int, latest: int) -> None:
        rows = self.changes_since(since)
        doc_ids = unique_ids([row.doc_id for row in rows if row.sequence <= latest])
        log.debug("%d documents changed by another process", len(doc_ids))
        self._notify(Changes(doc_ids, ChangeSource.EXTERNAL, latest))

    def _notify(self, changes: Changes) -> None:
        if changes.doc_ids or changes.purged:
            self._call_each(self._listeners, lambda listener: listener(changes), "change listener")

    @property
    def last_sequence(self) -> int:
        """The sequence of the latest change (0 for a new database)."""
        with self._store.read() as txn:
            return self._last_seq(txn)

    @staticmethod
    def _last_seq(txn: Txn) -> int:
        value = txn.get("meta", b"last_seq")
        return 0 if value is None else int(value)

    def get(self, doc_id: str) -> Document | None:
        """Return the current revision of a document, or None if it never existed.

        A deleted document is returned with ``deleted=True``.
        """
        raw_id = check_doc_id(doc_id)
        with self._store.read() as txn:
            summary = txn.get("docs", raw_id)
            if summary is None:
                return None
            seq, flags, rev_id = decode_summary(summary)
            data = txn.get("bodies", body_key(raw_id, rev_id))
        body = {} if data is None else decode_body(data)
        return Document(doc_id, rev_id, body, bool(flags & DELETED_FLAG), seq, bool(flags & CONFLICTED_FLAG))

    def get_revision(self, doc_id: str, rev_id: str) -> Document | None:
        """Return a specific revision if its body is still stored, else None."""
        raw_id = check_doc_id(doc_id)
        with self._store.read() as txn:
            return self._revision_in(txn, doc_id, raw_id, rev_id)

    @staticmethod
    def _revision_in(txn: Txn, doc_id: str, raw_id: bytes, rev_id: str) -> Document | None:
        tree_data = txn.get("revs", raw_id)
        data = txn.get("bodies", body_key(raw_id, rev_id))
        if tree_data is None or data is None:
            return None
        node = RevTree.decode(tree_data).get(rev_id)
        if node is None:
            return None
        return Document(doc_id, rev_id, decode_body(data), node.deleted, node.sequence)

    def get_revision_json(self, doc_id: str, rev_id: str) -> bytes | None:
        """Return the stored canonical JSON of a revision, or None."""
        with self._store.read() as txn:
            return txn.get("bodies", body_key(check_doc_id(doc_id), rev_id))

    def get_tree(self, doc_id: str) -> RevTree | None:
        """Return a copy of the document's revision tree, or None."""
        with self._store.read() as txn:
            return self._tree_in(txn, check_doc_id(doc_id))

    @staticmethod
    def _tree_in(txn: Txn, raw_id: bytes) -> RevTree | None:
        data = txn.get("revs", raw_id)
        return None if data is None else RevTree.decode(data)

    def doc_ids(self, *, include_deleted: bool = False) -> list[str]:
        """Return the IDs of all documents, in byte order."""
        out = []
        with self._store.read() as txn:
            for raw_id, summary in txn.items_from("docs"):
                if include_deleted or not decode_summary(summary)[1] & DELETED_FLAG:
                    out.append(raw_id.decode())
        return out

    def document_count(self) -> int:
        """Return the number of documents that are not deleted."""
        return len(self.doc_ids())

    def conflicted_doc_ids(self) -> list[str]:
        """Return the IDs of documents with more than one live leaf revision."""
        with self._store.read() as txn:
            return [
                raw_id.decode()
                for raw_id, summary in txn.items_from("docs")
                if decode_summary(summary)[1] & CONFLICTED_FLAG
            ]

    def changes_since(self, since: int = 0, limit: int | None = None) -> list[ChangeEntry]:
        """Return the changes after sequence ``since``, oldest first, one row per document."""
        with self._store.read() as txn:
            return self._rows_after(txn, since, limit)

    @staticmethod
    def _rows_after(txn: Txn, since: int, limit: int | None) -> list[ChangeEntry]:
        out: list[ChangeEntry] = []
        for key, value in txn.items_from(SEQ_DB, seq_key(since + 1)):
            flags, size, rev_id, doc_id = value.decode().split(",", 3)
            deleted = bool(int(flags) & DELETED_FLAG)
            out.append(ChangeEntry(int.from_bytes(key, "big"), doc_id, rev_id, deleted, int(size)))
            if limit is not None and len(out) >= limit:
                break
        return out

    @staticmethod
    def _write_new_doc(txn: Txn, raw_id: bytes, rev_id: str, canonical: bytes, *, seq: int, deleted: bool) -> None:
        """Store the first revision of a new document (no tree to build or prune)."""
        flags = DELETED_FLAG if deleted else 0
        rev = rev_id.encode()
        put = txn.put
        put("bodies", raw_id + b"\x00" + rev, canonical)
        put("revs", raw_id, RevTree.encode_single(rev_id, deleted=deleted, sequence=seq))
        put("docs", raw_id, b"%d,%d,%s" % (seq, flags, rev))
        put(SEQ_DB, seq.to_bytes(8, "big"), b"%d,%d,%s,%s" % (flags, len(canonical), rev, raw_id))

    def _store_tree(
        self, txn: Txn, raw_id: bytes, tree: RevTree, *, seq: int, existed: bool, body: bytes | None = None
    ) -> None:
        """Drop unneeded bodies, prune, and write the tree, summary and feed row.

        ``body`` is the new winner's body when the caller knows it.
        """
        dropped, removed = self._trim(txn, raw_id, tree)
        for rev_id in (*dropped, *removed):
            txn.delete("bodies", body_key(raw_id, rev_id))
        winner = tree.winner()
        flags = (DELETED_FLAG if winner.deleted else 0) | (CONFLICTED_FLAG if tree.is_conflicted() else 0)
        if existed:
            old_summary = txn.get("docs", raw_id)
            if old_summary is not None:
                txn.delete(SEQ_DB, seq_key(decode_summary(old_summary)[0]))
        if body is None or len(tree) > 1:
            body = txn.get("bodies", body_key(raw_id, winner.rev_id))
        size = 0 if body is None else len(body)
        txn.put("revs", raw_id, tree.encode())
        txn.put("docs", raw_id, b"%d,%d,%s" % (seq, flags, winner.rev_id.encode()))
        # feed row: flags,body size,rev ID,doc ID (the ID last: it may contain commas)
        txn.put(SEQ_DB, seq_key(seq), b"%d,%d,%s,%s" % (flags, size, winner.rev_id.encode(), raw_id))

    def _trim(self, txn: Txn, raw_id: bytes, tree: RevTree) -> tuple[list[str], list[str]]:
        """Drop unneeded bodies and prune ``tree``; return (revisions whose body goes, revisions removed).

        What each remote holds keeps its place and its body (the ancestor the
        next exchange with that remote starts from, §4.2).
        """
        if len(tree) == 1:
            return [], []
        held: set[str] | None = None  # read only when something may go (most saves drop nothing)
        dropped = tree.drop_bodies(self.keep_bodies)
        if dropped:
            held = self._revisions_on_remotes(txn, raw_id)
            tree.restore_bodies(held.intersection(dropped))
            dropped = [rev_id for rev_id in dropped if rev_id not in held]
        removed: list[str] = []
        if len(tree) > self.max_depth:
            removed = tree.prune(self.max_depth, self._revisions_on_remotes(txn, raw_id) if held is None else held)
        return dropped, removed

    def _revisions_on_remotes(self, txn: Txn, raw_id: bytes) -> set[str]:
        """The revisions of a document known to be on remote databases (kept when pruning).

        None here; :class:`~engine.db_remotes.RemoteTracking` knows them.
        """
        return set()


def decode_summary(data: bytes) -> tuple[int, int, str]:
    seq, flags, rev_id = data.decode().split(",", 2)
    return int(seq), int(flags), rev_id


def unique_ids(ids: Iterator[str] | list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))
