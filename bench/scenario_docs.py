"""The S1 inventory documents of the shared benchmark scenarios, byte for byte.

Written from the scenario definition (``../shared/bench/pouchdb/README.md``,
§ Documents). ``python bench.scenario_docs.py 10000`` prints the SHA-256 of the
10,000 JSON lines, which must be ``e9e7a16f…3f84``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

BASE = datetime(2024, 1, 1, tzinfo=UTC)
LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
    "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip "
    "ex ea commodo consequat."
)
#: SHA-256 of the first 10,000 documents, one JSON line each (the scenario's check value).
SHA256_10000 = "e9e7a16faf6eff2059a4abf11e0166dfbd36549826c824cce601e189432f3f84"


def item_doc(i: int) -> dict[str, Any]:
    """Inventory document ``i`` (1-based), keys in the scenario's order."""
    t = BASE + timedelta(seconds=i)
    return {
        "_id": f"item-{i:06d}",
        "type": "item",
        "key": f"Apples-{i}",
        "value": (i * 7919) % 100000,
        "updated": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
        "notes": f"Item {i}: {LOREM}"[:200],
    }


def item_json(i: int) -> bytes:
    """The document as JSON.stringify writes it."""
    return json.dumps(item_doc(i), separators=(",", ":")).encode()


def split(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Return ``(doc ID, body without _id)``, the form our database stores."""
    body = dict(doc)
    return body.pop("_id"), body


def corpus_sha256(n: int) -> str:
    h = hashlib.sha256()
    for i in range(1, n + 1):
        h.update(item_json(i) + b"\n")
    return h.hexdigest()


if __name__ == "__main__":
    print(corpus_sha256(int(sys.argv[1]) if len(sys.argv) > 1 else 10000))


ATTACHMENT_SIZE = 16 * 1024


def mulberry32(seed: int) -> Iterator[int]:
    """The scenario's deterministic 32-bit generator (common.js ``mulberry32``)."""
    a = seed & 0xFFFFFFFF
    while True:
        a = (a + 0x6D2B79F5) & 0xFFFFFFFF
        t = a
        t = _imul(t ^ (t >> 15), t | 1)
        t ^= (t + _imul(t ^ (t >> 7), t | 61)) & 0xFFFFFFFF
        yield (t ^ (t >> 14)) & 0xFFFFFFFF


def _imul(a: int, b: int) -> int:
    return (a * b) & 0xFFFFFFFF


def attachment_bytes(i: int) -> bytes:
    """The 16 KiB picture of photo document ``i``: 4,096 outputs of mulberry32(i), little-endian."""
    rnd = mulberry32(i)
    return b"".join(next(rnd).to_bytes(4, "little") for _ in range(ATTACHMENT_SIZE // 4))


def photo_doc(i: int) -> tuple[str, dict[str, Any]]:
    """Photo document ``i`` as (ID, body without the picture)."""
    return f"photo-{i:06d}", {"type": "photo", "key": f"Photo-{i}"}
