"""The conflict a resolver sees (engine.conflicts): sides and common ancestor."""

from __future__ import annotations

import hashlib
from typing import Any

from engine.conflicts import KEEP, resolve_document
from engine.documents import Document
from engine.revtree import RevTree


def rid(gen: int, tag: str) -> str:
    return f"{gen}-{hashlib.sha1(tag.encode()).hexdigest()}"


class View:
    """A ConflictView over one tree and a few bodies; records the resolution asked for."""

    def __init__(self, tree: RevTree, bodies: dict[str, dict[str, Any]], held: str | None) -> None:
        self.tree, self.bodies, self.held = tree, bodies, held
        self.resolved: list[tuple[str, str, Any]] = []

    def get_tree(self, doc_id: str) -> RevTree | None:
        return self.tree if not self.resolved else None  # resolved once: nothing left to do

    def get_revision(self, doc_id: str, rev_id: str) -> Document | None:
        body = self.bodies.get(rev_id)
        return None if body is None else Document(doc_id, rev_id, dict(body))

    def peer_revision(self, doc_id: str) -> str | None:
        return self.held

    def resolve_conflict(self, doc_id: str, *, keep: str, close: str, merged: Any = KEEP) -> Document:
        self.resolved.append((keep, close, merged))
        return Document(doc_id, keep, {})


def test_a_common_ancestor_without_a_body_falls_back_to_what_the_peer_held() -> None:
    """The placeholder both lines share says nothing about the content: the revision the peer was
    known to hold, on our line, is the base the resolver merges from."""
    root, held, local, remote = rid(1, "root"), rid(2, "held"), rid(3, "local"), rid(2, "remote")
    tree = RevTree()
    tree.insert_with_history(local, [held, root], deleted=False, sequence=1)  # root: a placeholder
    tree.insert_with_history(remote, [root], deleted=False, sequence=2)
    bodies = {held: {"n": 1}, local: {"n": 1, "mine": 1}, remote: {"n": 2}}
    seen: list[dict[str, Any] | None] = []

    def resolver(conflict: Any) -> Any:
        seen.append(conflict.base)
        return conflict.remote

    resolve_document(View(tree, bodies, held), "doc", remote, resolver)
    assert seen == [{"n": 1}]
    resolve_document(View(tree, bodies, None), "doc", remote, resolver)  # nothing known: no base
    assert seen[-1] is None
