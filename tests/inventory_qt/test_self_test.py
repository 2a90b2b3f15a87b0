"""``inventory-sync-app --self-test`` from source: every step passes, and a failing step is named with exit 1."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.replication.auth import BasicAuthenticator
from inventory_qt import app, self_test
from tests.conftest import TIME_UNIT

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("resources", "seed", "listener", "replicate", "pictures", "push", "process", "qt")


@pytest.fixture(autouse=True)
def _restore_logging_and_platform(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The self-test quiets the root logger and sets QT_QPA_PLATFORM; put both back."""
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


def _run() -> tuple[int, str]:
    out = io.StringIO()
    code = self_test.run_self_test(out)
    return code, out.getvalue()


def test_every_step_passes() -> None:
    code, text = _run()
    assert code == 0, text
    for step in STEPS:
        assert f"self-test: {step}: ok" in text
    assert "self-test passed" in text


def test_a_refused_sign_in_fails_the_replicate_step(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong_password(user: str, password: str) -> BasicAuthenticator:
        return BasicAuthenticator(user, password + "-wrong")

    monkeypatch.setattr(self_test, "BasicAuthenticator", wrong_password)
    code, text = _run()
    assert code == 1
    assert "self-test: listener: ok" in text
    assert "self-test failed at step 'replicate'" in text
    assert "self-test: pictures" not in text
    assert "passed" not in text


def test_a_missing_starter_inventory_fails_the_resources_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(self_test, "load_starter_inventory", list)
    code, text = _run()
    assert code == 1
    assert text.splitlines() == ["self-test failed at step 'resources': the starter inventory is empty"]


def test_a_picture_that_did_not_arrive_fails_the_pictures_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(self_test.Database, "has_blob", lambda db, digest: False)
    code, text = _run()
    assert code == 1
    assert "self-test failed at step 'pictures': the picture of " in text
    assert "did not arrive" in text


def test_the_app_flag_runs_it_and_returns_its_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(self_test, "load_starter_inventory", list)
    assert app.main(["--self-test"]) == 1


def _source_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def test_the_command_passes_without_a_display() -> None:
    """The flag works where no display is set and QT_QPA_PLATFORM is not set: it goes offscreen itself."""
    result = subprocess.run(
        [sys.executable, "-m", "inventory_qt", "--self-test"],
        capture_output=True,
        text=True,
        env=_source_env(),
        cwd=ROOT,
        timeout=120 * TIME_UNIT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "self-test passed" in result.stdout
