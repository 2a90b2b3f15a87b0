"""The trust-on-first-use store: one fingerprint per host and port, written atomically."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from engine.replication.errors import ConfigurationError
from engine.replication.trust_store import TrustStore, key_from_text, key_to_text, peer_id_key, peer_key, trust_key

FP1 = ":".join(["11"] * 32)
FP2 = ":".join(["22"] * 32)


def test_first_use_is_remembered_and_kept(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "sub" / "trusted.json")
    assert store.get(peer_key("192.168.1.5", 4984)) is None
    first = store.remember(peer_key("192.168.1.5", 4984), FP1.lower(), subject="CN=shop")
    assert first.fingerprint == FP1 and first.key == "192.168.1.5:4984" and first.subject == "CN=shop"
    assert store.remember(peer_key("192.168.1.5", 4984), FP2).fingerprint == FP1  # a second first use does not replace
    reopened = TrustStore(store.path)  # another process, or after a restart
    peer = reopened.get(peer_key("192.168.1.5", 4984))
    assert peer is not None and peer.fingerprint == FP1
    assert reopened.get(peer_key("192.168.1.5", 4985)) is None  # keyed by port too


def test_accept_replaces_and_forget_removes(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trusted.json")
    store.remember(peer_key("host", 1), FP1)
    assert store.accept(peer_key("HOST", 1), FP2).fingerprint == FP2
    assert [p.key for p in store.peers()] == ["host:1"]
    assert store.forget(peer_key("host", 1)) and not store.forget(peer_key("host", 1))
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
    store.remember(peer_key("a", 1), FP1)
    store.remember(peer_key("b", 2), FP2)
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
        TrustStore(path).get(peer_key("a", 1))


def test_a_bad_fingerprint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="SHA-256"):
        TrustStore(tmp_path / "t.json").accept(peer_key("a", 1), "12:34")


def test_a_discovered_peer_is_keyed_by_its_peer_id_whatever_its_address() -> None:
    peer_id = "6F1C2A3B-0000-4000-8000-00000000000A"
    assert trust_key("192.168.1.5", 4984, peer_id) == trust_key("10.0.0.9", 5000, peer_id) == peer_id_key(peer_id)
    assert trust_key("192.168.1.5", 4984) == peer_key("192.168.1.5", 4984)
    assert key_to_text(peer_id_key(peer_id)) == peer_id.lower()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("192.168.1.5:4984", "192.168.1.5:4984"),
        ("[fe80::1]:4984", "[fe80::1]:4984"),
        ("Shop.local:443", "shop.local:443"),
        ("6f1c2a3b-0000-4000-8000-00000000000a", "peer 6f1c2a3b-0000-4000-8000-00000000000a"),
    ],
)
def test_keys_as_people_type_them(text: str, key: str) -> None:
    assert key_from_text(text) == key and key_from_text(key_to_text(key)) == key


@pytest.mark.parametrize("text", ["", "fe80::1:4984", "host:99999", "a b"])
def test_what_is_not_a_key(text: str) -> None:
    with pytest.raises(ConfigurationError, match="not HOST:PORT or a peer ID"):
        key_from_text(text)
