"""Document values and the rules for IDs and bodies.

A document ID is 1 to 255 UTF-8 bytes without NUL (protocol §4.3). A body is a
JSON object whose keys are strings, whose values are JSON values (no NaN or
infinity, no other Python types) and whose top-level keys do not start with
``_``, except ``_attachments``. Bodies are stored as canonical JSON (UTF-8,
sorted keys, no whitespace), which is also what revision IDs hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.blobs import Blob
from engine.errors import InvalidDocumentError
from engine.json_codec import canonical, loads

__all__ = [
    "MAX_DOC_ID_BYTES",
    "MAX_NESTING",
    "Document",
    "canonical_json",
    "check_body",
    "check_doc_id",
    "decode_body",
]

MAX_DOC_ID_BYTES = 255
#: Deepest nesting of objects and arrays accepted in a body.
MAX_NESTING = 100

_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class Document:
    """One revision of a document as read from the database.

    ``body`` is a fresh dictionary owned by the caller. ``conflicted`` says
    whether the document has more than one live leaf revision.
    """

    id: str
    rev_id: str
    body: dict[str, Any] = field(compare=True)
    deleted: bool = False
    sequence: int = 0
    conflicted: bool = False


def check_doc_id(doc_id: object) -> bytes:
    """Validate a document ID and return its UTF-8 bytes.

    Raises:
        InvalidDocumentError: not a string of 1 to 255 UTF-8 bytes without NUL.
    """
    if not isinstance(doc_id, str):
        raise InvalidDocumentError("document ID must be a string")
    try:
        raw = doc_id.encode()
    except UnicodeEncodeError:
        raise InvalidDocumentError("document ID is not valid Unicode") from None
    if not 1 <= len(raw) <= MAX_DOC_ID_BYTES:
        raise InvalidDocumentError(f"document ID must be 1 to {MAX_DOC_ID_BYTES} UTF-8 bytes, not {len(raw)}")
    if b"\x00" in raw:
        raise InvalidDocumentError("document ID must not contain NUL")
    return raw


def check_body(body: object) -> tuple[bytes, list[Blob]]:
    """Validate a document body; return its canonical JSON and the blobs it refers to.

    Raises:
        InvalidDocumentError: the body is not acceptable (see module docstring).
    """
    if not isinstance(body, dict):
        raise InvalidDocumentError(f"document body must be a JSON object, not {type(body).__name__}")
    blobs: list[Blob] = []
    floats = False
    for key, item in body.items():  # exact types first: this runs for every document stored
        if key.__class__ is not str and not isinstance(key, str):
            raise InvalidDocumentError(f"property names must be strings, not {type(key).__name__}")
        if key[:1] == "_" and key != "_attachments":
            raise InvalidDocumentError(f"top-level property {key[:40]!r} is reserved (starts with '_')")
        kind = item.__class__
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is float:
            floats = True
        elif not isinstance(item, _SCALARS):
            floats = _check_value(item, 1, blobs) or floats
        elif isinstance(item, float):
            floats = True
    if body.get("@type") == "blob":
        blobs.append(Blob.from_dict(body))
    if "_attachments" in body:
        _add_attachment_blobs(body["_attachments"], blobs)
    try:
        return canonical(body, floats=floats), blobs
    except UnicodeEncodeError:
        raise InvalidDocumentError("document body contains text that is not valid Unicode") from None
    except ValueError as exc:
        raise InvalidDocumentError(f"document body is not valid JSON: {exc}") from None


def _add_attachment_blobs(attachments: object, blobs: list[Blob]) -> None:
    if attachments is None:
        return
    if not isinstance(attachments, dict):
        raise InvalidDocumentError("_attachments must be an object")
    for entry in attachments.values():
        if isinstance(entry, dict) and "digest" in entry:
            blobs.append(Blob.from_dict(entry))


def _check_value(value: object, depth: int, blobs: list[Blob]) -> bool:
    """Check a nested value; return whether it holds a float."""
    if depth > MAX_NESTING:
        raise InvalidDocumentError(f"document body is nested deeper than {MAX_NESTING} levels")
    floats = False
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidDocumentError(f"property names must be strings, not {type(key).__name__}")
            if not isinstance(item, _SCALARS):
                floats = _check_value(item, depth + 1, blobs) or floats
            elif item.__class__ is float:
                floats = True
        if value.get("@type") == "blob":
            blobs.append(Blob.from_dict(value))
    elif isinstance(value, list):
        for item in value:
            if not isinstance(item, _SCALARS):
                floats = _check_value(item, depth + 1, blobs) or floats
            elif item.__class__ is float:
                floats = True
    elif not isinstance(value, _SCALARS):
        raise InvalidDocumentError(f"{type(value).__name__} is not a JSON value")
    return floats


def canonical_json(value: object) -> bytes:
    """Encode ``value`` as canonical JSON (UTF-8, sorted keys, compact)."""
    return canonical(value)


def decode_body(data: bytes) -> dict[str, Any]:
    """Decode a stored or received JSON object.

    Raises:
        InvalidDocumentError: not a JSON object.
    """
    try:
        value = loads(data)
    except ValueError as exc:
        raise InvalidDocumentError(f"malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidDocumentError("JSON body is not an object")
    return value
