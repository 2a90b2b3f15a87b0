"""The entry point: ``--screenshot`` signs in without the dialog and writes non-blank PNGs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from tests.conftest import TIME_UNIT

ROOT = Path(__file__).resolve().parents[2]


def distinct_colours(path: Path) -> int:
    image = QImage(str(path))
    assert not image.isNull(), path
    step_x, step_y = max(1, image.width() // 64), max(1, image.height() // 64)
    return len({image.pixel(x, y) for x in range(0, image.width(), step_x) for y in range(0, image.height(), step_y)})


@pytest.mark.timeout(120)
def test_the_screenshot_entry_point_writes_non_blank_pngs(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "INVENTORY_PASSWORD": "pw", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "shots"
    proc = subprocess.run(
        [sys.executable, "-m", "inventory_qt", "--data-dir", str(tmp_path / "data"), "--user", "alice", "--screenshot", str(out)],
        capture_output=True, text=True, env=env, timeout=90 * TIME_UNIT, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    names = sorted(path.name for path in out.iterdir())
    assert names == ["browser.png", "list.png", "listener.png", "login.png", "settings.png"]
    for name in names:
        assert distinct_colours(out / name) > 20, name  # text, pictures and widgets, not a blank window


def test_screenshots_need_the_password_in_the_environment(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "INVENTORY_PASSWORD"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "inventory_qt", "--user", "alice", "--screenshot", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60 * TIME_UNIT, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2 and "INVENTORY_PASSWORD" in proc.stderr
