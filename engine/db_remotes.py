"""What each remote database holds: the revision of every document known to be on it.

A replicator proposes a change with ``parentRevID`` = the revision the peer
holds (protocol §3.6); a Couchbase Lite peer refuses anything else with a bare
409 (§9). So, as LiteCore does, the database remembers per remote database the
revision known to be there, durably: set when a revision is pushed, pulled, or
offered by the peer while we already have it. Remotes are numbered on first
use (LiteCore's remote DB IDs); records live in the ``remotes`` sub-database
under ``number (4 bytes, big-endian) + doc ID``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
        out: list[str | None] = []
        with self._store.read() as txn:
            for doc_id in doc_ids:
                value = txn.get(REMOTES_DB, remote_key(remote_id, check_doc_id(doc_id)))
                out.append(None if value is None else value.decode())
        return out

    def set_remote_revisions(self, remote_id: int, revisions: Iterable[tuple[str, str]]) -> None:
        """Remember ``(doc ID, rev ID)`` pairs as being on remote ``remote_id``, in one transaction.

        It changes no document, so observers hear nothing.
        """
        rows = [(remote_key(remote_id, check_doc_id(doc_id)), rev_id.encode()) for doc_id, rev_id in revisions]
        if not rows:
            return

        def write(txn: Txn) -> None:
            for key, value in rows:
                txn.put(REMOTES_DB, key, value)

        self._store.write(write)

    def forget_remote(self, remote_id: int) -> int:
        """Forget everything known about remote ``remote_id`` (a reset); return the number of records dropped."""
        prefix = remote_id.to_bytes(4, "big")

        def drop(txn: Txn) -> int:
            keys = [key for key, _ in txn.items_prefix(REMOTES_DB, prefix)]
            for key in keys:
                txn.delete(REMOTES_DB, key)
            return len(keys)

        return self._store.write(drop)

    def _revisions_on_remotes(self, txn: Txn, raw_id: bytes) -> set[str]:
        """The revision each remote is known to hold of a document: pruning keeps them (§4.2).

        The next push to that remote names it as the parent and sends a history
        that reaches it, however many local edits were made in between, as
        LiteCore does; without it the peer would refuse the revision as a conflict.
        """
        count = int(txn.get("meta", _COUNT_KEY) or b"0")
        found = (txn.get(REMOTES_DB, remote_key(number, raw_id)) for number in range(1, count + 1))
        return {value.decode() for value in found if value is not None}

    @staticmethod
    def _forget_document(txn: Txn, raw_id: bytes) -> None:
        """Inside a write: drop what every remote was known to hold of a purged document."""
        count = int(txn.get("meta", _COUNT_KEY) or b"0")
        for number in range(1, count + 1):
            txn.delete(REMOTES_DB, remote_key(number, raw_id))
