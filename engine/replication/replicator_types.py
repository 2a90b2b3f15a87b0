"""Values of the replicator's API: its configuration, status and document events."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Protocol
from urllib.parse import SplitResult, urlsplit

from engine.conflicts import ConflictResolver, default_resolver
from engine.database import Database
from engine.documents import Document
from engine.errors import EngineError
from engine.replication import tuning
from engine.replication.auth import BasicAuthenticator
from engine.replication.errors import ConfigurationError, ReplicationError
from engine.replication.server_validation import ServerValidation
from engine.replication.tls import TLSIdentity

__all__ = [
    "ActivityLevel",
    "DocumentReplication",
    "EndpointResolver",
    "Progress",
    "ReplicatedDocument",
    "ReplicatorConfiguration",
    "ReplicatorStatus",
    "ReplicatorType",
    "check_url",
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
    """Activity, progress and the last error; offline, the seconds until the next attempt."""

    activity: ActivityLevel = ActivityLevel.STOPPED
    progress: Progress = Progress()
    error: ReplicationError | None = None
    retry_in: float | None = None


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


class EndpointResolver(Protocol):
    """Where a replicator connects, asked again before every connection attempt.

    A replicator bound to a discovered peer has one
    (:class:`engine.replication.discovery.PeerEndpoint`), so that it follows
    the peer to another address or port.
    """

    async def resolve(self, *, after_failure: bool) -> str:
        """The URL to connect to now; ``after_failure``: the previous attempt did not get through.

        Raises:
            ReplicationError: no URL now (a TransportError is retried later).
        """
        ...

    async def wait_announced(self) -> None:
        """Return when the peer is announced again (a replicator waiting to retry then goes at once)."""
        ...


@dataclass
class ReplicatorConfiguration:
    """How to replicate a database with a listener (like Couchbase Lite's).

    ``max_attempts`` 0 means the default: 10 for a one-shot replication,
    unlimited for a continuous one. ``heartbeat`` is the WebSocket ping
    interval in seconds. ``remote_name`` identifies the remote database for
    checkpoints and for the revisions known to be there (default: the URL);
    give a stable name when the same peer may be reached at several URLs.
    ``tls`` says how a ``wss://`` listener's certificate is validated (see
    :class:`ServerValidation`), ``client_identity`` is the certificate and key
    to present to a listener that asks for one.
    ``endpoint`` gives the URL of each connection attempt (``url`` is the
    first); it needs ``remote_name``, so that the checkpoint follows the peer
    and not its address.

    Raises:
        ConfigurationError: the URL cannot be used (see :func:`check_url`).
    """

    database: Database
    url: str
    type: ReplicatorType = ReplicatorType.PUSH_AND_PULL
    continuous: bool = False
    authenticator: BasicAuthenticator | None = None
    tls: ServerValidation | None = None
    client_identity: TLSIdentity | None = None
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
    remote_name: str | None = None
    endpoint: EndpointResolver | None = None

    def __post_init__(self) -> None:
        check_url(self.url, tls=self.tls is not None)
        if self.client_identity is not None and self.tls is None:
            raise ConfigurationError(f"{self.url}: a client identity needs wss:// and TLS settings")
        if self.endpoint is not None and not self.remote_name:
            raise ConfigurationError("a replicator that follows a peer needs remote_name (its peer ID)")

    @property
    def remote_identity(self) -> str:
        """The name of the remote database: ``remote_name``, else the URL."""
        return self.remote_name or self.url

    @property
    def attempts_allowed(self) -> float:
        """Connection attempts before giving up."""
        if self.max_attempts > 0:
            return self.max_attempts
        return float("inf") if self.continuous else tuning.ONE_SHOT_MAX_ATTEMPTS


def check_url(url: str, *, tls: bool) -> None:
    """Check that a replicator can use ``url`` before anything connects.

    Raises:
        ConfigurationError: not ``ws://`` or ``wss://``, no host, a port that
            is not a number from 1 to 65535, a malformed IPv6 address,
            credentials inside the URL (they belong in the authenticator:
            both would be sent), no database name, or a scheme that does not
            match the TLS setting (``wss://`` needs one, ``ws://`` none).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:  # a malformed IPv6 address
        raise ConfigurationError(f"invalid URL {url!r}: {exc}") from None
    try:
        port = parts.port
    except ValueError:  # out of range, or not a number
        raise ConfigurationError(f"invalid URL {url!r}: the port is not a number from 1 to 65535") from None
    if parts.scheme not in ("ws", "wss"):
        raise ConfigurationError(f"invalid URL {url!r}: use ws:// or wss://")
    if not host:
        raise ConfigurationError(f"invalid URL {url!r}: no host")
    if port == 0:
        raise ConfigurationError(f"invalid URL {url!r}: port 0 cannot be connected to")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(f"invalid URL {_without_credentials(parts)!r}: give credentials separately, not in it")
    if not parts.path.strip("/"):
        raise ConfigurationError(f"invalid URL {url!r}: it names no database (ws://host:port/<db>)")
    if parts.scheme == "wss" and not tls:
        raise ConfigurationError(f"{url}: wss:// needs TLS settings (or use ws:// for a listener without TLS)")
    if parts.scheme == "ws" and tls:
        raise ConfigurationError(f"{url}: TLS settings given for a ws:// URL (use wss://)")


def _without_credentials(parts: SplitResult) -> str:
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"
