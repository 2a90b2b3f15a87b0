"""Values describing changes to a database: feed rows and observer notifications."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["ChangeEntry", "ChangeSource", "Changes"]


class ChangeSource(IntEnum):
    """Where a change came from."""

    LOCAL = 0  #: saved on this machine (app, command line)
    REMOTE = 1  #: received from a peer by replication
    #: committed by another process on the same database files (seen by
    #: :meth:`~engine.db_core.DatabaseCore.poll_external_changes`)
    EXTERNAL = 2


@dataclass(frozen=True, slots=True)
class ChangeEntry:
    """One row of the changes feed: the latest change of one document."""

    sequence: int
    doc_id: str
    rev_id: str
    deleted: bool
    body_size: int = 0


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
