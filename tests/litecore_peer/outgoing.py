"""Sending revisions and serving their blobs: LiteCore's Pusher+Revs.cc and Pusher+Attachments.cc.

A ``rev`` carries ``id``, ``rev``, ``sequence``, ``history`` back to the first revision the peer
is known to have (at most ``maxHistory - 1`` entries, that revision always among them: after a gap
when it is further back), ``deleted: 1``, ``noconflicts: 1`` after a
``proposeChanges`` (protocol §3.7, §4.2). Bodies of 200 bytes or more go as a delta against a
revision the peer has when the peer announced ``deltas`` and the delta is at most 1.2 times the
body (Pusher::createRevisionDelta, §5); a delta refused with 422 is sent again whole. When the peer
did not say ``blobs: true`` the body gets LiteCore's legacy ``_attachments`` stand-ins (§4.4).
``getAttachment`` is answered from the blob store, compressed when asked (§3.9).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.litecore_peer.blip import Message
from tests.litecore_peer.connection import BlipConnection
from tests.litecore_peer.delta import make_delta
from tests.litecore_peer.store import PeerStore, generation

__all__ = ["OutgoingRev", "RevSender", "legacy_attachments"]

#: LiteCore tuning::kMinBodySizeForDelta (ReplicatorTuning.hh).
MIN_BODY_SIZE_FOR_DELTA = 200
_LITECORE_NOT_FOUND = 7
_LITECORE_INVALID_PARAMETER = 9


@dataclass(slots=True)
class OutgoingRev:
    """One revision to send and what is known of the peer's copy."""

    doc_id: str
    rev_id: str
    sequence: int
    known: tuple[str, ...] = ()
    no_conflicts: bool = False
    max_history: int = 20
    deltas_ok: bool = False
    legacy_attachments: bool = False


def legacy_attachments(body: dict[str, Any], revpos: int) -> dict[str, Any]:
    """LiteCore's encodeRevWithLegacyAttachments: ``_attachments`` stand-ins named ``blob_<path>``."""
    stand_ins: dict[str, Any] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            if value.get("@type") == "blob" and "digest" in value:
                entry = {k: v for k, v in value.items() if k != "@type"}
                stand_ins[f"blob_{path}"] = {**entry, "stub": True, "revpos": revpos}
                return
            for key, item in value.items():
                walk(item, f"{path}/{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}/{index}")

    for key, value in body.items():
        if key != "_attachments":
            walk(value, f"/{key}")
    if not stand_ins:
        return body
    existing = body.get("_attachments")
    existing = existing if isinstance(existing, dict) else {}
    return {**body, "_attachments": {**existing, **stand_ins}}


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class RevSender:
    """Sends ``rev`` messages for one connection and serves ``getAttachment``."""

    def __init__(self, conn: BlipConnection, store: PeerStore) -> None:
        self.conn = conn
        self.store = store
        self.sent_digests: set[str] = set()

    def history(self, rev: OutgoingRev) -> list[str]:
        """Ancestors of the revision, newest first (TreeDocument::_getRevisionHistory).

        At most ``maxHistory - 1`` ancestors; generations the tree skips are filled
        with made-up ``<gen>-faded000<16 hex>`` IDs while there is room; the walk
        stops at a revision the peer has, which is always written, in place of
        the last entry when the history is full (then after a gap).
        """
        out: list[str] = []
        # LiteCore's walk writes the revision itself first (it counts toward maxHistory), and the
        # pusher strips it: at most maxHistory - 1 ancestors
        cap = max(rev.max_history - 1, 1)
        known = set(rev.known)
        above = generation(rev.rev_id)
        for rev_id in self.store.ancestry(rev.doc_id, rev.rev_id)[1:]:
            gen = generation(rev_id)
            for missing in range(above - 1, gen, -1):
                if len(out) >= cap:
                    break
                seed = hashlib.sha1(f"{rev.rev_id}|{missing}".encode(), usedforsecurity=False)
                out.append(f"{missing}-faded000{seed.hexdigest()[:16]}")
            above = gen
            if rev_id in known:
                if len(out) >= cap:
                    out.pop()
                out.append(rev_id)
                break
            if len(out) < cap:
                out.append(rev_id)
                if not known and len(out) == cap:
                    break
        return out

    def build(self, rev: OutgoingRev, *, allow_delta: bool = True) -> tuple[str, list[tuple[str, str]], bytes]:
        """(profile, properties, body) of the ``rev`` — or a ``norev`` if the body is gone."""
        stored = self.store.revision(rev.doc_id, rev.rev_id)
        props = [("id", rev.doc_id), ("rev", rev.rev_id), ("sequence", str(rev.sequence))]
        if stored is None or stored.body is None:
            # Pusher::sendRevision: no body -> norev with error 404 (or 410 if obsolete).
            return "norev", [*props, ("error", "404")], b""
        if rev.no_conflicts:
            props.append(("noconflicts", "1"))
        if stored.deleted:
            props.append(("deleted", "1"))
        history = self.history(rev)
        if history:
            props.append(("history", ",".join(history)))
        body: dict[str, Any] = stored.body
        if rev.legacy_attachments:
            body = legacy_attachments(body, generation(rev.rev_id))
        data = _json(body) if body else b"{}"
        delta = self._delta(rev, body, len(data)) if allow_delta else None
        if delta is not None:
            base, delta_data = delta
            props.append(("deltaSrc", base))
            data = delta_data
        return "rev", props, data

    def _delta(self, rev: OutgoingRev, body: dict[str, Any], size: int) -> tuple[str, bytes] | None:
        if not rev.deltas_ok or size < MIN_BODY_SIZE_FOR_DELTA:
            return None
        for base_id in rev.known:
            base = self.store.revision(rev.doc_id, base_id)
            if base is None or base.body is None:
                continue
            if base.deleted or not base.body:
                return None
            old = legacy_attachments(base.body, generation(base_id)) if rev.legacy_attachments else base.body
            delta = _json(make_delta(old, body))
            return (base_id, delta) if len(delta) <= size * 1.2 else None
        return None

    async def send(self, rev: OutgoingRev) -> Message | None:
        """Send the revision and wait for the reply (None for a norev, which is NoReply).

        A delta refused with ``HTTP``/422 (or LiteCore's delta errors) is sent again whole, as
        Pusher::onRevProgress retries (CBL-986).
        """
        profile, props, body = self.build(rev)
        stored = self.store.revision(rev.doc_id, rev.rev_id)
        if stored is not None and stored.body:
            self.sent_digests.update(_digests(stored.body))
        if profile == "norev":
            self.conn.send_no_reply("norev", props)
            return None
        reply = await self.conn.request("rev", props, body, compressed=True)
        if reply.is_error and any(name == "deltaSrc" for name, _ in props) and _is_delta_error(reply):
            profile, props, body = self.build(rev, allow_delta=False)
            reply = await self.conn.request("rev", props, body, compressed=True)
        return reply

    def handle_get_attachment(self, msg: Message) -> None:
        """Pusher::handleGetAttachment."""
        digest = msg.get("digest") or ""
        if not digest.startswith("sha1-"):
            self.conn.reply_error(msg, "LiteCore", _LITECORE_INVALID_PARAMETER, "Missing or invalid 'digest'")
            return
        data = self.store.blob(digest)
        if data is None:
            self.conn.reply_error(msg, "LiteCore", _LITECORE_NOT_FOUND, "No such blob")
            return
        self.conn.reply(msg, body=data, compressed=msg.get_bool("compress"))


def _is_delta_error(reply: Message) -> bool:
    domain, code, _ = reply.error
    return (domain in ("HTTP", "WebSocket") and code == 422) or (
        domain == "LiteCore" and code in (31, 32)
    )  # DeltaBaseUnknown, CorruptDelta


def _digests(body: Any) -> Iterable[str]:
    if isinstance(body, dict):
        if body.get("@type") == "blob" and isinstance(body.get("digest"), str):
            yield body["digest"]
        for value in body.values():
            yield from _digests(value)
    elif isinstance(body, list):
        for item in body:
            yield from _digests(item)
