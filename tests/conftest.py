"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.database import Database

#: The read-only shared folder next to the project (absent on other clones).
SHARED = Path(__file__).resolve().parents[2] / "shared"
SEED_DATA = SHARED / "seed-data"

#: Every timeout in the suite is a multiple of this, scaled on slow machines.
TIME_UNIT = float(os.environ.get("INVENTORY_TEST_TIME_UNIT", "1.0"))


def needs_shared(path: Path) -> pytest.MarkDecorator:
    """Skip a test when ``path`` (under ../shared) is not on this machine."""
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not present: ../shared is only on the team's machines")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A fresh database in a temporary directory."""
    database = Database(tmp_path / "db")
    yield database
    database.close()
