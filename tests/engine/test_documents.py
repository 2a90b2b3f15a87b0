from __future__ import annotations

import math

import pytest

from engine.documents import canonical_json, check_body, check_doc_id, decode_body
from engine.errors import InvalidDocumentError


@pytest.mark.parametrize("doc_id", ["a", "doc::list", "é" * 127, "x" * 255, "with space", "_leading"])
def test_valid_doc_ids(doc_id: str) -> None:
    assert check_doc_id(doc_id) == doc_id.encode()


@pytest.mark.parametrize("doc_id", ["", "x" * 256, "é" * 128, "a\x00b", 5, None, "\ud800"])
def test_invalid_doc_ids(doc_id: object) -> None:
    with pytest.raises(InvalidDocumentError):
        check_doc_id(doc_id)


def test_canonical_body_sorts_keys_and_is_compact() -> None:
    canonical, blobs = check_body({"b": 1, "a": [1, {"d": None, "c": "é"}]})
    assert canonical == '{"a":[1,{"c":"é","d":null}],"b":1}'.encode()
    assert blobs == []


@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        None,
        {"_id": "x"},
        {"_rev": "1-aa"},
        {"_deleted": True},
        {1: "int key"},
        {"a": {2: "nested int key"}},
        {"a": math.nan},
        {"a": math.inf},
        {"a": (1, 2)},
        {"a": {1, 2}},
        {"a": b"bytes"},
        {"a": object()},
        {"a": "\ud800"},
        {"_attachments": []},
        {"img": {"@type": "blob", "digest": "md5-xx", "length": 1}},
        {"img": {"@type": "blob", "digest": "sha1-Kq5sNclPz7QV2+lfQIuc6R7oRu0=", "length": -1}},
    ],
)
def test_invalid_bodies(body: object) -> None:
    with pytest.raises(InvalidDocumentError):
        check_body(body)


def test_deep_nesting_is_refused() -> None:
    body: dict[str, object] = {}
    node = body
    for _ in range(150):
        child: dict[str, object] = {}
        node["x"] = child
        node = child
    with pytest.raises(InvalidDocumentError, match="nested"):
        check_body(body)


def test_blobs_are_collected_anywhere_in_the_tree() -> None:
    blob = {"@type": "blob", "digest": "sha1-Kq5sNclPz7QV2+lfQIuc6R7oRu0=", "length": 11, "content_type": "text/plain"}
    _, blobs = check_body({"items": [{"image": blob}], "_attachments": {"a": {"digest": blob["digest"], "length": 11}}})
    assert [b.digest for b in blobs] == [blob["digest"], blob["digest"]]


def test_decode_body() -> None:
    assert decode_body(b'{"a":1}') == {"a": 1}
    for bad in (b"[1]", b"{", b"\xff"):
        with pytest.raises(InvalidDocumentError):
            decode_body(bad)


def test_canonical_json_matches_check_body() -> None:
    body = {"z": 1, "a": "b"}
    assert canonical_json(body) == check_body(body)[0]
