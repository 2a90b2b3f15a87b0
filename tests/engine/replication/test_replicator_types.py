"""The replicator's configuration: URLs it can use are checked before anything connects."""

from __future__ import annotations

import pytest

from engine.database import Database
from engine.replication.errors import ConfigurationError
from engine.replication.replicator_types import ReplicatorConfiguration, check_url


@pytest.mark.parametrize(
    "url",
    ["ws://127.0.0.1:4984/db", "ws://[::1]:4984/db", "ws://[fe80::1%25eth0]:80/userdb", "ws://shop.local/db/"],
)
def test_usable_urls(url: str) -> None:
    check_url(url, tls=False)


@pytest.mark.parametrize(
    ("url", "tls", "words"),
    [
        ("http://host:1/db", False, "ws:// or wss://"),
        ("ws://:1/db", False, "no host"),
        ("ws://host:70000/db", False, "not a number from 1 to 65535"),
        ("ws://host:port/db", False, "invalid URL"),
        ("ws://host:0/db", False, "port 0"),
        ("ws://[::1/db", False, "IPv6"),
        ("ws://bob:secret@host:1/db", False, "credentials"),
        ("ws://host:1", False, "names no database"),
        ("ws://host:1/", False, "names no database"),
        ("wss://host:1/db", False, "needs TLS"),
        ("ws://host:1/db", True, "wss://"),
    ],
)
def test_unusable_urls_are_refused_with_a_reason(url: str, tls: bool, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words) as caught:
        check_url(url, tls=tls)
    assert "secret" not in str(caught.value)  # a password in a URL is never repeated


def test_the_configuration_checks_its_url(db: Database) -> None:
    with pytest.raises(ConfigurationError):
        ReplicatorConfiguration(db, "ws://host:99999/db")
    config = ReplicatorConfiguration(db, "ws://host:1/db")
    assert config.remote_identity == "ws://host:1/db"
    config = ReplicatorConfiguration(db, "ws://host:1/db", remote_name="peer-7")
    assert config.remote_identity == "peer-7"


class _Nowhere:
    async def resolve(self, *, after_failure: bool) -> str:
        raise AssertionError("not called")

    async def wait_announced(self) -> None:
        raise AssertionError("not called")


def test_following_a_peer_needs_its_name(db: Database) -> None:
    with pytest.raises(ConfigurationError, match="remote_name"):
        ReplicatorConfiguration(db, "ws://127.0.0.1:4984/db", endpoint=_Nowhere())
    config = ReplicatorConfiguration(db, "ws://127.0.0.1:4984/db", endpoint=_Nowhere(), remote_name="peer")
    assert config.remote_identity == "peer"
