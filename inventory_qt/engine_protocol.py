"""The messages between the app and its sync engine (a child process, or a thread): no Qt, no I/O.

The app's window runs in one process and the listener and replicators in
another (:mod:`inventory_qt.engine_host`), so that their Python work never
holds the GIL the GUI thread needs (docs/notes.md, the desktop app). They
talk over a :func:`multiprocessing.Pipe` with these small frozen values,
pickled by the pipe:

* app to engine: :class:`Hello` first (the database, the user, the password:
  the password travels only here, never on a command line), then commands;
  those with a ``req`` number are answered by one :class:`Reply` carrying the
  same number;
* engine to app: replies and events (listener status and clients, each
  replicator's status, the documents the engine committed, log records).

Exceptions do not pickle faithfully (keyword-only constructor arguments,
``__cause__`` dropped), yet :func:`inventory_qt.errors.describe_error` and
the Browser tab need their type and attributes (a refused certificate's
``trust_key`` and fingerprint, an HTTP status): :func:`encode_error` turns
one into an :class:`ErrorInfo` (type name, args, plain attributes, cause)
and :func:`decode_error` builds it again, only for exception classes of the
engine, the app and the standard library; anything else comes back as a
:class:`RemoteError` with the same words.
"""

from __future__ import annotations

import builtins
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.changes import Changes, ChangeSource
from engine.replication.errors import ReplicationError
from engine.replication.listener import ConnectionEvent, ListenerStatus
from engine.replication.replicator_types import ActivityLevel, Progress, ReplicatorStatus
from inventory_qt.settings import ListenerSettings, ReplicatorSettings

__all__ = [
    "Committed",
    "ConnectPeer",
    "DisconnectPeer",
    "EngineStoppedError",
    "ErrorInfo",
    "Hello",
    "ListenerClient",
    "ListenerInfo",
    "ListenerStatusEvent",
    "LogLine",
    "Poke",
    "RemoteError",
    "RemovePeer",
    "ReplicatorStatusEvent",
    "Reply",
    "Shutdown",
    "StartListener",
    "StopListener",
    "decode_error",
    "encode_error",
]

#: Modules whose exception classes :func:`decode_error` rebuilds (prefixes end with a dot).
_DECODABLE = ("builtins", "ssl", "socket", "asyncio.", "asyncio", "engine.", "inventory_qt.")
#: How deep a chain of causes is kept.
_MAX_CAUSES = 4


class RemoteError(ReplicationError):
    """An error of the engine process whose type the app does not rebuild: its words only."""


class EngineStoppedError(ReplicationError):
    """The sync engine's process ended unexpectedly; starting or connecting again starts a new one."""


# -- errors --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception as plain values: ``module:qualname``, args, plain attributes, its cause."""

    type: str
    args: tuple[Any, ...]
    text: str
    attrs: Mapping[str, Any] = field(default_factory=dict)
    cause: ErrorInfo | None = None


_DROP = object()


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` made of None, bool, int, float, str, bytes, tuples and dicts; ``_DROP`` if it cannot be."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if depth > 3:
        return _DROP
    if isinstance(value, tuple | list):
        items = [_plain(v, depth + 1) for v in value]
        return _DROP if any(v is _DROP for v in items) else tuple(items)
    if isinstance(value, Mapping):
        pairs = {str(k): _plain(v, depth + 1) for k, v in value.items()}
        return _DROP if any(v is _DROP for v in pairs.values()) else pairs
    return _DROP


def encode_error(exc: BaseException, _depth: int = 0) -> ErrorInfo:
    """``exc`` as an :class:`ErrorInfo` that pickles (see the module docstring)."""
    kind = type(exc)
    args = _plain(exc.args)
    attrs: dict[str, Any] = {}
    for name, value in getattr(exc, "__dict__", {}).items():
        plain = _plain(value)
        if plain is not _DROP and not name.startswith("__"):
            attrs[name] = plain
    if isinstance(exc, OSError):  # members, not in __dict__ (args hold no file name)
        for name in ("errno", "strerror", "filename", "filename2"):
            attrs[name] = _plain(getattr(exc, name))
    cause = exc.__cause__
    return ErrorInfo(
        type=f"{kind.__module__}:{kind.__qualname__}",
        args=(str(exc),) if args is _DROP else args,
        text=str(exc),
        attrs=attrs,
        cause=encode_error(cause, _depth + 1) if cause is not None and _depth < _MAX_CAUSES else None,
    )


def _exception_class(name: str) -> type[BaseException] | None:
    module_name, _, qualname = name.partition(":")
    if not any(module_name == p or (p.endswith(".") and module_name.startswith(p)) for p in _DECODABLE):
        return None
    # only modules this process has loaded already: a name from the pipe never imports anything
    target: Any = builtins if module_name == "builtins" else sys.modules.get(module_name)
    try:
        for part in qualname.split("."):
            target = getattr(target, part)
    except AttributeError:
        return None
    return target if isinstance(target, type) and issubclass(target, BaseException) else None


def decode_error(info: ErrorInfo) -> BaseException:
    """The exception :func:`encode_error` described: same type, args and attributes, cause included."""
    kind = _exception_class(info.type)
    exc: BaseException
    try:
        if kind is None:
            raise TypeError(info.type)
        exc = kind.__new__(kind, *info.args)  # no __init__: its signature is the class's own business
        exc.args = info.args
        for name, value in info.attrs.items():
            if not name.startswith("__"):
                setattr(exc, name, value)
    except Exception:  # a type we do not rebuild: its words are what the user needs
        exc = RemoteError(info.text)
    if info.cause is not None:
        exc.__cause__ = decode_error(info.cause)
    return exc


# -- app to engine -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message: the database directory, the signed-in user and their password, the log level."""

    path: str
    user: str
    password: str = field(repr=False)
    log_level: int = logging.WARNING
    #: :data:`inventory_qt.engine_config.THREADED_DATABASE` of the app (benchmarks change it)
    threaded_database: bool = False
    #: seconds between the engine's own looks for the app's commits (None: the engine's default);
    #: a :class:`Poke` makes it look at once whatever this is
    external_changes_interval: float | None = None


@dataclass(frozen=True, slots=True)
class StartListener:
    """Start the listener with these settings (``host``: one address only); answered with ListenerInfo."""

    req: int
    settings: ListenerSettings
    host: str | None = None


@dataclass(frozen=True, slots=True)
class StopListener:
    """Close every connection and free the port."""

    req: int


@dataclass(frozen=True, slots=True)
class ConnectPeer:
    """Start (or resume) the continuous replication ``key`` with ``url``; made on first use. No reply:
    its status events tell."""

    key: int
    url: str
    settings: ReplicatorSettings
    remote_name: str | None = None
    reset_checkpoint: bool = False
    #: a discovered peer: followed by its peer ID (``remote_name``) wherever it listens, found by a
    #: browser of the engine's own on ``interfaces`` (None: every interface)
    follow: bool = False
    interfaces: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class DisconnectPeer:
    """Stop replication ``key``, keeping it (and its checkpoint)."""

    req: int
    key: int


@dataclass(frozen=True, slots=True)
class RemovePeer:
    """Stop replication ``key`` and forget it."""

    req: int
    key: int


@dataclass(frozen=True, slots=True)
class Poke:
    """The app committed to the database: look for other processes' commits now, not at the next poll."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Stop everything, close the database, answer, end."""

    req: int


# -- engine to app -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to command ``req``: a value, or the error it raised."""

    req: int
    value: Any = None
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class ListenerInfo:
    """A started listener: what the Listener tab shows."""

    urls: tuple[str, ...]
    port: int | None
    fingerprint: str | None
    #: the address it was asked to listen on (None: every address), and the database name it serves:
    #: what its advert says
    host: str | None = None
    database_name: str = ""


@dataclass(frozen=True, slots=True)
class ListenerStatusEvent:
    """The listener's connected and active client counts."""

    connection_count: int
    active_connection_count: int

    @classmethod
    def of(cls, status: ListenerStatus) -> ListenerStatusEvent:
        return cls(status.connection_count, status.active_connection_count)

    def status(self) -> ListenerStatus:
        return ListenerStatus(self.connection_count, self.active_connection_count)


@dataclass(frozen=True, slots=True)
class ListenerClient:
    """A client connected or left."""

    connected: bool
    peer: str
    user: str | None
    close_code: int | None = None

    @classmethod
    def of(cls, event: ConnectionEvent) -> ListenerClient:
        return cls(event.connected, event.peer, event.user, event.close_code)

    def event(self) -> ConnectionEvent:
        return ConnectionEvent(self.connected, self.peer, self.user, self.close_code)


@dataclass(frozen=True, slots=True)
class ReplicatorStatusEvent:
    """Replication ``key``'s status, and the documents it pulled so far."""

    key: int
    activity: int
    completed: int
    total: int
    error: ErrorInfo | None
    retry_in: float | None
    pulled: int = 0

    @classmethod
    def of(cls, key: int, status: ReplicatorStatus, pulled: int = 0) -> ReplicatorStatusEvent:
        error = encode_error(status.error) if status.error is not None else None
        progress = status.progress
        return cls(key, int(status.activity), progress.completed, progress.total, error, status.retry_in, pulled)

    def status(self) -> ReplicatorStatus:
        error = decode_error(self.error) if self.error is not None else None
        if error is not None and not isinstance(error, ReplicationError):
            error = RemoteError(str(error))
        return ReplicatorStatus(
            ActivityLevel(self.activity), Progress(self.completed, self.total), error, self.retry_in
        )


@dataclass(frozen=True, slots=True)
class Committed:
    """The engine committed a transaction (pulled documents...): the app's views re-read at once."""

    doc_ids: tuple[str, ...]
    source: int
    last_sequence: int
    purged: tuple[str, ...] = ()

    @classmethod
    def of(cls, changes: Changes) -> Committed:
        return cls(changes.doc_ids, int(changes.source), changes.last_sequence, changes.purged)

    def changes(self) -> Changes:
        return Changes(self.doc_ids, ChangeSource(self.source), self.last_sequence, purged=self.purged)


@dataclass(frozen=True, slots=True)
class LogLine:
    """A log record of the engine process, formatted there (no arguments cross the pipe)."""

    name: str
    level: int
    message: str
