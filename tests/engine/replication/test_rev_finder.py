"""RevFinder's decisions (protocol §3.5-3.6, LiteCore's findRevs and findProposedChange)."""

from __future__ import annotations

import hashlib

from engine.database import Database, RevisionInsert
from engine.replication.rev_finder import find_left_behind, find_proposed, find_revs


def rid(gen: int, tag: str) -> str:
    return f"{gen}-{hashlib.sha1(tag.encode()).hexdigest()}"


def revs_diff(db: Database, rows: list[tuple[str, str]]) -> list[list[str] | None]:
    return find_revs(db.read_trees([doc_id for doc_id, _ in rows]), rows)


def test_find_revs(db: Database) -> None:
    first = db.save("a", {"v": 1})
    second = db.save("a", {"v": 2}, base_rev=first.rev_id)
    rows = [("a", second.rev_id), ("a", first.rev_id), ("a", rid(3, "x")), ("new", rid(1, "y"))]
    assert revs_diff(db, rows) == [
        None,
        None,
        [second.rev_id],
        [],
    ]
    assert revs_diff(db, [("a", rid(2, "sibling"))]) == [[]]  # nothing older than generation 2 is a leaf


def test_find_proposed_follows_litecores_decision_rule(db: Database) -> None:
    first = db.save("a", {"v": 1})
    db.save("gone", {})
    db.delete("gone")
    rows: list[tuple[str, str, str | None]] = [
        ("a", first.rev_id, None),
        ("a", rid(2, "next"), first.rev_id),
        ("a", rid(2, "other"), rid(1, "other-parent")),
        ("new", rid(1, "n"), None),
        ("new2", rid(2, "n"), rid(1, "p")),
        ("gone", rid(1, "again"), None),
    ]
    proposals = find_proposed(db.current_revisions([row[0] for row in rows]), rows)
    assert [p.status for p in proposals] == [304, 0, 409, 0, 409, 0]
    assert proposals[2].current_rev_id == first.rev_id


def test_find_left_behind(db: Database) -> None:
    base = db.save("a", {"v": 0})
    mine = db.save("a", {"v": 1}, base_rev=base.rev_id)
    rows = [("a", base.rev_id), ("a", mine.rev_id), ("a", rid(5, "unknown")), ("b", rid(1, "b"))]
    assert find_left_behind(db.read_trees(["a", "a", "a", "b"]), rows) == [False, False, False, False]
    closed = db.insert_revisions([RevisionInsert("a", rid(2, "theirs"), [base.rev_id], {"v": 2})])[0]
    db.resolve_conflict("a", keep=mine.rev_id, close=closed.rev_id)  # we settled on ours once
    assert find_left_behind(db.read_trees(["a"]), [("a", closed.rev_id)]) == [True]
