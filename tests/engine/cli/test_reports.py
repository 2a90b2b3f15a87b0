"""The lines serve and sync print while they run (engine/cli/reports.py), without a network."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from engine.cli.output import Output
from engine.cli.reports import ServeReport
from engine.replication.listener import ConnectionEvent, ListenerStats, ListenerStatus


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
