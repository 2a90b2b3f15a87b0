"""Exceptions of the replication layer.

::

    EngineError                                (engine/errors.py)
    └── ReplicationError
        ├── ConfigurationError     a replicator or listener set up so that it cannot work (a bad URL...)
        ├── ProtocolError          the peer broke BLIP framing rules; the connection must close
        │   └── MessageTooLargeError  a message or properties block exceeds a configured limit
        ├── BlipError              the peer answered a request with an ERR reply
        ├── ConnectionClosedError  the connection ended while a request was outstanding
        ├── TransportError         the network failed: refused, reset, unreachable, timed out
        │   └── PeerNotFoundError  a peer followed by discovery is not on the network now
        ├── DiscoveryError         advertising or browsing could not start (zeroconf, interfaces)
        └── HandshakeError         the WebSocket opening handshake failed
            ├── IncompatibleProtocolError  no common BLIP subprotocol
            ├── HTTPStatusError        the peer answered with an HTTP error (401, 403, 404...)
            └── CertificateRefusedError    the server's TLS certificate is not the one expected
                └── CertificateChangedError  a trusted-on-first-use peer shows another certificate

:func:`close_code_for` maps an exception to the WebSocket close code to use.
Internal errors close with 1011 and no details.
"""

from __future__ import annotations

import datetime
import email.utils
import math
from collections.abc import Mapping

from engine.errors import EngineError

__all__ = [
    "HTTP_STATUS_WORDS",
    "BlipError",
    "CertificateChangedError",
    "CertificateNotTrustedError",
    "CertificateRefusedError",
    "ConfigurationError",
    "ConnectionClosedError",
    "DiscoveryError",
    "HTTPStatusError",
    "HandshakeError",
    "IncompatibleProtocolError",
    "MessageTooLargeError",
    "PeerNotFoundError",
    "ProtocolError",
    "ReplicationError",
    "TransportError",
    "close_code_for",
]


class ReplicationError(EngineError):
    """Root of replication errors."""


class ConfigurationError(ReplicationError, ValueError):
    """A configuration that cannot work: a URL the replicator cannot use, a port out of range..."""


class ProtocolError(ReplicationError):
    """The peer sent bytes that break the BLIP protocol (protocol §2.9: fatal errors)."""

    close_code = 1002


class MessageTooLargeError(ProtocolError):
    """An incoming message, properties block or backlog exceeds a limit."""

    close_code = 1009


class BlipError(ReplicationError):
    """An error reply (protocol §2.9): a domain, a code and a message."""

    def __init__(self, domain: str, code: int, message: str = "") -> None:
        super().__init__(f"{domain} error {code}: {message}" if message else f"{domain} error {code}")
        self.domain = domain
        self.code = code
        self.message = message


class ConnectionClosedError(ReplicationError):
    """The connection closed before the operation completed."""

    def __init__(self, message: str = "connection closed", *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransportError(ReplicationError):
    """The network failed (refused, reset, unreachable, timed out): usually worth a retry."""


class PeerNotFoundError(TransportError):
    """A peer followed by discovery is not advertised on the network now (retried: it may come back)."""


class DiscoveryError(ReplicationError):
    """Advertising or browsing could not start: an interface not on this machine, no multicast..."""


class HandshakeError(ReplicationError):
    """The WebSocket opening handshake failed."""


class IncompatibleProtocolError(HandshakeError):
    """The peer speaks none of our BLIP subprotocols."""


#: What a status refusing the WebSocket upgrade means, in words for people: the text of an
#: :class:`HTTPStatusError` (the command line prints it), and the app's words for it.
HTTP_STATUS_WORDS: Mapping[int, str] = {
    401: "sign-in refused: wrong or missing user name, password or client certificate",
    403: "the peer refused access to its database",
    404: "the peer has no inventory at that address (check the database name in the URL)",
    408: "the peer took too long to answer",
    429: "the peer refuses this computer for a while after too many attempts",
    503: "the peer is not accepting connections right now",
}


class HTTPStatusError(HandshakeError):
    """The peer refused the upgrade with an HTTP status.

    A 429 or 503 may come with ``Retry-After`` (:attr:`retry_after`); the text
    of the error then says when to try again.
    """

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers: Mapping[str, str] = headers if headers is not None else {}

    @property
    def retry_after(self) -> float | None:
        """Seconds the peer asks us to wait before trying again (its ``Retry-After``), or None."""
        value = next((v for k, v in self.headers.items() if k.lower() == "retry-after"), None)
        if value is None:
            return None
        value = value.strip()
        if value.isascii() and value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())

    def __str__(self) -> str:
        text = super().__str__()
        wait = self.retry_after
        return text if wait is None else f"{text}; the peer asks to wait {math.ceil(wait)} s before trying again"


class CertificateRefusedError(HandshakeError):
    """The server's TLS certificate failed our validation; nothing was sent to it.

    Permanent: the replicator stops instead of retrying. ``expected`` says
    what the validation mode wanted (a pinned fingerprint, a self-signed
    certificate, a certificate for the host from a trusted CA...);
    ``seen_fingerprint``, ``seen_subject`` and ``seen_issuer`` describe the
    certificate the server showed (None when the TLS library refused it
    before we could read it).
    """

    def __init__(
        self,
        message: str,
        *,
        host: str,
        port: int,
        expected: str,
        expected_fingerprint: str | None = None,
        seen_fingerprint: str | None = None,
        seen_subject: str | None = None,
        seen_issuer: str | None = None,
        trust_key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.host = host
        self.port = port
        #: where trust on first use keeps this peer's certificate (peer ID or host and port)
        self.trust_key = trust_key
        self.expected = expected
        self.expected_fingerprint = expected_fingerprint
        self.seen_fingerprint = seen_fingerprint
        self.seen_subject = seen_subject
        self.seen_issuer = seen_issuer


class CertificateNotTrustedError(CertificateRefusedError):
    """Trust on first use that asks first: the peer's certificate is not trusted yet.

    The user is shown ``seen_fingerprint`` and, if they trust it, it is
    accepted into the trust store under ``trust_key`` before connecting again.
    """


class CertificateChangedError(CertificateRefusedError):
    """A peer trusted on first use shows a different certificate than the one remembered."""

    @property
    def old_fingerprint(self) -> str:
        """The SHA-256 fingerprint remembered for the peer."""
        return self.expected_fingerprint or ""

    @property
    def new_fingerprint(self) -> str:
        """The SHA-256 fingerprint the peer showed now."""
        return self.seen_fingerprint or ""


def close_code_for(exc: BaseException) -> int:
    """Return the WebSocket close code that reports ``exc`` to the peer."""
    if isinstance(exc, ProtocolError):
        return exc.close_code
    return 1011
