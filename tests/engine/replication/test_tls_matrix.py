"""Every listener TLS mode against every replicator validation mode (issue 12), through real replication.

Each cell runs a one-shot push-and-pull between a listener on 127.0.0.1
(password authentication, one document) and a replicator, and checks its
expected outcome: the document arrived, or the replicator stopped with the
expected error class and message, without retrying when the error is
permanent and without the listener's authenticator ever being asked when the
certificate was refused. Identities are made (and the RSA-4096 seed files
loaded) once per module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.replication.auth import PasswordAuthenticator
from engine.replication.blip import websocket as websocket_module
from engine.replication.blip.websocket import HandshakeRequest
from engine.replication.errors import (
    CertificateChangedError,
    CertificateRefusedError,
    HandshakeError,
    ReplicationError,
    TransportError,
)
from engine.replication.listener_tls import listener_identity
from engine.replication.replicator_types import ActivityLevel, ReplicatorStatus
from engine.replication.server_validation import ServerValidation
from engine.replication.tls import TLSIdentity, load_certificate_file, sha256_fingerprint
from engine.replication.trust_store import TrustStore, peer_key
from tests.conftest import TIME_UNIT, needs_shared
from tests.engine.replication.conftest import USERS, Peers
from tests.engine.replication.tls_helpers import (
    EXTRA_P12,
    EXTRA_PINNED_CER,
    INVALID_PINNED_CER,
    SEED_P12,
    SEED_PASSWORD,
    SEED_PINNED_CER,
    TestCA,
    make_ca,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.both_loops]  # the engine runs on either (tests/conftest.py)

OTHER_FINGERPRINT = ":".join(["AB"] * 32)


# -- outcomes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Synced:
    """The document crossed over."""


@dataclass(frozen=True)
class Refused:
    """The replicator stopped with ``error`` whose message holds ``fragment`` (``{seen}``: the
    listener's fingerprint, ``{pin}``: the pinned file's); ``transient`` errors are retried first."""

    error: type[ReplicationError]
    fragment: str
    transient: bool = False


@dataclass(frozen=True)
class NotTLS:
    """``wss://`` to a plain listener: its reply (an HTTP 400) reaches the TLS layer as a bad record, or
    its reset comes first; a bad record stops at once, a reset is retried like any cut connection."""


SYNCED = Synced()
EXPIRED = Refused(
    CertificateRefusedError, "expected a self-signed certificate valid now, got one that expired on 2021-06-17"
)
CA_SIGNED = Refused(
    CertificateRefusedError, "expected a self-signed certificate, got one issued by CN=Inventory Sync Test CA"
)
SELF_SIGNED_TO_BUNDLE = Refused(CertificateRefusedError, "from a CA in the CA file")
SELF_SIGNED_TO_SYSTEM = Refused(
    CertificateRefusedError, "from a CA in the system's trusted roots; self-signed certificate"
)
UNKNOWN_CA = Refused(CertificateRefusedError, "the system's trusted roots; unable to get local issuer certificate")
PIN_MISMATCH = Refused(CertificateRefusedError, "expected the pinned certificate SHA-256 {pin}, got SHA-256 {seen}")
CHANGED = Refused(CertificateChangedError, f"certificate changed: expected SHA-256 {OTHER_FINGERPRINT}")
PLAIN_TO_TLS = Refused(TransportError, "connection closed while reading HTTP status line", transient=True)

LISTENERS = ["disabled", "anonymous", "imported-seed", "imported-extra", "generated", "ca-signed"]
VALIDATIONS = [
    "self-signed",
    "ca-bundle",
    "ca-system",
    "pinned-seed-cer",
    "pinned-invalid-cer",
    "pinned-extra-cer",
    "pinned-fingerprint",
    "tofu-first-use",
    "tofu-reuse",
    "tofu-changed",
    "ws-scheme",
]
_ = NotTLS()
# fmt: off
EXPECTED: dict[str, list[object]] = {
    #                 self-signed      ca-bundle              ca-system              pin seed      pin invalid   pin extra     pin fp  tofu 1st tofu 2nd tofu chg  ws://
    "disabled":       [_,              _,                     _,                     _,            _,            _,            _,      _,       _,       _,       SYNCED],
    "anonymous":      [SYNCED,         SELF_SIGNED_TO_BUNDLE, SELF_SIGNED_TO_SYSTEM, PIN_MISMATCH, PIN_MISMATCH, PIN_MISMATCH, SYNCED, SYNCED,  SYNCED,  CHANGED, PLAIN_TO_TLS],
    "imported-seed":  [EXPIRED,        SELF_SIGNED_TO_BUNDLE, SELF_SIGNED_TO_SYSTEM, SYNCED,       PIN_MISMATCH, PIN_MISMATCH, SYNCED, SYNCED,  SYNCED,  CHANGED, PLAIN_TO_TLS],
    "imported-extra": [EXPIRED,        SELF_SIGNED_TO_BUNDLE, SELF_SIGNED_TO_SYSTEM, PIN_MISMATCH, PIN_MISMATCH, PIN_MISMATCH, SYNCED, SYNCED,  SYNCED,  CHANGED, PLAIN_TO_TLS],
    "generated":      [SYNCED,         SELF_SIGNED_TO_BUNDLE, SELF_SIGNED_TO_SYSTEM, PIN_MISMATCH, PIN_MISMATCH, PIN_MISMATCH, SYNCED, SYNCED,  SYNCED,  CHANGED, PLAIN_TO_TLS],
    "ca-signed":      [CA_SIGNED,      SYNCED,                UNKNOWN_CA,            PIN_MISMATCH, PIN_MISMATCH, PIN_MISMATCH, SYNCED, SYNCED,  SYNCED,  CHANGED, PLAIN_TO_TLS],
}
# fmt: on
#: Seed-data files each cell needs (the cell is skipped when ../shared is absent).
_LISTENER_FILES = {"imported-seed": SEED_P12, "imported-extra": EXTRA_P12}
_VALIDATION_FILES = {
    "pinned-seed-cer": SEED_PINNED_CER,
    "pinned-invalid-cer": INVALID_PINNED_CER,
    "pinned-extra-cer": EXTRA_PINNED_CER,
}


def _cells() -> Iterator[Any]:
    for listener, outcomes in EXPECTED.items():
        for validation, outcome in zip(VALIDATIONS, outcomes, strict=True):
            files = [p for p in (_LISTENER_FILES.get(listener), _VALIDATION_FILES.get(validation)) if p is not None]
            marks = [needs_shared(path) for path in files]
            yield pytest.param(listener, validation, outcome, id=f"{listener}--{validation}", marks=marks)


# -- fixtures ----------------------------------------------------------------------------------


@dataclass
class Material:
    """Identities and files shared by the module's cells."""

    root: Path
    ca: TestCA
    ca_file: Path
    identities: dict[str, TLSIdentity | None]


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    root = tmp_path_factory.mktemp("tls-matrix")
    ca = make_ca()
    ca_file = root / "test-ca.pem"
    ca_file.write_bytes(ca.pem)
    identities: dict[str, TLSIdentity | None] = {
        "disabled": listener_identity("disabled"),
        "anonymous": listener_identity("anonymous", host="127.0.0.1"),
        "generated": listener_identity("generated", database_dir=root, host="127.0.0.1"),
        "ca-signed": ca.issue(["127.0.0.1", "localhost"]),
    }
    if SEED_P12.exists():
        identities["imported-seed"] = listener_identity("imported", identity_file=SEED_P12, password=SEED_PASSWORD)
        identities["imported-extra"] = listener_identity("imported", identity_file=EXTRA_P12, password=SEED_PASSWORD)
    return Material(root, ca, ca_file, identities)


class CountingAuthenticator:
    """The usual password check, counting the handshakes that reached it."""

    def __init__(self) -> None:
        self.calls = 0
        self._check = PasswordAuthenticator.from_users(USERS)

    def __call__(self, request: HandshakeRequest) -> str:
        self.calls += 1
        return self._check(request)


def validation_for(name: str, material: Material, identity: TLSIdentity | None, store_path: Path) -> ServerValidation:
    """The replicator's settings for column ``name`` (``store_path``: a fresh trust store)."""
    fingerprint = identity.fingerprint if identity is not None else OTHER_FINGERPRINT
    builders: dict[str, Callable[[], ServerValidation]] = {
        "self-signed": ServerValidation.self_signed,
        "ca-bundle": lambda: ServerValidation.ca(material.ca_file),
        "ca-system": ServerValidation.ca,
        "pinned-seed-cer": lambda: ServerValidation.pinned(SEED_PINNED_CER),
        "pinned-invalid-cer": lambda: ServerValidation.pinned(INVALID_PINNED_CER),
        "pinned-extra-cer": lambda: ServerValidation.pinned(EXTRA_PINNED_CER),
        "pinned-fingerprint": lambda: ServerValidation.pinned(fingerprint=fingerprint),
        "tofu-first-use": lambda: ServerValidation.tofu(store_path),
        "tofu-reuse": lambda: ServerValidation.tofu(store_path),
        "tofu-changed": lambda: ServerValidation.tofu(store_path),
    }
    return builders[name]()


# -- the matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("listener_mode", "validation_mode", "outcome"), list(_cells()))
async def test_listener_mode_against_validation_mode(
    peers: Peers, material: Material, listener_mode: str, validation_mode: str, outcome: object
) -> None:
    identity = material.identities[listener_mode]
    served, client = peers.database("served"), peers.database("client")
    served.save("seeded", {"from": listener_mode})
    authenticator = CountingAuthenticator()
    listener = await peers.listener(served, tls=identity, authenticator=authenticator)
    port = listener.port
    assert port is not None
    url = listener.urls[0]
    assert url.startswith("wss://" if identity is not None else "ws://")

    store = TrustStore(peers.root / "trusted-peers.json")
    if validation_mode == "tofu-reuse" and identity is not None:
        store.accept(peer_key("127.0.0.1", port), identity.fingerprint)
    if validation_mode == "tofu-changed":
        store.accept(peer_key("127.0.0.1", port), OTHER_FINGERPRINT)
    if validation_mode == "ws-scheme":
        url, tls = "ws://" + url.partition("://")[2], None
    else:
        url, tls = "wss://" + url.partition("://")[2], validation_for(validation_mode, material, identity, store.path)

    replicator = peers.replicator(client, url, tls=tls, max_attempts=2)
    statuses: list[ReplicatorStatus] = []
    replicator.add_change_listener(statuses.append)
    replicator.start()
    status = await asyncio.wait_for(replicator.wait_stopped(), 30 * TIME_UNIT)
    retried = any(s.activity is ActivityLevel.OFFLINE for s in statuses)

    if isinstance(outcome, Synced):
        assert status.error is None, status.error
        assert client.get("seeded") is not None
        if validation_mode.startswith("tofu") and identity is not None:
            known = store.get(peer_key("127.0.0.1", port))
            assert known is not None and known.fingerprint == identity.fingerprint
        return
    assert client.get("seeded") is None
    assert status.activity is ActivityLevel.STOPPED and status.error is not None
    if isinstance(outcome, NotTLS):
        assert isinstance(status.error, TransportError | HandshakeError), repr(status.error)
        assert retried == isinstance(status.error, TransportError)
        assert authenticator.calls == 0
        return
    assert isinstance(outcome, Refused)
    pin = _pinned_fingerprint(validation_mode)
    fragment = outcome.fragment.format(seen=identity.fingerprint if identity else "", pin=pin)
    assert isinstance(status.error, outcome.error), repr(status.error)
    assert fragment in str(status.error)
    assert retried == outcome.transient
    if isinstance(status.error, CertificateRefusedError):
        assert authenticator.calls == 0  # nothing of HTTP reached the listener
        assert status.error.host == "127.0.0.1" and status.error.port == port
        if identity is not None and status.error.seen_fingerprint is not None:
            assert status.error.seen_fingerprint == identity.fingerprint
    if isinstance(status.error, CertificateChangedError):
        assert status.error.old_fingerprint == OTHER_FINGERPRINT
        assert identity is not None and status.error.new_fingerprint == identity.fingerprint


def _pinned_fingerprint(validation_mode: str) -> str:
    path = _VALIDATION_FILES.get(validation_mode)
    return sha256_fingerprint(load_certificate_file(path)) if path is not None else ""


# -- nothing of HTTP before the certificate is accepted ------------------------------------------


@pytest.fixture
def bytes_after_tls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every decrypted byte any listener connection receives (the HTTP request first of all)."""
    received: list[bytes] = []
    connection_class = websocket_module._BlipServerConnection
    original = connection_class.data_received

    def counting(self: Any, data: bytes) -> None:
        received.append(bytes(data))
        original(self, data)

    monkeypatch.setattr(connection_class, "data_received", counting)
    return received


@pytest.mark.parametrize("case", ["pinned-mismatch", "tofu-changed", "self-signed-mode-ca-signed"])
async def test_a_refused_certificate_gets_no_http_byte(
    peers: Peers, material: Material, bytes_after_tls: list[bytes], case: str
) -> None:
    identity = material.identities["ca-signed" if case == "self-signed-mode-ca-signed" else "anonymous"]
    assert identity is not None
    served, client = peers.database("served"), peers.database("client")
    authenticator = CountingAuthenticator()
    listener = await peers.listener(served, tls=identity, authenticator=authenticator)
    assert listener.port is not None
    store = TrustStore(peers.root / "trusted.json")
    store.accept(peer_key("127.0.0.1", listener.port), OTHER_FINGERPRINT)
    validation = {
        "pinned-mismatch": ServerValidation.pinned(fingerprint=OTHER_FINGERPRINT),
        "tofu-changed": ServerValidation.tofu(store),
        "self-signed-mode-ca-signed": ServerValidation.self_signed(),
    }[case]
    replicator = peers.replicator(client, listener.urls[0], tls=validation)
    replicator.start()
    status = await asyncio.wait_for(replicator.wait_stopped(), 30 * TIME_UNIT)
    assert isinstance(status.error, CertificateRefusedError)
    assert bytes_after_tls == []
    assert authenticator.calls == 0

    # the same listener with an accepted certificate does receive the request (the probe works)
    accepted = ServerValidation.pinned(fingerprint=identity.fingerprint)
    await peers.replicate(client, listener.urls[0], tls=accepted)
    assert b"".join(bytes_after_tls).startswith(b"GET /userdb/_blipsync")
    assert authenticator.calls == 1
