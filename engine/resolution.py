"""Resolving a document's conflict in the database with a resolver (protocol §4.5-4.6)."""

from __future__ import annotations

import logging
from typing import Any

from engine.conflicts import Conflict, ConflictResolver, Resolution, default_resolver
from engine.database import Database
from engine.database_sync import KEEP
from engine.documents import Document
from engine.errors import ConflictError, EngineError
from engine.revid import compare_key
from engine.revtree import RevTree

__all__ = ["resolve_document"]

log = logging.getLogger(__name__)

#: Attempts before giving up when the document keeps changing underneath.
MAX_ATTEMPTS = 10


def _common_ancestor(tree: RevTree, a: str, b: str) -> str | None:
    other = set(tree.history(b))
    return next((rev for rev in tree.history(a) if rev in other), None)


def _conflict(db: Database, tree: RevTree, doc_id: str, local_rev: str, remote_rev: str) -> Conflict:
    local, remote = db.get_revision(doc_id, local_rev), db.get_revision(doc_id, remote_rev)
    ancestor = _common_ancestor(tree, local_rev, remote_rev)
    base = db.get_revision(doc_id, ancestor) if ancestor else None
    return Conflict(
        doc_id,
        local_rev,
        remote_rev,
        None if local is None or local.deleted else local,
        None if remote is None or remote.deleted else remote,
        None if base is None or base.deleted else base.body,
    )


def resolve_document(
    db: Database, doc_id: str, remote_rev_id: str, resolver: ConflictResolver = default_resolver
) -> Document | None:
    """Resolve the conflict a peer's revision ``remote_rev_id`` caused, if there is one.

    The local side is the best other live leaf. Returns the document after
    resolution, or None when there was nothing to resolve.

    Raises:
        EngineError: the resolver failed or the document kept changing.
    """
    symmetric = bool(getattr(resolver, "symmetric", False))
    resolved: Document | None = None
    for _ in range(MAX_ATTEMPTS):
        tree = db.get_tree(doc_id)
        if tree is None:
            return resolved
        leaves = tree.leaves()
        remote = next((n for n in leaves if n.rev_id == remote_rev_id), None)
        local = next((n for n in leaves if n.rev_id != remote_rev_id and not n.deleted), None)
        if local is None:
            return resolved
        if remote is None:  # the remote revision was already resolved: continue with the winner
            remote = leaves[0]
            if remote.rev_id == local.rev_id:
                return resolved
        conflict = _conflict(db, tree, doc_id, local.rev_id, remote.rev_id)
        try:
            result = resolver(conflict)
        except Exception as exc:
            raise EngineError(f"conflict resolver failed for {doc_id!r}: {exc}") from exc
        keep, close = remote.rev_id, local.rev_id
        if symmetric and compare_key(local.rev_id) > compare_key(remote.rev_id):
            keep, close = close, keep
        try:
            resolved = db.resolve_conflict(doc_id, keep=keep, close=close, merged=_merged(conflict, result, keep))
        except ConflictError:
            continue
        remote_rev_id = resolved.rev_id
        log.debug("resolved a conflict on %r as %s", doc_id, resolved.rev_id)
    raise EngineError(f"document {doc_id!r} kept changing while its conflict was resolved")


def _merged(conflict: Conflict, result: Resolution, keep: str) -> Any:
    """What to add on top of ``keep``: KEEP (nothing), a body, or None (a deletion)."""
    kept = conflict.remote if keep == conflict.remote_rev_id else conflict.local
    if result is None:
        return None if kept is not None else KEEP
    body = result.body if isinstance(result, Document) else result
    if kept is not None and body == kept.body:
        return KEEP
    return body
