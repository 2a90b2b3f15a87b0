"""A throwaway self-signed identity for 127.0.0.1, and TLS contexts that use it (tests only)."""

from __future__ import annotations

import ssl

import pytest

from engine.replication.server_validation import ServerValidation
from engine.replication.tls import TLSIdentity, server_context


def test_identity() -> TLSIdentity:
    """A fresh self-signed listener identity for 127.0.0.1."""
    return TLSIdentity.create_self_signed(["127.0.0.1"])


test_identity.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest


def tls_contexts(identity: TLSIdentity | None = None) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The listener's server context for ``identity`` (a new one by default), and a client context pinning it."""
    identity = identity or test_identity()
    return server_context(identity), ServerValidation.pinned(identity.certificate).client_context("127.0.0.1", 0)


def client_hello() -> bytes:
    """The first flight of a TLS client (its ClientHello), as a client would send it to 127.0.0.1."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()
