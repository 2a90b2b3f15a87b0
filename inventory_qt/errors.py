"""The one place where exceptions become sentences a user understands.

:func:`describe_error` turns any exception the app meets (engine errors,
network and TLS failures, file errors) into one sentence; :func:`show_error`
shows it in a message box. Cancellation is silent: it returns None and shows
nothing (Anki ``qt/aqt/errors.py``). Errors never carry passwords or document
bodies (``engine/errors.py``), so the words are safe to show.

Refused certificates say which check refused them (not trusted yet, changed
since trusted, not the pinned one, not self-signed, expired, not from the CA);
TLS spoken to a plain listener, or plain WebSocket to a TLS one, says which
scheme to use; discovery failures say what to check. Other kinds of failure
get their words by adding a describer with :func:`register_describer`, checked
before the built-in rules.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from engine.errors import (
    DiskFullError,
    EngineError,
    InvalidUserNameError,
    InventoryError,
    StorageError,
    os_error_words,
)
from engine.replication.errors import (
    HTTP_STATUS_WORDS,
    BlipError,
    CertificateChangedError,
    CertificateNotTrustedError,
    CertificateRefusedError,
    ConnectionClosedError,
    DiscoveryError,
    HandshakeError,
    HTTPStatusError,
    IncompatibleProtocolError,
    PeerNotFoundError,
    ProtocolError,
    ReplicationError,
    TransportError,
)

__all__ = ["describe_error", "register_describer", "sentence", "show_error"]

log = logging.getLogger(__name__)

#: Returns the words for an exception it knows, else None.
Describer = Callable[[BaseException], str | None]
_describers: list[Describer] = []

_HTTP_WORDS = {
    **HTTP_STATUS_WORDS,
    401: "wrong user name or password",  # the app always sends both, and no client certificate
    429: f"{HTTP_STATUS_WORDS[429]}; it will be tried again",
}
_CLOSE_WORDS = {
    1001: "the peer stopped sharing its inventory",
    1002: "the peer broke the sync protocol",
    1008: "the peer refused the connection",
    1009: "the peer sent a message that is too large",
    1011: "the peer ran into an internal error",
    4001: "the peer ran into a passing problem; it will be tried again",
    4002: "the peer refused a change it was sent",
}


def register_describer(describer: Describer) -> None:
    """Add words for exceptions the built-in rules do not know (checked first, newest first)."""
    _describers.insert(0, describer)


def sentence(text: str) -> str:
    """``text`` as a sentence: first letter upper case, ending with a full stop."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _os_words(exc: OSError) -> str:
    words = os_error_words(exc)
    if exc.errno == errno.EADDRINUSE:
        return f"{words} (choose another port in Settings, or 0)"
    return words


def _certificate_words(exc: CertificateRefusedError) -> str:  # noqa: PLR0911  (one case per check)
    if isinstance(exc, CertificateNotTrustedError):
        return f"the peer's certificate is not trusted yet (SHA-256 {exc.seen_fingerprint})"
    if isinstance(exc, CertificateChangedError):
        return (
            "the peer's certificate changed since you trusted it: someone may be pretending to be this peer "
            f"(trusted SHA-256 {exc.old_fingerprint}, now {exc.new_fingerprint})"
        )
    expected = exc.expected
    if expected.startswith("the pinned certificate"):
        return "the peer's certificate does not match the pinned one (Settings > Replicator)"
    if expected == "a self-signed certificate":
        return "the peer's certificate is not self-signed, which Settings > Replicator asks for"
    if expected == "a self-signed certificate valid now":
        return "the peer's self-signed certificate has expired or is not valid yet"
    if "trust store" in expected:
        return f"the list of trusted peers cannot be read ({str(exc).partition('a trust store error: ')[2] or exc})"
    if "from a CA" in expected:
        reason = str(exc).rpartition("; ")[2]
        return f"the peer's certificate is not signed for its address by your CA ({reason})"
    if expected == "a certificate":
        return "the peer sent no certificate"
    return f"the peer's certificate was refused ({exc})"


def _handshake_words(exc: HandshakeError) -> str:
    text = str(exc)
    if "does not answer in TLS" in text:
        return "the peer does not use TLS: its address starts with ws://, not wss://"
    if "refused the TLS handshake" in text:
        return "the peer refused the secure connection (it may want a client certificate)"
    if "TLS handshake" in text:
        return f"the secure (TLS) connection failed ({text})"
    return f"the peer could not be connected to ({text})"


def _scheme_words(exc: TransportError) -> str | None:
    """A connection cut where a TLS or plain listener met the other kind of client, else None."""
    if "during the TLS handshake" in str(exc):
        return "the connection closed during the secure (TLS) handshake"
    if isinstance(exc.__cause__, EOFError) and "wss://" in str(exc):
        return "the peer closed the connection at once; if its listener uses TLS, its address starts with wss://"
    return None


def _transport_words(exc: TransportError) -> str:
    if isinstance(exc, PeerNotFoundError):
        return "the peer is not on the network right now; it is looked for again"
    words = _scheme_words(exc)
    if words is not None:
        return words
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return _tls_words(cause)
    if isinstance(cause, TimeoutError):
        return "the peer did not answer in time"
    if isinstance(cause, OSError):
        return _os_words(cause)
    return f"the network connection failed ({exc})"


def _tls_words(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or "not trusted"
        return f"the peer's certificate cannot be trusted ({reason})"
    return f"the secure (TLS) connection failed ({getattr(exc, 'reason', None) or exc})"


_REPLICATION_WORDS: list[tuple[type[ReplicationError], Callable[[Any], str]]] = [
    (HTTPStatusError, lambda e: _HTTP_WORDS.get(e.status, f"the peer refused the connection (HTTP {e.status})")),
    (IncompatibleProtocolError, lambda _: "the peer speaks an incompatible version of the sync protocol"),
    (CertificateRefusedError, _certificate_words),
    (TransportError, _transport_words),
    (ConnectionClosedError, lambda e: _CLOSE_WORDS.get(e.code or 0, "the connection to the peer was closed")),
    (HandshakeError, _handshake_words),
    (DiscoveryError, lambda e: f"looking for peers on the local network failed ({e})"),
    (ProtocolError, lambda _: "the peer broke the sync protocol"),
    (BlipError, lambda e: f"the peer reported an error ({e})"),
]


def _replication_words(exc: ReplicationError) -> str:
    for kind, words in _REPLICATION_WORDS:
        if isinstance(exc, kind):
            return words(exc)
    return str(exc) or "replication failed"


def describe_error(exc: BaseException) -> str | None:
    """One sentence for ``exc``; None for cancellation, which is not an error to show."""
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return None
    for describer in _describers:
        words = describer(exc)
        if words is not None:
            return sentence(words)
    if isinstance(exc, ReplicationError):
        words = _replication_words(exc)
    elif isinstance(exc, DiskFullError):
        words = f"the disk is full ({exc})"
    elif isinstance(exc, StorageError):
        words = f"the inventory could not be read or written ({exc})"
    elif isinstance(exc, InventoryError | InvalidUserNameError | EngineError):
        words = str(exc)
    elif isinstance(exc, ssl.SSLError):
        words = _tls_words(exc)
    elif isinstance(exc, OSError):
        words = _os_words(exc)
    elif isinstance(exc, TimeoutError):
        words = "that took too long"
    else:
        log.error("unexpected error", exc_info=exc)
        words = f"something went wrong inside the app ({type(exc).__name__}: {exc})"
    return sentence(words)


def show_error(parent: QWidget | None, exc: BaseException, *, title: str = "Inventory Sync") -> QMessageBox | None:
    """Show ``exc`` in words in a window-modal message box (not waited for); nothing for cancellation."""
    words = describe_error(exc)
    if words is None:
        return None
    box = QMessageBox(QMessageBox.Icon.Warning, title, words, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("errorBox")
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box
