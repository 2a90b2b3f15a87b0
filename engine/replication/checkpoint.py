"""Replication checkpoints (protocol §6): what they hold, their IDs, and sequence bookkeeping.

Pure values and functions: no database, no network.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.json_codec import canonical

__all__ = ["Checkpoint", "RemoteSequences", "checkpoint_id", "reconcile"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far a replication got: ``local`` (every local sequence up to it pushed)
    and ``remote`` (the peer's sequence up to which every ``changes`` row was handled)."""

    local: int = 0
    remote: Any = None
    time: int = field(default=0, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The JSON body exchanged with ``getCheckpoint``/``setCheckpoint``."""
        out: dict[str, Any] = {"time": self.time or int(time.time())}
        if self.local:
            out["local"] = self.local
        if self.remote is not None:
            out["remote"] = self.remote
        return out

    @classmethod
    def from_json(cls, value: Any) -> Checkpoint:
        """Read a checkpoint body leniently; anything unusable counts as missing."""
        if not isinstance(value, dict):
            return cls()
        local = value.get("local", 0)
        if not isinstance(local, int) or isinstance(local, bool) or local < 0:
            local = 0
        stamp = value.get("time", 0)
        return cls(local, value.get("remote"), stamp if isinstance(stamp, int) else 0)


def checkpoint_id(local_uuid: bytes, remote: str, filters: Sequence[Any] = ()) -> str:
    """A stable checkpoint ID per (local database, remote, filter settings), shaped like LiteCore's."""
    material = canonical([local_uuid.hex(), remote, *filters])
    return "cp-" + base64.b64encode(hashlib.sha1(material, usedforsecurity=False).digest()).decode()


def reconcile(local: Checkpoint | None, remote: Checkpoint | None) -> Checkpoint:
    """Where to start when the local copy and the peer's copy disagree (protocol §6).

    No local checkpoint starts from scratch. Otherwise the lower ``local``
    wins, and the lower ``remote`` when both are numbers; a non-numeric
    mismatch resets ``remote``. Redoing a little work is harmless.
    """
    if local is None:
        return Checkpoint()
    if remote is None:
        return Checkpoint(0, None)
    local_seq = min(local.local, remote.local)
    if local.remote == remote.remote:
        remote_seq = local.remote
    elif _is_number(local.remote) and _is_number(remote.remote):
        remote_seq = min(local.remote, remote.remote)
    else:
        remote_seq = None
    return Checkpoint(local_seq, remote_seq)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class RemoteSequences:
    """Sequences in arrival order; reports the last one before which everything is done.

    Used for both directions: the puller adds the peer's ``changes`` rows, the
    pusher its own feed rows. Sequences are compared by their JSON form, so
    any JSON value works (Sync Gateway sends strings).
    """

    def __init__(self, start: Any = None) -> None:
        self._pending: OrderedDict[Any, tuple[Any, bool]] = OrderedDict()
        self.checkpoint: Any = start

    def __len__(self) -> int:
        return sum(1 for _, done in self._pending.values() if not done)

    def add(self, seq: Any, *, done: bool = False) -> None:
        """Note a sequence (in order); ``done`` when it needs no work."""
        self._pending[seq if seq.__class__ is int else _key(seq)] = (seq, done)
        if done:
            self._advance()

    def add_all(self, sequences: Iterable[tuple[Any, bool]]) -> None:
        """Note ``(sequence, done)`` pairs, in order: :meth:`add` for many (a ``changes`` message's rows)."""
        pending = self._pending
        for seq, done in sequences:
            pending[seq if seq.__class__ is int else _key(seq)] = (seq, done)
        self._advance()

    def complete(self, seq: Any) -> None:
        """Mark a sequence handled."""
        key = seq if seq.__class__ is int else _key(seq)  # the usual sequence first: once per revision
        if key in self._pending:
            self._pending[key] = (seq, True)
            self._advance()

    def complete_all(self, sequences: Iterable[Any]) -> None:
        """:meth:`complete` for many (the rows of a ``changes`` message that need no work)."""
        pending = self._pending
        for seq in sequences:
            key = seq if seq.__class__ is int else _key(seq)
            if key in pending:
                pending[key] = (seq, True)
        self._advance()

    def _advance(self) -> None:
        pending = self._pending
        while pending:
            key = next(iter(pending))
            seq, done = pending[key]
            if not done:
                return
            self.checkpoint = seq
            del pending[key]


def _key(seq: Any) -> Any:
    """A dictionary key for a sequence: itself when hashable and unambiguous, else its JSON."""
    if isinstance(seq, str) or (isinstance(seq, int) and not isinstance(seq, bool)):
        return seq
    return canonical(seq).decode()
