"""Password hashes, the allow-list file, the equal-cost table and the bounded check pool."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.replication import passwords
from engine.replication.errors import ConfigurationError, HTTPStatusError
from engine.replication.passwords import (
    AllowedUser,
    CheckPool,
    PasswordHash,
    PasswordTable,
    allow_list_entry,
    hash_password,
    load_allow_list,
)
from tests.conftest import SEED_DATA, TIME_UNIT, needs_shared

CHEAP = 2**4  # scrypt n for tests: a real hash (2**14) costs about 0.1 s


# -- the hash format ---------------------------------------------------------------------------------


def test_a_hash_names_its_parameters_and_matches_only_its_password() -> None:
    text = hash_password("s3cret pässword")
    assert text.startswith("scrypt$n=16384,r=8,p=1$")
    parsed = PasswordHash.parse(text)
    assert (parsed.n, parsed.r, parsed.p, len(parsed.salt), len(parsed.digest)) == (16384, 8, 1, 16, 32)
    assert str(parsed) == text
    assert parsed.derive("s3cret pässword") == parsed.digest
    assert parsed.derive("s3cret passwörd") != parsed.digest
    assert hash_password("s3cret pässword") != text  # a fresh salt each time
    assert "salt" not in repr(parsed) and parsed.digest.hex() not in repr(parsed) and "hidden" in repr(parsed)


@settings(max_examples=60, deadline=None)
@given(
    password=st.text(min_size=1, max_size=40),
    log_n=st.integers(1, 6),
    r=st.integers(1, 8),
    p=st.integers(1, 3),
)
def test_hash_format_round_trip(password: str, log_n: int, r: int, p: int) -> None:
    text = hash_password(password, n=2**log_n, r=r, p=p)
    parsed = PasswordHash.parse(text)
    assert str(parsed) == text
    assert parsed.parameters == (2**log_n, r, p)
    assert parsed.derive(password) == parsed.digest


@settings(max_examples=60, deadline=None)
@given(salt=st.binary(min_size=8, max_size=40), digest=st.binary(min_size=16, max_size=64), log_n=st.integers(1, 17))
def test_any_valid_hash_survives_its_text(salt: bytes, digest: bytes, log_n: int) -> None:
    value = PasswordHash(2**log_n, 8, 1, salt, digest)
    assert PasswordHash.parse(str(value)) == value


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "not a password hash"),
        ("pbkdf2$n=16,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "not a password hash"),
        ("scrypt$n=16,r=8$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "not a password hash"),
        ("scrypt$n=15,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "power of two"),
        ("scrypt$n=1,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "power of two"),
        ("scrypt$n=16,r=0,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "r must be"),
        ("scrypt$n=16,r=8,p=99$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "p 1 to 16"),
        ("scrypt$n=1048576,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "MiB"),
        ("scrypt$n=16,r=8,p=1$AAAA$AAAAAAAAAAAAAAAAAAAAAA", "salt must have"),
        ("scrypt$n=16,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAA", "hash 16 to 64"),
        ("scrypt$n=16,r=8,p=1$AAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "not base64"),
    ],
)
def test_malformed_hashes_are_refused_without_repeating_them(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as info:
        PasswordHash.parse(text)
    assert "AAAAAAAAAAAAAAAAAAAAAA" not in str(info.value)


def test_an_allow_list_entry_hashes_its_password() -> None:
    entry = allow_list_entry("bob", "password")
    assert entry["name"] == "bob" and set(entry) == {"name", "password_hash"}
    assert (
        PasswordHash.parse(entry["password_hash"]).derive("password")
        == PasswordHash.parse(entry["password_hash"]).digest
    )
    for name, password in [("", "x"), ("b:ob", "x"), ("bob", "")]:
        with pytest.raises(ValueError):
            allow_list_entry(name, password)


# -- the allow-list file ---------------------------------------------------------------------------


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


def test_allow_list_with_hashed_and_plain_entries(tmp_path: Path) -> None:
    hashed = allow_list_entry("priya", "correct horse")
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"name": "bob", "password": "pw"}) + "\n\n" + json.dumps(hashed) + "\n")
    bob, priya = load_allow_list(path)
    assert bob == AllowedUser("bob", password="pw")
    assert priya.password is None and priya.password_hash == PasswordHash.parse(hashed["password_hash"])
    assert hashed["password_hash"].split("$")[-1] not in repr(priya)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"name":"a"}', "line 1: user 'a' needs a password or a password_hash"),
        ('{"name":"a","password":"p"}\n{"name":"a","password":"q"}', "line 2: user 'a' appears twice"),
        ("[1]", "entry 1: expected an object"),
        ('[{"name":"a","password":"p"},{"name":"b"}]', "entry 2: user 'b' needs"),
        ("{bad", "line 1: malformed JSON"),
        ('{"password":"p"}', "line 1: each user needs a name"),
        ('{"name":"a","password":"p","password_hash":"scrypt$..."}', "one of them"),
        ('{"name":"a","pasword":"p"}', "unknown key 'pasword'"),
        ('{"name":"a","password":7}', "not a string"),
        ('{"name":"a","password_hash":"scrypt$n=3,r=8,p=1$AAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA"}', "power of two"),
    ],
)
def test_allow_list_errors_say_where(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=words) as info:
        load_allow_list(path)
    assert str(path) in str(info.value)
    assert "AAAAAAAAAAAA" not in str(info.value)  # never the hash


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


# -- the table ---------------------------------------------------------------------------------------


def _cheap(name: str, password: str) -> AllowedUser:
    return AllowedUser(name, password_hash=PasswordHash.parse(hash_password(password, n=CHEAP)))


def test_the_table_checks_plain_and_hashed_entries() -> None:
    table = PasswordTable([AllowedUser("bob", password="pw"), _cheap("priya", "horse")])
    assert table("bob", "pw") and table("priya", "horse")
    assert not table("bob", "horse") and not table("priya", "pw") and not table("bob", "")
    assert not table("jane", "pw") and not table("", "")
    assert not table("bob", "pw\x00") and not table("Bob", "pw")
    assert "pw" not in repr(table) and "horse" not in repr(table)


def test_plain_entries_and_unknown_users_cost_what_most_hashed_entries_cost() -> None:
    """The decoy hashes take the parameters of the common hashed entry (see bench/auth_cost.py for times)."""
    table = PasswordTable([AllowedUser("bob", password="pw"), _cheap("priya", "a"), _cheap("jane", "b")])
    assert table.parameters == (CHEAP, 8, 1)
    derived: list[tuple[int, int, int]] = []
    original = PasswordHash.derive

    def spy(self: PasswordHash, password: str) -> bytes:
        derived.append(self.parameters)
        return original(self, password)

    PasswordHash.derive = spy  # type: ignore[method-assign]
    try:
        for name in ("bob", "priya", "nobody"):
            table(name, "guess")
    finally:
        PasswordHash.derive = original  # type: ignore[method-assign]
    assert derived == [(CHEAP, 8, 1)] * 3  # one derivation each, the same work
    assert PasswordTable([AllowedUser("bob", password="pw")]).parameters == (2**14, 8, 1)


# -- the pool ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_pool_runs_checks_off_the_event_loop_and_bounds_them() -> None:
    pool = CheckPool(workers=1, waiting=1)
    gate = threading.Event()
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def check() -> bool:
        threads.append(threading.get_ident())
        return gate.wait(10 * TIME_UNIT)

    running = asyncio.ensure_future(pool.run(check))
    queued = asyncio.ensure_future(pool.run(check))
    await asyncio.sleep(0)
    with pytest.raises(HTTPStatusError) as info:
        await pool.run(check)
    assert info.value.status == 503 and info.value.retry_after == 1.0
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(running, queued), 10 * TIME_UNIT) == [True, True]
    assert threads and loop_thread not in threads
    assert pool.pending == 0


@pytest.mark.asyncio
async def test_an_abandoned_check_leaves_the_queue() -> None:
    pool = CheckPool(workers=1, waiting=5)
    gate = threading.Event()
    ran: list[str] = []

    def check(name: str) -> bool:
        ran.append(name)
        return gate.wait(10 * TIME_UNIT)

    first = asyncio.ensure_future(pool.run(check, "first"))
    abandoned = asyncio.ensure_future(pool.run(check, "abandoned"))
    await asyncio.sleep(0)
    abandoned.cancel()  # e.g. the handshake timed out while it waited
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    assert pool.pending == 1
    gate.set()
    assert await asyncio.wait_for(first, 10 * TIME_UNIT)
    assert ran == ["first"] and pool.pending == 0


def test_one_shared_pool_by_default() -> None:
    assert isinstance(passwords.PASSWORD_CHECKS, CheckPool)
