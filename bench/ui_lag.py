"""How long the desktop app's event loop is blocked while a 50,000-document pull runs.

The app as users run it (a signed-in :class:`~inventory_qt.ui.main_window.MainWindow`,
qasync running asyncio inside the Qt loop) connects from its Browser tab to a
listener in another process serving N documents (S1's inventory documents,
``bench/sync.py``), with the continuous push-and-pull replication a double-click
starts. A precise 5 ms QTimer probes the GUI thread: each gap between two
ticks beyond 5 ms is a stall during which no click, key or paint could be
handled. Printed: the pull's time and rate, and the stalls' median, p99 and
maximum while the pull runs (target: p99 at most 16 ms, one frame at 60 Hz),
with the same probe on an idle window for comparison.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/ui_lag.py [--docs 50000] [--runs 1]
        [--engine process|thread] [--threaded-database]

The replicator runs where the app runs it: in the session's sync engine process
(:mod:`inventory_qt.engine_process`); ``--engine thread`` runs it on an engine
thread of the app's own process instead (the design before, kept for comparison).
``--threaded-database`` gives the engine's database work a thread of its own as well
(``threaded_database=True``) instead of running it inline on the engine's loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import qasync
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from bench.sync import nearest_rank, seed
from engine.replication.replicator_types import ActivityLevel
from inventory_qt import engine_config, engine_process
from inventory_qt.engine_protocol import StopListener
from inventory_qt.ui.main_window import MainWindow

PROBE_MS = 5


class Probe:
    """Ticks every PROBE_MS on the GUI thread and records the gaps."""

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last = 0.0

    def start(self) -> None:
        self.gaps.clear()
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> list[float]:
        self.timer.stop()
        return [max(0.0, gap - PROBE_MS) for gap in self.gaps]

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append((now - self._last) * 1000)
        self._last = now


def summary(stalls: list[float]) -> dict[str, float]:
    return {
        "median ms": statistics.median(stalls) if stalls else 0.0,
        "p99 ms": nearest_rank(stalls, 0.99) if stalls else 0.0,
        "max ms": max(stalls, default=0.0),
        "ticks": len(stalls),
    }


async def one_run(url: str, docs: int, work: Path) -> dict[str, object]:
    window = MainWindow(work / "client")
    window.resize(860, 620)
    window.show()
    await window.sign_in("bench", "bench-pw")
    assert window.browser_tab is not None and window.session is not None
    # the engine process starts at sign-in; a user clicks later: wait until it answers (a no-op request)
    await window.session.engine.request(StopListener)
    probe = Probe()
    probe.start()
    await asyncio.sleep(1.0)
    idle = summary(probe.stop())

    probe.start()
    started = time.perf_counter()
    peer_id = window.browser_tab.add_url(url)
    assert peer_id is not None
    replication = window.browser_tab.replications[peer_id]
    db = window.session.db
    while True:
        status = replication.status
        if status.activity is ActivityLevel.IDLE and status.progress.completed >= docs:
            break
        if status.activity is ActivityLevel.STOPPED and status.error is not None:
            raise RuntimeError(f"replication failed: {status.error}")
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    stalls = probe.stop()
    count = await window.session.run(db.document_count)
    await window.log_out()
    window.close()
    return {"docs": count, "seconds": elapsed, "docs/s": docs / elapsed, "idle": idle, "pull": summary(stalls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--engine", choices=("process", "thread"), default=engine_process.ENGINE_MODE)
    parser.add_argument("--threaded-database", action="store_true", help="database work on a thread of its own")
    args = parser.parse_args()
    engine_config.THREADED_DATABASE = args.threaded_database
    engine_process.ENGINE_MODE = args.engine
    template = Path(tempfile.mkdtemp(prefix="ui-lag-"))
    seed(template / "source", "s1", args.docs)
    app = QApplication([sys.argv[0]])
    results = []
    for _ in range(args.runs):
        work = Path(tempfile.mkdtemp(prefix="ui-lag-run-"))
        shutil.copytree(template / "source", work / "source")
        server = subprocess.Popen(  # the listener: another process, as another computer would be
            [sys.executable, str(Path(__file__).with_name("sync.py")), "--serve", str(work / "source")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline().split()[1])
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        try:
            with loop:
                result = loop.run_until_complete(one_run(f"ws://127.0.0.1:{port}/userdb", args.docs, work))
        finally:
            server.stdin.write("quit\n")
            server.stdin.flush()
            server.wait(30)
            shutil.rmtree(work, ignore_errors=True)
        results.append(result)
        pull, idle = result["pull"], result["idle"]
        assert isinstance(pull, dict) and isinstance(idle, dict)
        print(
            f"pulled {result['docs']:,} documents in {result['seconds']:.1f} s ({result['docs/s']:,.0f} docs/s); "
            f"GUI stalls while pulling: median {pull['median ms']:.2f} ms, p99 {pull['p99 ms']:.1f} ms, "
            f"max {pull['max ms']:.1f} ms over {pull['ticks']:,} ticks; idle: p99 {idle['p99 ms']:.2f} ms, "
            f"max {idle['max ms']:.1f} ms",
            flush=True,
        )
    shutil.rmtree(template, ignore_errors=True)
    p99s = [r["pull"]["p99 ms"] for r in results]  # type: ignore[index]
    mode = "on a thread of its own" if args.threaded_database else "inline on the engine's loop"
    per_run = ", ".join(f"{p:.1f}" for p in p99s)
    print(f"engine: {args.engine}; database work: {mode}; p99 stall per run: {per_run} ms (target <= 16 ms)")


if __name__ == "__main__":
    main()
