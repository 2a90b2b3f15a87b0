from __future__ import annotations

import os

import pytest

from engine.blobs import digest_of, digest_to_key
from engine.blobstore import CHUNK_SIZE
from engine.database import Database
from engine.errors import BlobCorruptError, BlobNotFoundError


def test_save_and_read_round_trip(db: Database) -> None:
    blob = db.save_blob(b"hello world", "text/plain")
    assert blob.digest == "sha1-Kq5sNclPz7QV2+lfQIuc6R7oRu0=" and blob.length == 11
    assert db.read_blob(blob.digest) == b"hello world"
    assert db.has_blob(blob.digest)


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 5 * 1024 * 1024 + 7])
def test_streamed_write_and_read(db: Database, size: int) -> None:
    data = os.urandom(size)
    with db.blob_writer("application/octet-stream") as writer:
        for start in range(0, size, 10_000):
            writer.write(data[start : start + 10_000])
        blob = writer.finish()
    assert blob.digest == digest_of(data) and blob.length == size
    with db.open_blob(blob.digest) as reader:
        pieces = []
        while piece := reader.read(7_777):
            pieces.append(piece)
    assert b"".join(pieces) == data
    assert db.read_blob(blob.digest) == data  # whole, in one pass


def test_content_is_stored_once(db: Database) -> None:
    first = db.save_blob(b"same bytes")
    second = db.save_blob(b"same bytes")
    assert first == second
    with db._store.read() as txn:
        assert txn.count("blobs") == 1
        assert txn.count("blob_chunks") == 1


def test_missing_blob(db: Database) -> None:
    with pytest.raises(BlobNotFoundError):
        db.read_blob(digest_of(b"never stored"))


def test_corrupt_chunk_is_detected(db: Database) -> None:
    data = os.urandom(CHUNK_SIZE * 2 + 5)
    blob = db.save_blob(data)
    key = digest_to_key(blob.digest) + (1).to_bytes(4, "big")
    db._store.write(lambda txn: txn.put("blob_chunks", key, b"\x00" * CHUNK_SIZE))
    with pytest.raises(BlobCorruptError, match="does not match"):
        db.read_blob(blob.digest)
    with pytest.raises(BlobCorruptError, match="does not match"), db.open_blob(blob.digest) as reader:
        reader.read()
    db._store.write(lambda txn: txn.delete("blob_chunks", key))
    with pytest.raises(BlobCorruptError, match="missing chunk 1"):
        db.read_blob(blob.digest)
    with pytest.raises(BlobCorruptError, match="missing chunk 1"), db.open_blob(blob.digest) as reader:
        reader.read()


def test_aborted_writer_stores_nothing(db: Database) -> None:
    with pytest.raises(RuntimeError), db.blob_writer() as writer:
        writer.write(b"partial")
        raise RuntimeError("stop")
    assert not db.has_blob(digest_of(b"partial"))


def test_documents_must_refer_to_stored_blobs(db: Database) -> None:
    ghost = {"@type": "blob", "digest": digest_of(b"ghost"), "length": 5}
    with pytest.raises(BlobNotFoundError):
        db.save("a", {"img": ghost})
    assert db.get("a") is None
