"""The lines serve and sync print while they run (engine/cli/reports.py), without a network."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from engine.cli.output import Output
from engine.cli.reports import ServeReport, SyncReport
from engine.replication.errors import BlipError, TransportError
from engine.replication.listener import ConnectionEvent, ListenerStats, ListenerStatus
from engine.replication.replicator_types import ActivityLevel, Progress, ReplicatorStatus, ReplicatorType


class FakeListener:
    def __init__(self) -> None:
        self.status = ListenerStatus()
        self.stats = ListenerStats()
        self.announce: Callable[[ConnectionEvent], None] | None = None

    def add_connection_listener(self, listener: Callable[[ConnectionEvent], None]) -> None:
        self.announce = listener


def test_serve_summarizes_only_while_clients_replicate(capsys: pytest.CaptureFixture[str]) -> None:
    listener = FakeListener()
    report = ServeReport(listener, Output(json_lines=False))  # type: ignore[arg-type]
    report.summarize()
    assert capsys.readouterr().out == ""  # nobody here: nothing to say
    assert listener.announce is not None
    listener.announce(ConnectionEvent(True, "192.168.1.31:53216", "bob"))
    listener.status = ListenerStatus(2, 1)
    listener.stats = ListenerStats(revs_sent=1234, revs_received=5)
    report.summarize()
    report.summarize()  # the same figures with a client still busy: said again
    listener.status = ListenerStatus(2, 0)
    report.summarize()  # idle since, nothing new
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "connected: bob from 192.168.1.31:53216"
    assert lines[1] == "summary: 2 clients connected, 1 replicating; 1,234 revisions sent, 5 received since start"
    assert len(lines) == 3


def test_serve_summarizes_what_an_idle_continuous_client_got_since_the_last_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    listener = FakeListener()
    report = ServeReport(listener, Output(json_lines=False))  # type: ignore[arg-type]
    listener.status = ListenerStatus(1, 0)  # connected, idle at every tick: its edits cross in between
    listener.stats = ListenerStats(revs_sent=6)
    report.summarize()
    report.summarize()  # nothing since
    listener.stats = ListenerStats(revs_sent=7)
    report.summarize()
    assert capsys.readouterr().out.splitlines() == [
        "summary: 1 client connected, 0 replicating; 6 revisions sent, 0 received since start",
        "summary: 1 client connected, 0 replicating; 7 revisions sent, 0 received since start",
    ]


class FakeReplicator:
    def __init__(self, url: str) -> None:
        self.config = SimpleNamespace(url=url)
        self.protocol = "BLIP_3+CBMobile_3"
        self.status: Callable[[ReplicatorStatus], None] | None = None

    def add_change_listener(self, listener: Callable[[ReplicatorStatus], None]) -> None:
        self.status = listener

    def add_document_listener(self, _listener: object) -> None:
        pass


def test_sync_names_where_a_followed_peer_is_now(capsys: pytest.CaptureFixture[str]) -> None:
    replicator = FakeReplicator("wss://127.0.0.1:4984/userdb")
    SyncReport(replicator, Output(json_lines=False), continuous=True)  # type: ignore[arg-type]
    assert replicator.status is not None
    replicator.status(ReplicatorStatus(ActivityLevel.CONNECTING))
    replicator.status(ReplicatorStatus(ActivityLevel.IDLE))
    replicator.status(ReplicatorStatus(ActivityLevel.OFFLINE, error=TransportError("gone"), retry_in=1.0))
    replicator.config.url = "wss://127.0.0.1:5001/userdb"  # the peer moved: the replicator follows it
    replicator.status(ReplicatorStatus(ActivityLevel.CONNECTING))
    replicator.status(ReplicatorStatus(ActivityLevel.IDLE))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "connecting to wss://127.0.0.1:4984/userdb"
    assert lines[1] == "connected to wss://127.0.0.1:4984/userdb (BLIP_3+CBMobile_3)"
    assert lines[-1] == "connected to wss://127.0.0.1:5001/userdb (BLIP_3+CBMobile_3)"


def report_progress(monkeypatch: pytest.MonkeyPatch, *, json_lines: bool, steps: list[tuple[float, int, int]]) -> None:
    """A one-shot sync's report given busy statuses at set seconds after its start (a hand-moved clock)."""
    now = [1000.0]
    monkeypatch.setattr("engine.cli.reports.time.monotonic", lambda: now[0])
    replicator = FakeReplicator("ws://127.0.0.1:4984/shop")
    SyncReport(replicator, Output(json_lines=json_lines), continuous=False)  # type: ignore[arg-type]
    assert replicator.status is not None
    for seconds, completed, total in steps:
        now[0] = 1000.0 + seconds
        replicator.status(ReplicatorStatus(ActivityLevel.BUSY, Progress(completed, total)))


def test_piped_progress_waits_a_second_then_prints_a_line_every_two(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = [
        (0.5, 100, 1_000),  # a short transfer shows none
        (1.2, 500, 1_500),
        (2.0, 900, 2_000),  # under two seconds since the last line
        (3.3, 1_800, 20_000),
        (5.5, 20_000, 20_000),  # done: the summary says it, not a progress line
    ]
    report_progress(monkeypatch, json_lines=False, steps=steps)
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("progress: ")] == [
        "progress: 500 of 1,500 documents",
        "progress: 1,800 of 20,000 documents",
    ]


def test_json_progress_comes_at_once_and_every_half_second(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    report_progress(monkeypatch, json_lines=True, steps=[(0.1, 10, 100), (0.3, 20, 100), (0.7, 30, 100)])
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["completed"], e["total"]) for e in events if e["event"] == "progress"] == [(10, 100), (30, 100)]


@pytest.mark.parametrize(("domain", "hinted"), [("HTTP", True), ("BLIP", False)])
def test_only_the_peers_http_403_is_taken_for_a_read_only_peer(
    capsys: pytest.CaptureFixture[str], domain: str, hinted: bool
) -> None:
    replicator = FakeReplicator("ws://127.0.0.1:4984/shop")
    replicator.config.type = ReplicatorType.PUSH_AND_PULL
    replicator.pushed, replicator.pulled = 0, 3  # type: ignore[attr-defined]
    report = SyncReport(replicator, Output(json_lines=False), continuous=False)  # type: ignore[arg-type]
    replicator.status = ReplicatorStatus(ActivityLevel.STOPPED, error=BlipError(domain, 403, "no"))  # type: ignore[assignment]
    assert report.finish(interrupted=None) == 1
    assert ("--pull takes its changes" in capsys.readouterr().err) is hinted
