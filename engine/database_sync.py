"""Database operations for replication: inserting peers' revisions, resolving conflicts."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.blobs import Blob
from engine.blobstore import BlobStore
from engine.changes import Changes, ChangeSource
from engine.db_core import DatabaseCore, body_key, unique_ids
from engine.documents import Document, check_body, check_doc_id
from engine.errors import BlobNotFoundError, ConflictError, EngineError, NotFoundError
from engine.lmdb_store import Txn
from engine.revid import make_rev_id, parse_rev_id
from engine.revtree import InsertStatus, RevTree

__all__ = ["InsertResult", "RevisionInsert", "SyncOperations"]

log = logging.getLogger(__name__)


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


class SyncOperations(DatabaseCore):
    """What replication does to a database, beyond local saves."""

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
            return results, Changes(unique_ids(changed), ChangeSource.REMOTE, seq, remote=remote)

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
        txn.put("bodies", body_key(raw_id, rev.rev_id), canonical)
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
            txn.put("bodies", body_key(raw_id, closing), b"{}")
            if not keep_remote:
                body = b"{}" if canonical is None else canonical
                merged = make_rev_id(remote_rev_id, canonical is None, body)
                tree.add_child(remote_rev_id, merged, deleted=canonical is None, sequence=seq)
                txn.put("bodies", body_key(raw_id, merged), body)
            self._store_tree(txn, raw_id, tree, seq=seq, existed=True)
            txn.put("meta", b"last_seq", str(seq).encode())
            winner = tree.winner()
            data = txn.get("bodies", body_key(raw_id, winner.rev_id)) or b"{}"
            doc = Document(doc_id, winner.rev_id, json.loads(data), winner.deleted, seq, tree.is_conflicted())
            return doc, Changes((doc_id,), ChangeSource.LOCAL, seq)

        return self._commit(fn)
