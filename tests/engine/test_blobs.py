from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.blobs import (
    Blob,
    digest_of,
    digest_to_key,
    iter_blob_refs,
    key_to_digest,
    may_refer_to_blobs,
    prove_attachment,
)
from engine.errors import InvalidDocumentError
from tests.conftest import SHARED, needs_shared

VECTORS = SHARED / "protocol-vectors.json"


def test_hello_world_digest() -> None:
    # protocol §4.4 / vector V14
    assert digest_of(b"hello world") == "sha1-Kq5sNclPz7QV2+lfQIuc6R7oRu0="


def test_prove_attachment_vector() -> None:
    # protocol §3.10 / vector V15
    assert prove_attachment(bytes(range(20)), b"hello world") == "sha1-c0tTJlDhI8ymB+eQmZsCzy6vDQk="


@needs_shared(VECTORS)
def test_digest_vectors_from_shared_file() -> None:
    vectors = json.loads(Path(VECTORS).read_text())["digests"]
    assert digest_of(vectors[0]["data_utf8"].encode()) == vectors[0]["digest"]
    nonce = bytes.fromhex(vectors[1]["nonce_hex"])
    assert prove_attachment(nonce, vectors[1]["data_utf8"].encode()) == vectors[1]["proof"]


def test_digest_key_round_trip() -> None:
    digest = digest_of(b"x")
    assert key_to_digest(digest_to_key(digest)) == digest
    for bad in ("sha1-", "sha1-!!!!", "md5-abc", "sha1-AAAA"):
        with pytest.raises(InvalidDocumentError):
            digest_to_key(bad)


def test_blob_dict_round_trip() -> None:
    blob = Blob(digest_of(b"x"), 1, "image/jpeg")
    assert Blob.from_dict(blob.to_dict()) == blob
    assert blob.to_dict()["@type"] == "blob"


def test_iter_blob_refs_finds_nested_and_legacy() -> None:
    a = Blob(digest_of(b"a"), 1).to_dict()
    b = Blob(digest_of(b"b"), 1).to_dict()
    body = {"x": [{"y": a}], "z": {"w": b}, "_attachments": {"f": {"digest": digest_of(b"c"), "stub": True}}}
    digests = sorted(ref["digest"] for ref in iter_blob_refs(body))
    assert digests == sorted([digest_of(b"a"), digest_of(b"b"), digest_of(b"c")])


def test_may_refer_to_blobs_never_misses_a_reference() -> None:
    blob = Blob(digest_of(b"x"), 1).to_dict()
    assert may_refer_to_blobs(json.dumps({"a": [{"b": blob}]}).encode())
    assert may_refer_to_blobs(json.dumps({"_attachments": {"f": {"digest": "sha1-x", "stub": True}}}).encode())
    assert not may_refer_to_blobs(b'{"key":"Flour","value":3}')
