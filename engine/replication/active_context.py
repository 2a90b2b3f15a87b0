"""What the workers of one active replication connection share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.database import Database
from engine.errors import EngineError
from engine.replication.blip.socket import BlipSocket
from engine.replication.db_runner import DbRunner
from engine.replication.remote_revisions import RemoteRevisions
from engine.replication.replicator_types import ReplicatorConfiguration

__all__ = ["ActiveContext"]


@dataclass
class ActiveContext:
    """The connection, the database and the bookkeeping shared by Pusher, Puller and Checkpointer."""

    socket: BlipSocket
    db: Database
    runner: DbRunner
    config: ReplicatorConfiguration
    #: called with (push?, doc ID, rev ID, deleted?, error) for every document that went across or failed
    report: Callable[[bool, str, str, bool, EngineError | None], None]
    #: called whenever work starts or finishes, to recompute idle/busy and progress (once per loop turn)
    touch: Callable[[], None]
    #: called when a worker meets an error that ends the connection (e.g. 403 on a push)
    fail: Callable[[BaseException], None]
    #: the revision of each document the peer is known to hold (stored in the database)
    remote: RemoteRevisions
    completed: int = 0
    total: int = 0
