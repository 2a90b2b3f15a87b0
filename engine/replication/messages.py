"""Replication message bodies and properties (protocol §3): parsing and building, pure.

Everything a peer sends is validated here; a malformed message raises
:class:`BlipError` with ``BLIP``/400, which the handler returns as the reply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from engine.changes import ChangeEntry
from engine.json_codec import dumps, loads
from engine.replication.errors import BlipError
from engine.revid import is_valid_rev_id

__all__ = [
    "IncomingRevision",
    "add_legacy_attachments",
    "bad_request",
    "encode_changes_reply",
    "encode_changes_rows",
    "encode_proposal_reply",
    "is_compressible",
    "parse_bool",
    "parse_changes_reply",
    "parse_changes_rows",
    "parse_json",
    "parse_proposal_reply",
    "parse_proposed",
    "parse_rev",
    "rev_properties",
    "strip_special_properties",
]


#: ``changes`` row flag bits (§3.5): 1 deleted, 2 access revoked, 4 removed from the user's channels.
_DELETED = 1
_REVOKED = 2
_REMOVED = 4


def bad_request(message: str) -> BlipError:
    """The error returned for a malformed request (``BLIP``/400)."""
    return BlipError("BLIP", 400, message)


def parse_bool(value: str | None, default: bool = False) -> bool:
    """Read a boolean property: ``true``/``YES``/``false``/``NO`` in any case, or an integer (§2.3)."""
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    try:
        return int(value) != 0
    except ValueError:
        return default


def parse_json(data: bytes, what: str) -> Any:
    """Decode a JSON body or raise a 400 error naming ``what``."""
    try:
        return loads(data) if data else None  # BLIP bodies are UTF-8 (no encoding sniffing)
    except ValueError:
        raise bad_request(f"malformed {what} body") from None


def parse_changes_rows(body: bytes) -> list[ChangeEntry]:
    """Parse a ``changes`` body; ``[]`` or ``null`` means caught up."""
    rows = parse_json(body, "changes")
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise bad_request("changes body is not an array")
    out = []
    for row in rows:  # a pull parses one row per document: the usual cases take the fewest steps
        if not isinstance(row, list) or len(row) < 3 or not isinstance(row[1], str) or not isinstance(row[2], str):
            raise bad_request("malformed changes row")
        bits = size = 0
        if len(row) > 3:
            flags = row[3]
            if flags and isinstance(flags, bool | int):
                bits = int(flags)
            if len(row) > 4 and isinstance(row[4], int):
                size = row[4]
        out.append(ChangeEntry(row[0], row[1], row[2], bool(bits & _DELETED), size, bool(bits) and _is_removal(bits)))
    return out


def _is_removal(bits: int) -> bool:
    """Whether a row's flags say the user lost the document rather than that it changed (§3.5).

    Read as LiteCore's RevFinder reads them: 0, 1 and 5 (a tombstone that also
    left the channels, as a deletion pushed to Sync Gateway comes back) are a
    revision to fetch; any revocation, or a removal of a live document, is not.
    """
    return bool(bits & _REVOKED) or (bool(bits & _REMOVED) and not bits & _DELETED)


def encode_changes_rows(rows: Sequence[ChangeEntry], *, int_flags: bool) -> bytes:
    """Build a ``changes`` body; deletion is ``1`` (CBMobile_3) or ``true`` (CBMobile_2)."""
    out: list[list[Any]] = []
    for row in rows:
        entry: list[Any] = [row.sequence, row.doc_id, row.rev_id]
        if row.deleted or row.body_size:
            entry.append((1 if int_flags else True) if row.deleted else (0 if int_flags else False))
        if row.body_size:
            entry.append(row.body_size)
        out.append(entry)
    return dumps(out)


def encode_changes_reply(entries: Sequence[list[str] | None]) -> bytes:
    """The reply to ``changes``: per row ``0`` (don't send) or the known ancestors (send)."""
    out: list[Any] = [0 if e is None else e for e in entries]
    while out and out[-1] == 0:
        out.pop()
    return dumps(out)


def parse_changes_reply(body: bytes, count: int) -> list[list[str] | int | None]:
    """Per row: None (not wanted), the known ancestors (wanted), or an int status (409)."""
    value = parse_json(body, "changes reply")
    entries = value if isinstance(value, list) else []
    out: list[list[str] | int | None] = []
    for i in range(count):
        entry = entries[i] if i < len(entries) else None
        if isinstance(entry, list):
            out.append([r for r in entry if isinstance(r, str)])
        elif isinstance(entry, int) and not isinstance(entry, bool) and entry != 0:
            out.append(entry)
        else:
            out.append(None)
    return out


def parse_proposed(body: bytes) -> list[tuple[str, str, str | None, int]]:
    """Parse a ``proposeChanges`` body: ``[docID, revID, parentRevID?, bodySize?]`` rows (§3.6)."""
    rows = parse_json(body, "proposeChanges")
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise bad_request("proposeChanges body is not an array")
    out = []
    for row in rows:
        if not isinstance(row, list) or len(row) < 2 or not isinstance(row[0], str) or not isinstance(row[1], str):
            raise bad_request("malformed proposeChanges row")
        parent = row[2] if len(row) > 2 and isinstance(row[2], str) and row[2] else None
        size = row[3] if len(row) > 3 and isinstance(row[3], int) else 0
        out.append((row[0], row[1], parent, size))
    return out


def encode_proposal_reply(statuses: Sequence[tuple[int, str | None]], *, include_rev: bool) -> bytes:
    """The ``proposeChanges`` reply: statuses, trailing zeros omitted; 409 with the current rev if asked."""
    out: list[Any] = []
    for status, current in statuses:
        if status == 409 and include_rev and current:
            out.append({"status": 409, "rev": current})
        else:
            out.append(status)
    while out and out[-1] == 0:
        out.pop()
    return dumps(out)


def parse_proposal_reply(body: bytes, count: int) -> list[tuple[int, str | None]]:
    """Per row ``(status, peer's current rev or None)``."""
    value = parse_json(body, "proposeChanges reply")
    entries = value if isinstance(value, list) else []
    out: list[tuple[int, str | None]] = []
    for i in range(count):
        entry = entries[i] if i < len(entries) else 0
        if isinstance(entry, dict):
            status, rev = entry.get("status", 409), entry.get("rev")
            out.append((status if isinstance(status, int) else 409, rev if isinstance(rev, str) else None))
        elif isinstance(entry, int) and not isinstance(entry, bool):
            out.append((entry, None))
        else:
            out.append((0, None))
    return out


class IncomingRevision(NamedTuple):
    """A parsed ``rev`` message (§3.7); ``body`` is still JSON bytes (maybe a delta)."""

    doc_id: str
    rev_id: str
    history: list[str]
    deleted: bool
    sequence: str | None
    delta_src: str | None
    no_conflicts: bool
    body: bytes


def parse_rev(properties: Mapping[str, str], body: bytes) -> IncomingRevision:
    """Validate a ``rev`` message's properties.

    Raises:
        BlipError: ``HTTP``/400 for a missing ID or an invalid revision ID (§3.7).
    """
    get = properties.get  # this runs for every revision received
    doc_id, rev_id = get("id"), get("rev", "")
    if not doc_id:
        raise BlipError("HTTP", 400, "missing document ID")
    if not is_valid_rev_id(rev_id):
        raise BlipError("HTTP", 400, "received invalid version ID")
    listed = get("history")
    history = [h.strip() for h in listed.split(",") if h.strip()] if listed else []
    if history and not all(is_valid_rev_id(h) for h in history):
        raise BlipError("HTTP", 400, "received invalid revision history")
    deleted, no_conflicts = get("deleted"), get("noconflicts")
    return IncomingRevision(
        doc_id,
        rev_id,
        history,
        parse_bool(deleted) if deleted else False,
        get("sequence"),
        get("deltaSrc") or None,
        parse_bool(no_conflicts) if no_conflicts else False,
        body,
    )


def rev_properties(
    doc_id: str,
    rev_id: str,
    history: Sequence[str],
    *,
    sequence: Any,
    deleted: bool,
    no_conflicts: bool = False,
    delta_src: str | None = None,
) -> dict[str, str]:
    """The properties of a ``rev`` message (§3.7), minus ``Profile``."""
    props = {"id": doc_id, "rev": rev_id, "sequence": dumps(sequence).decode()}
    if history:
        props["history"] = ",".join(history)
    if deleted:
        props["deleted"] = "1"
    if no_conflicts:
        props["noconflicts"] = "true"
    if delta_src:
        props["deltaSrc"] = delta_src
    return props


def strip_special_properties(body: dict[str, Any]) -> dict[str, Any]:
    """Drop top-level ``_`` properties of a received body (§4.3).

    ``_attachments`` stays only for entries that are not stand-ins for blobs
    already in the body (``blob_<path>`` entries).
    """
    for key in body:  # a plain loop: this runs for every received revision
        if key[:1] == "_":
            break
    else:
        return body
    out = {k: v for k, v in body.items() if not k.startswith("_")}
    attachments = body.get("_attachments")
    if isinstance(attachments, dict):
        kept = {name: entry for name, entry in attachments.items() if not name.startswith("blob_")}
        if kept:
            out["_attachments"] = kept
    return out


def add_legacy_attachments(body: dict[str, Any], generation: int) -> dict[str, Any]:
    """Add ``_attachments`` stand-ins for the body's blobs, for peers that do not say ``blobs: true`` (§4.4).

    Each blob at JSON pointer ``/p`` gets an entry ``blob_/p`` with the blob's
    properties except ``@type``, plus ``stub: true`` and ``revpos``.
    """
    stand_ins: dict[str, Any] = {}

    def walk(value: Any, pointer: str) -> None:
        if isinstance(value, dict):
            if value.get("@type") == "blob":
                entry = {k: v for k, v in value.items() if k != "@type"}
                stand_ins[f"blob_{pointer}"] = {**entry, "stub": True, "revpos": generation}
                return
            for key, item in value.items():
                if not (pointer == "" and key == "_attachments"):
                    walk(item, f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{pointer}/{index}")

    walk(body, "")
    if not stand_ins:
        return body
    existing = body.get("_attachments")
    return {**body, "_attachments": {**(existing if isinstance(existing, dict) else {}), **stand_ins}}


def is_compressible(content_type: str | None) -> bool:
    """Whether to ask for compression when fetching a blob of this type (§3.9)."""
    if not content_type:
        return False
    kind = content_type.lower()
    if kind.startswith(("image/", "audio/", "video/")) or any(z in kind for z in ("zip", "mpeg", "gzip", "compressed")):
        return False
    return kind.startswith("text/") or any(t in kind for t in ("json", "html", "xml", "yaml"))
