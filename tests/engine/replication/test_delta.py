"""Delta sync's JSON deltas (protocol §5, vectors V17 and V18)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.replication.delta import DeltaError, DiffWork, apply_delta, create_delta
from tests.conftest import SHARED, needs_shared

V17 = [
    ({"foo": 1}, {"bar": 2}, {"bar": 2, "foo": []}),
    ({}, {"bar": {"baz": 9}}, {"bar": [{"baz": 9}]}),
    ({"foo": {"bar": [1]}, "goo": 2}, {"foo": {"bar": [2]}, "goo": 2}, {"foo": {"bar": {"0": 2}}}),
    ([1, 2, 3], [1, 2, 3, 4, 5], {"3-": [4, 5]}),
    ([1, 2, 3, 4, 5], [1, 2, 3], {"3-": []}),
    ([1, 2, 3, 5, 6, 7], [1, 2, 3, 4, 5], {"3": 4, "4": 5, "5-": []}),
    (5, 6, [6]),
    ({"foo": 1}, [2], [[2]]),
    ({"a": 1}, {"a": 1}, {}),
]
AUTUMN = "to wound the autumnal city. The in-dark answered with the wind."
V18 = [
    (AUTUMN, AUTUMN.replace("city.", "city. So howled out for the world to give him a name."),
     ["27=48+ So howled out for the world to give him a name.|36=", 0, 2]),
    ("ABC+DEF-HIJ=KLM|NOP " + "*" * 31, "AbC-def+HIJKLM|NOP= " + "*" * 31, ["1=7-7+bC-def+|3=1-7=1+=|32=", 0, 2]),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "delta"), V17)
def test_v17_create_and_apply(old: Any, new: Any, delta: Any) -> None:
    assert create_delta(old, new) == delta
    assert apply_delta(old, delta) == new


@pytest.mark.parametrize(("old", "new", "delta"), V18)
def test_v18_string_deltas_apply(old: str, new: str, delta: list[Any]) -> None:
    assert apply_delta(old, delta) == new
    assert apply_delta({"s": old}, {"s": delta}) == {"s": new}
    ours = create_delta(old, new)
    assert apply_delta(old, ours) == new


@needs_shared(SHARED / "protocol-vectors.json")
def test_vectors_match_the_shared_file() -> None:
    vectors = json.loads((SHARED / "protocol-vectors.json").read_text())
    assert [(v["old"], v["new"], v["delta"]) for v in vectors["json_deltas"]] == V17
    assert [(v["old"], v["new"], v["delta"]) for v in vectors["string_deltas"]] == V18


def test_jsondiffpatch_forms() -> None:
    assert apply_delta({"a": 1}, {"a": [1, 2]}) == {"a": 2}
    assert apply_delta({"a": 1, "b": 2}, {"a": [1, 0, 0]}) == {"b": 2}
    assert apply_delta(7, {}) == 7  # empty delta on a scalar


def test_json_types_matter() -> None:
    assert create_delta({"a": 1}, {"a": True}) == {"a": True}
    assert create_delta({"a": 1}, {"a": 1.0}) == {"a": 1.0}
    assert create_delta([1], [True]) == {"0": True}


@pytest.mark.parametrize(
    ("old", "delta"),
    [
        (5, {"a": 1}),
        ({"a": 1}, 3),
        ([1], {"5": 2}),
        ([1], {"x": 2}),
        ([1], {"0": []}),
        ([1], {"3-": [1]}),
        ({"a": 1}, {"b": {"c": 1}}),
        ("abc", ["5=", 0, 2]),
        ("abc", ["1=", 0, 2]),
        ("abc", ["3=2+x|", 0, 2]),
        ("abc", ["3=1+xx", 0, 2]),
        ("abc", ["x", 0, 2]),
        (1, [1, 2, 3, 4]),
        (1, []),
    ],
)
def test_malformed_deltas_are_refused(old: Any, delta: Any) -> None:
    with pytest.raises(DeltaError):
        apply_delta(old, delta)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=80),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(json_values, json_values)
def test_apply_inverts_create(old: Any, new: Any) -> None:
    delta = create_delta(old, new)
    assert isinstance(delta, dict | list)
    assert json.loads(json.dumps(apply_delta(old, json.loads(json.dumps(delta))))) == json.loads(json.dumps(new))


long_json_values = st.recursive(
    st.none() | st.integers(-5, 5) | st.text(max_size=300) | st.sampled_from(["€uro " * 15, "₤uro " * 15, "😀" * 20]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from("abcde"), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(long_json_values, long_json_values, st.integers(0, 5_000))
def test_apply_inverts_create_with_long_strings_and_any_allowance(old: Any, new: Any, allowance: int) -> None:
    delta = json.loads(json.dumps(create_delta(old, new, work=DiffWork(allowance)), ensure_ascii=False))
    assert apply_delta(old, delta) == new
