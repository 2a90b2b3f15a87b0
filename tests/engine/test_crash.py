"""Crash safety: SIGKILL a writer at random moments (see crash_store.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.engine.crash_store import trial


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
@pytest.mark.parametrize("seed", range(30))
def test_kill_during_writes_loses_nothing_acknowledged(seed: int, tmp_path: Path) -> None:
    trial(1000 + seed, tmp_path)
