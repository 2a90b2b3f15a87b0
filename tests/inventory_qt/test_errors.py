"""Exceptions in words: every kind the app meets gives a sentence; cancellation gives none."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import pytest
from pytestqt.qtbot import QtBot

from engine.errors import DiskFullError, InventoryError, StorageError
from engine.replication.errors import (
    ConfigurationError,
    ConnectionClosedError,
    HTTPStatusError,
    IncompatibleProtocolError,
    TransportError,
)
from inventory_qt.errors import describe_error, register_describer, show_error


def transport(cause: BaseException) -> TransportError:
    error = TransportError("cannot connect")
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
