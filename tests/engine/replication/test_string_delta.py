"""String deltas (protocol §5): Fleece's form, made in bounded time whatever the strings."""

from __future__ import annotations

import json
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.replication import tuning
from engine.replication.delta import apply_delta, create_delta, delta_size
from engine.replication.string_delta import DiffWork
from tests.conftest import TIME_UNIT

AUTUMN = "to wound the autumnal city. The in-dark answered with the wind."
V18_INSERTION = (
    AUTUMN,
    AUTUMN.replace("city.", "city. So howled out for the world to give him a name."),
    ["27=48+ So howled out for the world to give him a name.|36=", 0, 2],
)


def test_v18_insertion_is_created_as_fleece_does() -> None:
    """The insertion lands on the sentence boundary, as diff-match-patch's semantic cleanup puts it.
    (V18's second pair is shorter than 60 bytes: replaced whole, as Fleece does by default.)"""
    old, new, delta = V18_INSERTION
    assert create_delta(old, new) == delta
    assert create_delta({"poem": old}, {"poem": new}) == {"poem": delta}


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=60, max_size=300), st.text(max_size=40), st.integers(0, 300))
def test_string_deltas_round_trip(base: str, insert: str, at: int) -> None:
    new = base[: at % (len(base) + 1)] + insert + base[at % (len(base) + 1) :]
    assert apply_delta(base, create_delta(base, new)) == new


# -- bounded string deltas (protocol §5) -------------------------------------------------


def _random_text(rnd: random.Random, size: int, alphabet: str = "abcdefghij klmnop.\n") -> str:
    return "".join(rnd.choices(alphabet, k=size))


def _edited(rnd: random.Random, text: str, count: int) -> str:
    chars = list(text)
    for _ in range(count):
        at = rnd.randrange(len(chars))
        chars[at : at + rnd.randint(0, 5)] = rnd.choice(["Z", "", "éü€😀", "quite a long insertion"])
    return "".join(chars)


def _worst_case(kind: str, size: int) -> tuple[str, str]:
    rnd = random.Random(f"{kind} {size}")
    text = _random_text(rnd, size)
    cases = {
        "random": lambda: (text, _random_text(rnd, size)),
        "random, two letters": lambda: (_random_text(rnd, size, "ab"), _random_text(rnd, size, "ab")),
        "repetitive": lambda: ("ab" * (size // 2), "ba" * (size // 2)),
        "repetitive, one edit": lambda: ("a" * size, "a" * (size // 2) + "b" + "a" * (size // 2)),
        "rotated": lambda: ("x" * size + "y", "y" + "x" * size),
        "periodic blocks": lambda: (("a" * 999 + "b") * (size // 1000), ("a" * 999 + "c") * (size // 1000)),
        "scattered edits": lambda: (text, _edited(rnd, text, 400)),
        "multi-byte": lambda: ("é" * size, "ü" + "é" * (size - 2) + "€"),
    }
    return cases[kind]()


WORST_CASES = ["random", "random, two letters", "repetitive", "repetitive, one edit", "rotated", "periodic blocks",
               "scattered edits", "multi-byte"]  # fmt: skip


def _linear(*values: str) -> int:
    """Steps beyond the search allowance: linear in the sizes, with a small constant."""
    return sum(len(v) for v in values) // 256 + 2000


@pytest.mark.parametrize("size", [20_000, 200_000])
@pytest.mark.parametrize("kind", WORST_CASES)
def test_string_deltas_take_bounded_work(kind: str, size: int) -> None:
    """Random, repetitive and pathological 20 KB and 200 KB strings (an unbounded diff took seconds
    to minutes on them): the work is the search allowance plus a linear pass, and the delta applies."""
    old, new = _worst_case(kind, size)
    work = DiffWork()
    started = time.monotonic()
    delta = create_delta(old, new, work=work)
    assert time.monotonic() - started < 2 * TIME_UNIT  # a guard only: the bound is the step count
    assert work.steps <= tuning.MAX_DELTA_SEARCH_STEPS + _linear(old, new)
    assert apply_delta(old, json.loads(json.dumps(delta))) == new


def test_one_edit_in_a_long_string_gives_a_small_delta() -> None:
    rnd = random.Random(5)
    old = _random_text(rnd, 200_000)
    new = old[:123_456] + "an edit in one place" + old[123_460:]
    work = DiffWork()
    delta = create_delta(old, new, work=work)
    assert delta == [f"123456=4-20+an edit in one place|{200_000 - 123_460}=", 0, 2]
    assert work.steps < 1000


def test_a_few_scattered_edits_are_found_within_the_allowance() -> None:
    rnd = random.Random(6)
    old = _random_text(rnd, 20_000)
    new = _edited(rnd, old, 10)
    delta = create_delta(old, new)
    assert delta_size(delta) < 600  # ten small edits, not a 20 KB replacement
    assert apply_delta(old, delta) == new


def test_the_allowance_covers_the_whole_delta() -> None:
    """Many changed strings in one document share one allowance: the work stays bounded."""
    rnd = random.Random(7)
    old = {f"k{i}": _random_text(rnd, 2_000) for i in range(200)}
    new = {key: _random_text(rnd, 2_000) for key in old}
    work = DiffWork()
    delta = create_delta(old, new, work=work)
    assert work.steps <= tuning.MAX_DELTA_SEARCH_STEPS + _linear(*old.values(), *new.values()) + 200 * 20
    assert apply_delta(old, delta) == new


def test_without_search_allowance_a_string_delta_is_one_replacement() -> None:
    old = "p" * 100 + "a" + "m" * 20 + "b" + "s" * 100
    new = "p" * 100 + "A" + "m" * 20 + "B" + "s" * 100
    assert create_delta(old, new, work=DiffWork(0)) == ["100=22-22+A" + "m" * 20 + "B|100=", 0, 2]
    assert create_delta(old, new) == ["100=1-1+A|20=1-1+B|100=", 0, 2]


def test_string_deltas_never_split_a_utf8_character() -> None:
    old = "€uro " * 20
    new = "€uro " * 10 + "₤uro " + "€uro " * 9  # € is e2 82 ac, ₤ is e2 82 a4: only a last byte differs
    assert create_delta(old, new) == ["70=3-3+₤|67=", 0, 2]
    assert apply_delta(old, ["70=3-3+₤|67=", 0, 2]) == new


edits = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 8), st.text(max_size=12)), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=400), edits, st.integers(0, 3000))
def test_string_deltas_round_trip_with_several_edits(
    base: str, changes: list[tuple[int, int, str]], allowance: int
) -> None:
    new = base
    for position, length, text in changes:
        at = position % (len(new) + 1)
        new = new[:at] + text + new[at + length :]
    delta = create_delta(base, new, work=DiffWork(allowance))
    encoded = json.loads(json.dumps(delta, ensure_ascii=False).encode().decode())
    assert apply_delta(base, encoded) == new
    assert apply_delta({"s": base}, create_delta({"s": base}, {"s": new})) == {"s": new}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_string_deltas_round_trip_for_unrelated_strings(old: str, new: str) -> None:
    assert apply_delta(old, create_delta(old, new)) == new
    assert apply_delta(old, create_delta(old, new, work=DiffWork(7))) == new
