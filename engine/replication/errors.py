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
            └── HTTPStatusError        the peer answered with an HTTP error (401, 403, 404...)

:func:`close_code_for` maps an exception to the WebSocket close code to use.
Internal errors close with 1011 and no details.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.errors import EngineError

__all__ = [
    "BlipError",
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


class HTTPStatusError(HandshakeError):
    """The peer refused the upgrade with an HTTP status."""

    def __init__(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers: Mapping[str, str] = headers if headers is not None else {}


def close_code_for(exc: BaseException) -> int:
    """Return the WebSocket close code that reports ``exc`` to the peer."""
    if isinstance(exc, ProtocolError):
        return exc.close_code
    return 1011
