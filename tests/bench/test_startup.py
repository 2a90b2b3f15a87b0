"""bench/startup.py's measurement, on the app from source (the bundle is checked by make dist-test)."""

from __future__ import annotations

import os
import sys

from bench.startup import PROBE_ENV, ROOT, one_run
from inventory_qt.self_test import EXIT_WHEN_SHOWN_ENV


def test_the_probe_name_is_the_apps() -> None:
    assert PROBE_ENV == EXIT_WHEN_SHOWN_ENV


def test_one_run_times_the_shown_window() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env |= {"QT_QPA_PLATFORM": "offscreen", PROBE_ENV: "1", "PYTHONPATH": str(ROOT)}
    shown, exited = one_run([sys.executable, "-m", "inventory_qt"], env)
    assert 0 < shown <= exited
