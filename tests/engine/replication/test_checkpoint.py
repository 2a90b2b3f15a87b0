"""Checkpoints (protocol §6)."""

from __future__ import annotations

from engine.replication.checkpoint import Checkpoint, RemoteSequences, checkpoint_id, reconcile


def test_json_round_trip_and_leniency() -> None:
    checkpoint = Checkpoint(42, "12:34", 1700000000)
    assert checkpoint.to_json() == {"time": 1700000000, "local": 42, "remote": "12:34"}
    assert Checkpoint.from_json(checkpoint.to_json()) == checkpoint
    assert "local" not in Checkpoint().to_json() and "remote" not in Checkpoint().to_json()
    for junk in (None, [], {"local": -1}, {"local": "x"}, {"local": True}):
        assert Checkpoint.from_json(junk).local == 0


def test_checkpoint_ids_are_stable_and_distinct() -> None:
    a = checkpoint_id(b"\x01" * 16, "ws://h:1/db")
    assert a == checkpoint_id(b"\x01" * 16, "ws://h:1/db") and a.startswith("cp-")
    assert a != checkpoint_id(b"\x02" * 16, "ws://h:1/db")
    assert a != checkpoint_id(b"\x01" * 16, "ws://h:2/db")
    assert a != checkpoint_id(b"\x01" * 16, "ws://h:1/db", [["doc"]])


def test_reconcile_takes_the_lower_progress() -> None:
    assert reconcile(None, Checkpoint(5, 7)) == Checkpoint()
    assert reconcile(Checkpoint(5, 7), None) == Checkpoint()
    assert reconcile(Checkpoint(5, 7), Checkpoint(3, 9)) == Checkpoint(3, 7)
    assert reconcile(Checkpoint(5, "a"), Checkpoint(5, "b")) == Checkpoint(5, None)
    assert reconcile(Checkpoint(5, "a"), Checkpoint(6, "a")) == Checkpoint(5, "a")


def test_sequences_advance_only_over_a_finished_prefix() -> None:
    seqs = RemoteSequences(start=10)
    for s in (11, 12, 13):
        seqs.add(s)
    seqs.add(14, done=True)
    seqs.complete(12)
    assert seqs.checkpoint == 10 and len(seqs) == 2
    seqs.complete(11)
    assert seqs.checkpoint == 12
    seqs.complete(13)
    assert seqs.checkpoint == 14 and len(seqs) == 0
    seqs.complete(99)  # unknown: ignored
    assert seqs.checkpoint == 14
    strings = RemoteSequences()
    strings.add("1:5")
    strings.complete("1:5")
    assert strings.checkpoint == "1:5"
