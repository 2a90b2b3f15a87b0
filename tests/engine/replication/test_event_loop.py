"""The loop the engine's own processes run on."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from engine.replication import event_loop

UVLOOP = importlib.util.find_spec("uvloop") is not None


async def _running_loop() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(not UVLOOP, reason="uvloop is not installed here (Windows, or left out)")
def test_uvloop_runs_the_engine_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(event_loop.ENV_VAR, raising=False)
    assert event_loop.loop_name() == "uvloop"
    assert event_loop.run(_running_loop()).startswith("uvloop")


@pytest.mark.parametrize("value", ["asyncio", " AsyncIO "])
def test_asyncio_own_loop_when_asked(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(event_loop.ENV_VAR, value)
    assert event_loop.loop_name() == "asyncio"
    assert event_loop.run(_running_loop()).startswith("asyncio")


def test_asyncio_own_loop_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(event_loop.ENV_VAR, raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a))
    assert event_loop.loop_name() == "asyncio"
    assert event_loop.run(_running_loop()).startswith("asyncio")


def test_run_returns_the_result_and_closes_its_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def work() -> int:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return 42

    assert event_loop.run(work()) == 42
    assert loops[0].is_closed()


@pytest.mark.skipif(not UVLOOP, reason="uvloop is not installed here (Windows, or left out)")
def test_the_command_line_runs_on_it(tmp_path: Path) -> None:
    # `browse` is the quickest command that runs a loop; --debug logs which one
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--data-dir", str(tmp_path), "--debug", "browse", "--interface", "127.0.0.1", "--timeout", "0.2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "running on uvloop's event loop" in done.stderr
