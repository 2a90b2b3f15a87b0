"""Exceptions raised by the engine.

Every exception the engine raises on purpose derives from :class:`EngineError`::

    EngineError
    ├── InvalidDocumentError      bad document ID, body, revision ID or history
    │   └── ValidationError       a body the database's validator refuses (the list's schema)
    ├── NotFoundError             no such document, revision or local document
    ├── ConflictError             a save or insert would create an unwanted conflict
    ├── BlobError
    │   ├── BlobNotFoundError     a body refers to a blob the store does not hold
    │   └── BlobCorruptError      stored blob bytes do not match their digest
    ├── StorageError              the database cannot be opened, read or written
    │   └── DiskFullError         no space left on the device holding the database
    ├── InventoryError            invalid quantity, unknown item, bad list document
    ├── InvalidUserNameError      a user name that cannot name a database
    └── replication.errors.ReplicationError  (see ``engine/replication/errors.py``)

Errors carry a message a user can read; they never include document bodies,
passwords or keys.
"""

from __future__ import annotations

import errno
import socket

__all__ = [
    "BlobCorruptError",
    "BlobError",
    "BlobNotFoundError",
    "ConflictError",
    "DiskFullError",
    "EngineError",
    "InvalidDocumentError",
    "InvalidUserNameError",
    "InventoryError",
    "NotFoundError",
    "StorageError",
    "ValidationError",
    "os_error_words",
]

#: System errors in words for people (the command line, the app), rather than errno text.
_OS_WORDS = {
    errno.EADDRINUSE: "that port is already in use by another program",
    errno.EADDRNOTAVAIL: "that address does not belong to this computer",
    errno.EACCES: "not allowed to use that port (ports below 1024 need administrator rights)",
    errno.ECONNREFUSED: "nobody is listening at that address (connection refused)",
    errno.ECONNRESET: "the connection was cut by the peer",
    errno.EHOSTUNREACH: "that computer cannot be reached from this network",
    errno.ENETUNREACH: "that network cannot be reached",
    errno.ETIMEDOUT: "the peer did not answer in time",
    errno.ENOENT: "the file does not exist",
    errno.ENOSPC: "the disk is full",
}


def os_error_words(exc: BaseException) -> str:
    """Why a system call failed (a connection, a port, a file), in words.

    A file's error names the file; a timeout without an errno reads as the
    peer not answering; anything else unknown keeps the system's own text.
    """
    if isinstance(exc, socket.gaierror):
        return "unknown computer name (check the address)"
    if not isinstance(exc, OSError):
        return str(exc) or type(exc).__name__
    if exc.filename and exc.errno in (errno.ENOENT, errno.EACCES):
        return f"{exc.filename}: {exc.strerror}"
    code = errno.ETIMEDOUT if isinstance(exc, TimeoutError) and not exc.errno else exc.errno or 0
    words = _OS_WORDS.get(code)
    if words is None and exc.strerror:
        words = exc.strerror[0].lower() + exc.strerror[1:]
    return words or str(exc) or type(exc).__name__


class EngineError(Exception):
    """Root of every error the engine raises on purpose."""


class InvalidDocumentError(EngineError, ValueError):
    """A document ID, body, revision ID or revision history is not acceptable."""


class ValidationError(InvalidDocumentError):
    """A well-formed body that the database's validator refuses (say, a list that breaks its schema).

    A peer that sends such a revision gets ``HTTP``/403, as Sync Gateway
    answers what its validation refuses.
    """


class NotFoundError(EngineError, LookupError):
    """The document, revision or local document does not exist."""


class ConflictError(EngineError):
    """The operation would conflict with the document's current revision."""

    def __init__(self, message: str, *, current_rev_id: str | None = None) -> None:
        super().__init__(message)
        self.current_rev_id = current_rev_id


class BlobError(EngineError):
    """A problem with blob (attachment) content."""


class BlobNotFoundError(BlobError, LookupError):
    """The store holds no blob with that digest."""


class BlobCorruptError(BlobError):
    """The stored or received bytes do not match the blob's digest or length."""


class StorageError(EngineError):
    """The database files cannot be opened, read or written."""


class DiskFullError(StorageError):
    """The device holding the database has no space left.

    The operation that raised it wrote nothing: every commit acknowledged
    before is intact once space is freed.
    """


class InventoryError(EngineError, ValueError):
    """An inventory operation was given an invalid quantity, item or list."""


class InvalidUserNameError(EngineError, ValueError):
    """The user name cannot be used to name a database."""
