from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InvalidUserNameError
from engine.inventory import LIST_DOC_ID, read_items
from engine.seeding import load_starter_inventory
from engine.userdata import default_data_dir, encode_user_name, open_user_database, user_database_path


@pytest.mark.parametrize(
    ("name", "folder"),
    [("bob", "bob"), ("Bob", "%42ob"), ("../x", "%2E%2E%2Fx"), ("a/b", "a%2Fb"), ("é", "%C3%A9"), ("..", "%2E%2E")],
)
def test_names_are_encoded_safely(name: str, folder: str) -> None:
    assert encode_user_name(name) == folder


@pytest.mark.parametrize("name", ["", "a\x00b", "x" * 65, " bob", "bob\n", "\u200bbob"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidUserNameError):
        encode_user_name(name)


def test_every_user_stays_inside_the_data_dir(tmp_path: Path) -> None:
    for name in ("../../etc", "/abs", "a\\b", "~", "CON", "x" * 64):
        path = user_database_path(name, tmp_path).resolve()
        assert path.parent == (tmp_path / "users").resolve()


def test_first_open_seeds_once(tmp_path: Path) -> None:
    with open_user_database("bob", tmp_path) as db:
        first = db.get(LIST_DOC_ID)
        assert [i.key for i in read_items(db)] == [i.key for i in load_starter_inventory()]
    with open_user_database("bob", tmp_path) as db:
        assert db.get(LIST_DOC_ID) == first
        assert db.last_sequence == 1
    with open_user_database("alice", tmp_path, seed=False) as db:
        assert db.get(LIST_DOC_ID) is None


def test_default_data_dir_is_per_user() -> None:
    assert default_data_dir().name == "inventory-sync"
