"""The active side of a pull: LiteCore's Puller and RevFinder::findRevs (protocol §3.4, §3.5, §3.7, §3.8).

``subChanges`` with ``batch=200``, ``versioning=rev-trees``, ``revocations=true``, ``activeOnly``
for an empty database without checkpoint and ``continuous`` when continuous (§9). Each
``changes`` row is answered from :meth:`PeerStore.find_ancestors`: ``[]`` or up to 10 known
ancestors (current first, lower generation, with bodies) for a revision it needs, 0 for one it has
— marking that revision as the remote's (RevFinder calls ``setDocRemoteAncestor``). Replies say
``maxHistory=20``, ``blobs=true`` and, the first time, ``deltas=true``. While 200 requested
revisions are outstanding further ``changes`` wait (tuning::kMaxPendingRevs).

The key strictness (§3.7, §9): the puller counts the revisions it asked for, per document and
revision. A ``rev`` or ``norev`` for anything not asked for — including a second one for the same
row — is what makes LiteCore assert "underflow decrementing _pendingRevMessages" and close with
4002; the double records it and does the same. A received conflicting revision is accepted and
resolved with the default rule (§4.6) after the ``rev`` is answered.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from tests.litecore_peer.blip import Message
from tests.litecore_peer.connection import BlipConnection
from tests.litecore_peer.incoming import IncomingRevs
from tests.litecore_peer.store import AT_THIS_REMOTE, LOCAL_IS_OLDER

if TYPE_CHECKING:
    from tests.litecore_peer.active import StrictReplicator

__all__ = ["ActivePuller"]

log = logging.getLogger(__name__)

#: tuning::kMaxPendingRevs, tuning::kChangesBatchSize, kMaxPossibleAncestors (ReplicatorTuning.hh)
MAX_PENDING_REVS = 200
BATCH_SIZE = 200
MAX_ANCESTORS = 10
_LITECORE_REMOTE_ERROR = 26


class ActivePuller:
    """Pulls from the peer into the replicator's store over one connection."""

    def __init__(self, repl: StrictReplicator, conn: BlipConnection, *, since: Any, active_only: bool) -> None:
        self.repl = repl
        self.store = repl.store
        self.conn = conn
        self.since = since
        self.active_only = active_only
        self.pending: Counter[tuple[str, str]] = Counter()
        self.caught_up = False
        self.failed = False
        self._row_sequences: dict[tuple[str, str], list[str]] = {}
        self._sequences: dict[str, bool] = {}
        self._waiting: deque[Message] = deque()
        self._active_incoming = 0
        self._announced_deltas = False
        self.incoming = IncomingRevs(conn, self.store, passive=False, no_incoming_conflicts=False, origin=repl)
        conn.register("changes", self._on_changes)
        conn.register("rev", self._on_rev)
        conn.register("norev", self._on_norev)

    @property
    def busy(self) -> bool:
        return not self.caught_up or sum(self.pending.values()) > 0 or self._active_incoming > 0 or bool(self._waiting)

    @property
    def checkpoint_remote(self) -> Any:
        """The remote sequence every earlier row is done up to (RemoteSequenceSet::since)."""
        last = self.since
        for sequence, done in self._sequences.items():
            if not done:
                break
            last = json.loads(sequence)
        return last

    async def start(self, *, continuous: bool) -> None:
        """Send ``subChanges`` (Puller::_start)."""
        props: list[tuple[str, str]] = []
        if self.since is not None:
            props.append(("since", json.dumps(self.since)))
        if continuous:
            props.append(("continuous", "true"))
        props += [("batch", str(BATCH_SIZE)), ("versioning", "rev-trees"), ("revocations", "true")]
        if self.active_only:
            props.append(("activeOnly", "true"))
        reply = await self.conn.request("subChanges", props)
        if reply.is_error:
            self.failed = True
            self.repl.errors.append(f"subChanges refused: {reply.error}")
            self.repl.changed()

    # -- changes (Puller::handleChanges, RevFinder::findRevs) ------------------------------------

    def _on_changes(self, msg: Message) -> None:
        self._waiting.append(msg)
        self._handle_more_changes()

    def _handle_more_changes(self) -> None:
        while self._waiting and sum(self.pending.values()) < MAX_PENDING_REVS and self.conn.is_open:
            self._handle_changes(self._waiting.popleft())
        self.repl.changed()

    def _handle_changes(self, msg: Message) -> None:
        rows = msg.json()
        if rows is None and msg.body != b"null":
            self.conn.reply_error(msg, "BLIP", 400, "Invalid JSON body")
            return
        if not rows:
            self.caught_up = True  # an empty list: caught up (sent NoReply)
            self.conn.reply(msg)
            return
        if not isinstance(rows, list):
            self.conn.reply_error(msg, "BLIP", 400, "Invalid JSON body")
            return
        if msg.no_reply:
            self.repl.notes.append(f"pointless NoReply changes message with {len(rows)} rows")
            return
        answers: list[Any] = []
        for row in rows:
            answer = self._find_rev(row)
            if answer is None:
                self.conn.reply_error(msg, "LiteCore", _LITECORE_REMOTE_ERROR, "Invalid entry in incoming change list")
                return
            answers.append(answer)
        while answers and answers[-1] == 0:
            answers.pop()
        props = [("maxHistory", "20"), ("blobs", "true")]
        if not self._announced_deltas:
            props.append(("deltas", "true"))
            self._announced_deltas = True
        self.conn.reply(msg, props, json.dumps(answers, separators=(",", ":")).encode(), compressed=True)

    def _find_rev(self, row: Any) -> Any:
        if not (isinstance(row, list) and len(row) >= 3 and isinstance(row[1], str) and isinstance(row[2], str)):
            self.conn.violation(f"changes row {row!r} is not [sequence, docID, revID, deleted?, bodySize?]")
            return None
        sequence, doc_id, rev_id = json.dumps(row[0]), row[1], row[2]
        if not 1 <= len(doc_id.encode()) <= 255 or "-" not in rev_id:
            self.conn.violation(f"Invalid docID/revID '{doc_id}' #{rev_id} in incoming change list")
            return None
        flags = row[3] if len(row) > 3 else 0
        flags = int(flags) if isinstance(flags, (bool, int)) else 0
        self._sequences[sequence] = False
        if flags > 1 and flags != 5:
            # Revoked or removed from the user's channels (SG): not requested.
            self._sequences[sequence] = True
            return 0
        status, ancestors = self.store.find_ancestors(
            doc_id, rev_id, remote=self.repl.url, max_ancestors=MAX_ANCESTORS, require_bodies=True
        )
        if status & LOCAL_IS_OLDER:
            self.pending[(doc_id, rev_id)] += 1
            self._row_sequences.setdefault((doc_id, rev_id), []).append(sequence)
            return ancestors or []
        self._sequences[sequence] = True
        if not status & AT_THIS_REMOTE:
            self.store.set_remote_ancestor(self.repl.url, doc_id, rev_id)
            if self.repl.pusher is not None:
                self.repl.pusher.remote_ancestor_changed(doc_id, rev_id)
        return 0

    # -- revisions (Puller::handleRev / handleNoRev, IncomingRev) --------------------------------

    def _take(self, msg: Message, kind: str) -> tuple[str, str] | None:
        key = (msg.get("id") or "", msg.get("rev") or "")
        if self.pending[key] <= 0:
            self.conn.violation(
                f"unsolicited {kind} {key[0]} {key[1]}: not requested in a changes reply, or already received "
                "(LiteCore: 'Assertion failed: underflow decrementing _pendingRevMessages', closes with 4002)"
            )
            return None
        self.pending[key] -= 1
        return key

    def _complete(self, key: tuple[str, str]) -> None:
        sequences = self._row_sequences.get(key)
        if sequences:
            self._sequences[sequences.pop(0)] = True

    async def _on_rev(self, msg: Message) -> None:
        key = self._take(msg, "rev")
        if key is None:
            return
        self._active_incoming += 1
        try:
            result = await self.incoming.receive(msg)
        finally:
            self._active_incoming -= 1
        if result.resend_expected:
            self.pending[key] += 1  # Puller::revReRequested: the peer sends it again, whole
        else:
            self._complete(key)
        if result.ok:
            self.repl.pulled += 1
            self.store.set_remote_ancestor(self.repl.url, *key)
            if self.store.is_conflicted(key[0]):
                new_rev = self.store.resolve_conflict(key[0], key[1])
                self.repl.resolved.append((key[0], key[1], new_rev))
        else:
            self.repl.notes.append(f"rev {key[0]} {key[1]} refused: {result.error}")
        self._handle_more_changes()

    def _on_norev(self, msg: Message) -> None:
        key = self._take(msg, "norev")
        if key is None:
            return
        self._complete(key)
        self.conn.reply(msg)
        self._handle_more_changes()
