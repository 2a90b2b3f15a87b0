"""Blob values and digests (protocol §4.4).

A blob is referenced from a document body by a dictionary, anywhere in the
JSON tree::

    {"@type": "blob", "digest": "sha1-<base64>", "length": 1234, "content_type": "image/jpeg"}

The content is stored once per digest, whatever the number of documents that
refer to it. Legacy ``_attachments`` entries with a ``digest`` refer to blobs
the same way.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidDocumentError

__all__ = [
    "MAX_BLOB_LENGTH",
    "Blob",
    "digest_of",
    "digest_to_key",
    "iter_blob_refs",
    "key_to_digest",
    "may_refer_to_blobs",
    "prove_attachment",
]

DIGEST_PREFIX = "sha1-"
#: Largest blob length accepted: every peer's 64-bit integers hold it.
MAX_BLOB_LENGTH = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Blob:
    """A reference to stored content: its digest, length and MIME type."""

    digest: str
    length: int
    content_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used inside document bodies."""
        out: dict[str, Any] = {"@type": "blob", "digest": self.digest, "length": self.length}
        if self.content_type is not None:
            out["content_type"] = self.content_type
        return out

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Blob:
        """Read a blob dictionary, validating its fields.

        Raises:
            InvalidDocumentError: a field is missing or malformed.
        """
        digest = value.get("digest")
        length = value.get("length")
        content_type = value.get("content_type")
        if not isinstance(digest, str):
            raise InvalidDocumentError("blob has no digest")
        digest_to_key(digest)
        if not isinstance(length, int) or isinstance(length, bool) or not 0 <= length <= MAX_BLOB_LENGTH:
            raise InvalidDocumentError(f"blob {digest} has an invalid length")
        if content_type is not None and not isinstance(content_type, str):
            raise InvalidDocumentError(f"blob {digest} has an invalid content_type")
        return cls(digest, length, content_type)


def digest_of(data: bytes) -> str:
    """Return the ``sha1-<base64>`` digest of ``data``."""
    return DIGEST_PREFIX + base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode()


@functools.lru_cache(maxsize=4096)  # a received picture's digest is decoded at every step it passes
def digest_to_key(digest: str) -> bytes:
    """Return the 20 raw SHA-1 bytes of a ``sha1-<base64>`` digest.

    Raises:
        InvalidDocumentError: not a well-formed SHA-1 digest.
    """
    if not digest.startswith(DIGEST_PREFIX):
        raise InvalidDocumentError(f"unsupported blob digest {digest[:60]!r}")
    try:
        raw = base64.b64decode(digest[len(DIGEST_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidDocumentError(f"malformed blob digest {digest[:60]!r}") from None
    if len(raw) != 20:
        raise InvalidDocumentError(f"malformed blob digest {digest[:60]!r}")
    return raw


def key_to_digest(key: bytes) -> str:
    """Inverse of :func:`digest_to_key`."""
    return DIGEST_PREFIX + base64.b64encode(key).decode()


def may_refer_to_blobs(data: bytes) -> bool:
    """Whether JSON ``data`` can hold a blob reference at all (a cheap test before parsing).

    Every blob dictionary has a ``digest``, and so does every legacy attachment.
    """
    return b'"digest"' in data


def iter_blob_refs(body: object) -> Iterator[dict[str, Any]]:
    """Yield every blob dictionary in ``body`` and every legacy attachment with a digest."""
    stack = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if value.get("@type") == "blob":
                yield value
                continue
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    if isinstance(body, dict):
        attachments = body.get("_attachments")
        if isinstance(attachments, dict):
            for entry in attachments.values():
                if isinstance(entry, dict) and isinstance(entry.get("digest"), str):
                    yield entry


def prove_attachment(nonce: bytes, data: bytes) -> str:
    """Proof of holding ``data`` for ``proveAttachment`` (protocol §3.10)."""
    h = hashlib.sha1(bytes((len(nonce),)) + nonce, usedforsecurity=False)
    h.update(data)
    return DIGEST_PREFIX + base64.b64encode(h.digest()).decode()
