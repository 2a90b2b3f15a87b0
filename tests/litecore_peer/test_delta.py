"""The double's Fleece delta code against protocol-vectors.json (protocol §5, §7 V17/V18)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED, needs_shared
from tests.litecore_peer.delta import DeltaError, apply_delta, make_delta

VECTORS_PATH = SHARED / "protocol-vectors.json"
pytestmark = needs_shared(VECTORS_PATH)
VECTORS = json.loads(Path(VECTORS_PATH).read_text()) if Path(VECTORS_PATH).exists() else {}


@pytest.mark.parametrize("case", VECTORS.get("json_deltas", []), ids=lambda c: json.dumps(c["delta"]))
def test_json_deltas_both_ways(case: dict[str, Any]) -> None:
    assert make_delta(case["old"], case["new"]) == case["delta"]
    assert apply_delta(case["old"], case["delta"]) == case["new"]


@pytest.mark.parametrize("case", VECTORS.get("string_deltas", []), ids=lambda c: c["delta"][0][:20])
def test_string_deltas_apply(case: dict[str, Any]) -> None:
    assert apply_delta({"s": case["old"]}, {"s": case["delta"]}) == {"s": case["new"]}


@pytest.mark.parametrize(
    ("old", "delta"),
    [({"a": 1}, {"b": []}), ({"a": 1}, {"b": {"c": 1}}), ({"s": "abc"}, {"s": ["2=", 0, 2]}), ([1], {"0-": 5})],
)
def test_bad_deltas_are_refused(old: Any, delta: Any) -> None:
    with pytest.raises(DeltaError):
        apply_delta(old, delta)


def test_nested_round_trip() -> None:
    old = {"name": "x", "items": [{"q": 1}, {"q": 2}], "gone": True, "n": None}
    new = {"name": "y", "items": [{"q": 1}, {"q": 3}, {"q": 4}], "n": None, "added": {"k": [1]}}
    assert apply_delta(old, make_delta(old, new)) == new
