"""Authentication on the handshake: Basic, passwords, client certificates, open access, and what a refused client sees."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.datastructures import Headers

from engine.database import Database
from engine.replication.auth import (
    NO_AUTHENTICATION,
    REALM,
    BasicAuthenticator,
    CertificateOrPasswordAuthenticator,
    ClientCertificateAuthenticator,
    PasswordAuthenticator,
    load_certificates,
    parse_basic,
)
from engine.replication.blip.codec import encode_message, encode_varint
from engine.replication.blip.websocket import HandshakeRequest
from engine.replication.errors import ConfigurationError, HTTPStatusError
from engine.replication.listener import ConnectionEvent, ListenerConfiguration, URLEndpointListener
from engine.replication.passwords import allow_list_entry
from engine.replication.replicator_types import ActivityLevel
from engine.replication.server_validation import ServerValidation
from engine.replication.tls import TLSIdentity
from tests.conftest import TIME_UNIT
from tests.engine.replication.conftest import Peers, basic, password_authenticator, raw_upgrade

CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'


def test_basic_header_round_trip_and_hidden_password() -> None:
    auth = BasicAuthenticator("bob", "pa:ss wörd")
    assert parse_basic(auth.headers()["Authorization"]) == ("bob", "pa:ss wörd")
    assert "pa:ss" not in repr(auth)
    with pytest.raises(ValueError):
        BasicAuthenticator("b:ob", "x")


@pytest.mark.parametrize("header", [None, "", "Bearer abc", "Basic !!!", "Basic Ym9i", "Basic " + "/w==", "Basic"])
def test_malformed_basic_headers_give_no_credentials(header: str | None) -> None:
    assert parse_basic(header) is None


def handshake(authorization: str | None = None, certificate: bytes | None = None) -> HandshakeRequest:
    headers = Headers({"Authorization": authorization} if authorization is not None else {})
    return HandshakeRequest("/db/_blipsync", "db", headers, ("192.0.2.7", 40000), certificate)


async def outcome(authenticator: Any, request: HandshakeRequest) -> Any:
    try:
        result = authenticator(request)
        return await result if asyncio.iscoroutine(result) else result
    except HTTPStatusError as exc:
        assert exc.headers == {"WWW-Authenticate": CHALLENGE}  # every refusal challenges (protocol §9)
        return exc.status


@pytest.mark.asyncio
async def test_password_authenticator_over_plain_and_hashed_entries(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text('{"name":"bob","password":"pw"}\n' + json.dumps(allow_list_entry("priya", "horse")))
    auth = PasswordAuthenticator.from_allow_list(path)
    assert await outcome(auth, handshake(basic("bob", "pw"))) == "bob"
    assert await outcome(auth, handshake(basic("priya", "horse"))) == "priya"
    for header in (basic("bob", "horse"), basic("priya", "pw"), basic("jane", "pw"), None, "Basic !!", "Bearer x"):
        assert await outcome(auth, handshake(header)) == 401
    assert "pw" not in repr(auth) and "horse" not in repr(auth)


# -- what a refused client gets, byte by byte ------------------------------------------------------


def blip_frames() -> bytes:
    """Masked WebSocket frames carrying BLIP requests that would read the database if anyone answered."""
    frames = b""
    crc = 0
    for number, profile in enumerate(("getCheckpoint", "subChanges"), start=1):
        payload = encode_varint(number) + b"\x00" + encode_message({"Profile": profile, "client": "x"})
        crc = zlib.crc32(payload, crc)
        payload += crc.to_bytes(4, "big")
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        frames += bytes([0x82, 0x80 | len(payload)]) + mask + masked
    return frames


def listen_events(listener: URLEndpointListener) -> list[ConnectionEvent]:
    events: list[ConnectionEvent] = []
    listener.add_connection_listener(events.append)
    return events


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "authorization",
    [None, basic("bob", "wrong"), basic("mallory", "secret"), basic("bob", ""), "Basic !!!", "Negotiate abc"],
    ids=["none", "wrong-password", "unknown-user", "empty-password", "malformed", "other-scheme"],
)
async def test_a_refused_client_gets_a_401_challenge_and_not_one_byte_of_data(
    peers: Peers, authorization: str | None
) -> None:
    db = peers.database("a")
    db.save("private-doc", {"secret": "xyzzy"})
    listener = await peers.listener(db)
    events = listen_events(listener)
    response = await raw_upgrade(listener.urls[0], authorization=authorization, then=blip_frames())
    head, _, body = response.partition(b"\r\n\r\n")  # and then the server closed the connection
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 401 Unauthorized"
    assert sorted(line for line in lines[1:] if not line.startswith(b"Date: ")) == [
        b"Connection: close",
        b"Content-Length: 13",
        b"Content-Type: text/plain; charset=utf-8",
        b"Server: inventory-sync/0.1",
        b'WWW-Authenticate: Basic realm="Inventory Sync", charset="UTF-8"',
    ]
    assert body == b"unauthorized\n"
    assert b"private-doc" not in response and b"xyzzy" not in response
    assert events == [] and listener.stats.revs_sent == 0 and listener.status.connection_count == 0


# -- the replicator's side -------------------------------------------------------------------------


class Counting:
    """Counts the handshakes an authenticator sees."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    async def __call__(self, request: HandshakeRequest) -> Any:
        self.calls += 1
        return await self.inner(request)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "credentials",
    [None, ("bob", "hunter2-wrong"), ("mallory", "Tr0ub4dor&3")],
    ids=["no-password", "wrong-password", "unknown-user"],
)
async def test_the_replicator_stops_unauthorized_without_retrying(
    peers: Peers, credentials: tuple[str, str] | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a, b = peers.database("a"), peers.database("b")
    a.save("from-a", {"n": 1})
    b.save("from-b", {"n": 2})
    auth = Counting(password_authenticator({"bob": "Tr0ub4dor&3"}))
    listener = await peers.listener(a, authenticator=auth)
    replicator = peers.replicator(
        b, listener, authenticator=BasicAuthenticator(*credentials) if credentials else None, continuous=True
    )
    replicator.start()
    status = await asyncio.wait_for(replicator.wait_stopped(), 10 * TIME_UNIT)
    assert status.activity is ActivityLevel.STOPPED
    assert isinstance(status.error, HTTPStatusError) and status.error.status == 401
    assert str(status.error) == "sign-in refused: wrong or missing user name, password or client certificate (HTTP 401)"
    assert auth.calls == 1  # no retry loop
    assert a.doc_ids() == ["from-a"] and b.doc_ids() == ["from-b"]
    assert_no_credentials_logged(caplog, "Tr0ub4dor&3", "hunter2-wrong")


def assert_no_credentials_logged(caplog: pytest.LogCaptureFixture, *passwords: str) -> None:
    """Nothing logged shows a password, plain or inside a Basic header."""
    logged = "\n".join(r.getMessage() for r in caplog.records)
    tokens = [basic(user, password).split()[1] for password in passwords for user in ("bob", "mallory")]
    assert not [secret for secret in [*passwords, *tokens] if secret in logged]
    assert "Authorization: Basic" not in logged


@pytest.mark.asyncio
async def test_debug_logs_of_a_sync_show_no_credentials(peers: Peers, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    a, b = peers.database("a"), peers.database("b")
    a.save("doc", {"n": 1})
    listener = await peers.listener(a, authenticator=password_authenticator({"bob": "Tr0ub4dor&3"}))
    await peers.replicate(b, listener, authenticator=BasicAuthenticator("bob", "Tr0ub4dor&3"))
    assert b.doc_ids() == ["doc"]
    assert_no_credentials_logged(caplog, "Tr0ub4dor&3")


# -- open access is a choice ---------------------------------------------------------------------------


def test_a_listener_without_an_authenticator_choice_is_refused(tmp_path: Path) -> None:
    db = Database(tmp_path / "db")
    try:
        with pytest.raises(ConfigurationError, match="NO_AUTHENTICATION"):
            URLEndpointListener(ListenerConfiguration(db))
    finally:
        db.close()


@pytest.mark.asyncio
async def test_no_authentication_lets_anyone_in_and_says_so(peers: Peers, caplog: pytest.LogCaptureFixture) -> None:
    a, b = peers.database("a"), peers.database("b")
    a.save("doc", {"n": 1})
    listener = await peers.listener(a, authenticator=NO_AUTHENTICATION)
    assert "anyone who reaches userdb may read and write it" in caplog.text
    await peers.replicate(b, listener, authenticator=None)
    assert b.doc_ids() == ["doc"]
    assert repr(NO_AUTHENTICATION) == "NO_AUTHENTICATION"
    caplog.clear()
    await peers.listener(b, authenticator=NO_AUTHENTICATION, read_only=True)
    assert "anyone who reaches userdb may read it" in caplog.text  # not write: it is read-only


# -- client certificates --------------------------------------------------------------------------------


@dataclass
class Identity:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def make_identity(cn: str, issuer: Identity | None = None, *, ca: bool = False) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return Identity(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


@dataclass
class Pki:
    server: Identity
    alice: Identity  # self-signed, trusted alone
    shop_ca: Identity
    carol: Identity  # issued by shop_ca
    mallory: Identity  # self-signed, not trusted


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = make_identity("Shop CA", ca=True)
    return Pki(
        make_identity("127.0.0.1"), make_identity("alice"), ca, make_identity("carol", ca), make_identity("mallory")
    )


def tls_identity(identity: Identity) -> TLSIdentity:
    return TLSIdentity(identity.key, [identity.certificate])


async def sync_with_certificate(
    peers: Peers, listener: URLEndpointListener, identity: Identity | None, **options: Any
) -> Any:
    """A one-shot pull over TLS presenting ``identity``'s certificate (server validation is not tested here)."""
    db = peers.database(f"client-{len(peers.databases)}")
    server = listener.config.tls
    assert server is not None
    replicator = peers.replicator(
        db,
        listener,
        tls=ServerValidation.pinned(server.certificate),
        client_identity=tls_identity(identity) if identity is not None else None,
        **options,
    )
    replicator.start()
    status = await asyncio.wait_for(replicator.wait_stopped(), 20 * TIME_UNIT)
    return status.error, db.doc_ids()


@pytest.mark.asyncio
async def test_client_certificates_that_chain_to_the_roots_sign_in_as_their_common_name(peers: Peers, pki: Pki) -> None:
    roots = [pki.alice.certificate, pki.shop_ca.certificate]
    auth = ClientCertificateAuthenticator(roots)
    a = peers.database("a")
    a.save("doc", {"n": 1})
    listener = await peers.listener(a, authenticator=auth, tls=tls_identity(pki.server))
    events = listen_events(listener)
    assert await sync_with_certificate(peers, listener, pki.alice, authenticator=None) == (None, ["doc"])
    assert await sync_with_certificate(peers, listener, pki.carol, authenticator=None) == (None, ["doc"])
    assert [e.user for e in events if e.connected] == ["alice", "carol"]
    error, docs = await sync_with_certificate(peers, listener, None, authenticator=None)
    assert isinstance(error, HTTPStatusError) and error.status == 401 and docs == []
    error, docs = await sync_with_certificate(peers, listener, pki.mallory, authenticator=None)
    assert error is not None and docs == []  # refused by the TLS layer, before any HTTP byte
    assert [e.user for e in events if e.connected] == ["alice", "carol"]


@pytest.mark.asyncio
async def test_a_callback_narrows_down_and_names_the_principal(peers: Peers, pki: Pki) -> None:
    seen: list[str] = []

    def accept(certificate: x509.Certificate) -> str | None:
        cn = str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        seen.append(cn)
        return f"shop:{cn}" if cn == "carol" else None

    auth = ClientCertificateAuthenticator([pki.alice.certificate, pki.shop_ca.certificate], accept=accept)
    listener = await peers.listener(peers.database("a"), authenticator=auth, tls=tls_identity(pki.server))
    events = listen_events(listener)
    error, _ = await sync_with_certificate(peers, listener, pki.alice, authenticator=None)
    assert isinstance(error, HTTPStatusError) and error.status == 401
    assert await sync_with_certificate(peers, listener, pki.carol, authenticator=None) == (None, [])
    assert seen == ["alice", "carol"] and [e.user for e in events if e.connected] == ["shop:carol"]


@pytest.mark.asyncio
async def test_certificate_or_password(peers: Peers, pki: Pki) -> None:
    auth = CertificateOrPasswordAuthenticator(
        ClientCertificateAuthenticator([pki.alice.certificate]), password_authenticator()
    )
    listener = await peers.listener(peers.database("a"), authenticator=auth, tls=tls_identity(pki.server))
    events = listen_events(listener)
    assert (await sync_with_certificate(peers, listener, pki.alice, authenticator=None))[0] is None
    assert (await sync_with_certificate(peers, listener, None))[0] is None  # bob's password
    error, _ = await sync_with_certificate(peers, listener, None, authenticator=BasicAuthenticator("bob", "x"))
    assert isinstance(error, HTTPStatusError) and error.status == 401
    assert [e.user for e in events if e.connected] == ["alice", "bob"]


@pytest.mark.asyncio
async def test_certificate_authenticator_without_a_certificate_or_with_a_refused_one() -> None:
    identity = make_identity("dave")
    der = identity.certificate.public_bytes(serialization.Encoding.DER)
    plain = ClientCertificateAuthenticator([identity.certificate])
    assert await outcome(plain, handshake(certificate=der)) == "dave"
    assert await outcome(plain, handshake(basic("bob", "secret"))) == 401
    refusing = ClientCertificateAuthenticator([identity.certificate], accept=lambda _cert: None)
    assert await outcome(refusing, handshake(certificate=der)) == 401


def test_a_certificate_authenticator_needs_roots() -> None:
    with pytest.raises(ConfigurationError, match="needs root certificates"):
        ClientCertificateAuthenticator([])


def test_load_certificates(pki: Pki, tmp_path: Path) -> None:
    bundle = tmp_path / "roots.pem"
    bundle.write_bytes(
        b"".join(i.certificate.public_bytes(serialization.Encoding.PEM) for i in (pki.alice, pki.shop_ca))
    )
    assert load_certificates(bundle) == [pki.alice.certificate, pki.shop_ca.certificate]
    der = tmp_path / "alice.cer"
    der.write_bytes(pki.alice.certificate.public_bytes(serialization.Encoding.DER))
    assert ClientCertificateAuthenticator.from_file(der).client_roots == (pki.alice.certificate,)
    (tmp_path / "junk").write_bytes(b"not a certificate")
    with pytest.raises(ConfigurationError, match="no certificate"):
        load_certificates(tmp_path / "junk")
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_certificates(tmp_path / "missing.pem")
