from __future__ import annotations

import hashlib

from bench.scenario_docs import SHA256_10000, attachment_bytes, corpus_sha256, item_json
from tests.conftest import SHARED, needs_shared

SHARED_DOCS = SHARED / "bench" / "pouchdb" / "py" / "docs.py"


def test_s1_documents_match_the_scenario_check_value() -> None:
    assert corpus_sha256(10_000) == SHA256_10000
    assert item_json(1).startswith(b'{"_id":"item-000001","type":"item","key":"Apples-1","value":7919,')


@needs_shared(SHARED_DOCS)
def test_s1_documents_match_the_shared_generator() -> None:
    namespace: dict[str, object] = {}
    exec(compile(SHARED_DOCS.read_text(), str(SHARED_DOCS), "exec"), namespace)  # read-only reference generator
    shared_item_json = namespace["item_json"]
    assert callable(shared_item_json)
    for i in (1, 2, 999, 10_000, 50_000):
        assert shared_item_json(i) == item_json(i)


def test_photo_bytes_match_the_scenario_generator() -> None:
    # md5 of photo 7's attachment as common.js's mulberry32 writes it
    assert hashlib.md5(attachment_bytes(7)).hexdigest() == "9925b6c5ebb53119be55368b9248e9da"
    assert len(attachment_bytes(1)) == 16 * 1024
