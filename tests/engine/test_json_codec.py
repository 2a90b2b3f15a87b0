from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.documents import check_body
from engine.json_codec import canonical, loads


def std_canonical(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")).encode()


text = st.text(st.characters(exclude_categories=("Cs",)))  # no lone surrogates: not storable
integers = st.integers() | st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from([2**63, -(2**63) - 1])
finite = st.floats(allow_nan=False, allow_infinity=False)
scalars_no_float = st.none() | st.booleans() | integers | text
json_no_float = st.recursive(
    scalars_no_float,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
    max_leaves=30,
)
json_any = st.recursive(
    scalars_no_float | finite,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
    max_leaves=30,
)


@given(json_no_float)
def test_canonical_without_floats_is_the_standard_librarys(value: Any) -> None:
    assert canonical(value, floats=False) == std_canonical(value)


@given(json_any)
def test_canonical_with_floats_is_the_standard_librarys(value: Any) -> None:
    assert canonical(value) == std_canonical(value)


@given(st.dictionaries(text, json_any, max_size=6))
def test_check_body_gives_the_standard_canonical_form(body: dict[str, Any]) -> None:
    body = {"k" + key: value for key, value in body.items()}  # no top-level "_" keys
    assert check_body(body)[0] == std_canonical(body)


@given(json_any)
def test_loads_reads_back_what_the_standard_library_writes(value: Any) -> None:
    for encoded in (std_canonical(value), json.dumps(value).encode()):
        assert loads(encoded) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"123456789012345678901234567890", 123456789012345678901234567890),
        (b"[18446744073709551616]", [18446744073709551616]),
        (b'{"a":-9223372036854775809}', {"a": -9223372036854775809}),
        (b"9223372036854775807", 9223372036854775807),
        (b'"1234567890123456789012"', "1234567890123456789012"),
    ],
)
def test_long_integers_keep_every_digit(text: bytes, expected: Any) -> None:
    value = loads(text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "text",
    [
        b"NaN",
        b"[Infinity]",
        b'{"a":-Infinity}',
        b"[NaN, 12345678901234567890]",  # the standard library's path refuses them too
        b'"\xff"',
        b"[" * 5000 + b"]" * 5000,
        b"[" * 5000 + b"1234567890123456789012" + b"]" * 5000,
        b"{",
        b"",
    ],
)
def test_loads_refuses_what_is_not_json(text: bytes) -> None:
    with pytest.raises(ValueError):
        loads(text)


def test_lone_surrogates_and_non_finite_floats_are_refused_on_encoding() -> None:
    with pytest.raises(UnicodeEncodeError):
        canonical({"a": "\ud800"}, floats=False)
    with pytest.raises(ValueError):
        canonical([math.inf])


def test_big_integers_are_encoded_in_full() -> None:
    assert canonical({"n": 2**80}, floats=False) == b'{"n":1208925819614629174706176}'
