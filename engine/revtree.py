"""Revision trees (protocol §4): pure values, no storage.

A document's history is a tree of revisions. Each node knows its parent,
whether it is a deletion (tombstone), whether its body is stored, and the
sequence at which it was added. Leaves are the current revisions of their
branches; more than one live (non-deleted) leaf means the document is in
conflict. The winning revision is the leaf Couchbase Lite would pick: live
before deleted, then the higher generation, then the higher digest (byte-wise);
tombstones that closed a branch during conflict resolution come last.

Replication inserts revisions together with their ancestry (protocol §4.2).
Ancestors the tree has never seen become body-less placeholders, so inserting
the same revisions in any order gives the same tree.

Bodies are kept for leaves and for the ``keep_bodies`` nearest ancestors of
each leaf (what delta sync needs as a base, protocol §5); older bodies are
dropped. Nodes deeper than ``max_depth`` below every leaf are pruned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise

from engine.errors import InvalidDocumentError
from engine.json_codec import loads
from engine.revid import compare_key, generation, parse_rev_id

__all__ = [
    "DEFAULT_KEEP_BODIES",
    "DEFAULT_MAX_DEPTH",
    "InsertStatus",
    "RevNode",
    "RevTree",
    "wire_history",
]

DEFAULT_MAX_DEPTH = 20
DEFAULT_KEEP_BODIES = 1

DELETED = 1
HAS_BODY = 2
CLOSED = 4


class InsertStatus(IntEnum):
    """What :meth:`RevTree.insert_with_history` did."""

    EXISTS = 0  #: the revision was already there with its body
    ADDED = 1  #: a new leaf (or branch) was added
    FILLED = 2  #: a placeholder received its body


@dataclass(slots=True)
class RevNode:
    """One revision in a tree."""

    rev_id: str
    parent: str | None
    deleted: bool
    has_body: bool
    sequence: int
    #: a tombstone that ended a conflicting branch when a conflict was resolved;
    #: it stays on this peer (it never wins, so it is never pushed)
    closed: bool = False

    @property
    def generation(self) -> int:
        """The revision's generation number."""
        return generation(self.rev_id)


def _winner_key(node: RevNode) -> tuple[bool, bool, int, str]:
    return (not node.deleted, not node.closed, *compare_key(node.rev_id))


def _checked_generation(rev_id: str) -> int:
    return parse_rev_id(rev_id)[0]


class RevTree:
    """The revision tree of one document."""

    __slots__ = ("_leaves", "nodes")

    def __init__(self, nodes: Iterable[RevNode] = ()) -> None:
        self.nodes: dict[str, RevNode] = {n.rev_id: n for n in nodes}
        #: the leaves, winner first, until the tree next changes (every change goes
        #: through a method of this class, which drops it)
        self._leaves: list[RevNode] | None = None

    # -- queries -------------------------------------------------------------

    def __contains__(self, rev_id: object) -> bool:
        return rev_id in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, rev_id: str) -> RevNode | None:
        """Return the node for ``rev_id``, or None."""
        return self.nodes.get(rev_id)

    def leaves(self) -> list[RevNode]:
        """Return the leaf revisions, winner first."""
        return list(self._current_leaves())

    def _current_leaves(self) -> list[RevNode]:
        """The remembered leaves (computed when the tree has changed); do not modify."""
        if self._leaves is None:
            if len(self.nodes) == 1:
                self._leaves = list(self.nodes.values())
            else:
                parents = {n.parent for n in self.nodes.values()}
                leaves = [n for n in self.nodes.values() if n.rev_id not in parents]
                if len(leaves) > 1:
                    leaves.sort(key=_winner_key, reverse=True)
                self._leaves = leaves
        return self._leaves

    def winner(self) -> RevNode:
        """Return the winning (current) revision.

        Raises:
            InvalidDocumentError: the tree is empty.
        """
        leaves = self._current_leaves()
        if not leaves:
            raise InvalidDocumentError("empty revision tree")
        return leaves[0]

    def live_leaves(self) -> list[RevNode]:
        """Return the non-deleted leaves, winner first."""
        return [n for n in self.leaves() if not n.deleted]

    def is_conflicted(self) -> bool:
        """Return whether more than one live leaf exists."""
        return sum(1 for n in self._current_leaves() if not n.deleted) > 1

    def history(self, rev_id: str) -> list[str]:
        """Return ``rev_id`` followed by its known ancestors, newest first."""
        out: list[str] = []
        node = self.nodes.get(rev_id)
        while node is not None:
            out.append(node.rev_id)
            node = self.nodes.get(node.parent) if node.parent else None
        return out

    def common_ancestor(self, a: str, b: str) -> str | None:
        """The newest revision on both ``a``'s and ``b``'s lines (None: the lines do not meet)."""
        other = set(self.history(b))
        return next((rev for rev in self.history(a) if rev in other), None)

    def is_ancestor(self, ancestor: str, rev_id: str) -> bool:
        """Return whether ``ancestor`` is ``rev_id`` or one of its ancestors."""
        return ancestor in self.history(rev_id)

    def is_left_behind(self, rev_id: str) -> bool:
        """Whether ``rev_id`` is in the tree but neither the winner nor one of its ancestors.

        Such a revision, offered by a peer, is one we resolved against earlier:
        it is resolved again, so that both sides end up on one branch.
        """
        return rev_id in self.nodes and rev_id not in self.history(self.winner().rev_id)

    # -- changes -------------------------------------------------------------

    def add_child(
        self, parent: str | None, rev_id: str, *, deleted: bool, sequence: int, closed: bool = False
    ) -> RevNode:
        """Add a new revision with a body as a child of ``parent`` (None: a new root).

        Raises:
            InvalidDocumentError: the ID exists, the parent is unknown, or the
                generation is not the parent's plus one.
        """
        gen, _ = parse_rev_id(rev_id)
        if rev_id in self.nodes:
            raise InvalidDocumentError(f"revision {rev_id} already exists")
        if parent is not None:
            if parent not in self.nodes:
                raise InvalidDocumentError(f"parent revision {parent} does not exist")
            if gen != generation(parent) + 1:
                raise InvalidDocumentError(f"revision {rev_id} is not a child of {parent}")
        elif gen != 1 and self.nodes:
            raise InvalidDocumentError(f"revision {rev_id} has no parent")
        node = RevNode(rev_id, parent, deleted, True, sequence, closed)
        self.nodes[rev_id] = node
        self._leaves = None
        return node

    def adopt(self, parent: str, child: str) -> None:
        """Link ``child``, a root whose parent was pruned, to ``parent`` again.

        Nothing changes if either is not in the tree, if ``child`` has a
        parent, or if ``parent`` is not one generation below it.
        """
        node = self.nodes.get(child)
        if node is None or node.parent is not None or parent not in self.nodes:
            return
        if generation(parent) != generation(child) - 1:
            return
        node.parent = parent
        self._leaves = None

    def graft(self, rev_id: str, onto: str) -> bool:
        """Link the root of ``rev_id``'s line to ``onto``, a revision that line is known to go on from.

        For a peer's revision made on ``onto`` (the revision it was known to
        hold) whose history, cut by pruning, stops above it: the link skips
        generations, as :meth:`prune` leaves them, and :func:`wire_history`
        fills them when the line is sent on. Returns False, changing nothing,
        when ``rev_id``'s root is not younger than ``onto`` or ``onto`` is on
        the same line.
        """
        node = self.nodes.get(rev_id)
        if node is None or onto not in self.nodes:
            return False
        while node.parent is not None:
            if node.parent == onto:
                return False
            node = self.nodes[node.parent]
        if node.rev_id == onto or generation(node.rev_id) <= generation(onto):
            return False
        node.parent = onto
        self._leaves = None
        return True

    def reopen(self, rev_id: str) -> list[str]:
        """Remove the closing tombstones under ``rev_id``; return their IDs.

        Afterwards ``rev_id`` is a leaf again unless it has other children.
        """
        removed = [n.rev_id for n in self.nodes.values() if n.parent == rev_id and n.closed]
        parents = {n.parent for n in self.nodes.values()}
        removed = [r for r in removed if r not in parents]
        for rev in removed:
            del self.nodes[rev]
        self._leaves = None
        return removed

    def insert_with_history(
        self,
        rev_id: str,
        history: Sequence[str],
        *,
        deleted: bool,
        sequence: int,
        ids_checked: bool = False,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> InsertStatus:
        """Insert a revision received from a peer, with its ancestors (protocol §4.2).

        ``history`` lists the ancestors newest first, without ``rev_id``.
        Unknown ancestors become placeholders without bodies. ``ids_checked``:
        the caller has validated every ID; only the generations are checked.
        Generations decrease by one, except that, as LiteCore allows, a
        history may skip generations where it is ``max_depth`` long already
        (what pruning would remove anyway): a sender whose tree was pruned
        sends the peer's revision last, past the gap (:func:`wire_history`).
        Past the first revision held here, as in LiteCore's
        ``RevTree::findCommonAncestor`` (which stops there), generations
        need only go down.

        Raises:
            InvalidDocumentError: an ID is invalid or the generations do not
                decrease by exactly one above that depth and that revision.
        """
        chain = [rev_id, *history]
        generation_of = generation if ids_checked else _checked_generation
        above = generation_of(rev_id)
        self._leaves = None
        first_held = -1  # where the chain first meets this tree, looked for at the first skip only
        for index, ancestor in enumerate(history, start=1):
            gen = generation_of(ancestor)
            if gen != above - 1:
                if first_held < 0:
                    first_held = next((i for i, held in enumerate(chain) if held in self.nodes), len(chain))
                if not (gen < above and (index >= max_depth - 1 or first_held < index)):
                    raise InvalidDocumentError(f"history of {rev_id} skips a generation at {ancestor}")
            above = gen
        existing = self.nodes.get(rev_id)
        if existing is not None and existing.has_body:
            status = InsertStatus.EXISTS
        elif existing is not None:
            existing.deleted = deleted
            existing.has_body = True
            existing.sequence = sequence
            status = InsertStatus.FILLED
        else:
            self.nodes[rev_id] = RevNode(rev_id, None, deleted, True, sequence)
            status = InsertStatus.ADDED
        for child_id, parent_id in pairwise(chain):
            child = self.nodes[child_id]
            if child.parent is not None:
                break
            child.parent = parent_id
            if parent_id in self.nodes:
                parent = self.nodes[parent_id]
                if parent.parent is not None or parent_id == chain[-1]:
                    break
            else:
                self.nodes[parent_id] = RevNode(parent_id, None, False, False, sequence)
        return status

    def drop_bodies(self, keep_bodies: int = DEFAULT_KEEP_BODIES) -> list[str]:
        """Forget bodies no longer needed; return the revisions whose body to delete.

        A body is needed by a leaf and by the ``keep_bodies`` nearest ancestors
        of each leaf (:meth:`restore_bodies` keeps others after all).
        """
        if len(self.nodes) == 1:
            return []
        needed: set[str] = set()
        for leaf in self.leaves():
            node: RevNode | None = leaf
            for _ in range(keep_bodies + 1):
                if node is None:
                    break
                needed.add(node.rev_id)
                node = self.nodes.get(node.parent) if node.parent else None
        dropped = []
        for node in self.nodes.values():
            if node.has_body and node.rev_id not in needed:
                node.has_body = False
                dropped.append(node.rev_id)
        return dropped

    def restore_bodies(self, rev_ids: Collection[str]) -> None:
        """Keep the bodies of ``rev_ids`` after all (what a remote holds: the common ancestor of a later
        conflict with it), undoing :meth:`drop_bodies` for them."""
        for rev_id in rev_ids:
            self.nodes[rev_id].has_body = True

    def prune(self, max_depth: int = DEFAULT_MAX_DEPTH, keep: Collection[str] = ()) -> list[str]:
        """Remove revisions more than ``max_depth`` generations below every leaf.

        Revisions in ``keep`` stay however deep they are (LiteCore keeps each
        remote database's current revision out of pruning, so that the next
        push can still name it as an ancestor, §4.2): a surviving revision whose
        parent is removed is linked to its nearest surviving ancestor, and
        becomes a root if there is none. Such a link skips generations;
        :func:`wire_history` fills the gap when a history is sent.
        Returns the removed revision IDs.
        """
        if len(self.nodes) <= max_depth:
            return []
        nodes = self.nodes
        survivors: set[str] = {rev for rev in keep if rev in nodes}
        for leaf in self.leaves():
            node: RevNode | None = leaf
            depth = 0
            while node is not None and depth < max_depth:
                survivors.add(node.rev_id)
                node = nodes.get(node.parent) if node.parent else None
                depth += 1
        removed = [rev for rev in nodes if rev not in survivors]
        if not removed:
            return []
        gone = set(removed)
        for rev in survivors:
            node = nodes[rev]
            parent = node.parent
            while parent is not None and parent in gone:
                parent = nodes[parent].parent
            node.parent = parent if parent in nodes else None
        for rev in removed:
            del nodes[rev]
        self._leaves = None
        return removed

    # -- encoding ------------------------------------------------------------

    def encode(self) -> bytes:
        """Serialize the tree as JSON rows ``[rev_id, parent index, flags, sequence]``.

        Rows keep the tree's own order (decoding does not depend on it; sorting
        them cost a tenth of a save). Revision IDs are validated ASCII without
        quotes, so the rows are formatted directly.
        """
        nodes = self.nodes.values()
        index = {rev_id: i for i, rev_id in enumerate(self.nodes)} if len(self.nodes) > 1 else {}
        rows = ",".join(
            f'["{n.rev_id}",{-1 if n.parent is None else index.get(n.parent, -1)},'
            f"{(DELETED if n.deleted else 0) | (HAS_BODY if n.has_body else 0) | (CLOSED if n.closed else 0)},"
            f"{n.sequence}]"
            for n in nodes
        )
        return ("[" + rows + "]").encode()

    @staticmethod
    def encode_single(rev_id: str, *, deleted: bool, sequence: int) -> bytes:
        """What :meth:`encode` gives for a tree of one revision with its body (no tree built)."""
        return b'[["%s",-1,%d,%d]]' % (rev_id.encode(), (DELETED if deleted else 0) | HAS_BODY, sequence)

    @classmethod
    def decode(cls, data: bytes) -> RevTree:
        """Inverse of :meth:`encode`."""
        rows = loads(data)
        ids = [row[0] for row in rows]
        tree = cls()
        tree.nodes = {
            rev: RevNode(rev, None if p < 0 else ids[p], bool(f & DELETED), bool(f & HAS_BODY), seq, bool(f & CLOSED))
            for rev, p, f, seq in rows
        }
        return tree

    def shape(self) -> frozenset[tuple[str, str | None, bool, bool, bool]]:
        """The tree's structure without sequences (for comparisons)."""
        return frozenset((n.rev_id, n.parent, n.deleted, n.has_body, n.closed) for n in self.nodes.values())


#: How far a history may go to reach the revision the peer holds (LiteCore's receivers keep
#: 20 revisions, or more when configured so; a gap is accepted only that deep)
HISTORY_REACH = 100


def wire_history(rev_id: str, ancestors: Sequence[str], known: Collection[str], max_history: int) -> list[str]:
    """The ``history`` to send with ``rev_id`` (protocol §4.2), as LiteCore's sender builds it.

    ``ancestors`` are the revision's ancestors in the tree, newest first.
    Without a revision of ``known`` (those the peer holds) among them, the
    history is their first ``max_history`` entries. With one, it goes back to
    it, the peer's revision last, so that the peer can attach the new
    revisions to it: every real ancestor on the way is sent (a tree holds at
    most its pruning depth of them, besides what remotes hold), and
    generations that pruning skipped (:meth:`RevTree.prune` links a line to
    the revision a remote holds) are filled with made-up IDs in LiteCore's
    form ``<gen>-faded000<16 hex>``, which the receiver stores as body-less
    placeholders, so long as the history stays within :data:`HISTORY_REACH`
    entries; past that the rest of the line follows a gap, which receivers
    accept at their pruning depth (:meth:`RevTree.insert_with_history`).
    Made-up IDs are derived from the revisions on both sides of the gap, not
    random: a revision is always sent the same way, and two branches never
    share made-up ancestors.
    """
    path: list[str] = []  # the way back to a revision the peer holds, gaps filled
    above, above_id = generation(rev_id), rev_id
    for ancestor in ancestors:
        gen = generation(ancestor)
        if gen < above - 1:
            seed = hashlib.sha1(f"{above_id}|{ancestor}".encode(), usedforsecurity=False).hexdigest()
            for missing in range(above - 1, gen, -1):
                if len(path) >= HISTORY_REACH - 1:  # room left for the peer's revision
                    break
                filler = hashlib.sha1(f"{seed}{missing}".encode(), usedforsecurity=False).hexdigest()[:16]
                path.append(f"{missing}-faded000{filler}")
        above, above_id = gen, ancestor
        path.append(ancestor)
        if ancestor in known:
            return path
    return path[:max_history]
