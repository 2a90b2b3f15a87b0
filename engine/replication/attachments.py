"""Blobs on the wire (protocol §3.9-3.10): serving them, proving we hold them, fetching them."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable

from engine.blobs import Blob, digest_to_key, prove_attachment
from engine.database import Database
from engine.errors import BlobNotFoundError, InvalidDocumentError
from engine.replication import tuning
from engine.replication.blip.connection import Message
from engine.replication.blip.socket import BlipSocket, Reply
from engine.replication.db_runner import DbRunner
from engine.replication.errors import BlipError
from engine.replication.messages import is_compressible, parse_bool

__all__ = ["AttachmentFetcher", "AttachmentServer"]

log = logging.getLogger(__name__)


class AttachmentServer:
    """Answers ``getAttachment`` and ``proveAttachment`` from the database's blob store."""

    def __init__(self, db: Database, runner: DbRunner) -> None:
        self.db = db
        self.runner = runner
        self.bytes_sent = 0

    def register(self, socket: BlipSocket) -> None:
        """Handle the attachment requests on ``socket``."""
        socket.register("getAttachment", self.get_attachment)
        socket.register("proveAttachment", self.prove_attachment)

    async def _read(self, message: Message) -> bytes:
        digest = message.properties.get("digest", "")
        try:
            return await self.runner.run(self.db.read_blob, digest)
        except InvalidDocumentError:
            raise BlipError("LiteCore", 9, "invalid digest") from None
        except BlobNotFoundError:
            raise BlipError("LiteCore", 7, "No such blob") from None

    async def get_attachment(self, message: Message) -> Reply:
        """Send a blob's bytes, compressed when asked (§3.9)."""
        data = await self._read(message)
        self.bytes_sent += len(data)
        return Reply({}, data, compressed=parse_bool(message.properties.get("compress")))

    async def prove_attachment(self, message: Message) -> Reply:
        """Prove we hold a blob: SHA-1 over the nonce and the bytes (§3.10)."""
        if not 1 <= len(message.body) <= 255:
            raise BlipError("BLIP", 400, "Missing nonce")
        data = await self._read(message)
        return Reply({}, prove_attachment(message.body, data).encode())


class AttachmentFetcher:
    """Fetches the blobs a received revision refers to, before it is inserted (§3.7).

    Fetched contents are kept in memory until the revision's transaction
    stores them (one commit for a revision and its pictures); at most
    ``tuning.MAX_FETCHED_BYTES`` of them at once, beyond which fetches wait.
    """

    def __init__(self, db: Database, runner: DbRunner, socket: BlipSocket) -> None:
        self.db = db
        self.runner = runner
        self.socket = socket
        self.bytes_received = 0
        #: bytes of blobs being fetched or waiting to be stored
        self.bytes_held = 0
        self._freed = asyncio.Event()

    async def fetch_missing(self, doc_id: str, blobs: Iterable[Blob]) -> list[tuple[bytes, bytes]]:
        """Download every blob the store lacks and check it against its digest.

        Returns ``(SHA-1 digest, bytes)`` pairs to store with the revision (see
        ``RevisionInsert.new_blobs``); call :meth:`release` with them once stored.

        Raises:
            BlipError: ``HTTP``/400 when the peer sends bytes that do not match;
                the peer's own error when it cannot serve one.
        """
        wanted = {b.digest: b for b in blobs}
        missing = [b for d, b in wanted.items() if not await self.runner.run(self.db.has_blob, d)]
        if not missing:
            return []
        # all of a revision's blobs at once: they are freed together once it is
        # stored, so reserving them one by one could leave two revisions each
        # holding part of what it needs and waiting for the other
        reserved = sum(blob.length for blob in missing)
        await self._reserve(reserved)
        fetched: list[tuple[bytes, bytes]] = []
        try:
            for blob in missing:
                key = digest_to_key(blob.digest)
                fetched.append((key, await self._fetch(doc_id, blob, key)))
        except BaseException:
            self._free(reserved)
            raise
        return fetched

    async def _fetch(self, doc_id: str, blob: Blob, key: bytes) -> bytes:
        props = {"digest": blob.digest, "docID": doc_id}
        if is_compressible(blob.content_type):
            props["compress"] = "true"
        reply = await self.socket.request("getAttachment", props)
        assert reply is not None
        data = reply.body
        if len(data) != blob.length or hashlib.sha1(data, usedforsecurity=False).digest() != key:
            raise BlipError("HTTP", 400, f"attachment {blob.digest} does not match its digest")
        self.bytes_received += len(data)
        return data

    def release(self, fetched: list[tuple[bytes, bytes]]) -> None:
        """The blobs :meth:`fetch_missing` returned are stored (or dropped): make room for others."""
        self._free(sum(len(data) for _, data in fetched))

    async def _reserve(self, size: int) -> None:
        """Wait until ``size`` more bytes fit; one revision beyond the whole allowance still goes, alone."""
        while self.bytes_held and self.bytes_held + size > tuning.MAX_FETCHED_BYTES:
            self._freed.clear()
            await self._freed.wait()
        self.bytes_held += size

    def _free(self, size: int) -> None:
        self.bytes_held -= size
        self._freed.set()
