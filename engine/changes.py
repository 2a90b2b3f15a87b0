"""Values describing changes to a database: feed rows and observer notifications."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

__all__ = ["ChangeEntry", "ChangeSource", "Changes"]


class ChangeSource(IntEnum):
    """Where a change came from."""

    LOCAL = 0  #: saved on this machine (app, command line)
    REMOTE = 1  #: received from a peer by replication
    #: committed by another process on the same database files (seen by
    #: :meth:`~engine.db_core.DatabaseCore.poll_external_changes`)
    EXTERNAL = 2


class ChangeEntry(NamedTuple):
    """One row of a changes feed: the latest change of one document (ours, or a peer's, protocol §3.5).

    ``sequence`` is our integer sequence, or whatever JSON value a peer uses;
    ``removed``: the peer's user lost access to the document (a peer's row only).
    A named tuple: millions of them pass through a large replication.
    """

    sequence: Any
    doc_id: str
    rev_id: str
    deleted: bool = False
    body_size: int = 0
    removed: bool = False


@dataclass(frozen=True, slots=True)
class Changes:
    """Everything one committed transaction changed.

    Observers receive exactly one ``Changes`` per transaction of this
    process, after commit; what other processes committed arrives as one
    EXTERNAL ``Changes`` per announcement. A transaction that stores a peer's
    revisions and resolves the conflicts they cause is one REMOTE ``Changes``.
    ``doc_ids`` lists each changed document once, in the order of the changes;
    ``purged`` lists documents removed without a tombstone.
    """

    doc_ids: tuple[str, ...]
    source: ChangeSource
    last_sequence: int
    remote: str | None = None
    purged: tuple[str, ...] = ()

    @property
    def is_local(self) -> bool:
        """Whether the change was made on this machine."""
        return self.source is ChangeSource.LOCAL
