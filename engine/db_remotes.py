"""What each remote database holds: the revision of every document known to be on it.

A replicator proposes a change with ``parentRevID`` = the revision the peer
holds (protocol §3.6); a Couchbase Lite peer refuses anything else with a bare
409 (§9). So, as LiteCore does, the database remembers per remote database the
revision known to be there, durably: set when a revision is pushed, pulled, or
offered by the peer while we already have it. Remotes are numbered on first
use (LiteCore's remote DB IDs); records live in the ``remotes`` sub-database
under ``number (4 bytes, big-endian) + doc ID``.

What a push leaves on the peer is noted at once and written behind, in
batches (a commit per pushed revision would cost a disk flush each): a noted
revision counts as held, for reads and for pruning, from the moment it is
noted, so that local saves made before its record is written cannot prune
the revision the next push starts from.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from engine.db_core import DatabaseCore
from engine.documents import check_doc_id
from engine.lmdb_store import Txn

__all__ = ["REMOTES_DB", "RemoteTracking", "remote_key"]

#: the sub-database of these records: remote number (4 bytes, big-endian) + doc ID -> rev ID
REMOTES_DB = "remotes"
_NAME_PREFIX = b"remote:"
_COUNT_KEY = b"remote_count"


def remote_key(remote_id: int, raw_id: bytes) -> bytes:
    """The ``remotes`` key of a document on remote number ``remote_id``."""
    return remote_id.to_bytes(4, "big") + raw_id


class RemoteTracking(DatabaseCore):
    """The revisions known to be on each remote database (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: noted, not yet written: remote number -> raw doc ID -> rev ID
        self._noted: dict[int, dict[bytes, str]] = {}
        self._noted_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def remote_id(self, remote: str) -> int:
        """The number of the remote database named ``remote`` (a URL or a peer's ID), made on first use."""
        name = _NAME_PREFIX + remote.encode()
        with self._store.read() as txn:
            known = txn.get("meta", name)
        if known is not None:
            return int(known)

        def create(txn: Txn) -> int:
            existing = txn.get("meta", name)
            if existing is not None:
                return int(existing)
            number = int(txn.get("meta", _COUNT_KEY) or b"0") + 1
            txn.put("meta", _COUNT_KEY, b"%d" % number)
            txn.put("meta", name, b"%d" % number)
            return number

        return self._store.write(create)

    def remote_revisions(self, remote_id: int, doc_ids: Sequence[str]) -> list[str | None]:
        """For each document, the revision known to be on remote ``remote_id`` (None: unknown)."""
        with self._store.read() as txn:
            return [self._remote_revision_in(txn, remote_id, check_doc_id(doc_id)) for doc_id in doc_ids]

    def note_remote_revision(self, remote_id: int, doc_id: str, rev_id: str) -> int:
        """Remember that remote ``remote_id`` holds ``rev_id``; return how many such notes wait.

        The note counts at once (reads, pruning); its record is written by the
        next :meth:`write_noted_remote_revisions`.
        """
        raw_id = check_doc_id(doc_id)
        with self._noted_lock:
            noted = self._noted.setdefault(remote_id, {})
            noted[raw_id] = rev_id
            return len(noted)

    def write_noted_remote_revisions(self, remote_id: int) -> int:
        """Write what was noted about remote ``remote_id``, in one transaction; return how many records.

        It changes no document, so observers hear nothing. A note made while
        the write runs (from another thread) stays noted for the next one.
        """
        with self._noted_lock:
            batch = dict(self._noted.get(remote_id, {}))
        if not batch:
            return 0

        def write(txn: Txn) -> None:
            for raw_id, rev_id in batch.items():
                txn.put(REMOTES_DB, remote_key(remote_id, raw_id), rev_id.encode())

        self._store.write(write)
        with self._noted_lock:
            noted = self._noted.get(remote_id, {})
            for raw_id, rev_id in batch.items():
                if noted.get(raw_id) == rev_id:
                    del noted[raw_id]
            if not noted:
                self._noted.pop(remote_id, None)
        return len(batch)

    def forget_remote(self, remote_id: int) -> int:
        """Forget everything known about remote ``remote_id`` (a reset); return the number of records dropped."""
        prefix = remote_id.to_bytes(4, "big")
        with self._noted_lock:
            self._noted.pop(remote_id, None)

        def drop(txn: Txn) -> int:
            keys = [key for key, _ in txn.items_prefix(REMOTES_DB, prefix)]
            for key in keys:
                txn.delete(REMOTES_DB, key)
            return len(keys)

        return self._store.write(drop)

    def _remote_revision_in(self, txn: Txn, remote_id: int, raw_id: bytes, *, noted: bool = True) -> str | None:
        """Inside a transaction: the revision remote ``remote_id`` holds of a document (noted or
        written; only written with ``noted`` False)."""
        if noted and self._noted:
            with self._noted_lock:
                rev_id = self._noted.get(remote_id, {}).get(raw_id)
            if rev_id is not None:
                return rev_id
        value = txn.get(REMOTES_DB, remote_key(remote_id, raw_id))
        return None if value is None else value.decode()

    def _stored_remote_revisions(self, remote_id: int, raw_ids: Iterable[bytes]) -> None:
        """After a commit that wrote these documents' records for ``remote_id`` (pulled revisions): the
        records are the latest knowledge, so earlier notes about them go."""
        with self._noted_lock:
            noted = self._noted.get(remote_id)
            if noted:
                for raw_id in raw_ids:
                    noted.pop(raw_id, None)

    def _revisions_on_remotes(self, txn: Txn, raw_id: bytes) -> set[str]:
        """The revision each remote is known to hold of a document: pruning keeps them (§4.2).

        The next push to that remote names it as the parent and sends a history
        that reaches it, however many local edits were made in between, as
        LiteCore does; without it the peer would refuse the revision as a conflict.
        """
        count = int(txn.get("meta", _COUNT_KEY) or b"0")
        found = (txn.get(REMOTES_DB, remote_key(number, raw_id)) for number in range(1, count + 1))
        held = {value.decode() for value in found if value is not None}
        if self._noted:  # what is noted and not written yet counts too; the older record stays until replaced
            with self._noted_lock:
                held.update(noted[raw_id] for noted in self._noted.values() if raw_id in noted)
        return held

    def _forget_document(self, txn: Txn, raw_id: bytes) -> None:
        """Inside a write: drop what every remote was known to hold of a purged document."""
        count = int(txn.get("meta", _COUNT_KEY) or b"0")
        for number in range(1, count + 1):
            txn.delete(REMOTES_DB, remote_key(number, raw_id))
        with self._noted_lock:
            for noted in self._noted.values():
                noted.pop(raw_id, None)
