"""An in-memory document store shaped like a LiteCore database with revision trees.

Models LiteCore/RevTrees/RevTree.cc and C4Collection as far as replication sees them (protocol
§4): a tree of revisions per document (placeholder ancestors without bodies, a *conflict* flag on
revisions that start or extend a second branch, *closed* losing leaves after a resolution), the
current revision chosen as RevTree's ``compareRevs`` does (leaf, not conflict, live, not closed,
then highest revision ID), a sequence per change and a by-sequence changes feed, blobs by digest
(§4.4), the revision known to be on each remote database ("remote ancestor", RevTree's
``_remoteRevs``, protocol §9), local checkpoints and the peer checkpoints a passive side keeps
(§6), and ``findDocAncestors`` (C4Collection, used by RevFinder, §3.5).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AT_THIS_REMOTE",
    "CONFLICT",
    "HAVE_LOCAL",
    "LOCAL_IS_NEWER",
    "LOCAL_IS_OLDER",
    "Change",
    "PeerStore",
    "Revision",
    "StoreConflictError",
    "blob_digest",
    "generation",
    "is_storable_rev_id",
]

# C4FindDocAncestorsResultFlags (c4DocumentTypes.h)
LOCAL_IS_OLDER, LOCAL_IS_NEWER, CONFLICT, AT_THIS_REMOTE, HAVE_LOCAL = 1, 2, 3, 4, 8

#: LiteCore's default maxRevTreeDepth (DatabaseImpl.cc), the depth from which a received
#: history may skip generations (RevTree::findCommonAncestor)
PRUNE_DEPTH = 20

#: protocol §4.1: what LiteCore's revidBuffer::tryParse accepts for a tree revision ID.
_REV_ID = re.compile(r"([1-9][0-9]{0,9})-((?:[0-9a-f]{2})+)")


class StoreConflictError(Exception):
    """A no-conflicts insert that would create a branch (LiteCore error LiteCore/8)."""


def generation(rev_id: str) -> int:
    """The generation of a revision ID, 0 when it has none (C4Document::getRevIDGeneration)."""
    head, sep, _ = rev_id.partition("-")
    return int(head) if sep and head.isdigit() else 0


def is_storable_rev_id(rev_id: str) -> bool:
    """Whether LiteCore can store this revision ID: ``<gen>-<even-length lowercase hex>``, short."""
    return _REV_ID.fullmatch(rev_id) is not None and len(rev_id) <= 48


def _rev_key(rev_id: str) -> tuple[int, str]:
    return generation(rev_id), rev_id.partition("-")[2]


def blob_digest(data: bytes) -> str:
    """``sha1-<base64>`` of a blob's content (protocol §4.4)."""
    return "sha1-" + base64.b64encode(hashlib.sha1(data).digest()).decode()


@dataclass(slots=True)
class Revision:
    """One node of a revision tree. ``body`` is None for a placeholder ancestor."""

    rev_id: str
    parent: str | None
    deleted: bool = False
    body: dict[str, Any] | None = None
    conflict: bool = False
    closed: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """One changes-feed row: a document's current revision at its latest sequence."""

    sequence: int
    doc_id: str
    rev_id: str
    deleted: bool
    body_size: int
    origin: object | None = None


@dataclass(slots=True)
class _Doc:
    doc_id: str
    revs: dict[str, Revision] = field(default_factory=dict)
    sequence: int = 0
    origin: object | None = None

    def children(self) -> set[str]:
        return {rev.parent for rev in self.revs.values() if rev.parent is not None}

    def sorted_revs(self) -> list[Revision]:
        # RevTree::compareRevs: leaves, then non-conflict, live, not closed, then higher revID.
        parents = self.children()

        def key(rev: Revision) -> tuple[bool, bool, bool, bool, tuple[int, str]]:
            leaf = rev.rev_id not in parents
            return (leaf, not rev.conflict, not rev.deleted, not rev.closed, _rev_key(rev.rev_id))

        return sorted(self.revs.values(), key=key, reverse=True)

    @property
    def current(self) -> Revision:
        return self.sorted_revs()[0]

    def ancestry(self, rev_id: str) -> list[str]:
        """``rev_id`` then its ancestors, newest first."""
        out: list[str] = []
        rev: Revision | None = self.revs.get(rev_id)
        while rev is not None:
            out.append(rev.rev_id)
            rev = self.revs.get(rev.parent) if rev.parent else None
        return out


class PeerStore:
    """A LiteCore-like database in memory. See the module docstring."""

    def __init__(self, name: str = "peer") -> None:
        self.name = name
        #: The private UUID that goes into checkpoint IDs (Checkpointer.cc).
        self.uuid = uuid.uuid4().bytes
        self.last_sequence = 0
        self._docs: dict[str, _Doc] = {}
        self._blobs: dict[str, tuple[bytes, str | None]] = {}
        self._remote_ancestors: dict[str, dict[str, str]] = {}
        self.checkpoints: dict[str, dict[str, Any]] = {}
        self.peer_checkpoints: dict[str, tuple[str, bytes]] = {}
        self._observers: list[Callable[[Change], None]] = []

    # -- local edits -------------------------------------------------------------------------

    def put(self, doc_id: str, body: dict[str, Any]) -> str:
        """Save a new revision as a child of the current one; return its revision ID."""
        doc = self._docs.get(doc_id)
        parent = doc.current.rev_id if doc else None
        return self._add_local(doc_id, parent, copy.deepcopy(body), deleted=False)

    def delete(self, doc_id: str) -> str:
        """Add a tombstone as a child of the current revision; return its revision ID."""
        doc = self._docs.get(doc_id)
        if doc is None or doc.current.deleted:
            raise KeyError(f"{doc_id!r} does not exist")
        return self._add_local(doc_id, doc.current.rev_id, {}, deleted=True)

    def _add_local(self, doc_id: str, parent: str | None, body: dict[str, Any], *, deleted: bool) -> str:
        digest = hashlib.sha1(
            json.dumps([parent or "", deleted, body], sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        rev_id = f"{generation(parent) + 1 if parent else 1}-{digest}"
        doc = self._docs.setdefault(doc_id, _Doc(doc_id))
        doc.revs[rev_id] = Revision(rev_id, parent, deleted, body)
        self._changed(doc, origin=None)
        return rev_id

    # -- reading -----------------------------------------------------------------------------

    def get(self, doc_id: str) -> tuple[str, dict[str, Any] | None, bool] | None:
        """(current revision ID, body, deleted) or None."""
        doc = self._docs.get(doc_id)
        if doc is None:
            return None
        current = doc.current
        return current.rev_id, copy.deepcopy(current.body), current.deleted

    def revision(self, doc_id: str, rev_id: str) -> Revision | None:
        doc = self._docs.get(doc_id)
        return doc.revs.get(rev_id) if doc else None

    def revision_ids(self, doc_id: str) -> set[str]:
        doc = self._docs.get(doc_id)
        return set(doc.revs) if doc else set()

    def ancestry(self, doc_id: str, rev_id: str) -> list[str]:
        """``rev_id`` and its ancestors, newest first ([] if unknown)."""
        doc = self._docs.get(doc_id)
        return doc.ancestry(rev_id) if doc else []

    def is_conflicted(self, doc_id: str) -> bool:
        doc = self._docs.get(doc_id)
        if doc is None:
            return False
        parents = doc.children()
        return any(rev.conflict and not rev.closed and rev.rev_id not in parents for rev in doc.revs.values())

    def doc_ids(self) -> list[str]:
        return sorted(self._docs)

    @property
    def is_empty(self) -> bool:
        return self.last_sequence == 0

    def changes_since(self, since: int, limit: int | None = None, *, skip_deleted: bool = False) -> list[Change]:
        """One row per document changed after ``since``, by sequence (c4DocEnumerator)."""
        rows = [self._row(doc) for doc in self._docs.values() if doc.sequence > since]
        rows = [row for row in rows if not (skip_deleted and row.deleted)]
        rows.sort(key=lambda row: row.sequence)
        return rows if limit is None else rows[:limit]

    def _row(self, doc: _Doc) -> Change:
        current = doc.current
        size = len(json.dumps(current.body, separators=(",", ":"))) if current.body else 0
        return Change(doc.sequence, doc.doc_id, current.rev_id, current.deleted, size, doc.origin)

    # -- replication support -----------------------------------------------------------------

    def insert_revision(
        self,
        doc_id: str,
        rev_id: str,
        history: Iterable[str],
        body: dict[str, Any],
        *,
        deleted: bool = False,
        allow_conflict: bool = True,
        origin: object | None = None,
    ) -> bool:
        """Insert a received revision with its ancestors (RevTree::insertHistory, protocol §4.2).

        Returns False if it was already there. Unknown ancestors become body-less placeholders.

        Raises:
            StoreConflictError: ``allow_conflict`` is False and the revision would start a branch.
            ValueError: generations in the history do not decrease by one, except where LiteCore
                allows a gap: at or past index ``PRUNE_DEPTH - 1`` of the chain (the revision
                itself at index 0). RevTree::findCommonAncestor checks the chain only as far
                as the first revision the tree holds.
        """
        chain = [rev_id, *history]
        doc = self._docs.get(doc_id)
        known = next((i for i, r in enumerate(chain) if doc is not None and r in doc.revs), len(chain))
        for index, (newer, older) in enumerate(itertools.pairwise(chain[: known + 1]), start=1):
            gap_allowed = index >= PRUNE_DEPTH - 1 and generation(older) < generation(newer)
            if generation(older) != generation(newer) - 1 and not gap_allowed:
                raise ValueError(f"history of {doc_id!r} {rev_id}: generations not consecutive at {older}")
        if doc is not None and rev_id in doc.revs:
            return False
        parent = chain[known] if known < len(chain) else None
        if not allow_conflict and doc is not None:
            # RevTree::findCommonAncestor: the parent must be a leaf. For a new root LiteCore's
            # RevTree refuses any non-empty tree, but RevFinder accepts the proposal when the
            # document is a tombstone (protocol §3.6/§4.5); the double follows protocol.md here,
            # as other LiteCore layers could not be checked.
            leaves = doc.revs.keys() - doc.children()
            if (parent is not None and parent not in leaves) or (parent is None and not doc.current.deleted):
                raise StoreConflictError(f"{doc_id!r} {rev_id} conflicts with {doc.current.rev_id}")
        doc = self._docs.setdefault(doc_id, _Doc(doc_id))
        branch = (
            allow_conflict
            and bool(doc.revs)
            and (parent is None or parent in doc.children() or doc.revs[parent].conflict or doc.revs[parent].closed)
        )
        for i in range(known - 1, -1, -1):
            parent_id = chain[i + 1] if i + 1 < len(chain) else None
            doc.revs[chain[i]] = Revision(chain[i], parent_id, deleted and i == 0, body if i == 0 else None, branch)
        self._changed(doc, origin=origin)
        return True

    def find_ancestors(
        self,
        doc_id: str,
        rev_id: str,
        *,
        remote: str | None = None,
        max_ancestors: int = 10,
        require_bodies: bool = True,
    ) -> tuple[int, list[str] | None]:
        """(status flags, possible ancestors or None) as C4Collection::findDocAncestors."""
        doc = self._docs.get(doc_id)
        if doc is None:
            return LOCAL_IS_OLDER, []
        current = doc.current
        status = 0
        rev = doc.revs.get(rev_id)
        if rev is not None:
            if rev.body is not None:
                status |= HAVE_LOCAL
            if remote is not None and self.remote_ancestor(remote, doc_id) == rev_id:
                status |= AT_THIS_REMOTE
            if current.rev_id != rev_id:
                status |= LOCAL_IS_NEWER if rev_id in doc.ancestry(current.rev_id) else CONFLICT
        else:
            status |= LOCAL_IS_OLDER if generation(current.rev_id) < generation(rev_id) else CONFLICT
        if not status & LOCAL_IS_OLDER:
            return status, None
        ancestors = [
            r.rev_id
            for r in doc.sorted_revs()
            if generation(r.rev_id) < generation(rev_id) and (r.body is not None or not require_bodies)
        ]
        return status, ancestors[:max_ancestors]

    def remote_ancestor(self, remote: str, doc_id: str) -> str | None:
        """The revision known to be on ``remote`` (kept for the life of this store)."""
        return self._remote_ancestors.get(remote, {}).get(doc_id)

    def set_remote_ancestor(self, remote: str, doc_id: str, rev_id: str) -> None:
        self._remote_ancestors.setdefault(remote, {})[doc_id] = rev_id

    def resolve_conflict(self, doc_id: str, remote_rev_id: str) -> str | None:
        """Resolve a pulled conflict with Couchbase Lite's default rule (protocol §4.6).

        (protocol.md cites couchbase-lite-C 3.1.10/3.2.0; the older ConflictResolver.cc in the
        public index simply keeps the local revision. The double follows protocol.md.)

        Deleted wins, then the higher generation, then the higher revision ID. The remote branch
        always continues: a local win becomes a new revision, child of the remote one, with the
        local body (a tombstone if local was deleted). Returns the new revision ID, if any.
        """
        doc = self._docs[doc_id]
        remote = doc.revs[remote_rev_id]
        locals_ = [r for r in doc.sorted_revs() if r.rev_id != remote_rev_id and not r.closed]
        parents = doc.children()
        local = next(
            (r for r in locals_ if r.rev_id not in parents and r.rev_id not in doc.ancestry(remote_rev_id)), None
        )
        if local is None:
            return None
        if remote.deleted:
            local_wins = False
        elif local.deleted:
            local_wins = True
        else:
            local_wins = _rev_key(local.rev_id) > _rev_key(remote.rev_id)
        local.closed = True
        for rev_id in doc.ancestry(remote_rev_id):
            doc.revs[rev_id].conflict = False
        if not local_wins:
            self._changed(doc, origin=None)
            return None
        return self._add_local(doc_id, remote_rev_id, copy.deepcopy(local.body or {}), deleted=local.deleted)

    # -- blobs -------------------------------------------------------------------------------

    def add_blob(self, data: bytes, content_type: str | None = None) -> dict[str, Any]:
        """Store content; return the blob dictionary to put in a body (protocol §4.4)."""
        digest = self.store_blob(data, content_type)
        blob: dict[str, Any] = {"@type": "blob", "digest": digest, "length": len(data)}
        if content_type is not None:
            blob["content_type"] = content_type
        return blob

    def store_blob(self, data: bytes, content_type: str | None = None) -> str:
        digest = blob_digest(data)
        self._blobs.setdefault(digest, (bytes(data), content_type))
        return digest

    def blob(self, digest: str) -> bytes | None:
        entry = self._blobs.get(digest)
        return entry[0] if entry else None

    def has_blob(self, digest: str) -> bool:
        return digest in self._blobs

    # -- observers ---------------------------------------------------------------------------

    def add_observer(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``callback`` after every change; returns a function that removes it."""
        self._observers.append(callback)
        return lambda: self._observers.remove(callback) if callback in self._observers else None

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait, without polling, until ``predicate()`` holds after some change."""
        if predicate():
            return
        reached = asyncio.get_running_loop().create_future()

        def check(_change: Change) -> None:
            if not reached.done() and predicate():
                reached.set_result(None)

        remove = self.add_observer(check)
        try:
            await asyncio.wait_for(reached, timeout)
        finally:
            remove()

    def _changed(self, doc: _Doc, *, origin: object | None) -> None:
        self.last_sequence += 1
        doc.sequence = self.last_sequence
        doc.origin = origin
        row = self._row(doc)
        for observer in list(self._observers):
            observer(row)
