"""Basic authentication, the listener's password check, and the sample's allow-list file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.replication.auth import BasicAuthenticator, load_allow_list, parse_basic
from engine.replication.errors import ConfigurationError
from tests.conftest import SEED_DATA, needs_shared


def test_basic_header_round_trip_and_hidden_password() -> None:
    auth = BasicAuthenticator("bob", "pa:ss wörd")
    assert parse_basic(auth.headers()["Authorization"]) == ("bob", "pa:ss wörd")
    assert "pa:ss" not in repr(auth)
    with pytest.raises(ValueError):
        BasicAuthenticator("b:ob", "x")


@needs_shared(SEED_DATA / "userallowlist.json")
@pytest.mark.parametrize("name", ["userallowlist.json", "userwhitelist.json"])
def test_allow_list_json_lines(name: str) -> None:
    users = load_allow_list(SEED_DATA / name)
    assert [u.name for u in users][:3] == ["bob", "priya", "jane"]
    assert len(users) == 15 and all(u.password == "password" for u in users)
    assert "'password'" not in repr(users[0])  # never shown in logs


@needs_shared(SEED_DATA / "userallowlist.json")
def test_allow_list_as_json_array(tmp_path: Path) -> None:
    lines = (SEED_DATA / "userallowlist.json").read_text().splitlines()
    array = tmp_path / "users.json"
    array.write_text(json.dumps([json.loads(line) for line in lines if line.strip()]))
    assert load_allow_list(array) == load_allow_list(SEED_DATA / "userallowlist.json")


@pytest.mark.parametrize(
    "content",
    ['{"name":"a"}', '{"name":"a","password":"p"}\n{"name":"a","password":"q"}', "[1]", "{bad", '{"password":"p"}'],
)
def test_allow_list_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError):
        load_allow_list(path)


@pytest.mark.parametrize(
    ("content", "words"),
    [("", "names no user"), ("[]", "names no user"), ('{"name":"bob","password":""}', "empty password")],
)
def test_an_allow_list_nobody_could_use_is_refused(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "users.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=words):
        load_allow_list(path)


def test_an_unreadable_allow_list_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_allow_list(tmp_path / "missing.json")
    (tmp_path / "latin1.json").write_bytes('{"name":"bö","password":"x"}'.encode("latin-1"))
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        load_allow_list(tmp_path / "latin1.json")
