"""Conflicts: how local saves meet concurrent changes, and how a peer's conflicting revision is resolved.

* Local saves: :class:`ConcurrencyControl` and :data:`ConflictHandler`.
* Conflicts with a peer (protocol §4.5-4.6): the :class:`Conflict` a resolver
  sees, Couchbase Lite's :func:`default_resolver`, and :func:`resolve_document`,
  which finds the two branches, asks the resolver and applies its answer
  through a :class:`ConflictView` (the database, or the transaction that
  stores the peer's revision). Storing the result is the database's job
  (``resolve_conflict``); the list's own merge rule lives with the list
  (:mod:`engine.inventory_merge`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

from engine.documents import Document
from engine.errors import ConflictError, EngineError
from engine.revid import compare_key
from engine.revtree import RevTree

__all__ = [
    "KEEP",
    "ConcurrencyControl",
    "Conflict",
    "ConflictHandler",
    "ConflictResolver",
    "ConflictView",
    "Resolution",
    "default_resolver",
    "resolve_document",
]

log = logging.getLogger(__name__)

#: Attempts before giving up when the document keeps changing underneath.
MAX_ATTEMPTS = 10


class ConcurrencyControl(IntEnum):
    """What a local save does when the document changed since it was read."""

    LAST_WRITE_WINS = 0  #: save anyway, on top of the current revision
    FAIL_ON_CONFLICT = 1  #: raise ConflictError


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two branches of one document: the local one and the one a peer sent.

    ``local`` or ``remote`` is None when that side is a deletion. ``base`` is
    the body of their nearest common ancestor when it is still stored.
    """

    doc_id: str
    local_rev_id: str
    remote_rev_id: str
    local: Document | None
    remote: Document | None
    base: dict[str, Any] | None = None


#: What a resolver returns: the ``remote`` or ``local`` Document of the
#: conflict, a new body (a merge), or None for a deletion.
Resolution = Document | dict[str, Any] | None


class ConflictResolver(Protocol):
    """Chooses the result of a conflict.

    The result is applied as Couchbase Lite applies it (§4.6): the remote
    branch continues, so the next push to the (passive) peer is a plain
    fast-forward. A resolver whose result does not depend on which side is
    local gives every peer the same body for the same conflict.
    """

    def __call__(self, conflict: Conflict, /) -> Resolution: ...


#: A local-save conflict handler: ``(my_body, current_document)`` returns the
#: body to save on top of the current revision, or None to give up.
ConflictHandler = Callable[[dict[str, Any], Document | None], dict[str, Any] | None]


def default_resolver(conflict: Conflict) -> Resolution:
    """Couchbase Lite's rule (protocol §4.6): deletion wins, then the higher
    generation, then the higher revision ID (byte-wise)."""
    local, remote = conflict.local, conflict.remote
    if local is None or remote is None:
        return None
    if compare_key(local.rev_id) > compare_key(remote.rev_id):
        return local
    return remote


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


#: Pass as ``merged`` to :meth:`SyncOperations.resolve_conflict` to keep the kept leaf's body as is.
KEEP: Any = _Keep()


class ConflictView(Protocol):
    """What resolving a conflict needs from a database: a Database, or one transaction of it."""

    def get_tree(self, doc_id: str) -> RevTree | None: ...

    def get_revision(self, doc_id: str, rev_id: str) -> Document | None: ...

    def peer_revision(self, doc_id: str) -> str | None:
        """The revision the peer whose revision is being resolved was known to hold before it.

        A common ancestor when the two histories do not meet (one side pruned
        the revisions in between); None when unknown.
        """
        ...

    def resolve_conflict(
        self, doc_id: str, *, keep: str, close: str, merged: dict[str, Any] | None = KEEP
    ) -> Document: ...


def _conflict(db: ConflictView, tree: RevTree, doc_id: str, local_rev: str, remote_rev: str) -> Conflict:
    local, remote = db.get_revision(doc_id, local_rev), db.get_revision(doc_id, remote_rev)
    ancestor = tree.common_ancestor(local_rev, remote_rev)
    base = db.get_revision(doc_id, ancestor) if ancestor else None
    if base is None:  # no common ancestor with a body: what the peer held, if on our line, is one
        held = db.peer_revision(doc_id)
        if held is not None and held != ancestor and held in tree.history(local_rev):
            base = db.get_revision(doc_id, held)
    return Conflict(
        doc_id,
        local_rev,
        remote_rev,
        None if local is None or local.deleted else local,
        None if remote is None or remote.deleted else remote,
        None if base is None or base.deleted else base.body,
    )


def resolve_document(
    db: ConflictView, doc_id: str, remote_rev_id: str, resolver: ConflictResolver = default_resolver
) -> Document | None:
    """Resolve the conflict a peer's revision ``remote_rev_id`` caused, if there is one.

    ``db`` is a Database, or the transaction that stores the revision (see
    :meth:`~engine.database_sync.SyncOperations.insert_revisions`).

    The local side is the best other live leaf. Returns the document after
    resolution, or None when there was nothing to resolve.

    Raises:
        EngineError: the resolver failed or the document kept changing.
    """
    resolved: Document | None = None
    for _ in range(MAX_ATTEMPTS):
        tree = db.get_tree(doc_id)
        remote = tree.get(remote_rev_id) if tree is not None else None
        if tree is None or remote is None:
            return resolved
        # the local side: the best live leaf that is not on the remote revision's own line
        local = next(
            (n for n in tree.leaves() if not n.deleted and remote_rev_id not in tree.history(n.rev_id)),
            None,
        )
        if local is None:
            return resolved
        conflict = _conflict(db, tree, doc_id, local.rev_id, remote_rev_id)
        leaf_ids = {n.rev_id for n in tree.leaves()}
        try:
            if (
                conflict.local is not None
                and conflict.remote is not None
                and conflict.local.body == conflict.remote.body
            ):
                # Same content on both branches: every peer keeps the higher revision, so that
                # peers syncing in any order and direction settle on one branch.
                keep, close = sorted((local.rev_id, remote_rev_id), key=compare_key, reverse=True)
                if close not in leaf_ids:
                    return resolved  # already settled that way
                resolved = db.resolve_conflict(doc_id, keep=keep, close=close)
            else:
                try:
                    result = resolver(conflict)
                except Exception as exc:
                    raise EngineError(f"conflict resolver failed for {doc_id!r}: {exc}") from exc
                # protocol §4.6: the remote branch continues, so the next push is a fast-forward
                merged = _merged(conflict, result)
                resolved = db.resolve_conflict(doc_id, keep=remote_rev_id, close=local.rev_id, merged=merged)
        except ConflictError:
            continue
        remote_rev_id = resolved.rev_id
        log.debug("resolved a conflict on %r as %s", doc_id, resolved.rev_id)
    raise EngineError(f"document {doc_id!r} kept changing while its conflict was resolved")


def _merged(conflict: Conflict, result: Resolution) -> Any:
    """What to add on top of the remote revision: KEEP (nothing), a body, or None (a deletion)."""
    kept = conflict.remote
    if result is None:
        return None if kept is not None else KEEP
    body = result.body if isinstance(result, Document) else result
    if kept is not None and body == kept.body:
        return KEEP
    return body
