from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.blobs import Blob, key_to_digest
from engine.changes import ChangeEntry, Changes, ChangeSource
from engine.conflicts import ConcurrencyControl, ConflictView
from engine.database import Database, InsertResult, RevisionInsert
from engine.db_core import ANNOUNCE_MAX_ROWS
from engine.errors import (
    BlobNotFoundError,
    ConflictError,
    InvalidDocumentError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from engine.revid import make_rev_id
from engine.revtree import InsertStatus, RevTree
from tests.conftest import save_in_other_process

FAIL = ConcurrencyControl.FAIL_ON_CONFLICT


def rid(gen: int, tag: str) -> str:
    return f"{gen}-{hashlib.sha1(tag.encode()).hexdigest()}"


def test_save_and_get(db: Database) -> None:
    doc = db.save("a", {"x": 1})
    assert doc.rev_id.startswith("1-") and doc.sequence == 1
    got = db.get("a")
    assert got is not None
    assert (got.id, got.rev_id, got.body, got.deleted) == ("a", doc.rev_id, {"x": 1}, False)
    assert db.get("missing") is None
    assert db.last_sequence == 1


def test_update_and_history(db: Database) -> None:
    first = db.save("a", {"x": 1})
    second = db.save("a", {"x": 2}, base_rev=first.rev_id)
    assert second.rev_id.startswith("2-")
    tree = db.get_tree("a")
    assert tree is not None and tree.history(second.rev_id) == [second.rev_id, first.rev_id]
    assert db.get_revision("a", first.rev_id) is not None  # parent body kept for deltas


def test_fail_on_conflict(db: Database) -> None:
    first = db.save("a", {"x": 1})
    db.save("a", {"x": 2}, base_rev=first.rev_id)
    with pytest.raises(ConflictError) as info:
        db.save("a", {"x": 3}, base_rev=first.rev_id, concurrency=FAIL)
    assert info.value.current_rev_id is not None
    with pytest.raises(ConflictError):
        db.save("a", {"x": 3}, base_rev=None, concurrency=FAIL)
    assert db.get("a").body == {"x": 2}  # type: ignore[union-attr]


def test_last_write_wins_saves_on_top_of_current(db: Database) -> None:
    first = db.save("a", {"x": 1})
    second = db.save("a", {"x": 2}, base_rev=first.rev_id)
    third = db.save("a", {"x": 3}, base_rev=first.rev_id)
    assert third.rev_id.startswith("3-")
    tree = db.get_tree("a")
    assert tree is not None and tree.history(third.rev_id)[1] == second.rev_id
    assert not third.conflicted


def test_save_with_handler_merges_or_gives_up(db: Database) -> None:
    first = db.save("a", {"n": 1})
    db.save("a", {"n": 2}, base_rev=first.rev_id)
    calls = []

    def merge(mine: dict[str, object], current: object) -> dict[str, object]:
        calls.append((mine, current))
        return {"n": 10}

    merged = db.save_with_handler("a", {"n": 3}, first.rev_id, merge)
    assert merged is not None and merged.body == {"n": 10} and len(calls) == 1
    assert db.save_with_handler("a", {"n": 4}, first.rev_id, lambda _m, _c: None) is None
    assert db.get("a").body == {"n": 10}  # type: ignore[union-attr]


def test_delete_and_recreate(db: Database) -> None:
    first = db.save("a", {"x": 1})
    tomb = db.delete("a", base_rev=first.rev_id, concurrency=FAIL)
    assert tomb.deleted and tomb.rev_id.startswith("2-")
    got = db.get("a")
    assert got is not None and got.deleted
    assert "a" not in db.doc_ids() and "a" in db.doc_ids(include_deleted=True)
    with pytest.raises(NotFoundError):
        db.delete("a")
    with pytest.raises(NotFoundError):
        db.delete("never")
    again = db.save("a", {"x": 2}, base_rev=None, concurrency=FAIL)
    assert again.rev_id.startswith("3-") and not again.deleted


@pytest.mark.parametrize("body", [{"_id": "x"}, [], {"a": float("nan")}, {1: 2}])
def test_invalid_bodies_write_nothing(db: Database, body: object) -> None:
    with pytest.raises(InvalidDocumentError):
        db.save("a", body)  # type: ignore[arg-type]
    assert db.last_sequence == 0
    assert db.get("a") is None


def test_batch_commits_together_or_not_at_all(db: Database) -> None:
    seen: list[Changes] = []
    db.add_change_listener(seen.append)
    with db.batch() as batch:
        for i in range(5):
            batch.save(f"d{i}", {"i": i})
    assert len(batch.results) == 5 and db.last_sequence == 5
    assert len(seen) == 1 and seen[0].doc_ids == tuple(f"d{i}" for i in range(5))
    with pytest.raises(RuntimeError), db.batch() as batch:
        batch.save("e1", {"i": 1})
        raise RuntimeError("abandon")
    assert db.get("e1") is None
    # an op failing inside the transaction aborts the whole batch
    with pytest.raises(ConflictError), db.batch() as batch:
        batch.save("e2", {"i": 2})
        batch.save("d0", {"i": 0}, base_rev=None, concurrency=FAIL)
    assert db.get("e2") is None and db.last_sequence == 5


def test_observers_see_one_changes_value_per_transaction(db: Database) -> None:
    seen: list[Changes] = []
    remove = db.add_change_listener(seen.append)
    db.save("a", {})
    db.insert_revisions([RevisionInsert("b", rid(1, "b"), [], {"v": 1})], remote="peer")
    assert [(c.doc_ids, c.source, c.remote) for c in seen] == [
        (("a",), ChangeSource.LOCAL, None),
        (("b",), ChangeSource.REMOTE, "peer"),
    ]
    remove()
    db.save("c", {})
    assert len(seen) == 2


def test_listener_errors_do_not_break_saves(db: Database) -> None:
    def boom(_: Changes) -> None:
        raise ValueError("listener bug")

    db.add_change_listener(boom)
    assert db.save("a", {}).sequence == 1


class Announcements:
    """A commit announcer that records what it hears, and what the file and observers showed then."""

    def __init__(self, db: Database, seen: list[Changes]) -> None:
        self.db = db
        self.seen = seen
        self.events: list[tuple[str, int, list[tuple[int, str]], int, int]] = []

    def _committed_sequence(self) -> int:
        """The last sequence another thread reads from the file now."""
        out: list[int] = []
        reader = threading.Thread(target=lambda: out.append(self.db.last_sequence))
        reader.start()
        reader.join()
        return out[0]

    def announce(self, after: int, rows: list[ChangeEntry]) -> None:
        rows_seen = [(r.sequence, r.doc_id) for r in rows]
        self.events.append(("announce", after, rows_seen, self._committed_sequence(), len(self.seen)))

    def withdraw(self, rows: list[ChangeEntry]) -> None:
        rows_seen = [(r.sequence, r.doc_id) for r in rows]
        self.events.append(("withdraw", 0, rows_seen, self._committed_sequence(), len(self.seen)))


def test_commit_announcers_hear_local_rows_before_the_commit_lands(db: Database) -> None:
    seen: list[Changes] = []
    db.add_change_listener(seen.append)
    heard = Announcements(db, seen)
    remove = db.add_commit_announcer(heard)
    first = db.save("a", {"v": 1})
    with db.batch() as batch:
        batch.save("a", {"v": 2}, base_rev=first.rev_id)
        batch.save("b", {})
    db.insert_revisions([RevisionInsert("c", rid(1, "c"), [], {})], remote="peer")  # a peer's: not announced
    remove()
    db.save("d", {})
    assert heard.events == [
        ("announce", 0, [(1, "a")], 0, 0),  # nothing committed yet, no observer told yet
        ("announce", 1, [(2, "a"), (3, "b")], 1, 1),
    ]
    assert [c.last_sequence for c in seen] == [1, 3, 4, 5]


def test_a_failed_commit_withdraws_what_was_announced(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    db.save("a", {})
    seen: list[Changes] = []
    db.add_change_listener(seen.append)
    heard = Announcements(db, seen)
    db.add_commit_announcer(heard)
    write = db._store.write

    def failing_write(fn: Callable[..., object]) -> object:
        def then_fail(txn: object) -> object:
            fn(txn)
            raise StorageError("database write failed: Input/output error")

        return write(then_fail)

    monkeypatch.setattr(db._store, "write", failing_write)
    with pytest.raises(StorageError):
        db.save("b", {})
    assert heard.events == [("announce", 1, [(2, "b")], 1, 0), ("withdraw", 0, [(2, "b")], 1, 0)]
    monkeypatch.undo()
    assert db.get("b") is None and not seen
    assert db.save("b", {}).sequence == 2  # the sequence it was to have is used by the next commit


def test_a_transaction_run_again_withdraws_its_offer_and_is_not_announced_twice(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the map grows the transaction's work runs again, maybe after another process
    committed: what was announced may not hold any more, so it is withdrawn."""
    db.save("a", {})
    heard = Announcements(db, [])
    db.add_commit_announcer(heard)
    write = db._store.write

    class _MapFullError(Exception):
        pass

    def write_twice(fn: Callable[..., object]) -> object:
        def first(txn: object) -> object:
            fn(txn)
            raise _MapFullError  # aborted, as a transaction whose commit found the map full

        with contextlib.suppress(_MapFullError):
            write(first)
        return write(fn)

    monkeypatch.setattr(db._store, "write", write_twice)
    saved = db.save("b", {})
    monkeypatch.undo()
    assert [e[:3] for e in heard.events] == [("announce", 1, [(2, "b")]), ("withdraw", 0, [(2, "b")])]
    assert saved.sequence == 2 and db.get("b") is not None


def test_a_large_local_transaction_is_not_announced(db: Database) -> None:
    heard = Announcements(db, [])
    db.add_commit_announcer(heard)
    with db.batch() as batch:
        for i in range(ANNOUNCE_MAX_ROWS + 1):
            batch.save(f"d{i}", {})
    assert not heard.events  # an import: feeds read it once committed, in their own batches


def test_changes_feed(db: Database) -> None:
    a = db.save("a", {"v": 1})
    db.save("b", {"v": 1})
    db.save("a", {"v": 2}, base_rev=a.rev_id)
    db.delete("b")
    rows = db.changes_since(0)
    assert [(r.sequence, r.doc_id, r.deleted) for r in rows] == [(3, "a", False), (4, "b", True)]
    assert [r.doc_id for r in db.changes_since(3)] == ["b"]
    assert len(db.changes_since(0, limit=1)) == 1
    assert rows[0].body_size == len(b'{"v":2}')


def test_insert_revisions_with_history_and_conflicts(db: Database) -> None:
    r1, r2, r3 = rid(1, "a"), rid(2, "b"), rid(3, "c")
    results = db.insert_revisions([RevisionInsert("d", r3, [r2, r1], {"v": 3})])
    assert results[0].status is InsertStatus.ADDED
    assert db.get("d").rev_id == r3  # type: ignore[union-attr]
    assert db.insert_revisions([RevisionInsert("d", r3, [r2, r1], {"v": 3})])[0].status is InsertStatus.EXISTS
    # a sibling branch makes a conflict
    other = rid(3, "other")
    result = db.insert_revisions([RevisionInsert("d", other, [r2, r1], {"v": 4})])[0]
    assert result.status is InsertStatus.ADDED and result.conflicted
    assert db.conflicted_doc_ids() == ["d"]
    # refused when no_conflicts is asked for
    refused = db.insert_revisions([RevisionInsert("d", rid(3, "third"), [r2, r1], {}, no_conflicts=True)])[0]
    assert isinstance(refused.error, ConflictError)


def test_insert_errors_are_per_revision(db: Database) -> None:
    results = db.insert_revisions(
        [
            RevisionInsert("ok", rid(1, "ok"), [], {"v": 1}),
            RevisionInsert("bad", "x-1", [], {}),
            RevisionInsert("bad2", rid(1, "b"), [], {"_id": "no"}),
            RevisionInsert(
                "blob", rid(1, "c"), [], {"i": {"@type": "blob", "digest": "sha1-" + "A" * 27 + "=", "length": 1}}
            ),
        ]
    )
    assert results[0].status is InsertStatus.ADDED
    assert isinstance(results[1].error, InvalidDocumentError)
    assert isinstance(results[2].error, InvalidDocumentError)
    assert isinstance(results[3].error, BlobNotFoundError)
    assert db.doc_ids() == ["ok"]


def test_no_conflicts_accepts_fast_forward_and_new_branch_on_tombstone(db: Database) -> None:
    first = db.save("a", {"v": 1})
    child = rid(2, "child")
    ok = db.insert_revisions([RevisionInsert("a", child, [first.rev_id], {"v": 2}, no_conflicts=True)])[0]
    assert ok.status is InsertStatus.ADDED and not ok.conflicted
    db.delete("a")
    fresh = db.insert_revisions([RevisionInsert("a", rid(1, "fresh"), [], {"v": 9}, no_conflicts=True)])[0]
    assert fresh.status is InsertStatus.ADDED
    assert db.get("a").body == {"v": 9}  # type: ignore[union-attr]


def test_blobs_arriving_with_a_revision_are_stored_in_its_commit(db: Database) -> None:
    data = b"picture bytes"
    key = hashlib.sha1(data).digest()
    blob = Blob(key_to_digest(key), len(data), "image/jpeg")
    seen: list[Changes] = []
    db.add_change_listener(seen.append)
    without = RevisionInsert("a", rid(1, "a"), [], {"p": blob.to_dict()})
    assert isinstance(db.insert_revisions([without])[0].error, BlobNotFoundError)
    result = db.insert_revisions([without._replace(new_blobs=[(key, data)])])[0]
    assert result.status is InsertStatus.ADDED and db.read_blob(blob.digest) == data
    assert len(seen) == 1


def test_blobs_arriving_with_a_refused_revision_are_not_kept(db: Database) -> None:
    db.save("a", {"v": 0})
    data = b"unwanted"
    key = hashlib.sha1(data).digest()
    blob = Blob(key_to_digest(key), len(data), None)
    refused = RevisionInsert("a", rid(1, "b"), [], {"p": blob.to_dict()}, no_conflicts=True, new_blobs=[(key, data)])
    assert isinstance(db.insert_revisions([refused])[0].error, ConflictError)
    assert not db.has_blob(blob.digest)


def test_resolve_conflict_keeping_remote_or_merging(db: Database) -> None:
    base = db.save("a", {"v": 0})
    local = db.save("a", {"v": 1}, base_rev=base.rev_id)
    remote = rid(2, "remote")
    result = db.insert_revisions([RevisionInsert("a", remote, [base.rev_id], {"v": 2})])[0]
    assert result.diverged_from == local.rev_id and result.conflicted
    merged = db.resolve_conflict("a", keep=remote, close=local.rev_id, merged={"v": 3})
    assert merged.body == {"v": 3} and not merged.conflicted
    tree = db.get_tree("a")
    assert tree is not None and tree.history(merged.rev_id)[1] == remote
    with pytest.raises(ConflictError):
        db.resolve_conflict("a", keep=remote, close=local.rev_id)


def test_a_conflict_resolved_while_inserting_commits_once(db: Database) -> None:
    base = db.save("a", {"v": 0})
    local = db.save("a", {"v": 1}, base_rev=base.rev_id)
    seen: list[Changes] = []
    db.add_change_listener(seen.append)
    remote = rid(2, "remote")
    calls: list[InsertResult] = []

    def resolve(view: ConflictView, result: InsertResult) -> None:
        calls.append(result)
        assert view.get_revision("a", remote) is not None  # the view sees the uncommitted insert
        view.resolve_conflict("a", keep=remote, close=local.rev_id, merged={"v": 3})

    inserts = [RevisionInsert("a", remote, [base.rev_id], {"v": 2}), RevisionInsert("b", rid(1, "b"), [], {"w": 1})]
    results = db.insert_revisions(inserts, resolve=resolve)
    assert [r.status for r in results] == [InsertStatus.ADDED, InsertStatus.ADDED]
    assert [c.doc_id for c in calls] == ["a"]  # only the revision that caused a conflict
    doc = db.get("a")
    assert doc is not None and doc.body == {"v": 3} and not doc.conflicted
    tree = db.get_tree("a")
    assert tree is not None and tree.history(doc.rev_id)[1] == remote
    assert len(seen) == 1 and set(seen[0].doc_ids) == {"a", "b"} and seen[0].last_sequence == db.last_sequence
    assert [(c.doc_id, c.sequence) for c in db.changes_since(base.sequence)] == [("a", 4), ("b", 5)]


def test_receiving_a_revision_we_left_behind_resolves_again(db: Database) -> None:
    base = db.save("a", {"v": 0})
    local = db.save("a", {"v": 1}, base_rev=base.rev_id)
    remote = rid(2, "remote")
    db.insert_revisions([RevisionInsert("a", remote, [base.rev_id], {"v": 2})])
    db.resolve_conflict("a", keep=local.rev_id, close=remote)  # we once decided against ``remote``
    calls: list[InsertResult] = []

    def resolve(view: ConflictView, result: InsertResult) -> None:
        calls.append(result)
        view.resolve_conflict("a", keep=remote, close=local.rev_id, merged={"v": 3})

    seen: list[Changes] = []
    db.add_change_listener(seen.append)
    result = db.insert_revisions([RevisionInsert("a", remote, [base.rev_id], {"v": 2})], resolve=resolve)[0]
    assert result.status is InsertStatus.EXISTS and result.left_behind and [c.rev_id for c in calls] == [remote]
    doc = db.get("a")
    assert doc is not None and doc.body == {"v": 3} and not db.get_tree("a").is_left_behind(remote)  # type: ignore[union-attr]
    assert [c.doc_ids for c in seen] == [("a",)]
    db.insert_revisions([RevisionInsert("a", remote, [base.rev_id], {"v": 2})], resolve=resolve)
    assert len(calls) == 1  # on our branch now: nothing more to resolve


def test_a_failed_resolution_while_inserting_undoes_only_itself(db: Database) -> None:
    base = db.save("a", {"v": 0})
    local = db.save("a", {"v": 1}, base_rev=base.rev_id)
    remote = rid(2, "remote")

    def resolve(view: ConflictView, result: InsertResult) -> None:
        view.resolve_conflict("a", keep=remote, close=local.rev_id, merged={"v": 3})  # written, then undone
        raise ConflictError("changed my mind")

    result = db.insert_revisions([RevisionInsert("a", remote, [base.rev_id], {"v": 2})], resolve=resolve)[0]
    assert result.error is None
    doc = db.get("a")
    assert doc is not None and doc.conflicted  # stored, still in conflict, nothing of the resolution left
    tree = db.get_tree("a")
    assert tree is not None and {n.rev_id for n in tree.leaves()} == {local.rev_id, remote}


def test_a_resolver_that_writes_gets_an_error_not_a_deadlock(db: Database) -> None:
    base = db.save("a", {"v": 0})
    db.save("a", {"v": 1}, base_rev=base.rev_id)
    failures: list[Exception] = []

    def resolve(view: ConflictView, result: InsertResult) -> None:
        try:
            db.save("elsewhere", {"x": 1})
        except StorageError as exc:
            failures.append(exc)
            raise

    db.insert_revisions([RevisionInsert("a", rid(2, "remote"), [base.rev_id], {"v": 2})], resolve=resolve)
    assert failures and "inside another write" in str(failures[0])
    assert db.get("elsewhere") is None and db.get("a").conflicted  # type: ignore[union-attr]


def test_resolve_conflict_by_keeping_a_leaf(db: Database) -> None:
    base = db.save("a", {"v": 0})
    local = db.save("a", {"v": 1}, base_rev=base.rev_id)
    remote = rid(2, "remote")
    db.insert_revisions([RevisionInsert("a", remote, [base.rev_id], {"v": 2})])
    kept = db.resolve_conflict("a", keep=local.rev_id, close=remote)
    assert kept.rev_id == local.rev_id and kept.body == {"v": 1} and not kept.conflicted


def test_resolution_revisions_are_the_same_on_every_peer(tmp_path: Path) -> None:
    results = []
    for name in ("p1", "p2"):
        with Database(tmp_path / name) as peer:
            base = rid(1, "base")
            left, right = rid(2, "left"), rid(2, "right")
            peer.insert_revisions([RevisionInsert("a", left, [base], {"v": 1})])
            peer.insert_revisions([RevisionInsert("a", right, [base], {"v": 2})])
            high, low = sorted([left, right], reverse=True)
            doc = peer.resolve_conflict("a", keep=high, close=low, merged={"v": 3})
            results.append((doc.rev_id, peer.get_tree("a").shape()))  # type: ignore[union-attr]
    assert results[0] == results[1]


def test_remote_deletion_on_another_branch_is_reported_as_divergence(db: Database) -> None:
    base = db.save("a", {"v": 0})
    local = db.save("a", {"v": 1}, base_rev=base.rev_id)
    result = db.insert_revisions([RevisionInsert("a", rid(2, "gone"), [base.rev_id], {}, deleted=True)])[0]
    assert result.diverged_from == local.rev_id and not result.conflicted
    resolved = db.resolve_conflict("a", keep=rid(2, "gone"), close=local.rev_id)
    assert resolved.deleted


def test_batch_reads_of_trees_and_current_revisions(db: Database) -> None:
    first = db.save("a", {"v": 1})
    db.save("gone", {})
    gone = db.delete("gone")
    trees = db.read_trees(["a", "missing"])
    assert trees[0] is not None and trees[0].winner().rev_id == first.rev_id and trees[1] is None
    assert db.current_revisions(["a", "gone", "missing"]) == [(first.rev_id, False), (gone.rev_id, True), None]


def test_revision_for_sync(db: Database) -> None:
    revs = [db.save("a", {"v": 0})]
    for i in range(1, 5):
        revs.append(db.save("a", {"v": i}, base_rev=revs[-1].rev_id))
    ids = [r.rev_id for r in revs]
    full = db.revision_for_sync("a", ids[4])
    assert full is not None and full.history == list(reversed(ids[:4])) and full.body == b'{"v":4}'
    stopped = db.revision_for_sync("a", ids[4], known={ids[2]}, delta_base=ids[3])
    assert stopped is not None and stopped.history == [ids[3], ids[2]] and stopped.base_body == b'{"v":3}'
    capped = db.revision_for_sync("a", ids[4], max_history=2)
    assert capped is not None and capped.history == [ids[3], ids[2]]
    assert db.revision_for_sync("a", ids[0]) is None  # body no longer kept
    assert db.revision_for_sync("missing", ids[0]) is None


def test_purge_removes_everything(db: Database) -> None:
    seen: list[Changes] = []
    db.add_change_listener(seen.append)
    doc = db.save("a", {"v": 1})
    db.save("a", {"v": 2}, base_rev=doc.rev_id)
    db.purge("a")
    assert db.get("a") is None and db.get_tree("a") is None
    assert db.changes_since(0) == []
    assert seen[-1].purged == ("a",)
    with pytest.raises(NotFoundError):
        db.purge("a")
    assert db.save("b", {}).sequence == 3  # sequences are never reused


def test_local_documents_use_mvcc(db: Database) -> None:
    assert db.get_local("cp") is None
    rev1 = db.put_local("cp", {"n": 1}, rev=None)
    assert rev1 == "1-cc"
    with pytest.raises(ConflictError):
        db.put_local("cp", {"n": 2}, rev=None)
    rev2 = db.put_local("cp", {"n": 2}, rev=rev1)
    assert rev2 == "2-cc"
    with pytest.raises(ConflictError):
        db.put_local("cp", {"n": 3}, rev=rev1)
    assert db.get_local("cp").body == {"n": 2}  # type: ignore[union-attr]
    assert db.put_local("cp", {"n": 4}) == "3-cc"
    assert db.changes_since(0) == []  # local documents are not replicated
    assert db.delete_local("cp") and db.get_local("cp") is None


def test_compaction_prunes_and_collects_blobs(tmp_path: Path) -> None:
    database = Database(tmp_path / "c", max_depth=5)
    try:
        kept = database.save_blob(b"kept", "text/plain")
        orphan = database.save_blob(b"orphan", "text/plain")
        doc = database.save("a", {"img": kept.to_dict()})
        for i in range(10):
            doc = database.save("a", {"img": kept.to_dict(), "i": i}, base_rev=doc.rev_id)
        tree = database.get_tree("a")
        assert tree is not None and len(tree) == 5  # pruned on save
        result = database.compact(blob_grace_seconds=0)
        assert result.blobs_removed == 1
        assert database.has_blob(kept.digest) and not database.has_blob(orphan.digest)
        assert database.read_blob(kept.digest) == b"kept"
    finally:
        database.close()


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    with Database(tmp_path / "r") as first:
        doc = first.save("a", {"v": 1})
        uuid = first.uuid
    with Database(tmp_path / "r") as second:
        assert second.get("a") == doc
        assert second.uuid == uuid
        assert second.last_sequence == 1


def test_peer_id_is_a_uuid_made_once_and_kept(tmp_path: Path) -> None:
    with Database(tmp_path / "p") as first, Database(tmp_path / "q") as other:
        peer_id = first.peer_id
        assert str(uuid.UUID(peer_id)) == peer_id
        assert first.peer_id == peer_id
        assert other.peer_id != peer_id
        assert uuid.UUID(peer_id).bytes != first.uuid  # the private UUID stays private
    with Database(tmp_path / "p") as again:
        assert again.peer_id == peer_id
        assert again.last_sequence == 0  # made without a document change


def test_map_grows_instead_of_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.lmdb_store.INITIAL_MAP_SIZE", 1 << 20)
    with Database(tmp_path / "g", durable=False) as database:
        start = database._store.map_size
        for i in range(8):
            with database.batch() as batch:
                for j in range(200):
                    batch.save(f"d{i}-{j}", {"pad": "x" * 2000})
        assert database._store.map_size > start
        assert database.document_count() == 1600


# -- property: insertion order does not matter -----------------------------------


@st.composite
def remote_revisions(draw: st.DrawFn) -> list[RevisionInsert]:
    n = draw(st.integers(min_value=1, max_value=15))
    parents: dict[str, str | None] = {}
    ids: list[str] = []
    for i in range(n):
        parent = draw(st.one_of(st.none(), st.sampled_from(ids))) if ids else None
        gen = 1 if parent is None else int(parent.split("-")[0]) + 1
        ids.append(rid(gen, f"r{i}"))
        parents[ids[-1]] = parent
    out = []
    for rev in ids:
        history = []
        node = parents[rev]
        while node is not None:
            history.append(node)
            node = parents[node]
        out.append(RevisionInsert("doc", rev, history, {"rev": rev}, deleted=draw(st.booleans())))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(remote_revisions(), st.randoms(use_true_random=False))
def test_same_revisions_in_any_order_give_same_tree_and_winner(
    tmp_path_factory: pytest.TempPathFactory, revs: list[RevisionInsert], rnd: random.Random
) -> None:
    def build(order: list[RevisionInsert]) -> tuple[frozenset[tuple[str, str | None, bool]], str, dict[str, object]]:
        with Database(tmp_path_factory.mktemp("p"), durable=False, max_depth=100) as database:
            for rev in order:
                assert database.insert_revisions([rev])[0].error is None
            tree = database.get_tree("doc")
            doc = database.get("doc")
            assert tree is not None and doc is not None
            return frozenset((n.rev_id, n.parent, n.deleted) for n in tree.nodes.values()), doc.rev_id, doc.body

    shuffled = list(revs)
    rnd.shuffle(shuffled)
    assert build(revs) == build(shuffled)


def _closed_left_branch(db: Database) -> tuple[str, str, str]:
    """base -> left (closed) and base -> right; revision IDs as this store makes them."""
    base = db.save("a", {"v": 0}).rev_id
    left = make_rev_id(base, False, b'{"v":1}')
    right = make_rev_id(base, False, b'{"v":2}')
    db.insert_revisions([RevisionInsert("a", left, [base], {"v": 1})])
    db.insert_revisions([RevisionInsert("a", right, [base], {"v": 2})])
    db.resolve_conflict("a", keep=right, close=left)
    return base, left, right


def test_a_resolution_that_recreates_a_closed_revision_reopens_it(db: Database) -> None:
    base, left, right = _closed_left_branch(db)
    again = db.resolve_conflict("a", keep=base, close=right, merged={"v": 1})  # that is ``left`` again
    assert again.rev_id == left and not again.deleted and not again.conflicted
    tree = db.get_tree("a")
    assert tree is not None and {n.rev_id for n in tree.leaves() if not n.closed} == {left}


def test_a_resolution_never_commits_a_document_with_only_closed_branches(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _, right = _closed_left_branch(db)
    before = db.get("a")
    monkeypatch.setattr(RevTree, "reopen", lambda self, rev_id: [])  # as if the closed revision stayed closed
    with pytest.raises(ConflictError, match="no current revision"):
        db.resolve_conflict("a", keep=base, close=right, merged={"v": 1})
    assert db.get("a") == before


def test_changes_by_another_process_are_announced_when_polled(tmp_path: Path) -> None:
    with Database(tmp_path / "db", durable=False) as db:
        db.save("mine", {"x": 1})
        seen: list[Changes] = []
        db.add_change_listener(seen.append)
        assert db.poll_external_changes() is False
        save_in_other_process(db.path, "theirs", "mine")
        assert seen == []  # nothing tells this process until it looks
        assert db.poll_external_changes() is True
        assert [(c.doc_ids, c.source, c.last_sequence) for c in seen] == [
            (("theirs", "mine"), ChangeSource.EXTERNAL, 3)
        ]
        assert db.poll_external_changes() is False
        assert len(seen) == 1


def test_a_commit_first_announces_what_another_process_committed(tmp_path: Path) -> None:
    with Database(tmp_path / "db", durable=False) as db:
        seen: list[Changes] = []
        db.add_change_listener(seen.append)
        save_in_other_process(db.path, "theirs")
        db.save("mine", {"x": 1})
        assert [(c.doc_ids, c.source) for c in seen] == [
            (("theirs",), ChangeSource.EXTERNAL),
            (("mine",), ChangeSource.LOCAL),
        ]
        assert db.poll_external_changes() is False


# -- the validator ---------------------------------------------------------------------------------


def refuse_bad(doc_id: str, body: dict[str, object], deleted: bool) -> None:
    if not deleted and body.get("bad"):
        raise ValidationError(f"{doc_id} is bad")


def test_the_validator_sees_every_revision_before_it_is_stored(tmp_path: Path) -> None:
    with Database(tmp_path / "db", validator=refuse_bad) as db:
        good = db.save("a", {"v": 1})
        with pytest.raises(ValidationError):
            db.save("a", {"bad": True})
        with pytest.raises(ValidationError), db.batch() as batch:
            batch.save("b", {"v": 1})
            batch.save("c", {"bad": True})
        assert db.get("a") == good and db.get("b") is None and db.last_sequence == 1  # nothing of them written
        results = db.insert_revisions(
            [RevisionInsert("x", rid(1, "x"), [], {"bad": True}), RevisionInsert("y", rid(1, "y"), [], {"v": 2})]
        )
        assert isinstance(results[0].error, ValidationError) and results[1].error is None
        assert db.get("x") is None and db.get("y") is not None
        db.insert_revisions([RevisionInsert("a", rid(2, "theirs"), [good.rev_id], {"v": 3})])
        with pytest.raises(ValidationError):  # a resolution is a revision like any other
            db.resolve_conflict("a", keep=rid(2, "theirs"), close=good.rev_id, merged={"bad": True})
        db.delete("a")  # deletions pass the validator too (it said yes)
