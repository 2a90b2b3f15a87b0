"""TXT records, instance names, addresses and URLs of discovery (no network)."""

from __future__ import annotations

import socket
import uuid
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from zeroconf.asyncio import AsyncServiceInfo

from engine.replication import tuning
from engine.replication.discovery_records import (
    SERVICE_TYPE,
    Advert,
    Peer,
    decode_txt,
    default_instance_name,
    encode_txt,
    normalize_fingerprint,
    peer_url,
    usable_addresses,
)
from engine.replication.replicator_types import check_url

PEER = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
FP = ":".join(["AB"] * 32)

# -- TXT round trip -------------------------------------------------------------------------------

database_names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp"), blacklist_characters="/"), min_size=1
).filter(lambda s: not s.startswith("_") and s.isprintable() and len(s.encode()) <= 200)
fingerprints = st.binary(min_size=32, max_size=32).map(lambda b: ":".join(f"{x:02X}" for x in b))
other_protocols = st.from_regex(r"BLIP_[0-9]\+CBMobile_[0-9]{1,2}", fullmatch=True)
protocol_lists = st.lists(st.sampled_from(tuning.SUBPROTOCOLS) | other_protocols, min_size=0, max_size=4).map(
    lambda extra: (*extra, tuning.SUBPROTOCOLS[0])
)
adverts = st.builds(
    Advert,
    peer_id=st.uuids().map(str),
    database=database_names,
    fingerprint=st.none() | fingerprints,
    protocols=protocol_lists,
)


def wire(txt: dict[str, str]) -> dict[bytes, bytes | None]:
    """The properties a browser reads back from a TXT record python-zeroconf wrote."""
    written = AsyncServiceInfo(SERVICE_TYPE, f"x.{SERVICE_TYPE}", properties=txt)
    return AsyncServiceInfo(SERVICE_TYPE, f"x.{SERVICE_TYPE}", properties=written.text).properties


@given(adverts)
def test_txt_round_trip_through_zeroconf(advert: Advert) -> None:
    txt = encode_txt(advert)
    assert next(iter(txt)) == "txtvers"  # RFC 6763 §6.7: first
    assert all(len(f"{k}={v}".encode()) <= 255 for k, v in txt.items())
    assert decode_txt(wire(txt)) == advert


def test_txt_keys() -> None:
    assert encode_txt(Advert(PEER, "userdb")) == {
        "txtvers": "1", "peer": PEER, "db": "userdb", "tls": "0", "proto": "BLIP_3+CBMobile_3,BLIP_3+CBMobile_2",
    }  # fmt: skip
    assert encode_txt(Advert(PEER, "userdb", "ab" * 32))["fp"] == FP
    assert encode_txt(Advert(PEER, "userdb", "ab" * 32))["tls"] == "1"


def props(**entries: str | bytes | None) -> dict[bytes, bytes | None]:
    base: dict[str, str | bytes | None] = {"txtvers": "1", "peer": PEER, "db": "userdb", "tls": "0"}
    base["proto"] = "BLIP_3+CBMobile_3"
    base.update(entries)
    return {k.encode(): v.encode() if isinstance(v, str) else v for k, v in base.items() if v != "<absent>"}


def test_decoding_ignores_unknown_keys_and_key_case() -> None:
    properties = props(future="yes", flag=None)
    properties[b"DB"] = properties.pop(b"db")
    assert decode_txt(properties) == Advert(PEER, "userdb", None, ("BLIP_3+CBMobile_3",))
    assert decode_txt(props(peer=PEER.upper())).peer_id == PEER
    assert decode_txt(props(tls="1", fp="ab" * 32)).fingerprint == FP


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ({"txtvers": "<absent>"}, "TXT version"),
        ({"txtvers": "2"}, "TXT version"),
        ({"peer": "<absent>"}, "without peer"),
        ({"peer": "not-a-uuid"}, "not a UUID"),
        ({"peer": PEER.replace("-", "")}, "usual form"),
        ({"db": ""}, "database name"),
        ({"db": "_users"}, "database name"),
        ({"db": "a/b"}, "database name"),
        ({"db": "a\nb"}, "database name"),
        ({"db": b"\xff\xfe"}, "not text"),
        ({"tls": "yes"}, "neither 0 nor 1"),
        ({"tls": "1"}, "needs a fingerprint"),
        ({"tls": "0", "fp": "ab" * 32}, "needs a fingerprint"),
        ({"tls": "1", "fp": "ab" * 31}, "SHA-256"),
        ({"tls": "1", "fp": "zz" * 32}, "SHA-256"),
        ({"proto": ""}, "protocol list"),
        ({"proto": "<script>"}, "protocol list"),
        ({"proto": "BLIP_3+CBMobile_9"}, "no protocol in common"),
    ],
)
def test_malformed_txt_is_refused(entries: dict[str, str | bytes | None], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        decode_txt(props(**entries))


def test_a_foreign_advert_without_txt_is_refused() -> None:
    """The sample's own adverts carry no TXT record."""
    with pytest.raises(ValueError, match="TXT version"):
        decode_txt({})


@pytest.mark.parametrize(
    "advert",
    [Advert("x", "userdb"), Advert(PEER, "_x"), Advert(PEER, "db", "12"), Advert(PEER, "db", None, ())],
)
def test_encoding_refuses_what_cannot_be_advertised(advert: Advert) -> None:
    with pytest.raises(ValueError):
        encode_txt(advert)


def test_fingerprints_are_normalised() -> None:
    assert normalize_fingerprint("ab" * 32) == FP
    assert normalize_fingerprint(FP.lower()) == FP
    with pytest.raises(ValueError):
        normalize_fingerprint("sha256:" + "ab" * 32)


# -- instance names -------------------------------------------------------------------------------


def test_instance_names_are_readable_and_fit_a_dns_label() -> None:
    assert default_instance_name("bob", "shop-laptop") == "bob on shop-laptop"
    assert default_instance_name("bob", "") == "bob on this computer"
    assert default_instance_name("bo\x00b\n", "box") == "bob on box"
    long = default_instance_name("ä" * 40, "box")
    assert len(long.encode()) <= 59 and long == "ä" * 29  # cut between characters, not inside one
    assert default_instance_name("alice").startswith("alice on ")


# -- addresses and URLs ---------------------------------------------------------------------------


def test_usable_addresses_best_first() -> None:
    lo = socket.if_nametoindex("lo")
    given_addresses = [
        "127.0.0.1", "fe80::1", f"fe80::2%{lo}", "fe80::3%99999", "2001:db8::5", "169.254.3.4", "::1",
        "0.0.0.0", "ff02::fb", "192.168.1.5", "192.168.1.5", "nonsense", "::ffff:10.0.0.1", "fd00::9",
    ]  # fmt: skip
    assert usable_addresses(given_addresses) == [
        "192.168.1.5", "10.0.0.1", "2001:db8::5", "fd00::9", "169.254.3.4", "fe80::2%lo", "fe80::3%99999",
        "127.0.0.1", "::1",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("address", "url"),
    [
        ("192.168.1.5", "ws://192.168.1.5:4984/userdb"),
        ("2001:db8::5", "ws://[2001:db8::5]:4984/userdb"),
        ("fe80::1%eth0", "ws://[fe80::1%25eth0]:4984/userdb"),
        ("fe80::1%3", "ws://[fe80::1%253]:4984/userdb"),
    ],
)
def test_urls(address: str, url: str) -> None:
    assert peer_url("ws", address, 4984, "userdb") == url
    check_url(url, tls=False)  # a replicator accepts it
    assert urlsplit(url).port == 4984


def test_url_of_a_tls_peer_and_an_unusual_database_name() -> None:
    assert peer_url("wss", "fe80::1%eth0", 1, "my db") == "wss://[fe80::1%25eth0]:1/my%20db"


def test_a_peer_as_json() -> None:
    peer = Peer(
        PEER, "bob on box", "userdb", FP, ("BLIP_3+CBMobile_3",), 4984, ("10.0.0.2",), ("wss://10.0.0.2:4984/userdb",)
    )
    assert peer.tls and peer.url == "wss://10.0.0.2:4984/userdb"
    assert peer.to_json() == {
        "name": "bob on box", "peer_id": PEER, "database": "userdb", "urls": ["wss://10.0.0.2:4984/userdb"],
        "tls": True, "fingerprint": FP, "protocols": ["BLIP_3+CBMobile_3"],
    }  # fmt: skip
    assert uuid.UUID(peer.peer_id)
