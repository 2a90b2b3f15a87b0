"""RevFinder: what to ask of a peer's ``changes`` and what to accept of its ``proposeChanges`` (protocol §3.5-3.6).

Pure decisions over what the database holds (revision trees, current
revisions), read in one snapshot by the caller; named after LiteCore's
``RevFinder``, whose rules these are (``findRevs``, ``findProposedChange``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from engine.replication import tuning
from engine.revid import generation
from engine.revtree import RevTree

__all__ = ["Proposal", "find_left_behind", "find_proposed", "find_revs"]


class Proposal(NamedTuple):
    """The answer to one proposed change (§3.6): a status and our current revision."""

    status: int
    current_rev_id: str | None


def find_revs(trees: Sequence[RevTree | None], rows: Sequence[tuple[str, str]]) -> list[list[str] | None]:
    """For each ``(doc ID, rev ID)`` a peer offers: None if we have it, else what we know (§3.5).

    What we know is our leaf revisions with stored bodies and a lower
    generation, current first (at most ``tuning.MAX_KNOWN_ANCESTORS``), which
    the sender uses as history stops and delta bases; ``[]`` for an unknown
    document. ``trees`` holds each row's document tree.
    """
    out: list[list[str] | None] = []
    for tree, (_, rev_id) in zip(trees, rows, strict=True):
        if tree is None:
            out.append([])
            continue
        node = tree.get(rev_id)
        if node is not None and node.has_body:
            out.append(None)
            continue
        gen = generation(rev_id)
        known = [n.rev_id for n in tree.leaves() if n.has_body and n.generation < gen]
        out.append(known[: tuning.MAX_KNOWN_ANCESTORS])
    return out


def find_left_behind(trees: Sequence[RevTree | None], rows: Sequence[tuple[str, str]]) -> list[bool]:
    """For offered revisions we already have: whether each is off our current branch (to resolve again)."""
    return [tree is not None and tree.is_left_behind(rev_id) for tree, (_, rev_id) in zip(trees, rows, strict=True)]


def find_proposed(
    currents: Sequence[tuple[str, bool] | None], rows: Sequence[tuple[str, str, str | None]]
) -> list[Proposal]:
    """Decide each ``(doc ID, rev ID, parent rev ID)`` a peer proposes to push (§3.6, LiteCore's rule).

    ``currents`` holds each document's ``(current rev ID, deleted)`` or None.
    304 when our current revision is that revision; 0 (send it) when our
    current revision is the parent, or there is no parent and we have no
    document or a deleted one; 409 (conflict) otherwise.
    """
    out: list[Proposal] = []
    for current, (_, rev_id, parent) in zip(currents, rows, strict=True):
        if current is None:
            out.append(Proposal(0 if not parent else 409, None))
            continue
        current_rev, deleted = current
        if current_rev == rev_id:
            out.append(Proposal(304, current_rev))
        elif current_rev == parent or (not parent and deleted):
            out.append(Proposal(0, current_rev))
        else:
            out.append(Proposal(409, current_rev))
    return out
