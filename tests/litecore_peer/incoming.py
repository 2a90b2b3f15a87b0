"""Receiving one ``rev``: LiteCore's IncomingRev, IncomingRev+Blobs and Inserter (protocol §3.7, §3.9, §4, §5).

Validation in IncomingRev's order (docID, version ID, ``sequence`` for an active puller), the
body or delta (``deltaSrc``; unknown base -> ``HTTP``/422, or ``HTTP``/409 for a no-conflicts
peer whose delta may hold blobs, as IncomingRev::parseAndInsert), top-level ``_`` properties
stripped (``_attachments`` kept only for entries that are not ``blob_*`` stand-ins), every unknown
blob fetched with ``getAttachment`` (``digest``, ``docID``, ``compress`` for compressible types)
and checked *before* the revision is stored, then the insert (no-conflicts: the parent must be a
leaf, else ``LiteCore``/8 as the Inserter answers) and finally the reply.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.litecore_peer.blip import Message
from tests.litecore_peer.connection import BlipConnection
from tests.litecore_peer.delta import DeltaError, apply_delta
from tests.litecore_peer.store import PeerStore, StoreConflictError, blob_digest, generation, is_storable_rev_id

__all__ = ["IncomingRevs", "RevResult", "blob_refs", "likely_compressible", "split_history"]

log = logging.getLogger(__name__)

# C4Error codes used in replies (c4Error.h)
_LITECORE_BAD_REVISION_ID = 4
_LITECORE_NOT_FOUND = 7
_LITECORE_CONFLICT = 8

#: C4Blob::isLikelyCompressible's heuristics (C/c4BlobStore.cc).
_COMPRESSED_TYPES = (
    "zip",
    "zlib",
    "pkcs",
    "mpeg",
    "mp4",
    "crypt",
    ".rar",
    "-rar",
    "snappy",
    "lzma",
    "compress",
    "zstd",
    "diskimage",
    "archive",
)
_GOOD_TYPES = ("json", "html", "xml", "yaml")
_BAD_PREFIXES = ("image/", "audio/", "video/")


@dataclass(frozen=True, slots=True)
class RevResult:
    """What became of one received ``rev``: ``error`` is (domain, code, message) if refused."""

    doc_id: str
    rev_id: str
    error: tuple[str, int, str] | None = None
    inserted: bool = False
    #: The sender will send this revision again (a delta it must resend whole, protocol §5).
    resend_expected: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def split_history(value: str | None) -> list[str]:
    """The ``history`` property as a list (commas, optional spaces, protocol §4.2)."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def likely_compressible(blob: dict[str, Any]) -> bool:
    """Whether LiteCore asks for this blob with ``compress=true`` (protocol §3.9)."""
    content_type = blob.get("content_type")
    if not isinstance(content_type, str) or "encoding" in blob:
        return False
    content_type = content_type.lower()
    if any(part in content_type for part in _COMPRESSED_TYPES):
        return False
    if any(part in content_type for part in _GOOD_TYPES):
        return True
    return not content_type.startswith(_BAD_PREFIXES)


def blob_refs(body: Any) -> Iterator[dict[str, Any]]:
    """Every blob dictionary in a body, and every ``_attachments`` entry with a digest (§4.4)."""
    if isinstance(body, dict):
        if body.get("@type") == "blob" and isinstance(body.get("digest"), str):
            yield body
            return
        for key, value in body.items():
            if key == "_attachments" and isinstance(value, dict):
                yield from (a for a in value.values() if isinstance(a, dict) and isinstance(a.get("digest"), str))
            else:
                yield from blob_refs(value)
    elif isinstance(body, list):
        for item in body:
            yield from blob_refs(item)


def _strip_meta(body: dict[str, Any]) -> dict[str, Any]:
    # LiteCore's encodeStrippingOldMetaProperties (protocol §4.3).
    out = {key: value for key, value in body.items() if not key.startswith("_")}
    attachments = body.get("_attachments")
    if isinstance(attachments, dict):
        kept = {name: a for name, a in attachments.items() if not name.startswith("blob_")}
        if kept:
            out["_attachments"] = kept
    return out


class IncomingRevs:
    """Receives ``rev`` messages into a store on one connection."""

    def __init__(
        self, conn: BlipConnection, store: PeerStore, *, passive: bool, no_incoming_conflicts: bool, origin: object
    ) -> None:
        self.conn = conn
        self.store = store
        self.passive = passive
        self.no_incoming_conflicts = no_incoming_conflicts
        self.origin = origin
        #: How many received revisions came as a delta (protocol §5).
        self.deltas_applied = 0

    async def receive(self, msg: Message) -> RevResult:
        """Handle one ``rev`` completely, reply included."""
        doc_id, rev_id = msg.get("id") or "", msg.get("rev") or ""
        result = await self._process(msg, doc_id, rev_id)
        if result.error is None:
            self.conn.reply(msg)
        else:
            self.conn.reply_error(msg, *result.error)
        return result

    async def _process(self, msg: Message, doc_id: str, rev_id: str) -> RevResult:
        # IncomingRev::handleRev's checks, in its order.
        if not doc_id:
            return RevResult(doc_id, rev_id, ("HTTP", 400, "received invalid docID ''"))
        if generation(rev_id) <= 0:
            return RevResult(doc_id, rev_id, ("HTTP", 400, "received invalid version ID"))
        if not self.passive and msg.get("sequence") is None:
            return RevResult(doc_id, rev_id, ("HTTP", 400, "received 'rev' message with missing 'sequence'"))
        history = split_history(msg.get("history"))
        bad = [r for r in (rev_id, *history) if not is_storable_rev_id(r)]
        if bad:
            self.conn.violation(f"rev {doc_id} {rev_id}: LiteCore cannot store revision ID {bad[0]!r} (protocol §4.1)")
            return RevResult(doc_id, rev_id, ("LiteCore", _LITECORE_BAD_REVISION_ID, "bad revision ID"))
        body = msg.json()
        delta_src = msg.get("deltaSrc")
        if delta_src:
            body, error = self._apply_delta(msg, doc_id, delta_src, body)
            if error is not None:
                return RevResult(doc_id, rev_id, error, resend_expected=error[1] == 422)
        if not isinstance(body, dict):
            return RevResult(doc_id, rev_id, ("Fleece", 3, "Incoming rev failed to encode"))
        body = _strip_meta(body)
        error = await self._fetch_blobs(doc_id, body)
        if error is not None:
            return RevResult(doc_id, rev_id, error)
        no_conflicts = msg.get_bool("noconflicts") or self.no_incoming_conflicts
        try:
            inserted = self.store.insert_revision(
                doc_id,
                rev_id,
                history,
                body,
                deleted=msg.get_bool("deleted"),
                allow_conflict=not no_conflicts,
                origin=self.origin,
            )
        except StoreConflictError:
            # protocol.md §3.7 (and the brief) speak of a 409; LiteCore's Inserter fails with the C4
            # error LiteCore/8 and Worker::c4ToBLIPError passes that domain through unchanged.
            return RevResult(doc_id, rev_id, ("LiteCore", _LITECORE_CONFLICT, "conflict"))
        except ValueError as exc:
            self.conn.violation(f"rev {doc_id} {rev_id}: {exc}")
            return RevResult(doc_id, rev_id, ("HTTP", 400, str(exc)))
        return RevResult(doc_id, rev_id, inserted=inserted)

    def _apply_delta(
        self, msg: Message, doc_id: str, delta_src: str, delta: Any
    ) -> tuple[Any, tuple[str, int, str] | None]:
        base = self.store.revision(doc_id, delta_src)
        if base is None or base.body is None or base.deleted:
            if self.no_incoming_conflicts and b'"digest"' in msg.body:
                # IncomingRev::parseAndInsert applies such a delta at once; in no-conflicts
                # mode a missing base is reported as a conflict.
                return None, ("HTTP", 409, "")
            return None, ("HTTP", 422, f"Couldn't apply delta: Don't have body of '{doc_id}' #{delta_src}")
        try:
            body = apply_delta(base.body, delta)
        except DeltaError as exc:
            return None, ("HTTP", 422, f"Invalid delta: {exc}")
        self.deltas_applied += 1
        return body, None

    async def _fetch_blobs(self, doc_id: str, body: dict[str, Any]) -> tuple[str, int, str] | None:
        for blob in list(blob_refs(body)):
            digest = blob["digest"]
            if self.store.has_blob(digest):
                continue
            props = [("digest", digest), ("docID", doc_id)]
            if likely_compressible(blob):
                props.append(("compress", "true"))
            reply = await self.conn.request("getAttachment", props)
            if reply.is_error:
                domain, code, text = reply.error
                return domain, code, text
            if blob_digest(reply.body) != digest:
                return "LiteCore", _LITECORE_NOT_FOUND, f"blob {digest}: received data has another digest"
            content_type = blob.get("content_type")
            self.store.store_blob(reply.body, content_type if isinstance(content_type, str) else None)
        return None
