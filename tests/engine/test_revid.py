from __future__ import annotations

import pytest

from engine.errors import InvalidDocumentError
from engine.revid import compare_key, generation, is_valid_rev_id, make_rev_id, parse_rev_id


@pytest.mark.parametrize(
    ("rev_id", "expected"),
    [
        ("1-ab", (1, "ab")),
        ("12-0123456789abcdef", (12, "0123456789abcdef")),
        ("3-" + "f" * 40, (3, "f" * 40)),
    ],
)
def test_parse_valid(rev_id: str, expected: tuple[int, str]) -> None:
    assert parse_rev_id(rev_id) == expected
    assert is_valid_rev_id(rev_id)
    assert generation(rev_id) == expected[0]


@pytest.mark.parametrize(
    "rev_id",
    ["", "1", "1-", "-ab", "0-ab", "1-abc", "1-AB", "x-ab", "1-zz", "1-" + "a" * 66, "\u0661-ab", "1 -ab"],
)
def test_parse_invalid(rev_id: str) -> None:
    with pytest.raises(InvalidDocumentError):
        parse_rev_id(rev_id)
    assert not is_valid_rev_id(rev_id)


def test_make_rev_id_is_deterministic_and_depends_on_every_input() -> None:
    body = b'{"a":1}'
    first = make_rev_id(None, False, body)
    assert first == make_rev_id(None, False, body)
    assert first.startswith("1-") and len(first) == 42
    assert make_rev_id(None, True, body) != first
    assert make_rev_id(None, False, b'{"a":2}') != first
    child = make_rev_id(first, False, body)
    assert child.startswith("2-") and child != first
    assert is_valid_rev_id(child)


def test_make_rev_id_vectors() -> None:
    # SHA-1 over byte(len(parent)) + parent + byte(deleted) + canonical body
    first = make_rev_id(None, False, b"{}")
    assert first == "1-a5bb2524156f3e56dcc4e5c52c73c46f82c2efb0"
    assert make_rev_id(first, True, b"{}") == "2-be7215eb7d04e117f1ab1fa96bc40d66e1b572ac"


def test_compare_key_orders_by_generation_then_digest() -> None:
    revs = ["2-aa", "10-00", "2-ab", "1-ff"]
    assert sorted(revs, key=compare_key) == ["1-ff", "2-aa", "2-ab", "10-00"]
