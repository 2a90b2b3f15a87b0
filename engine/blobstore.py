"""Blob content in the database: streamed in, chunked, deduplicated, verified out.

Content is written to a spooled temporary file while its digest is computed,
then installed in one transaction under its digest (``blobs`` holds the record,
``blob_chunks`` the bytes in fixed-size chunks). A crash before that commit
leaves nothing visible. Reading streams the chunks back and checks the digest
and length at the end; a mismatch raises :class:`BlobCorruptError`.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import time
from collections.abc import Iterable
from typing import IO

from engine.blobs import Blob, digest_to_key, key_to_digest
from engine.errors import BlobCorruptError, BlobNotFoundError
from engine.json_codec import dumps, loads
from engine.lmdb_store import Store, Txn

__all__ = ["CHUNK_SIZE", "BlobReader", "BlobStore", "BlobWriter"]

#: Bytes per stored chunk.
CHUNK_SIZE = 64 * 1024
#: Content up to this size is spooled in memory, larger content in a temp file.
SPOOL_IN_MEMORY = 4 * 1024 * 1024


def _chunk_key(key: bytes, index: int) -> bytes:
    return key + index.to_bytes(4, "big")


class BlobWriter:
    """Accepts content in pieces; :meth:`finish` installs it and returns the blob."""

    def __init__(self, store: BlobStore, content_type: str | None) -> None:
        self._store = store
        self._content_type = content_type
        self._sha1 = hashlib.sha1(usedforsecurity=False)
        self._length = 0
        # closed by finish() or abort(); a writer outlives any single block
        self._spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=SPOOL_IN_MEMORY, dir=str(store.tmp_dir)
        )
        self._done = False

    def write(self, data: bytes) -> int:
        """Append ``data``; return its length."""
        self._sha1.update(data)
        self._length += len(data)
        self._spool.write(data)
        return len(data)

    def finish(self) -> Blob:
        """Install the content (once per digest) and return its :class:`Blob`."""
        if self._done:
            raise ValueError("blob writer already finished")
        self._done = True
        try:
            key = self._sha1.digest()
            self._spool.seek(0)
            self._store.install(key, self._length, self._spool)
            return Blob(key_to_digest(key), self._length, self._content_type)
        finally:
            self._spool.close()

    def abort(self) -> None:
        """Discard the content written so far."""
        self._done = True
        self._spool.close()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if not self._done:
            self.abort()


class BlobReader(io.RawIOBase):
    """Reads a stored blob chunk by chunk and verifies it at the end."""

    def __init__(self, store: BlobStore, digest: str, length: int, chunks: int) -> None:
        super().__init__()
        self._store = store
        self._digest = digest
        self._key = digest_to_key(digest)
        self.length = length
        self._chunks = chunks
        self._index = 0
        self._buffer = b""
        self._sha1 = hashlib.sha1(usedforsecurity=False)
        self._seen = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer and self._index < self._chunks:
            chunk = self._store.read_chunk(self._key, self._index)
            self._index += 1
            self._sha1.update(chunk)
            self._seen += len(chunk)
            self._buffer = chunk
            if self._index == self._chunks:
                self._verify()
        if not self._buffer:
            if self._chunks == 0:
                self._verify()
            return 0
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def _verify(self) -> None:
        _verify(self._digest, self._key, self.length, self._seen, self._sha1.digest())


def _verify(digest: str, key: bytes, length: int, seen: int, sha1: bytes) -> None:
    if seen != length or sha1 != key:
        raise BlobCorruptError(f"stored content of blob {digest} does not match its digest")


class BlobStore:
    """Blob records and chunks in a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.tmp_dir = store.path / "tmp"
        self.tmp_dir.mkdir(mode=0o700, exist_ok=True)

    def writer(self, content_type: str | None = None) -> BlobWriter:
        """Start writing new content."""
        return BlobWriter(self, content_type)

    def save(self, data: bytes, content_type: str | None = None) -> Blob:
        """Store ``data`` and return its blob."""
        with self.writer(content_type) as writer:
            writer.write(data)
            return writer.finish()

    def install(self, key: bytes, length: int, source: IO[bytes]) -> None:
        """Store content read from ``source`` under digest ``key`` in one transaction."""
        self._store.write(lambda txn: self.install_in(txn, key, length, source))

    @staticmethod
    def install_in(txn: Txn, key: bytes, length: int, source: IO[bytes]) -> None:
        """Store content read from ``source`` under digest ``key`` in ``txn`` (nothing if already stored).

        The caller vouches that the content matches ``key`` and ``length``.
        """
        if txn.get("blobs", key) is not None:
            return
        source.seek(0)
        index = 0
        while chunk := source.read(CHUNK_SIZE):
            txn.put("blob_chunks", _chunk_key(key, index), chunk)
            index += 1
        record = {"length": length, "chunks": index, "time": int(time.time())}
        txn.put("blobs", key, dumps(record))

    def has(self, digest: str) -> bool:
        """Return whether content with ``digest`` is stored."""
        with self._store.read() as txn:
            return txn.get("blobs", digest_to_key(digest)) is not None

    def open(self, digest: str) -> BlobReader:
        """Open stored content for streaming.

        Raises:
            BlobNotFoundError: no such blob.
        """
        with self._store.read() as txn:
            record = txn.get("blobs", digest_to_key(digest))
        if record is None:
            raise BlobNotFoundError(f"no blob with digest {digest}")
        info = loads(record)
        return BlobReader(self, digest, info["length"], info["chunks"])

    def read(self, digest: str) -> bytes:
        """Return the whole verified content of a blob (one snapshot, one pass).

        Raises:
            BlobNotFoundError: no such blob.
            BlobCorruptError: a chunk is missing or the content does not match.
        """
        key = digest_to_key(digest)
        with self._store.read() as txn:
            record = txn.get("blobs", key)
            if record is None:
                raise BlobNotFoundError(f"no blob with digest {digest}")
            info = loads(record)
            chunks = []
            for index in range(info["chunks"]):
                chunk = txn.get("blob_chunks", _chunk_key(key, index))
                if chunk is None:
                    raise BlobCorruptError(f"blob {digest} is missing chunk {index}")
                chunks.append(chunk)
        data = b"".join(chunks)
        _verify(digest, key, info["length"], len(data), hashlib.sha1(data, usedforsecurity=False).digest())
        return data

    def read_chunk(self, key: bytes, index: int) -> bytes:
        """Return one stored chunk (raising BlobCorruptError when missing)."""
        with self._store.read() as txn:
            chunk = txn.get("blob_chunks", _chunk_key(key, index))
        if chunk is None:
            raise BlobCorruptError(f"blob {key_to_digest(key)} is missing chunk {index}")
        return chunk

    @staticmethod
    def missing(txn: Txn, digests: Iterable[str]) -> list[str]:
        """Return the digests (in order) that ``txn`` does not hold."""
        return [d for d in digests if txn.get("blobs", digest_to_key(d)) is None]

    @staticmethod
    def collect_garbage(txn: Txn, referenced: set[bytes], older_than: float) -> int:
        """Delete blobs not in ``referenced`` installed before ``older_than``; return the count."""
        doomed = []
        for key, record in txn.items_from("blobs"):
            if key not in referenced and loads(record)["time"] <= older_than:
                doomed.append((key, loads(record)["chunks"]))
        for key, chunks in doomed:
            for index in range(chunks):
                txn.delete("blob_chunks", _chunk_key(key, index))
            txn.delete("blobs", key)
        return len(doomed)
