"""What each remote database holds, remembered durably per remote (LiteCore's remote ancestors)."""

from __future__ import annotations

from pathlib import Path

from engine.conflicts import Conflict, resolve_document
from engine.database import Database, RevisionInsert
from engine.revid import make_rev_id

R1 = make_rev_id(None, False, b'{"n":1}')


def remember(db: Database, remote: int, revisions: list[tuple[str, str]]) -> None:
    """Note ``(doc ID, rev ID)`` pairs as held by ``remote`` and write them, as a replicator does."""
    for doc_id, rev_id in revisions:
        db.note_remote_revision(remote, doc_id, rev_id)
    db.write_noted_remote_revisions(remote)


def test_remotes_are_numbered_once_and_kept(tmp_path: Path) -> None:
    with Database(tmp_path / "db") as db:
        first, second = db.remote_id("ws://a:1/db"), db.remote_id("ws://b:2/db")
        assert first != second
        assert db.remote_id("ws://a:1/db") == first
    with Database(tmp_path / "db") as db:
        assert (db.remote_id("ws://a:1/db"), db.remote_id("ws://b:2/db")) == (first, second)


def test_revisions_per_remote_survive_reopening(tmp_path: Path) -> None:
    with Database(tmp_path / "db") as db:
        a, b = db.remote_id("a"), db.remote_id("b")
        remember(db, a, [("x", "1-aa"), ("y", "2-bb")])
        remember(db, b, [("x", "3-cc")])
        remember(db, a, [("x", "2-dd")])  # a newer one replaces it
    with Database(tmp_path / "db") as db:
        assert db.remote_revisions(a, ["x", "y", "z"]) == ["2-dd", "2-bb", None]
        assert db.remote_revisions(b, ["x", "y"]) == ["3-cc", None]


def test_forgetting_a_remote_leaves_the_others(tmp_path: Path) -> None:
    with Database(tmp_path / "db") as db:
        a, b = db.remote_id("a"), db.remote_id("b")
        remember(db, a, [("x", "1-aa"), ("y", "1-bb")])
        remember(db, b, [("x", "1-cc")])
        assert db.forget_remote(a) == 2
        assert db.remote_revisions(a, ["x", "y"]) == [None, None]
        assert db.remote_revisions(b, ["x"]) == ["1-cc"]


def test_purging_a_document_forgets_it_on_every_remote(db: Database) -> None:
    doc = db.save("x", {"n": 1})
    a, b = db.remote_id("a"), db.remote_id("b")
    remember(db, a, [("x", doc.rev_id), ("y", "1-aa")])
    remember(db, b, [("x", doc.rev_id)])
    db.purge("x")
    assert db.remote_revisions(a, ["x", "y"]) == [None, "1-aa"]
    assert db.remote_revisions(b, ["x"]) == [None]


def test_inserted_revisions_are_marked_in_the_same_commit(db: Database) -> None:
    remote = db.remote_id("peer")
    bad = RevisionInsert("bad", "not-a-rev", [], {})
    results = db.insert_revisions([RevisionInsert("x", R1, [], {"n": 1}), bad], remote_id=remote)
    assert results[0].error is None and results[1].error is not None
    assert db.remote_revisions(remote, ["x", "bad"]) == [R1, None]
    # a revision we already have is the peer's too
    remember(db, remote, [("x", "1-00")])
    db.insert_revisions([RevisionInsert("x", R1, [], {"n": 1})], remote_id=remote)
    assert db.remote_revisions(remote, ["x"]) == [R1]


def test_a_noted_revision_counts_before_it_is_written(tmp_path: Path) -> None:
    """What a push left on the peer is noted at once and written in batches; until then, local saves
    must not prune it (the next push starts from it, §4.2), and reads see it."""
    with Database(tmp_path / "db") as db:
        remote = db.remote_id("peer")
        pushed = db.save("x", {"n": 0})
        remember(db, remote, [("x", pushed.rev_id)])
        noted = db.save("x", {"n": 1})
        assert db.note_remote_revision(remote, "x", noted.rev_id) == 1
        for n in range(2, 40):
            db.save("x", {"n": n})
        tree = db.get_tree("x")
        assert tree is not None and noted.rev_id in tree and pushed.rev_id in tree  # the older record stays too
        assert db.remote_revisions(remote, ["x"]) == [noted.rev_id]
        assert db.write_noted_remote_revisions(remote) == 1
        assert db.write_noted_remote_revisions(remote) == 0  # nothing left to write
        for n in range(40, 80):
            db.save("x", {"n": n})
        tree = db.get_tree("x")
        assert tree is not None and noted.rev_id in tree and pushed.rev_id not in tree
    with Database(tmp_path / "db") as db:
        assert db.remote_revisions(remote, ["x"]) == [noted.rev_id]


def test_notes_go_with_a_pulled_record_a_reset_and_a_purge(db: Database) -> None:
    remote, other = db.remote_id("peer"), db.remote_id("other")
    db.note_remote_revision(remote, "x", "1-00")
    db.insert_revisions([RevisionInsert("x", R1, [], {"n": 1})], remote_id=remote)  # the latest word
    assert db.write_noted_remote_revisions(remote) == 0
    assert db.remote_revisions(remote, ["x"]) == [R1]
    db.note_remote_revision(remote, "y", "1-aa")
    db.note_remote_revision(other, "y", "1-bb")
    db.forget_remote(remote)
    assert db.remote_revisions(remote, ["y"]) == [None]
    db.save("z", {"n": 1})
    db.note_remote_revision(other, "z", "1-cc")
    db.purge("z")
    assert db.remote_revisions(other, ["y", "z"]) == ["1-bb", None]


def line(parent: str, edits: int) -> list[str]:
    """``edits`` revisions made one on the other from ``parent`` (bodies {"n": 1..})."""
    out, rev = [], parent
    for n in range(1, edits + 1):
        rev = make_rev_id(rev, False, b'{"n":%d}' % n)
        out.append(rev)
    return out


def test_a_record_written_earlier_in_the_commit_wins_over_an_older_note(tmp_path: Path) -> None:
    """Two revisions of a document in one batch: the peer's edit B of ours (adding "tea"), then its
    revision 30 edits later ("tea" removed, history cut by pruning). The record B wrote in this
    commit, not the older note of what a push left (ours), says what the peer held: the line goes
    on from B. Before, the note won, the revision was merged with B from ours, and "tea" came back."""

    def merge(conflict: Conflict) -> dict[str, object]:  # keys one side added are kept, as the item merge does
        base, local, remote = conflict.base or {}, conflict.local.body, conflict.remote.body  # type: ignore[union-attr]
        return {**remote, **{k: v for k, v in local.items() if k not in remote and k not in base}}

    with Database(tmp_path / "db") as db:
        remote = db.remote_id("peer")
        ours = db.save("x", {"a": 1}).rev_id
        db.note_remote_revision(remote, "x", ours)  # a push acknowledged, its record not written yet
        b = make_rev_id(ours, False, b'{"a":1,"tea":1}')
        theirs = line(b, 30)
        db.insert_revisions(
            [
                RevisionInsert("x", b, [ours], {"a": 1, "tea": 1}),
                RevisionInsert("x", theirs[-1], list(reversed(theirs[:-1]))[:19], {"a": 1, "n": 30}),
            ],
            remote_id=remote,
            resolve=lambda view, result: resolve_document(view, result.doc_id, result.rev_id, merge),
        )
        doc, tree = db.get("x"), db.get_tree("x")
        assert doc is not None and doc.body == {"a": 1, "n": 30}
        assert tree is not None and not any(node.closed for node in tree.nodes.values())  # nothing resolved


def test_a_line_made_on_a_deletion_the_peer_held_goes_on_from_it(tmp_path: Path) -> None:
    """The peer held our deletion, made the document again on it and edited it past the pruning
    depth: its line is linked to the deletion, so another peer holding the deletion takes the push
    as an edit. Before, the line stayed a separate root and that peer refused it (409), every time."""
    with Database(tmp_path / "client") as client, Database(tmp_path / "second") as second:
        made = client.save("x", {"n": 0}).rev_id
        deleted = client.delete("x").rev_id
        first_id, second_id = client.remote_id("first"), client.remote_id("second")
        for remote in (first_id, second_id):
            remember(client, remote, [("x", deleted)])
        second.insert_revisions([RevisionInsert("x", made, [], {"n": 0})])
        second.insert_revisions([RevisionInsert("x", deleted, [made], {}, deleted=True)])
        theirs = line(deleted, 30)
        client.insert_revisions(
            [RevisionInsert("x", theirs[-1], list(reversed(theirs[:-1]))[:19], {"n": 30})],
            remote_id=first_id,
            resolve=lambda view, result: resolve_document(view, result.doc_id, result.rev_id),
        )
        sent = client.revision_for_sync("x", theirs[-1], known=[deleted], max_history=20)
        assert sent is not None and sent.history[-1] == deleted
        pushed = RevisionInsert("x", theirs[-1], sent.history, {"n": 30}, no_conflicts=True)
        assert second.insert_revisions([pushed])[0].error is None
        doc = second.get("x")
        assert doc is not None and doc.body == {"n": 30} and not doc.deleted
