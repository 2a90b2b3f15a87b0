"""The document database: documents with revision trees, blobs, a changes feed.

A :class:`Database` lives in one directory (an LMDB environment, see
:mod:`engine.lmdb_store`). Every write is one durable transaction; observers
receive one :class:`~engine.changes.Changes` per transaction after it commits.
Methods are safe to call from several threads; writes are serialised.

The class is split by concern: :mod:`engine.db_core` (storage, observers,
reads), :mod:`engine.database_sync` (replication) and this module (local
saves, batches, purge, compaction, local documents, blobs).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

from engine.blobs import Blob, digest_to_key, iter_blob_refs, may_refer_to_blobs
from engine.blobstore import BlobReader, BlobStore, BlobWriter
from engine.changes import Changes, ChangeSource
from engine.conflicts import ConcurrencyControl, ConflictHandler
from engine.database_sync import InsertResult, RevisionInsert, SyncOperations
from engine.db_core import SEQ_DB, UNSET, body_key, decode_summary, seq_key, unique_ids
from engine.documents import Document, canonical_json, check_body, check_doc_id
from engine.errors import BlobNotFoundError, ConflictError, InvalidDocumentError, NotFoundError
from engine.json_codec import loads
from engine.lmdb_store import Txn
from engine.revid import make_rev_id
from engine.revtree import RevNode, RevTree

__all__ = [
    "UNSET",
    "Batch",
    "CompactionResult",
    "Database",
    "InsertResult",
    "LocalDocument",
    "RevisionInsert",
]


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


class Database(SyncOperations):
    """A document store on LMDB. See the module docstring."""

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
            return saved, Changes(unique_ids(op.doc_id for op in ops), ChangeSource.LOCAL, seq)

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
        txn.put("bodies", body_key(op.raw_id, rev_id), op.canonical)
        self._store_tree(txn, op.raw_id, tree, seq=seq, existed=True, body=op.canonical)
        return _Saved(rev_id, seq, tree.is_conflicted())

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
            txn.delete(SEQ_DB, seq_key(decode_summary(summary)[0]))
            for key, _ in list(txn.items_prefix("bodies", raw_id + b"\x00")):
                txn.delete("bodies", key)
            txn.delete("revs", raw_id)
            txn.delete("docs", raw_id)
            self._forget_document(txn, raw_id)
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
                dropped, removed = self._trim(txn, raw_id, tree)
                for rev_id in (*dropped, *removed):
                    bodies += txn.delete("bodies", body_key(raw_id, rev_id))
                pruned += len(removed)
                if dropped or removed:
                    txn.put("revs", raw_id, tree.encode())
            referenced: set[bytes] = set()
            for _, data in txn.items_from("bodies"):
                if may_refer_to_blobs(data):
                    referenced.update(digest_to_key(ref["digest"]) for ref in iter_blob_refs(loads(data)))
            blobs = BlobStore.collect_garbage(txn, referenced, time.time() - blob_grace_seconds)
            return CompactionResult(bodies, pruned, blobs)

        return self._store.write(fn)

    def get_local(self, doc_id: str) -> LocalDocument | None:
        """Return a local document, or None."""
        with self._store.read() as txn:
            data = txn.get("local", check_doc_id(doc_id))
        if data is None:
            return None
        stored = loads(data)
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
            current = None if data is None else loads(data)["rev"]
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

    @cached_property
    def peer_id(self) -> str:
        """This database's public peer ID: a UUID made the first time it is asked for, then kept.

        Discovery advertises it, so peers know this database wherever it
        listens (``engine/replication/discovery.py``). It is not the private
        UUID that checkpoint IDs hash. A copy of the database directory has
        the same peer ID.
        """
        with self._store.read() as txn:
            value = txn.get("meta", _PEER_ID_KEY)
        if value is None:
            value = self._store.write(_ensure_peer_id)
        return value.decode()

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


_PEER_ID_KEY = b"peer_id"


def _ensure_peer_id(txn: Txn) -> bytes:
    value = txn.get("meta", _PEER_ID_KEY)
    if value is None:  # another thread or process may have made it since the read
        value = str(uuid.uuid4()).encode()
        txn.put("meta", _PEER_ID_KEY, value)
    return value


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
        self._db.validate(doc_id, body, False)
        self._ops.append(_SaveOp(doc_id, raw_id, body, canonical, blobs, False, base_rev, concurrency))

    def delete(
        self,
        doc_id: str,
        *,
        base_rev: str | None = UNSET,
        concurrency: ConcurrencyControl = ConcurrencyControl.LAST_WRITE_WINS,
    ) -> None:
        """Queue a deletion (see :meth:`Database.delete`)."""
        self._db.validate(doc_id, {}, True)
        self._ops.append(_SaveOp(doc_id, check_doc_id(doc_id), {}, b"{}", [], True, base_rev, concurrency))

    def __len__(self) -> int:
        return len(self._ops)

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None and self._ops:
            self._saved = self._db._run_batch(self._ops)
