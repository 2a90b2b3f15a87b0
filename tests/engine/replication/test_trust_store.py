"""The trust-on-first-use store: one fingerprint per host and port, written atomically."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from engine.replication.errors import ConfigurationError
from engine.replication.trust_store import TrustStore, peer_key

FP1 = ":".join(["11"] * 32)
FP2 = ":".join(["22"] * 32)


def test_first_use_is_remembered_and_kept(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "sub" / "trusted.json")
    assert store.get("192.168.1.5", 4984) is None
    first = store.remember("192.168.1.5", 4984, FP1.lower(), subject="CN=shop")
    assert first.fingerprint == FP1 and first.key == "192.168.1.5:4984" and first.subject == "CN=shop"
    assert store.remember("192.168.1.5", 4984, FP2).fingerprint == FP1  # a second first use does not replace
    reopened = TrustStore(store.path)  # another process, or after a restart
    peer = reopened.get("192.168.1.5", 4984)
    assert peer is not None and peer.fingerprint == FP1
    assert reopened.get("192.168.1.5", 4985) is None  # keyed by port too


def test_accept_replaces_and_forget_removes(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trusted.json")
    store.remember("host", 1, FP1)
    assert store.accept("HOST", 1, FP2).fingerprint == FP2
    assert [p.key for p in store.peers()] == ["host:1"]
    assert store.forget("host", 1) and not store.forget("host", 1)
    assert store.peers() == []


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("::1", "[::1]:443"),
        ("[0:0::1]", "[::1]:443"),
        ("Shop-Laptop.local", "shop-laptop.local:443"),
        ("10.0.0.1", "10.0.0.1:443"),
    ],
)
def test_peer_keys(host: str, key: str) -> None:
    assert peer_key(host, 443) == key


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_the_file_is_private_json_and_replaced_whole(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trusted.json")
    store.remember("a", 1, FP1)
    store.remember("b", 2, FP2)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["trusted.json"]  # no temporary file left
    document = json.loads(store.path.read_text())
    assert document["version"] == 1
    assert document["peers"]["b:2"]["sha256"] == FP2 and document["peers"]["a:1"]["first_seen"].endswith("Z")


@pytest.mark.parametrize("content", ["not json", "[]", '{"peers": {"a:1": {"sha256": "xx"}}}', '{"peers": 3}'])
def test_a_malformed_store_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "trusted.json"
    path.write_text(content)
    with pytest.raises(ConfigurationError, match=r"trusted\.json.*fix or remove it"):
        TrustStore(path).get("a", 1)


def test_a_bad_fingerprint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="SHA-256"):
        TrustStore(tmp_path / "t.json").accept("a", 1, "12:34")
