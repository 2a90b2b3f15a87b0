"""Values of the replicator's API: its configuration, status and document events."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum

from engine.conflicts import ConflictResolver, default_resolver
from engine.database import Database
from engine.documents import Document
from engine.errors import EngineError
from engine.replication import tuning
from engine.replication.auth import BasicAuthenticator
from engine.replication.errors import ReplicationError

__all__ = [
    "ActivityLevel",
    "DocumentReplication",
    "Progress",
    "ReplicatedDocument",
    "ReplicatorConfiguration",
    "ReplicatorStatus",
    "ReplicatorType",
]

#: A push or pull filter: ``(document, deleted)`` -> whether to replicate it.
Filter = Callable[[Document, bool], bool]


class ReplicatorType(Enum):
    """Which directions to replicate."""

    PUSH = "push"
    PULL = "pull"
    PUSH_AND_PULL = "push-and-pull"

    @property
    def pushes(self) -> bool:
        """Whether local changes are sent."""
        return self is not ReplicatorType.PULL

    @property
    def pulls(self) -> bool:
        """Whether the peer's changes are fetched."""
        return self is not ReplicatorType.PUSH


class ActivityLevel(IntEnum):
    """What a replicator is doing."""

    STOPPED = 0
    OFFLINE = 1
    CONNECTING = 2
    IDLE = 3
    BUSY = 4


@dataclass(frozen=True, slots=True)
class Progress:
    """Revisions done out of those known to need work so far."""

    completed: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class ReplicatorStatus:
    """Activity, progress and the last error."""

    activity: ActivityLevel = ActivityLevel.STOPPED
    progress: Progress = Progress()
    error: ReplicationError | None = None


@dataclass(frozen=True, slots=True)
class ReplicatedDocument:
    """One document that went across (or failed to)."""

    id: str
    rev_id: str
    deleted: bool = False
    error: EngineError | None = None


@dataclass(frozen=True, slots=True)
class DocumentReplication:
    """Documents replicated in one direction, reported together."""

    push: bool
    documents: tuple[ReplicatedDocument, ...]


@dataclass
class ReplicatorConfiguration:
    """How to replicate a database with a listener (like Couchbase Lite's).

    ``max_attempts`` 0 means the default: 10 for a one-shot replication,
    unlimited for a continuous one. ``heartbeat`` is the WebSocket ping
    interval in seconds.
    """

    database: Database
    url: str
    type: ReplicatorType = ReplicatorType.PUSH_AND_PULL
    continuous: bool = False
    authenticator: BasicAuthenticator | None = None
    tls: ssl.SSLContext | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    heartbeat: float = tuning.PING_INTERVAL
    max_attempts: int = 0
    max_attempt_wait: float = tuning.RETRY_MAX_WAIT
    doc_ids: frozenset[str] | None = None
    push_filter: Filter | None = None
    pull_filter: Filter | None = None
    conflict_resolver: ConflictResolver = default_resolver
    enable_deltas: bool = True
    threaded_database: bool = False

    @property
    def attempts_allowed(self) -> float:
        """Connection attempts before giving up."""
        if self.max_attempts > 0:
            return self.max_attempts
        return float("inf") if self.continuous else tuning.ONE_SHOT_MAX_ATTEMPTS
