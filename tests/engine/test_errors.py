"""System errors in words (engine/errors.py)."""

from __future__ import annotations

import errno
import socket

import pytest

from engine.errors import os_error_words


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "nobody is listening at that address"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "unknown computer name (check the address)"),
        (TimeoutError(), "the peer did not answer in time"),
        (OSError(errno.EADDRINUSE, "Address already in use"), "that port is already in use by another program"),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/y.p12"),
            "/x/y.p12: No such file or directory",
        ),
        (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
        (OSError("no errno at all"), "no errno at all"),
        (ValueError("odd"), "odd"),
    ],
)
def test_system_errors_read_as_words(exc: BaseException, words: str) -> None:
    assert os_error_words(exc).startswith(words)
