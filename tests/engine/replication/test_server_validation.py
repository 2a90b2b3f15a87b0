"""Server validation settings, their errors, host checks, client identities and TLS failure reports.

The full grid of listener modes against validation modes is in test_tls_matrix.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from engine.database import Database
from engine.replication.auth import PasswordAuthenticator
from engine.replication.blip.websocket import HandshakeRequest
from engine.replication.errors import (
    CertificateChangedError,
    CertificateNotTrustedError,
    CertificateRefusedError,
    ConfigurationError,
    HandshakeError,
    TransportError,
)
from engine.replication.listener import URLEndpointListener
from engine.replication.replicator import is_transient
from engine.replication.replicator_types import ReplicatorConfiguration
from engine.replication.server_validation import ServerValidation, ValidationMode, connection_error
from engine.replication.tls import TLSIdentity
from engine.replication.trust_store import TrustStore, peer_id_key
from tests.conftest import TIME_UNIT, needs_shared
from tests.engine.replication.conftest import USERS, Peers
from tests.engine.replication.tls_helpers import SEED_FINGERPRINT, SEED_PINNED_CER, make_ca


@pytest.fixture(scope="module")
def identity() -> TLSIdentity:
    return TLSIdentity.create_self_signed(["127.0.0.1", "localhost"])


# -- settings ---------------------------------------------------------------------------------------


def test_pins_from_every_form_agree(tmp_path: Path, identity: TLSIdentity) -> None:
    der, pem = tmp_path / "c.cer", tmp_path / "c.pem"
    der.write_bytes(identity.certificate_der)
    pem.write_text(identity.certificate_pem)
    forms = [
        ServerValidation.pinned(der),
        ServerValidation.pinned(pem),
        ServerValidation.pinned(identity.certificate_der),
        ServerValidation.pinned(identity.certificate),
        ServerValidation.pinned(fingerprint=identity.fingerprint.replace(":", "").lower()),
        ServerValidation.from_mode("pinned", pinned_certificate=der),
        ServerValidation.from_mode("pinned", pin=identity.fingerprint),
    ]
    assert {form.pinned_fingerprint for form in forms} == {identity.fingerprint}
    assert {form.mode for form in forms} == {ValidationMode.PINNED}


@needs_shared(SEED_PINNED_CER)
def test_the_seed_pinned_certificate_pins_the_seed_fingerprint() -> None:
    assert ServerValidation.pinned(SEED_PINNED_CER).pinned_fingerprint == SEED_FINGERPRINT


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"mode": "strict"}, "unknown verification mode 'strict'; use one of self-signed, ca, pinned, tofu"),
        ({"mode": "pinned"}, "a certificate or a SHA-256 fingerprint"),
        ({"mode": "pinned", "pin": "00" * 32, "pinned_certificate": Path("x.cer")}, "one of them"),
        ({"mode": "pinned", "pin": "12:34"}, "not a SHA-256 fingerprint"),
        ({"mode": "ca", "pin": "00" * 32}, "'ca' does not use a pin"),
        ({"mode": "self-signed", "ca_file": Path("x.pem")}, "'self-signed' does not use a CA file"),
        ({"mode": "tofu"}, "needs a trust store"),
        ({"mode": "ca", "ca_file": Path("/nonexistent/ca.pem")}, "ca.pem: cannot read the CA file"),
        ({"mode": "pinned", "pinned_certificate": Path("/nonexistent/p.cer")}, "p.cer: cannot read"),
    ],
)
def test_settings_errors(options: dict[str, object], words: str) -> None:
    mode = options.pop("mode")
    with pytest.raises(ConfigurationError, match=re.escape(words)):
        ServerValidation.from_mode(mode, **options)  # type: ignore[arg-type]


def test_ca_files_pem_bundle_or_der(tmp_path: Path) -> None:
    ca, other = make_ca(), make_ca("Other")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(ca.pem + other.pem)
    assert ServerValidation.ca(bundle).ca_certificates.count("BEGIN CERTIFICATE") == 2  # type: ignore[union-attr]
    der = tmp_path / "one.cer"
    der.write_bytes(ca.certificate.public_bytes(serialization.Encoding.DER))
    assert ServerValidation.ca(der).ca_source == f"the CA file {der}"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    with pytest.raises(ConfigurationError, match=r"garbage\.pem: no certificate"):
        ServerValidation.ca(garbage)


def test_a_client_identity_needs_tls(tmp_path: Path, identity: TLSIdentity) -> None:
    with Database(tmp_path / "db") as db, pytest.raises(ConfigurationError, match="client identity needs wss://"):
        ReplicatorConfiguration(db, "ws://127.0.0.1:1/db", client_identity=identity)


def test_client_contexts_are_tls_1_2_or_newer(identity: TLSIdentity) -> None:
    for validation in (ServerValidation.self_signed(), ServerValidation.ca()):
        context = validation.client_context("127.0.0.1", 1, identity)
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ServerValidation.ca().client_context("h", 1).check_hostname


# -- failures reported --------------------------------------------------------------------------------


def _ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    error.reason = reason
    return error


def test_tls_failures_become_replication_errors() -> None:
    assert isinstance(connection_error(ssl.SSLEOFError(8, "EOF"), "h", 1), TransportError)
    not_tls = connection_error(_ssl_error("WRONG_VERSION_NUMBER"), "h", 1)
    assert isinstance(not_tls, HandshakeError) and "does not answer in TLS (a ws:// listener?)" in str(not_tls)
    alert = connection_error(_ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED"), "::1", 443)
    assert "[::1]:443 refused the TLS handshake (certificate required)" in str(alert)
    other = connection_error(_ssl_error("NO_SHARED_CIPHER"), "h", 1)
    assert isinstance(other, HandshakeError) and "TLS handshake with h:1 failed" in str(other)
    verify = ssl.SSLCertVerificationError(1, "verify failed")
    verify.verify_message = "certificate has expired"
    refused = connection_error(verify, "h", 2)
    assert isinstance(refused, CertificateRefusedError) and "certificate has expired" in str(refused)
    assert not is_transient(refused) and not is_transient(not_tls)
    assert is_transient(connection_error(ssl.SSLEOFError(8, "EOF"), "h", 1))


# -- real connections --------------------------------------------------------------------------------


async def _sync(
    peers: Peers,
    served_identity: TLSIdentity,
    validation: ServerValidation,
    url_host: str = "127.0.0.1",
    *,
    listener: URLEndpointListener | None = None,
) -> object:
    """A one-shot pull of a new listener's document (or ``listener``'s): the error, or the document."""
    run = len(peers.databases)
    client = peers.database(f"client{run}")
    if listener is None:
        served = peers.database(f"served{run}")
        served.save("doc", {"n": 1})
        listener = await peers.listener(served, tls=served_identity)
    url = f"wss://{url_host}:{listener.port}/userdb"
    replicator = peers.replicator(client, url, tls=validation, max_attempts=1)
    replicator.start()
    status = await asyncio.wait_for(replicator.wait_stopped(), 30 * TIME_UNIT)
    return status.error if status.error is not None else client.get("doc")


@pytest.mark.asyncio
async def test_ca_mode_checks_the_ip_address(peers: Peers, tmp_path: Path) -> None:
    ca = make_ca()
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca.pem)
    error = await _sync(peers, ca.issue(["10.9.9.9", "elsewhere.example"]), ServerValidation.ca(bundle))
    assert isinstance(error, CertificateRefusedError)
    assert "expected a certificate for 127.0.0.1 from a CA in the CA file" in str(error)
    assert "IP address mismatch" in str(error)


@pytest.mark.asyncio
async def test_ca_mode_checks_the_host_name(peers: Peers, tmp_path: Path) -> None:
    ca = make_ca()
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca.pem)
    error = await _sync(peers, ca.issue(["127.0.0.1", "shop.example"]), ServerValidation.ca(bundle), "localhost")
    assert isinstance(error, CertificateRefusedError) and "Hostname mismatch" in str(error)
    assert await _sync(peers, ca.issue(["localhost"]), ServerValidation.ca(bundle), "localhost") is not None


@pytest.mark.asyncio
async def test_self_signed_mode_refuses_a_certificate_not_valid_yet(peers: Peers) -> None:
    future = TLSIdentity.create_self_signed(["127.0.0.1"], now=dt.datetime.now(dt.UTC) + dt.timedelta(days=10))
    error = await _sync(peers, future, ServerValidation.self_signed())
    assert isinstance(error, CertificateRefusedError)
    assert "expected a self-signed certificate valid now, got one valid only from" in str(error)
    assert error.seen_fingerprint == future.fingerprint


@pytest.mark.asyncio
async def test_a_broken_trust_store_refuses_rather_than_trusts(
    peers: Peers, tmp_path: Path, identity: TLSIdentity
) -> None:
    path = tmp_path / "trusted.json"
    path.write_text("{broken")
    error = await _sync(peers, identity, ServerValidation.tofu(TrustStore(path)))
    assert isinstance(error, CertificateRefusedError) and "trust store error" in str(error)


@pytest.mark.asyncio
async def test_the_replicator_presents_its_client_identity(peers: Peers) -> None:
    ca = make_ca()
    seen: list[bytes | None] = []
    check = PasswordAuthenticator.from_users(USERS)

    class CertificateRecorder:
        """A password authenticator that asks TLS for client certificates chaining to the test CA."""

        client_roots = (ca.certificate,)

        def __call__(self, request: HandshakeRequest) -> str:
            seen.append(request.peer_certificate)
            return check(request)

    served, client = peers.database("served"), peers.database("client")
    listener = await peers.listener(
        served, tls=TLSIdentity.create_self_signed(["127.0.0.1"]), authenticator=CertificateRecorder()
    )
    pin = ServerValidation.pinned(fingerprint=listener.config.tls.fingerprint)  # type: ignore[union-attr]
    me = ca.issue(["inventory client"], client=True)
    await peers.replicate(client, listener, tls=pin, client_identity=me)
    await peers.replicate(client, listener, tls=pin)
    assert seen == [me.certificate_der, None]


@pytest.mark.asyncio
async def test_trust_on_first_use_can_ask_first(peers: Peers, tmp_path: Path, identity: TLSIdentity) -> None:
    store = TrustStore(tmp_path / "trusted.json")
    asking = ServerValidation.tofu(store, confirm_first_use=True)
    error = await _sync(peers, identity, asking)
    assert isinstance(error, CertificateNotTrustedError) and not is_transient(error)
    assert error.seen_fingerprint == identity.fingerprint and "not trusted yet" in str(error)
    assert error.trust_key is not None and store.get(error.trust_key) is None  # nothing trusted without a yes
    store.accept(error.trust_key, identity.fingerprint)  # the user said yes
    assert await _sync(peers, identity, asking, listener=peers.listeners[-1]) is not None


class FixedEndpoint:
    """A discovered peer's endpoint that always gives one URL (discovery itself is tested elsewhere)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def resolve(self, *, after_failure: bool = False) -> str:
        return self.url

    async def wait_announced(self) -> None:
        await asyncio.Event().wait()


@pytest.mark.asyncio
async def test_a_discovered_peer_keeps_its_trust_when_it_moves_and_an_impostor_of_its_id_is_refused(
    peers: Peers, tmp_path: Path, identity: TLSIdentity
) -> None:
    store = TrustStore(tmp_path / "trusted.json")
    validation = ServerValidation.tofu(store)
    peer_id = "6f1c2a3b-0000-4000-8000-00000000000a"

    async def sync_with_peer(served_identity: TLSIdentity) -> object:
        served = peers.database(f"served{len(peers.databases)}")
        served.save("doc", {"n": 1})
        listener = await peers.listener(served, tls=served_identity)
        client = peers.database(f"client{len(peers.databases)}")
        url = listener.urls[0]
        replicator = peers.replicator(
            client, url, tls=validation, max_attempts=1, remote_name=peer_id, endpoint=FixedEndpoint(url)
        )
        replicator.start()
        status = await asyncio.wait_for(replicator.wait_stopped(), 30 * TIME_UNIT)
        return status.error if status.error is not None else client.get("doc")

    assert await sync_with_peer(identity) is not None  # first use, keyed by the peer ID
    assert [p.key for p in store.peers()] == [peer_id_key(peer_id)]
    assert await sync_with_peer(identity) is not None  # the same peer on another port: still trusted
    impostor = await sync_with_peer(TLSIdentity.create_self_signed(["127.0.0.1"]))
    assert isinstance(impostor, CertificateChangedError) and impostor.trust_key == peer_id_key(peer_id)
    assert [p.fingerprint for p in store.peers()] == [identity.fingerprint]
