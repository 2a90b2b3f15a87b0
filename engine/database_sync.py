"""Database operations for replication: inserting peers' revisions, storing resolutions, reading for sync.

The protocol's decisions over what is read here (which revisions to ask for,
which proposals to accept) live in :mod:`engine.replication.rev_finder`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from engine.blobs import Blob, digest_to_key
from engine.blobstore import BlobStore
from engine.changes import Changes, ChangeSource
from engine.conflicts import KEEP, ConflictView
from engine.db_core import DELETED_FLAG, body_key, decode_summary, unique_ids
from engine.db_remotes import REMOTES_DB, RemoteTracking, remote_key
from engine.documents import Document, check_body, check_doc_id
from engine.errors import BlobNotFoundError, ConflictError, EngineError, NotFoundError
from engine.json_codec import loads
from engine.lmdb_store import Txn
from engine.revid import generation, make_rev_id, parse_rev_id
from engine.revtree import InsertStatus, RevTree, wire_history

__all__ = [
    "InsertResult",
    "RevisionInsert",
    "RevisionRequest",
    "SyncOperations",
    "SyncRevision",
]

log = logging.getLogger(__name__)


class RevisionInsert(NamedTuple):
    """A revision received from a peer, to insert with its history (protocol §4.2).

    ``no_conflicts``: refuse the insert (ConflictError) if it would create a
    conflict, as a passive peer does (protocol §3.7, §4.5). ``new_blobs``:
    contents fetched for this revision, as ``(SHA-1 digest, bytes)`` already
    checked against the digest, stored in the same transaction.
    ``ids_checked``: the caller has validated ``rev_id`` and ``history`` (the
    replication layer does, as it parses them from the wire); not done twice.
    """

    doc_id: str
    rev_id: str
    history: Sequence[str]
    body: dict[str, Any]
    deleted: bool = False
    no_conflicts: bool = False
    new_blobs: Sequence[tuple[bytes, bytes]] = ()
    ids_checked: bool = False


class InsertResult(NamedTuple):
    """Outcome of one :class:`RevisionInsert`: a status, or the error that refused it."""

    doc_id: str
    rev_id: str
    status: InsertStatus | None = None
    error: EngineError | None = None
    conflicted: bool = False
    #: the current revision before the insert, when the new revision's history
    #: does not contain it: a conflict per protocol §4.5 if it was live; if it was
    #: a deletion the peer may have made its line on it (see ``_resolve_inserted``)
    diverged_from: str | None = None
    #: the revision was already stored, off our current branch: one we resolved
    #: against earlier, to resolve again (see :meth:`SyncOperations.left_behind`)
    left_behind: bool = False


@dataclass(frozen=True, slots=True)
class SyncRevision:
    """A revision read for sending to a peer: canonical body, history, optional delta base."""

    doc_id: str
    rev_id: str
    body: bytes
    deleted: bool
    history: list[str]
    sequence: int
    base_rev_id: str | None = None
    base_body: bytes | None = None


class RevisionRequest(NamedTuple):
    """A revision to read for sending: which one, the revisions the peer has, a delta base."""

    doc_id: str
    rev_id: str
    known: Sequence[str] = ()
    delta_base: str | None = None


class SyncOperations(RemoteTracking):
    """What replication does to a database, beyond local saves."""

    def insert_revisions(
        self,
        revs: Sequence[RevisionInsert],
        *,
        remote: str | None = None,
        remote_id: int | None = None,
        resolve: Callable[[ConflictView, InsertResult], object] | None = None,
    ) -> list[InsertResult]:
        """Insert revisions received from a peer, each with its history, in one transaction.

        Each revision is validated on its own: a bad one gets an error in its
        :class:`InsertResult` and does not stop the others. Unknown ancestors
        become placeholders. Revisions whose blobs are not stored are refused
        with BlobNotFoundError (fetch blobs first).

        With ``resolve``, a revision that creates a conflict (protocol §4.5) is
        handed to it at once, with a :class:`ConflictView` of the transaction,
        so that the conflict is resolved in the same commit (one disk flush,
        and no moment at which the conflict is visible). A ``resolve`` that
        raises EngineError leaves that document in conflict and is logged;
        whatever it had written is undone. It must not write to the database
        by other means.

        With ``remote_id``, every revision stored (or already there) is
        remembered as the one remote ``remote_id`` holds, in the same commit
        (see :mod:`engine.db_remotes`).
        """
        prepared: list[tuple[RevisionInsert, bytes, bytes, list[Blob]] | InsertResult] = []
        validator = self.validator
        for rev in revs:
            try:
                raw_id = check_doc_id(rev.doc_id)
                canonical, blobs = check_body(rev.body)
                if validator is not None:
                    validator(rev.doc_id, rev.body, rev.deleted)
                if not rev.history and not rev.rev_id.startswith("1-"):
                    log.warning("revision %s of %r arrived without history", rev.rev_id, rev.doc_id)
                prepared.append((rev, raw_id, canonical, blobs))
            except EngineError as exc:
                prepared.append(InsertResult(rev.doc_id, rev.rev_id, error=exc))
        remote_prefix = None if remote_id is None else remote_key(remote_id, b"")

        recorded: set[bytes] = set()  # documents whose remote record this commit writes

        def fn(txn: Txn) -> tuple[list[InsertResult], Changes]:
            seq = self._last_seq(txn)
            results, changed = [], []
            recorded.clear()  # ``fn`` runs again if the map grows
            for item in prepared:
                if isinstance(item, InsertResult):
                    results.append(item)
                    continue
                rev, raw_id, canonical, blobs = item
                try:
                    result = self._apply_insert(txn, rev, raw_id, canonical, blobs, seq=seq + 1)
                except EngineError as exc:
                    result = InsertResult(rev.doc_id, rev.rev_id, error=exc)
                if result.status is InsertStatus.ADDED or result.status is InsertStatus.FILLED:
                    seq += 1
                    changed.append(rev.doc_id)
                conflict = resolve is not None and self._needs_resolving(result)
                held = None  # what the peer held before this revision, read before it is replaced
                if conflict and remote_id is not None:
                    # a record this commit wrote is newer than any note made before it
                    value = self._remote_revision_in(txn, remote_id, raw_id, noted=raw_id not in recorded)
                    held = None if value is None else self._held_below(value, rev)
                if remote_prefix is not None and result.error is None:  # see engine.db_remotes
                    txn.put(REMOTES_DB, remote_prefix + raw_id, rev.rev_id.encode())
                    recorded.add(raw_id)
                if conflict:
                    assert resolve is not None
                    resolved_seq = self._resolve_inserted(txn, resolve, result, seq, held=held)
                    if resolved_seq != seq:
                        seq = resolved_seq
                        changed.append(rev.doc_id)
                results.append(result)
            txn.put("meta", b"last_seq", str(seq).encode())
            return results, Changes(unique_ids(changed), ChangeSource.REMOTE, seq, remote=remote)

        results = self._commit(fn)
        if remote_id is not None:
            self._stored_remote_revisions(remote_id, recorded)
        return results

    @staticmethod
    def _held_below(held: str, rev: RevisionInsert) -> str | None:
        """``held`` if the history received with ``rev`` stops above it (else None).

        Only then may the peer's line reach it beyond what was sent (the
        sender pruned or capped its history). A history that covers
        ``held``'s generation without it, or ends at a first revision, shows
        that the peer's line does not go through it: another database at the
        same address, or a document purged and made again. What the history
        cannot show: a document purged on the peer and made again, then edited
        past our pruning depth, looks like edits made on ``held``, and its
        revision goes on from ours (no merge). Nothing in the app or the
        command line purges a document; another database at the same address
        is told apart by the replicator, as it does not remember the checkpoint.
        """
        oldest = rev.history[-1] if rev.history else rev.rev_id
        return held if generation(oldest) > generation(held) else None

    @staticmethod
    def _needs_resolving(result: InsertResult) -> bool:
        """Whether an inserted revision caused a conflict, or is one we had and left behind."""
        if result.status in (InsertStatus.ADDED, InsertStatus.FILLED):
            return bool(result.diverged_from or result.conflicted)
        return result.left_behind

    def _resolve_inserted(
        self,
        txn: Txn,
        resolve: Callable[[ConflictView, InsertResult], object],
        result: InsertResult,
        seq: int,
        *,
        held: str | None = None,
    ) -> int:
        """Let ``resolve`` settle the conflict ``result`` caused, all or nothing; return the last sequence used.

        ``held``: the revision the peer was known to hold before this one. When
        it is our current revision (``result.diverged_from``) and the two
        histories do not meet, the peer made its revision knowing ours and
        pruned the revisions between them (more than ``max_depth`` edits since
        the last sync): no conflict, the peer's line goes on from ours (its
        root is linked to ours, so that a push to another peer holding ours
        is a fast-forward there too), or, if that line cannot descend from
        ours, the peer's revision replaces ours. Otherwise, when the histories
        do not meet, it is the common ancestor the resolver merges from
        (:meth:`_TxnConflictView.peer_revision`); a merge with none would bring
        back what either side had removed.
        """
        local = result.diverged_from

        def attempt(child: Txn) -> int:
            view = _TxnConflictView(self, child, seq, peer_revision=held)
            if local is not None and held == local and self._lines_apart(view, result.doc_id, result.rev_id, local):
                log.info("%r: the peer's %s goes on from %s, which it had", result.doc_id, result.rev_id, local)
                view.graft(result.doc_id, result.rev_id, onto=local)
            resolve(view, result)  # whatever conflict is left (usually none)
            return view.seq

        try:
            return txn.attempt(attempt)
        except EngineError as exc:
            log.warning("could not resolve the conflict on %r: %s", result.doc_id, exc)
            return seq

    @staticmethod
    def _lines_apart(view: _TxnConflictView, doc_id: str, rev_id: str, other: str) -> bool:
        """Whether the two revisions' histories do not meet in the tree.

        Where they meet, the common ancestor is known and the resolver decides
        (its rules converge every peer on one revision, which taking the peer's
        revision whole would break when both sides hold the same content).
        """
        tree = view.get_tree(doc_id)
        return tree is not None and tree.common_ancestor(rev_id, other) is None

    def _apply_insert(
        self, txn: Txn, rev: RevisionInsert, raw_id: bytes, canonical: bytes, blobs: list[Blob], *, seq: int
    ) -> InsertResult:
        if blobs:
            arriving = {key for key, _ in rev.new_blobs}
            missing = [d for d in BlobStore.missing(txn, [b.digest for b in blobs]) if digest_to_key(d) not in arriving]
            if missing:
                raise BlobNotFoundError(f"revision {rev.rev_id} of {rev.doc_id!r} refers to missing blob {missing[0]}")
        tree_data = txn.get("revs", raw_id)
        if tree_data is None and not rev.history:  # a new document (a pull's usual case)
            if not rev.ids_checked:
                parse_rev_id(rev.rev_id)
            if rev.new_blobs:
                self._install_blobs(txn, rev)
            self._write_new_doc(txn, raw_id, rev.rev_id, canonical, seq=seq, deleted=rev.deleted)
            return InsertResult(rev.doc_id, rev.rev_id, InsertStatus.ADDED)
        tree = RevTree() if tree_data is None else RevTree.decode(tree_data)
        current = None if tree_data is None else tree.winner()
        existing = tree.get(rev.rev_id)
        if existing is not None and existing.has_body:
            return InsertResult(
                rev.doc_id,
                rev.rev_id,
                InsertStatus.EXISTS,
                conflicted=tree.is_conflicted(),
                left_behind=tree.is_left_behind(rev.rev_id),
            )
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
        status = tree.insert_with_history(
            rev.rev_id,
            rev.history,
            deleted=rev.deleted,
            sequence=seq,
            ids_checked=rev.ids_checked,
            max_depth=self.max_depth,
        )
        self._install_blobs(txn, rev)
        txn.put("bodies", body_key(raw_id, rev.rev_id), canonical)
        self._store_tree(txn, raw_id, tree, seq=seq, existed=current is not None)
        diverged = (
            current is not None
            and status is InsertStatus.ADDED
            and current.rev_id not in rev.history
            and current.rev_id in tree
        )
        return InsertResult(
            rev.doc_id,
            rev.rev_id,
            status,
            conflicted=tree.is_conflicted(),
            diverged_from=current.rev_id if diverged and current is not None else None,
        )

    @staticmethod
    def _install_blobs(txn: Txn, rev: RevisionInsert) -> None:
        """Store the blobs fetched for ``rev``, once it is sure to be stored too (no orphans)."""
        for key, data in rev.new_blobs:
            BlobStore.install_in(txn, key, len(data), io.BytesIO(data))

    def peer_revision(self, doc_id: str) -> str | None:
        """For :class:`~engine.conflicts.ConflictView`: outside a replicated insert no peer is involved."""
        return None

    def resolve_conflict(self, doc_id: str, *, keep: str, close: str, merged: dict[str, Any] | None = KEEP) -> Document:
        """Resolve a conflict (protocol §4.6): the branch of ``keep`` continues, ``close``'s ends.

        ``close`` must be a leaf; it gets a closing tombstone (local to this
        peer, never the winner) if it is live.
        With ``merged`` a dict, a new revision with that body is added as a
        child of ``keep``; with None, a deletion; with KEEP (the default),
        ``keep`` stays as it is. ``keep`` may be a revision whose branch was
        closed earlier (a peer's winner we had decided against): its closing
        tombstone is removed, or if it has other children it gets a new child
        with its own body (or ``merged``). New revision IDs depend
        only on their parent and body, so resolving the same way twice adds
        nothing new.

        Raises:
            ConflictError: the revisions changed meanwhile (read again and retry).
        """

        if isinstance(merged, dict):
            self.validate(doc_id, merged, False)

        def fn(txn: Txn) -> tuple[Document, Changes]:
            view = _TxnConflictView(self, txn, self._last_seq(txn))
            doc = view.resolve_conflict(doc_id, keep=keep, close=close, merged=merged)
            txn.put("meta", b"last_seq", str(view.seq).encode())
            return doc, Changes((doc_id,), ChangeSource.LOCAL, view.seq)

        return self._commit(fn)

    def _resolve_in(
        self,
        txn: Txn,
        doc_id: str,
        raw_id: bytes,
        *,
        keep: str,
        close: str,
        canonical: bytes | None,
        merged: Any,
        seq: int,
    ) -> Document:
        """The work of :meth:`resolve_conflict` in ``txn``, at sequence ``seq`` (the caller records it).

        It may have written before it raises (reopening a branch deletes
        bodies first): on any error the caller discards ``txn``, as both
        callers do (the whole commit, or a nested transaction).
        """
        tree_data = txn.get("revs", raw_id)
        if tree_data is None:
            raise NotFoundError(f"document {doc_id!r} does not exist")
        tree = RevTree.decode(tree_data)
        for closing in tree.reopen(keep):  # a branch we closed before continues after all
            txn.delete("bodies", body_key(raw_id, closing))
        leaves = {n.rev_id: n for n in tree.leaves()}
        kept = tree.get(keep)
        if kept is None or close not in leaves or keep == close:
            raise ConflictError(f"conflict on {doc_id!r} changed while it was being resolved")
        if not leaves[close].deleted:
            self._add_revision(txn, raw_id, tree, close, deleted=True, body=b"{}", seq=seq, closed=True)
        if keep not in leaves and merged is KEEP:
            body = txn.get("bodies", body_key(raw_id, keep))
            if body is None:
                raise ConflictError(f"the body of {keep} of {doc_id!r} is no longer stored")
            self._add_revision(txn, raw_id, tree, keep, deleted=kept.deleted, body=body, seq=seq)
        elif merged is not KEEP and not (merged is None and kept.deleted and keep in leaves):
            body = canonical or b"{}"
            self._add_revision(txn, raw_id, tree, keep, deleted=canonical is None, body=body, seq=seq)
        if tree.winner().closed:  # every branch would be closed: nothing is written
            raise ConflictError(f"resolving {doc_id!r} this way would leave no current revision")
        self._store_tree(txn, raw_id, tree, seq=seq, existed=True)
        winner = tree.winner()
        data = txn.get("bodies", body_key(raw_id, winner.rev_id)) or b"{}"
        return Document(doc_id, winner.rev_id, loads(data), winner.deleted, seq, tree.is_conflicted())

    @staticmethod
    def _add_revision(
        txn: Txn,
        raw_id: bytes,
        tree: RevTree,
        parent: str,
        *,
        deleted: bool,
        body: bytes,
        seq: int,
        closed: bool = False,
    ) -> None:
        child = make_rev_id(parent, deleted, body)
        if child not in tree:
            tree.add_child(parent, child, deleted=deleted, sequence=seq, closed=closed)
            txn.put("bodies", body_key(raw_id, child), body)
            return
        # the same revision was made before: its ID says ``parent`` is its parent, which pruning
        # may have cut (a peer's copy of the parent came back since); the line is whole again
        tree.adopt(parent, child)
        if not closed:  # and if its branch was closed since, it continues
            for closing in tree.reopen(child):
                txn.delete("bodies", body_key(raw_id, closing))

    def read_trees(self, doc_ids: Sequence[str]) -> list[RevTree | None]:
        """The revision tree of each document (None: unknown), read in one snapshot."""
        with self._store.read() as txn:
            found = [txn.get("revs", check_doc_id(doc_id)) for doc_id in doc_ids]
        return [None if data is None else RevTree.decode(data) for data in found]

    def current_revisions(self, doc_ids: Sequence[str]) -> list[tuple[str, bool] | None]:
        """``(current rev ID, deleted)`` of each document (None: unknown), read in one snapshot."""
        out: list[tuple[str, bool] | None] = []
        with self._store.read() as txn:
            for doc_id in doc_ids:
                summary = txn.get("docs", check_doc_id(doc_id))
                if summary is None:
                    out.append(None)
                    continue
                _, flags, current = decode_summary(summary)
                out.append((current, bool(flags & DELETED_FLAG)))
        return out

    def revision_for_sync(
        self,
        doc_id: str,
        rev_id: str,
        *,
        known: Collection[str] = (),
        max_history: int = 20,
        delta_base: str | None = None,
    ) -> SyncRevision | None:
        """Read a revision to send to a peer, or None if its body is gone.

        The history lists ancestors newest first, up to and including the
        first one in ``known``; without a known ancestor it stops after
        ``max_history`` entries (protocol §4.2). ``delta_base``'s body is
        included when stored.
        """
        request = RevisionRequest(doc_id, rev_id, tuple(known), delta_base)
        return self.revisions_for_sync([request], max_history=max_history)[0]

    def revisions_for_sync(
        self, requests: Sequence[RevisionRequest], *, max_history: int = 20
    ) -> list[SyncRevision | None]:
        """:meth:`revision_for_sync` for many revisions, in one read transaction."""
        out: list[SyncRevision | None] = []
        with self._store.read() as txn:
            for request in requests:
                out.append(self._read_for_sync(txn, request, max_history))
        return out

    @staticmethod
    def _read_for_sync(txn: Txn, request: RevisionRequest, max_history: int) -> SyncRevision | None:
        doc_id, rev_id, known, delta_base = request
        raw_id = check_doc_id(doc_id)
        body = txn.get("bodies", body_key(raw_id, rev_id))
        if body is None:
            return None
        if rev_id.startswith("1-"):  # a first revision: no history, and the summary says if it is deleted
            summary = txn.get("docs", raw_id)
            if summary is not None:
                seq, flags, current = decode_summary(summary)
                if current == rev_id:
                    return SyncRevision(doc_id, rev_id, body, bool(flags & DELETED_FLAG), [], seq)
        tree_data = txn.get("revs", raw_id)
        node = None if tree_data is None else (tree := RevTree.decode(tree_data)).get(rev_id)
        if node is None:
            return None
        history = wire_history(rev_id, tree.history(rev_id)[1:], known, max_history)
        base_body = txn.get("bodies", body_key(raw_id, delta_base)) if delta_base else None
        return SyncRevision(doc_id, rev_id, body, node.deleted, history, node.sequence, delta_base, base_body)


class _TxnConflictView:
    """A ConflictView inside an open write transaction; each resolution is all or nothing."""

    def __init__(self, db: SyncOperations, txn: Txn, seq: int, *, peer_revision: str | None = None) -> None:
        self._db = db
        self._txn = txn
        #: the last sequence used so far in the transaction
        self.seq = seq
        self._peer_revision = peer_revision

    def peer_revision(self, doc_id: str) -> str | None:
        return self._peer_revision

    def get_tree(self, doc_id: str) -> RevTree | None:
        return self._db._tree_in(self._txn, check_doc_id(doc_id))

    def get_revision(self, doc_id: str, rev_id: str) -> Document | None:
        return self._db._revision_in(self._txn, doc_id, check_doc_id(doc_id), rev_id)

    def graft(self, doc_id: str, rev_id: str, *, onto: str) -> None:
        """Link the root of ``rev_id``'s line to ``onto`` (:meth:`RevTree.graft`); if it cannot be,
        ``rev_id`` replaces ``onto``, whose branch is closed."""
        raw_id = check_doc_id(doc_id)
        tree = self._db._tree_in(self._txn, raw_id)
        if tree is None or not tree.graft(rev_id, onto):
            self.resolve_conflict(doc_id, keep=rev_id, close=onto)
            return
        self.seq += 1
        self._db._store_tree(self._txn, raw_id, tree, seq=self.seq, existed=True)

    def resolve_conflict(self, doc_id: str, *, keep: str, close: str, merged: dict[str, Any] | None = KEEP) -> Document:
        raw_id = check_doc_id(doc_id)
        canonical = None if merged is None or merged is KEEP else check_body(merged)[0]
        if isinstance(merged, dict):
            self._db.validate(doc_id, merged, False)
        seq = self.seq + 1

        def resolve(txn: Txn) -> Document:
            return self._db._resolve_in(
                txn, doc_id, raw_id, keep=keep, close=close, canonical=canonical, merged=merged, seq=seq
            )

        doc = self._txn.attempt(resolve)
        self.seq = seq
        return doc
