"""Revision IDs: ``<generation>-<lowercase hex digest>`` (protocol §4.1).

New revision IDs are made the way LiteCore makes them, except that the body is
hashed as canonical JSON instead of Fleece (protocol §4.1): the digest is
SHA-1 over ``byte(len(parent)) ‖ parent ‖ byte(deleted) ‖ canonical JSON body``,
where canonical JSON is UTF-8, keys sorted, no whitespace. The result is 40 hex
digits, the shape LiteCore itself emits, so every Couchbase Lite peer can store
our IDs. Two peers that make the same edit on the same parent get the same ID.
"""

from __future__ import annotations

import hashlib
import re

from engine.errors import InvalidDocumentError

__all__ = [
    "MAX_DIGEST_HEX",
    "compare_key",
    "generation",
    "is_valid_rev_id",
    "make_rev_id",
    "parse_rev_id",
]

#: Longest digest accepted (SHA-256 in hex); LiteCore stores up to ~37 bytes.
MAX_DIGEST_HEX = 64
_REV_ID = re.compile(rf"([1-9][0-9]{{0,8}})-([0-9a-f]{{2,{MAX_DIGEST_HEX}}})")


def _match(rev_id: object) -> re.Match[str] | None:
    match = _REV_ID.fullmatch(rev_id) if isinstance(rev_id, str) else None
    return match if match is not None and len(match[2]) % 2 == 0 else None


def parse_rev_id(rev_id: str) -> tuple[int, str]:
    """Split a revision ID into ``(generation, digest)``.

    Raises:
        InvalidDocumentError: not ``<positive int>-<even-length lowercase hex>``.
    """
    match = _match(rev_id)
    if match is None:
        raise InvalidDocumentError(f"invalid revision ID {str(rev_id)[:80]!r}")
    return int(match[1]), match[2]


def is_valid_rev_id(rev_id: str) -> bool:
    """Return whether ``rev_id`` is a revision ID this store accepts."""
    match = _REV_ID.fullmatch(rev_id) if isinstance(rev_id, str) else None  # _match inline: runs per received rev
    return match is not None and len(match[2]) % 2 == 0


def generation(rev_id: str) -> int:
    """Return the generation of a (valid) revision ID."""
    return int(rev_id.partition("-")[0])


def compare_key(rev_id: str) -> tuple[int, str]:
    """Sort key ordering revision IDs by generation, then digest bytes."""
    gen, _, digest = rev_id.partition("-")
    return int(gen), digest


def make_rev_id(parent_rev_id: str | None, deleted: bool, canonical_body: bytes) -> str:
    """Make the ID of a new revision (see the module docstring)."""
    parent = (parent_rev_id or "").encode()
    gen = generation(parent_rev_id) + 1 if parent_rev_id else 1
    flag = b"\x01" if deleted else b"\x00"
    digest = hashlib.sha1(bytes((len(parent),)) + parent + flag + canonical_body, usedforsecurity=False)
    return f"{gen}-{digest.hexdigest()}"
