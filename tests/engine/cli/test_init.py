"""The command line's top level (``engine/cli/__init__.py``): ``--version``."""

from __future__ import annotations

import importlib.metadata

import pytest

from engine.cli import main


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"inventory-sync {importlib.metadata.version('inventory-sync')}\n"
