"""The document database: documents with revision trees, blobs, a changes feed.

A :class:`Database` lives in one directory (an LMDB environment, see
:mod:`engine.lmdb_store`). Every write is one durable transaction; observers
receive one :class:`~engine.changes.Changes` per transaction after it commits.
Methods are safe to call from several threads; writes are serialised.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from engine.blobs import Blob, digest_to_key, iter_blob_refs
from engine.blobstore import BlobReader, BlobStore, BlobWriter
from engine.changes import ChangeEntry, Changes, ChangeSource
from engine.conflicts import ConcurrencyControl, ConflictHandler
from engine.documents import Document, canonical_json, check_body, check_doc_id, decode_body
from engine.errors import BlobNotFoundError, ConflictError, EngineError, InvalidDocumentError, NotFoundError
from engine.lmdb_store import Store, Txn
from engine.revid import make_rev_id, parse_rev_id
from engine.revtree import DEFAULT_KEEP_BODIES, DEFAULT_MAX_DEPTH, InsertStatus, RevNode, RevTree

__all__ = [
    "Batch",
    "CompactionResult",
    "Database",
    "InsertResult",
    "LocalDocument",
    "RevisionInsert",
]

log = logging.getLogger(__name__)

ChangeListener = Callable[[Changes], None]
T = TypeVar("T")

_SEQ = "seqs"
_DELETED = 1
_CONFLICTED = 2


def _seq_key(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


def _body_key(raw_id: bytes, rev_id: str) -> bytes:
    return raw_id + b"\x00" + rev_id.encode()


@dataclass(frozen=True, slots=True)
class RevisionInsert:
    """A revision received from a peer, to insert with its history (protocol §4.2).

    ``no_conflicts``: refuse the insert (ConflictError) if it would create a
    conflict, as a passive peer does (protocol §3.7, §4.5).
    """

    doc_id: str
    rev_id: str
    history: Sequence[str]
    body: dict[str, Any]
    deleted: bool = False
    no_conflicts: bool = False


@dataclass(frozen=True, slots=True)
class InsertResult:
    """Outcome of one :class:`RevisionInsert`: a status, or the error that refused it."""

    doc_id: str
    rev_id: str
    status: InsertStatus | None = None
    error: EngineError | None = None
    conflicted: bool = False


@dataclass(frozen=True, slots=True)
class LocalDocument:
    """A local (non-replicated) document with its MVCC revision ``<n>-cc``."""

    id: str
    rev: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """What :meth:`Database.compact` removed."""

    bodies_removed: int
    revisions_pruned: int
    blobs_removed: int


class _Unset:
    pass


UNSET: Any = _Unset()


class Database:
    """A document store on LMDB. See the module docstring."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durable: bool = True,
        max_depth: int = DEFAULT_MAX_DEPTH,
        keep_bodies: int = DEFAULT_KEEP_BODIES,
    ) -> None:
        """Open or create the database in directory ``path``.

        Args:
            path: the database directory.
            durable: fsync every commit (default). Turn off only for scratch data.
            max_depth: revisions kept below each leaf before pruning (default 20).
            keep_bodies: ancestors of each leaf whose bodies are kept for delta
                sync (default 1: the parent).

        Raises:
            StorageError: the directory cannot be opened as a database.
        """
        if max_depth < 1 or keep_bodies < 0:
            raise ValueError("max_depth must be >= 1 and keep_bodies >= 0")
        self.path = Path(path)
        self.name = self.path.name
        self.max_depth = max_depth
        self.keep_bodies = keep_bodies
        self._store = Store(self.path, durable=durable)
        self.blobs = BlobStore(self._store)
        self._listeners: list[ChangeListener] = []
        self._listeners_lock = threading.Lock()
        self._commit_lock = threading.RLock()
        self.uuid: bytes = self._store.write(self._ensure_uuid)

    @staticmethod
    def _ensure_uuid(txn: Txn) -> bytes:
        value = txn.get("meta", b"uuid")
        if value is None:
            value = os.urandom(16)
            txn.put("meta", b"uuid", value)
        return value

    def close(self) -> None:
        """Close the database files."""
        self._store.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- observers -----------------------------------------------------------

    def add_change_listener(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` after each committed transaction; return a function that removes it.

        Listeners run on the thread that committed; they must be quick and
        must not raise (exceptions are logged and swallowed).
        """
        with self._listeners_lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def _commit(self, fn: Callable[[Txn], tuple[T, Changes]]) -> T:
        """Run a write transaction, then notify observers of its Changes, in commit order."""
        with self._commit_lock:
            result, changes = self._store.write(fn)
            self._notify(changes)
            return result

    def _notify(self, changes: Changes) -> None:
        if not changes.doc_ids and not changes.purged:
            return
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(changes)
            except Exception:
                log.exception("change listener failed")

    # -- reads ---------------------------------------------------------------

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
            seq, flags, rev_id = _decode_summary(summary)
            data = txn.get("bodies", _body_key(raw_id, rev_id))
        body = {} if data is None else decode_body(data)
        return Document(doc_id, rev_id, body, bool(flags & _DELETED), seq, bool(flags & _CONFLICTED))

    def get_revision(self, doc_id: str, rev_id: str) -> Document | None:
        """Return a specific revision if its body is still stored, else None."""
        raw_id = check_doc_id(doc_id)
        with self._store.read() as txn:
            tree_data = txn.get("revs", raw_id)
            data = txn.get("bodies", _body_key(raw_id, rev_id))
        if tree_data is None or data is None:
            return None
        node = RevTree.decode(tree_data).get(rev_id)
        if node is None:
            return None
        return Document(doc_id, rev_id, decode_body(data), node.deleted, node.sequence)

    def get_revision_json(self, doc_id: str, rev_id: str) -> bytes | None:
        """Return the stored canonical JSON of a revision, or None."""
        with self._store.read() as txn:
            return txn.get("bodies", _body_key(check_doc_id(doc_id), rev_id))

    def get_tree(self, doc_id: str) -> RevTree | None:
        """Return a copy of the document's revision tree, or None."""
        with self._store.read() as txn:
            data = txn.get("revs", check_doc_id(doc_id))
        return None if data is None else RevTree.decode(data)

    def doc_ids(self, *, include_deleted: bool = False) -> list[str]:
        """Return the IDs of all documents, in byte order."""
        out = []
        with self._store.read() as txn:
            for raw_id, summary in txn.items_from("docs"):
                if include_deleted or not _decode_summary(summary)[1] & _DELETED:
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
                if _decode_summary(summary)[1] & _CONFLICTED
            ]

    def changes_since(self, since: int = 0, limit: int | None = None) -> list[ChangeEntry]:
        """Return the changes after sequence ``since``, oldest first, one row per document."""
        out: list[ChangeEntry] = []
        with self._store.read() as txn:
            for key, value in txn.items_from(_SEQ, _seq_key(since + 1)):
                flags, size, rev_id, doc_id = value.decode().split(",", 3)
                deleted = bool(int(flags) & _DELETED)
                out.append(ChangeEntry(int.from_bytes(key, "big"), doc_id, rev_id, deleted, int(size)))
                if limit is not None and len(out) >= limit:
                    break
        return out

    # -- local saves -----------------------------------------------------------

    def save(
        self,
        doc_id: str,
        body: dict[str, Any],
        *,
        base_rev: str | None = UNSET,
        concurrency: ConcurrencyControl = ConcurrencyControl.LAST_WRITE_WINS,
    ) -> Document:
        """Save a new revision of a document.

        Args:
            doc_id: the document ID.
            body: the new properties.
            base_rev: the revision the edit started from (None for a new
                document; leave unset to save on top of whatever is current).
            concurrency: what to do when ``base_rev`` is no longer current.

        Raises:
            InvalidDocumentError: bad ID or body; nothing is written.
            BlobNotFoundError: the body refers to a blob not in the store.
            ConflictError: with FAIL_ON_CONFLICT, the document changed.
        """
        with self.batch() as batch:
            batch.save(doc_id, body, base_rev=base_rev, concurrency=concurrency)
        return batch.results[0]

    def delete(
        self,
        doc_id: str,
        *,
        base_rev: str | None = UNSET,
        concurrency: ConcurrencyControl = ConcurrencyControl.LAST_WRITE_WINS,
    ) -> Document:
        """Delete a document by adding a tombstone revision.

        Raises:
            NotFoundError: the document does not exist or is already deleted.
            ConflictError: with FAIL_ON_CONFLICT, the document changed.
        """
        with self.batch() as batch:
            batch.delete(doc_id, base_rev=base_rev, concurrency=concurrency)
        return batch.results[0]

    def save_with_handler(
        self, doc_id: str, body: dict[str, Any], base_rev: str | None, handler: ConflictHandler
    ) -> Document | None:
        """Save, calling ``handler(body, current)`` whenever the document changed.

        The handler returns the body to save on top of the current revision,
        or None to give up (then nothing is saved and None is returned).
        """
        while True:
            try:
                return self.save(doc_id, body, base_rev=base_rev, concurrency=ConcurrencyControl.FAIL_ON_CONFLICT)
            except ConflictError:
                current = self.get(doc_id)
                merged = handler(dict(body), current)
                if merged is None:
                    return None
                body = merged
                base_rev = None if current is None else current.rev_id

    def batch(self) -> Batch:
        """Return a batch: saves and deletes made on it commit together on exit."""
        return Batch(self)

    def _run_batch(self, ops: list[_SaveOp]) -> list[_Saved]:
        def fn(txn: Txn) -> tuple[list[_Saved], Changes]:
            seq = self._last_seq(txn)
            saved = []
            for op in ops:
                seq += 1
                saved.append(self._apply_save(txn, op, seq))
            txn.put("meta", b"last_seq", str(seq).encode())
            return saved, Changes(_unique(op.doc_id for op in ops), ChangeSource.LOCAL, seq)

        return self._commit(fn)

    def _apply_save(self, txn: Txn, op: _SaveOp, seq: int) -> _Saved:
        if op.blobs:
            missing = BlobStore.missing(txn, [b.digest for b in op.blobs])
            if missing:
                raise BlobNotFoundError(f"document {op.doc_id!r} refers to a blob that is not stored: {missing[0]}")
        tree_data = txn.get("revs", op.raw_id)
        if tree_data is None:
            if op.base_rev is not UNSET and op.concurrency is ConcurrencyControl.FAIL_ON_CONFLICT:
                _check_base(op, None)
            if op.deleted:
                raise NotFoundError(f"document {op.doc_id!r} does not exist")
            rev_id = make_rev_id(None, False, op.canonical)
            self._write_new_doc(txn, op.raw_id, rev_id, op.canonical, seq=seq, deleted=False)
            return _Saved(rev_id, seq, False)
        tree = RevTree.decode(tree_data)
        current = tree.winner()
        if op.base_rev is not UNSET and op.concurrency is ConcurrencyControl.FAIL_ON_CONFLICT:
            _check_base(op, current)
        if op.deleted and current.deleted:
            raise NotFoundError(f"document {op.doc_id!r} does not exist")
        rev_id = make_rev_id(current.rev_id, op.deleted, op.canonical)
        tree.add_child(current.rev_id, rev_id, deleted=op.deleted, sequence=seq)
        txn.put("bodies", _body_key(op.raw_id, rev_id), op.canonical)
        self._store_tree(txn, op.raw_id, tree, seq=seq, existed=True, body=op.canonical)
        return _Saved(rev_id, seq, tree.is_conflicted())

    @staticmethod
    def _write_new_doc(txn: Txn, raw_id: bytes, rev_id: str, canonical: bytes, *, seq: int, deleted: bool) -> None:
        """Store the first revision of a new document (no tree to build or prune)."""
        flags = _DELETED if deleted else 0
        rev = rev_id.encode()
        txn.put("bodies", raw_id + b"\x00" + rev, canonical)
        txn.put("revs", raw_id, RevTree.encode_single(rev_id, deleted=deleted, sequence=seq))
        txn.put("docs", raw_id, b"%d,%d,%s" % (seq, flags, rev))
        txn.put(_SEQ, _seq_key(seq), b"%d,%d,%s,%s" % (flags, len(canonical), rev, raw_id))

    def _store_tree(
        self, txn: Txn, raw_id: bytes, tree: RevTree, *, seq: int, existed: bool, body: bytes | None = None
    ) -> None:
        """Drop unneeded bodies, prune, and write the tree, summary and feed row.

        ``body`` is the new winner's body when the caller knows it.
        """
        for rev_id in tree.drop_bodies(self.keep_bodies):
            txn.delete("bodies", _body_key(raw_id, rev_id))
        if len(tree) > self.max_depth:
            for rev_id in tree.prune(self.max_depth):
                txn.delete("bodies", _body_key(raw_id, rev_id))
        winner = tree.winner()
        flags = (_DELETED if winner.deleted else 0) | (_CONFLICTED if tree.is_conflicted() else 0)
        if existed:
            old_summary = txn.get("docs", raw_id)
            if old_summary is not None:
                txn.delete(_SEQ, _seq_key(_decode_summary(old_summary)[0]))
        if body is None or len(tree) > 1:
            body = txn.get("bodies", _body_key(raw_id, winner.rev_id))
        size = 0 if body is None else len(body)
        txn.put("revs", raw_id, tree.encode())
        txn.put("docs", raw_id, b"%d,%d,%s" % (seq, flags, winner.rev_id.encode()))
        # feed row: flags,body size,rev ID,doc ID (the ID last: it may contain commas)
        txn.put(_SEQ, _seq_key(seq), b"%d,%d,%s,%s" % (flags, size, winner.rev_id.encode(), raw_id))

    # -- replication -----------------------------------------------------------

    def insert_revisions(self, revs: Sequence[RevisionInsert], *, remote: str | None = None) -> list[InsertResult]:
        """Insert revisions received from a peer, each with its history, in one transaction.

        Each revision is validated on its own: a bad one gets an error in its
        :class:`InsertResult` and does not stop the others. Unknown ancestors
        become placeholders. Revisions whose blobs are not stored are refused
        with BlobNotFoundError (fetch blobs first).
        """
        prepared: list[tuple[RevisionInsert, bytes, bytes, list[Blob]] | InsertResult] = []
        for rev in revs:
            try:
                raw_id = check_doc_id(rev.doc_id)
                canonical, blobs = check_body(rev.body)
                if not rev.history and rev.rev_id.partition("-")[0] != "1":
                    log.warning("revision %s of %r arrived without history", rev.rev_id, rev.doc_id)
                prepared.append((rev, raw_id, canonical, blobs))
            except EngineError as exc:
                prepared.append(InsertResult(rev.doc_id, rev.rev_id, error=exc))

        def fn(txn: Txn) -> tuple[list[InsertResult], Changes]:
            seq = self._last_seq(txn)
            results, changed = [], []
            for item in prepared:
                if isinstance(item, InsertResult):
                    results.append(item)
                    continue
                rev, raw_id, canonical, blobs = item
                try:
                    result = self._apply_insert(txn, rev, raw_id, canonical, blobs, seq=seq + 1)
                except EngineError as exc:
                    result = InsertResult(rev.doc_id, rev.rev_id, error=exc)
                if result.status in (InsertStatus.ADDED, InsertStatus.FILLED):
                    seq += 1
                    changed.append(rev.doc_id)
                results.append(result)
            txn.put("meta", b"last_seq", str(seq).encode())
            return results, Changes(_unique(changed), ChangeSource.REMOTE, seq, remote=remote)

        return self._commit(fn)

    def _apply_insert(
        self, txn: Txn, rev: RevisionInsert, raw_id: bytes, canonical: bytes, blobs: list[Blob], *, seq: int
    ) -> InsertResult:
        if blobs:
            missing = BlobStore.missing(txn, [b.digest for b in blobs])
            if missing:
                raise BlobNotFoundError(f"revision {rev.rev_id} of {rev.doc_id!r} refers to missing blob {missing[0]}")
        tree_data = txn.get("revs", raw_id)
        if tree_data is None and not rev.history:
            parse_rev_id(rev.rev_id)
            self._write_new_doc(txn, raw_id, rev.rev_id, canonical, seq=seq, deleted=rev.deleted)
            return InsertResult(rev.doc_id, rev.rev_id, InsertStatus.ADDED)
        tree = RevTree() if tree_data is None else RevTree.decode(tree_data)
        current = None if tree_data is None else tree.winner()
        existing = tree.get(rev.rev_id)
        if existing is not None and existing.has_body:
            return InsertResult(rev.doc_id, rev.rev_id, InsertStatus.EXISTS, conflicted=tree.is_conflicted())
        if (
            rev.no_conflicts
            and current is not None
            and existing is None
            and current.rev_id not in rev.history
            and not (current.deleted and not rev.history)
        ):
            raise ConflictError(
                f"revision {rev.rev_id} of {rev.doc_id!r} conflicts with {current.rev_id}",
                current_rev_id=current.rev_id,
            )
        status = tree.insert_with_history(rev.rev_id, rev.history, deleted=rev.deleted, sequence=seq)
        txn.put("bodies", _body_key(raw_id, rev.rev_id), canonical)
        self._store_tree(txn, raw_id, tree, seq=seq, existed=current is not None)
        return InsertResult(rev.doc_id, rev.rev_id, status, conflicted=tree.is_conflicted())

    def resolve_conflict(
        self,
        doc_id: str,
        remote_rev_id: str,
        local_rev_id: str,
        resolution: dict[str, Any] | None,
        *,
        keep_remote: bool,
    ) -> Document:
        """Resolve a conflict between two live leaves (protocol §4.6).

        The remote revision stays on the winning branch. If ``keep_remote``,
        the local branch is closed with a tombstone; otherwise a new revision
        with ``resolution`` (None: a deletion) is added as a child of the
        remote revision and the local branch is closed.

        Raises:
            ConflictError: the leaves changed meanwhile (read again and retry).
        """
        raw_id = check_doc_id(doc_id)
        canonical = None if resolution is None else check_body(resolution)[0]

        def fn(txn: Txn) -> tuple[Document, Changes]:
            tree_data = txn.get("revs", raw_id)
            if tree_data is None:
                raise NotFoundError(f"document {doc_id!r} does not exist")
            tree = RevTree.decode(tree_data)
            leaves = {n.rev_id for n in tree.live_leaves()}
            if remote_rev_id not in leaves or local_rev_id not in leaves:
                raise ConflictError(f"conflict on {doc_id!r} changed while it was being resolved")
            seq = self._last_seq(txn) + 1
            closing = make_rev_id(local_rev_id, True, b"{}")
            tree.add_child(local_rev_id, closing, deleted=True, sequence=seq)
            txn.put("bodies", _body_key(raw_id, closing), b"{}")
            if not keep_remote:
                body = b"{}" if canonical is None else canonical
                merged = make_rev_id(remote_rev_id, canonical is None, body)
                tree.add_child(remote_rev_id, merged, deleted=canonical is None, sequence=seq)
                txn.put("bodies", _body_key(raw_id, merged), body)
            self._store_tree(txn, raw_id, tree, seq=seq, existed=True)
            txn.put("meta", b"last_seq", str(seq).encode())
            winner = tree.winner()
            data = txn.get("bodies", _body_key(raw_id, winner.rev_id)) or b"{}"
            doc = Document(doc_id, winner.rev_id, json.loads(data), winner.deleted, seq, tree.is_conflicted())
            return doc, Changes((doc_id,), ChangeSource.LOCAL, seq)

        return self._commit(fn)

    # -- purge and compaction --------------------------------------------------

    def purge(self, doc_id: str) -> None:
        """Remove a document and all its revisions without leaving a tombstone.

        Raises:
            NotFoundError: no such document.
        """
        raw_id = check_doc_id(doc_id)

        def fn(txn: Txn) -> tuple[None, Changes]:
            summary = txn.get("docs", raw_id)
            if summary is None:
                raise NotFoundError(f"document {doc_id!r} does not exist")
            txn.delete(_SEQ, _seq_key(_decode_summary(summary)[0]))
            for key, _ in list(txn.items_prefix("bodies", raw_id + b"\x00")):
                txn.delete("bodies", key)
            txn.delete("revs", raw_id)
            txn.delete("docs", raw_id)
            return None, Changes((), ChangeSource.LOCAL, self._last_seq(txn), purged=(doc_id,))

        self._commit(fn)

    def compact(self, *, blob_grace_seconds: float = 300.0) -> CompactionResult:
        """Prune revision trees, drop unneeded bodies and unreferenced blobs.

        Blobs stored less than ``blob_grace_seconds`` ago are kept even when
        unreferenced, so that a document about to be saved with them is safe.
        """

        def fn(txn: Txn) -> CompactionResult:
            bodies = pruned = 0
            for raw_id, tree_data in list(txn.items_from("revs")):
                tree = RevTree.decode(tree_data)
                dropped = tree.drop_bodies(self.keep_bodies)
                removed = tree.prune(self.max_depth)
                for rev_id in dropped:
                    bodies += txn.delete("bodies", _body_key(raw_id, rev_id))
                for rev_id in removed:
                    bodies += txn.delete("bodies", _body_key(raw_id, rev_id))
                pruned += len(removed)
                if dropped or removed:
                    txn.put("revs", raw_id, tree.encode())
            referenced: set[bytes] = set()
            for _, data in txn.items_from("bodies"):
                if b'"digest"' in data:
                    referenced.update(digest_to_key(ref["digest"]) for ref in iter_blob_refs(json.loads(data)))
            blobs = BlobStore.collect_garbage(txn, referenced, time.time() - blob_grace_seconds)
            return CompactionResult(bodies, pruned, blobs)

        return self._store.write(fn)

    # -- local documents -------------------------------------------------------

    def get_local(self, doc_id: str) -> LocalDocument | None:
        """Return a local document, or None."""
        with self._store.read() as txn:
            data = txn.get("local", check_doc_id(doc_id))
        if data is None:
            return None
        stored = json.loads(data)
        return LocalDocument(doc_id, stored["rev"], stored["body"])

    def put_local(self, doc_id: str, body: dict[str, Any], *, rev: str | None = UNSET) -> str:
        """Store a local document and return its new MVCC revision.

        Args:
            rev: the revision being replaced (None: the document must not
                exist); leave unset to overwrite unconditionally.

        Raises:
            ConflictError: ``rev`` is not the current revision.
        """
        raw_id = check_doc_id(doc_id)
        if not isinstance(body, dict):
            raise InvalidDocumentError("local document body must be a JSON object")
        encoded_body = canonical_json(body)

        def fn(txn: Txn) -> str:
            data = txn.get("local", raw_id)
            current = None if data is None else json.loads(data)["rev"]
            if rev is not UNSET and rev != current and not (rev == "" and current is None):
                raise ConflictError(f"local document {doc_id!r} is at revision {current}", current_rev_id=current)
            new_rev = f"{int(current.split('-')[0]) + 1 if current else 1}-cc"
            txn.put("local", raw_id, b'{"rev":"%s","body":%s}' % (new_rev.encode(), encoded_body))
            return new_rev

        return self._store.write(fn)

    def delete_local(self, doc_id: str) -> bool:
        """Remove a local document; return whether it existed."""
        raw_id = check_doc_id(doc_id)
        return self._store.write(lambda txn: txn.delete("local", raw_id))

    # -- blobs ---------------------------------------------------------------------

    def save_blob(self, data: bytes, content_type: str | None = None) -> Blob:
        """Store content and return the blob to put in a document body."""
        return self.blobs.save(data, content_type)

    def blob_writer(self, content_type: str | None = None) -> BlobWriter:
        """Start streaming new content into the store."""
        return self.blobs.writer(content_type)

    def open_blob(self, digest: str) -> BlobReader:
        """Open stored content for streaming (verified at the end)."""
        return self.blobs.open(digest)

    def read_blob(self, digest: str) -> bytes:
        """Return the whole, verified content of a blob."""
        return self.blobs.read(digest)

    def has_blob(self, digest: str) -> bool:
        """Return whether the content with ``digest`` is stored."""
        return self.blobs.has(digest)


class _Saved(NamedTuple):
    rev_id: str
    sequence: int
    conflicted: bool


class _SaveOp(NamedTuple):
    doc_id: str
    raw_id: bytes
    body: dict[str, Any]
    canonical: bytes
    blobs: list[Blob]
    deleted: bool
    base_rev: str | None
    concurrency: ConcurrencyControl


def _check_base(op: _SaveOp, current: RevNode | None) -> None:
    current_rev = None if current is None else current.rev_id
    if op.base_rev == current_rev:
        return
    if op.base_rev is None and current is not None and current.deleted:
        return
    raise ConflictError(
        f"document {op.doc_id!r} changed: it is at {current_rev}, the edit started from {op.base_rev}",
        current_rev_id=current_rev,
    )


class Batch:
    """Saves and deletes that commit in one transaction when the ``with`` block ends.

    Bodies are validated when added, so a bad one raises at once. If the block
    raises, nothing is written. ``results`` holds the saved documents after exit.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ops: list[_SaveOp] = []
        self._saved: list[_Saved] = []

    @property
    def results(self) -> list[Document]:
        """The saved documents, in the order the saves were queued (empty before commit)."""
        return [
            Document(op.doc_id, saved.rev_id, dict(op.body), op.deleted, saved.sequence, saved.conflicted)
            for op, saved in zip(self._ops, self._saved, strict=False)
        ]

    def save(
        self,
        doc_id: str,
        body: dict[str, Any],
        *,
        base_rev: str | None = UNSET,
        concurrency: ConcurrencyControl = ConcurrencyControl.LAST_WRITE_WINS,
    ) -> None:
        """Queue a save (see :meth:`Database.save`)."""
        raw_id = check_doc_id(doc_id)
        canonical, blobs = check_body(body)
        self._ops.append(_SaveOp(doc_id, raw_id, body, canonical, blobs, False, base_rev, concurrency))

    def delete(
        self,
        doc_id: str,
        *,
        base_rev: str | None = UNSET,
        concurrency: ConcurrencyControl = ConcurrencyControl.LAST_WRITE_WINS,
    ) -> None:
        """Queue a deletion (see :meth:`Database.delete`)."""
        self._ops.append(_SaveOp(doc_id, check_doc_id(doc_id), {}, b"{}", [], True, base_rev, concurrency))

    def __len__(self) -> int:
        return len(self._ops)

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None and self._ops:
            self._saved = self._db._run_batch(self._ops)


def _decode_summary(data: bytes) -> tuple[int, int, str]:
    seq, flags, rev_id = data.decode().split(",", 2)
    return int(seq), int(flags), rev_id


def _unique(ids: Iterator[str] | list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))
