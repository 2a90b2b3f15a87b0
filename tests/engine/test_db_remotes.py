"""What each remote database holds, remembered durably per remote (LiteCore's remote ancestors)."""

from __future__ import annotations

from pathlib import Path

from engine.database import Database, RevisionInsert
from engine.revid import make_rev_id

R1 = make_rev_id(None, False, b'{"n":1}')


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
        db.set_remote_revisions(a, [("x", "1-aa"), ("y", "2-bb")])
        db.set_remote_revisions(b, [("x", "3-cc")])
        db.set_remote_revisions(a, [("x", "2-dd")])  # a newer one replaces it
    with Database(tmp_path / "db") as db:
        assert db.remote_revisions(a, ["x", "y", "z"]) == ["2-dd", "2-bb", None]
        assert db.remote_revisions(b, ["x", "y"]) == ["3-cc", None]


def test_forgetting_a_remote_leaves_the_others(tmp_path: Path) -> None:
    with Database(tmp_path / "db") as db:
        a, b = db.remote_id("a"), db.remote_id("b")
        db.set_remote_revisions(a, [("x", "1-aa"), ("y", "1-bb")])
        db.set_remote_revisions(b, [("x", "1-cc")])
        assert db.forget_remote(a) == 2
        assert db.remote_revisions(a, ["x", "y"]) == [None, None]
        assert db.remote_revisions(b, ["x"]) == ["1-cc"]


def test_purging_a_document_forgets_it_on_every_remote(db: Database) -> None:
    doc = db.save("x", {"n": 1})
    a, b = db.remote_id("a"), db.remote_id("b")
    db.set_remote_revisions(a, [("x", doc.rev_id), ("y", "1-aa")])
    db.set_remote_revisions(b, [("x", doc.rev_id)])
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
    db.set_remote_revisions(remote, [("x", "1-00")])
    db.insert_revisions([RevisionInsert("x", R1, [], {"n": 1})], remote_id=remote)
    assert db.remote_revisions(remote, ["x"]) == [R1]
