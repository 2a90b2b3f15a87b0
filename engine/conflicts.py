"""Concurrency control for local saves and conflict resolution rules (protocol §4.5-4.6)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

from engine.documents import Document
from engine.revid import compare_key

__all__ = [
    "ConcurrencyControl",
    "Conflict",
    "ConflictHandler",
    "ConflictResolver",
    "Resolution",
    "default_resolver",
]


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
