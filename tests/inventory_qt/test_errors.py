"""Exceptions in words: every kind the app meets gives a sentence; cancellation gives none."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import socket
import ssl
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from engine.errors import DiskFullError, InventoryError, StorageError
from engine.replication.errors import (
    CertificateRefusedError,
    ConfigurationError,
    ConnectionClosedError,
    DiscoveryError,
    HandshakeError,
    HTTPStatusError,
    IncompatibleProtocolError,
    PeerNotFoundError,
    TransportError,
)
from engine.replication.server_validation import ServerValidation
from engine.replication.tls import TLSIdentity
from engine.replication.trust_store import TrustStore
from inventory_qt.errors import describe_error, register_describer, show_error


def transport(cause: BaseException, hint: str = "") -> TransportError:
    error = TransportError(f"cannot connect {hint}")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (HTTPStatusError(401, "unauthorized (HTTP 401)"), "Wrong user name or password."),
        (HTTPStatusError(404, "not found"), "The peer has no inventory at that address"),
        (HTTPStatusError(418, "teapot"), "The peer refused the connection (HTTP 418)."),
        (IncompatibleProtocolError("x"), "The peer speaks an incompatible version"),
        (transport(ConnectionRefusedError(errno.ECONNREFUSED, "refused")), "Nobody is listening at that address"),
        (transport(TimeoutError()), "The peer did not answer in time."),
        (transport(socket.gaierror(-2, "Name or service not known")), "Unknown computer name"),
        (ConnectionClosedError(code=1001), "The peer stopped sharing its inventory."),
        (ConfigurationError("invalid URL 'x': use ws:// or wss://"), "Invalid URL 'x': use ws:// or wss://."),
        (OSError(errno.EADDRINUSE, "Address already in use"), "That port is already in use by another program"),
        (DiskFullError("no space left on device: /x"), "The disk is full"),
        (StorageError("cannot open /x"), "The inventory could not be read or written (cannot open /x)."),
        (InventoryError("quantity must be a whole number of 0 or more, not 'x'"), "Quantity must be a whole number"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "The peer's certificate cannot be trusted"),
        (RuntimeError("boom"), "Something went wrong inside the app (RuntimeError: boom)."),
    ],
)
def test_words(exc: BaseException, words: str) -> None:
    text = describe_error(exc)
    assert text is not None and text.startswith(words) and text.endswith(".")


@pytest.fixture(scope="module")
def identity() -> TLSIdentity:
    return TLSIdentity.create_self_signed(["127.0.0.1"])


def refusal(validation: ServerValidation, certificate_der: bytes | None) -> CertificateRefusedError:
    """What the engine's check inside the TLS handshake raises for this certificate."""
    check = validation.client_context("127.0.0.1", 4984).peer_check  # type: ignore[attr-defined]
    error = check(certificate_der)
    assert isinstance(error, CertificateRefusedError)
    return error


def test_refused_certificates_say_which_check_refused_them(identity: TLSIdentity, tmp_path: Path) -> None:
    der, fingerprint = identity.certificate_der, identity.fingerprint
    other = "AB:" * 31 + "CD"
    store = tmp_path / "trusted-peers.json"
    asking = ServerValidation.tofu(store, confirm_first_use=True)
    not_trusted = describe_error(refusal(asking, der))
    assert not_trusted == f"The peer's certificate is not trusted yet (SHA-256 {fingerprint})."
    TrustStore(store).accept("127.0.0.1:4984", other)
    changed = describe_error(refusal(asking, der))
    assert changed is not None and changed.startswith("The peer's certificate changed since you trusted it")
    assert other in changed and fingerprint in changed
    pinned = describe_error(refusal(ServerValidation.pinned(fingerprint=other), der))
    assert pinned == "The peer's certificate does not match the pinned one (Settings > Replicator)."
    expired = TLSIdentity.create_self_signed(["127.0.0.1"], now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    old = describe_error(refusal(ServerValidation.self_signed(), expired.certificate_der))
    assert old == "The peer's self-signed certificate has expired or is not valid yet."
    assert describe_error(refusal(ServerValidation.self_signed(), None)) == "The peer sent no certificate."
    store.write_text("not json")
    unreadable = describe_error(refusal(asking, der))
    assert unreadable is not None and unreadable.startswith("The list of trusted peers cannot be read")


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (
            HandshakeError("127.0.0.1:1 does not answer in TLS (a ws:// listener?): wrong version number"),
            "The peer does not use TLS: its address starts with ws://, not wss://.",
        ),
        (
            HandshakeError(
                "127.0.0.1:1 refused the TLS handshake (handshake failure); is a client certificate needed?"
            ),
            "The peer refused the secure connection (it may want a client certificate).",
        ),
        (
            transport(EOFError("stream ends after 0 bytes"), "(if the listener uses TLS, its URL starts with wss://)"),
            "The peer closed the connection at once; if its listener uses TLS, its address starts with wss://.",
        ),
        (PeerNotFoundError("peer x is not advertised"), "The peer is not on the network right now"),
        (DiscoveryError("cannot browse: no multicast"), "Looking for peers on the local network failed"),
        (HTTPStatusError(401, "unauthorized (HTTP 401)"), "Wrong user name or password."),
    ],
)
def test_tls_and_discovery_words(exc: BaseException, words: str) -> None:
    text = describe_error(exc)
    assert text is not None and text.startswith(words) and text.endswith(".")


def test_cancellation_is_silent(qtbot: QtBot) -> None:
    assert describe_error(asyncio.CancelledError()) is None
    assert show_error(None, asyncio.CancelledError()) is None


def test_new_kinds_of_error_get_words_from_a_describer(qtbot: QtBot) -> None:
    class CertificateRefusedError(Exception):
        pass

    register_describer(
        lambda e: "certificate does not match the pinned one" if isinstance(e, CertificateRefusedError) else None
    )
    assert describe_error(CertificateRefusedError()) == "Certificate does not match the pinned one."
    box = show_error(None, CertificateRefusedError())
    assert box is not None and box.text() == "Certificate does not match the pinned one."
    box.close()
