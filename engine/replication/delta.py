"""JSON deltas for delta sync (protocol §5): Fleece's JSONDelta format.

* At the top level a delta is an object or an array; equal values give ``{}``.
* An object delta ``{"k": d}`` applies ``d`` to the old value at ``k``; an
  absent key is an insertion; ``[]`` deletes; ``[v]`` replaces with ``v``;
  inside a container a new scalar is written bare.
* An array delta is an object with decimal-index keys (``"3": d``) and at most
  one ``"n-": [v...]`` key replacing elements ``n`` to the end.
* A string delta ``["<ops>", 0, 2]`` edits the old UTF-8 bytes: ``N=`` copy,
  ``N-`` skip, ``N+<N bytes>|`` insert.
* Appliers also accept JsonDiffPatch forms ``[old, new]`` and ``[old, 0, 0]``.

Values are compared with their JSON types (``1``, ``1.0`` and ``true`` differ).

Creating a delta takes time linear in the size of the values, plus a bounded
search for string edits (:class:`DiffWork`): strings lose their common prefix
and suffix, the rest is diffed (Myers) only as long as the allowance lasts,
and otherwise replaced in one piece. Edits are found over characters, so they
never split a UTF-8 sequence.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from engine.replication import tuning
from engine.replication.errors import ReplicationError

__all__ = ["DeltaError", "DiffWork", "apply_delta", "create_delta", "delta_size"]

#: Strings shorter than this are replaced whole (Fleece's threshold).
MIN_STRING_DELTA = 60
#: Most characters compared in one step when looking for common runs.
_RUN_CHUNK = 1024
#: Equal characters followed one by one in the edit search before comparing by chunks.
_SHORT_SNAKE = 16
#: Equal text shorter than this (in bytes) between two edits is folded into one edit:
#: its ``N=`` and the second edit's own ops would cost about as much (diff-match-patch's edit cost).
_EDIT_COST = 4
#: Farthest an insertion or deletion slides to end on a word or sentence boundary.
_SLIDE_LIMIT = 64
_INDEX = re.compile(r"0|[1-9][0-9]*")
_TAIL = re.compile(r"(0|[1-9][0-9]*)-")
_DELETE: list[Any] = []


class DeltaError(ReplicationError):
    """A delta cannot be applied to the given base (protocol §5: answered with 422)."""


def _same(a: Any, b: Any) -> bool:
    """Deep equality that respects JSON types."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class DiffWork:
    """The work of one :func:`create_delta` call on strings: an allowance, and a count.

    ``steps`` counts every step of the string-delta code (each compares at most
    ``_RUN_CHUNK`` characters); ``search_left`` is what the edit-script search
    may still spend. Once it is spent, a changed string is encoded as its
    common prefix and suffix around one replacement, in linear time.
    """

    __slots__ = ("search_left", "steps")

    def __init__(self, search_steps: int = tuning.MAX_DELTA_SEARCH_STEPS) -> None:
        self.search_left = search_steps
        self.steps = 0

    def spend(self, steps: int) -> None:
        """Count ``steps`` of the search."""
        self.steps += steps
        self.search_left -= steps


def _wrap(value: Any) -> Any:
    """A value inserted or replaced inside a container: scalars bare, containers as ``[v]``."""
    return [value] if isinstance(value, dict | list) else value


def _diff(old: Any, new: Any, replacement: Callable[[Any], Any], work: DiffWork) -> Any:
    """The delta of two different values: by container, by string edits, else ``replacement(new)``."""
    if isinstance(old, dict) and isinstance(new, dict):
        return _dict_delta(old, new, work)
    if isinstance(old, list) and isinstance(new, list):
        return _list_delta(old, new, work)
    if isinstance(old, str) and isinstance(new, str):
        string = _string_delta(old, new, work)
        if string is not None:
            return string
    return replacement(new)


def _dict_delta(old: dict[str, Any], new: dict[str, Any], work: DiffWork) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            delta[key] = _wrap(value)
        elif not _same(old[key], value):
            delta[key] = _diff(old[key], value, _wrap, work)
    for key in old:
        if key not in new:
            delta[key] = _DELETE
    return delta


def _list_delta(old: list[Any], new: list[Any], work: DiffWork) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    common = min(len(old), len(new))
    for index in range(common):
        if not _same(old[index], new[index]):
            delta[str(index)] = _diff(old[index], new[index], _wrap, work)
    if len(new) != len(old):
        delta[f"{common}-"] = new[common:]
    return delta


# -- string deltas (protocol §5) -------------------------------------------------------
#
# An edit is (old start, old end, new start, new end) in characters: old[os:oe]
# becomes new[ns:ne]. Between two edits, and around them, the strings are equal.

Edit = tuple[int, int, int, int]


def _string_delta(old: str, new: str, work: DiffWork) -> list[Any] | None:
    """``["<ops>", 0, 2]`` turning ``old`` into ``new``, or None when a replacement is as short."""
    try:
        new_size = len(new.encode())
        old.encode()
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form to count bytes of
        return None
    if new_size < MIN_STRING_DELTA:
        return None
    start = _common_run(old, 0, new, 0, work)
    end = _common_tail(old, new, min(len(old), len(new)) - start, work)
    old_end, new_end = len(old) - end, len(new) - end
    edits: list[Edit] | None = None
    if start < old_end and start < new_end:  # something replaced: look for a finer script
        found = _myers(old[start:old_end], new[start:new_end], work)
        if found is not None:
            edits = [(start + a, start + b, start + c, start + d) for a, b, c, d in found]
    if edits is None:
        edits = [(start, old_end, start, new_end)]
    edits = _align_edits(old, new, _fold_short_equalities(old, edits), work)
    ops = _encode_ops(old, new, edits, new_size)
    return None if ops is None else [ops, 0, 2]


def _common_run(a: str, i: int, b: str, j: int, work: DiffWork) -> int:
    """How many characters ``a[i:]`` and ``b[j:]`` share at their start."""
    limit = min(len(a) - i, len(b) - j)
    run = 0
    size = 1
    while run < limit:
        size = min(size, limit - run)
        work.steps += 1
        if a[i + run : i + run + size] == b[j + run : j + run + size]:
            run += size
            size = min(2 * size, _RUN_CHUNK)
        elif size == 1:
            break
        else:
            size //= 2
    return run


def _common_tail(a: str, b: str, limit: int, work: DiffWork) -> int:
    """How many characters (at most ``limit``) ``a`` and ``b`` share at their end."""
    run = 0
    size = 1
    while run < limit:
        size = min(size, limit - run)
        work.steps += 1
        if a[len(a) - run - size : len(a) - run] == b[len(b) - run - size : len(b) - run]:
            run += size
            size = min(2 * size, _RUN_CHUNK)
        elif size == 1:
            break
        else:
            size //= 2
    return run


def _pick(v: list[int], base: int, k: int, d: int, *, n: int, m: int) -> tuple[int, bool]:
    """Where round ``d`` of the search starts on diagonal ``k``: ``(x, down)``, x = -1 if nowhere.

    ``v[base + j]`` is the farthest x reached on diagonal j by the previous
    round (-1: not reached). Down (from j = k+1) inserts ``b[y]``; right
    (from j = k-1) deletes ``a[x]``; a move must stay inside the grid.
    """
    down = v[base + k + 1] if k < d else -1
    if down >= 0 and down - k > m:
        down = -1
    right = v[base + k - 1] + 1 if k > -d and v[base + k - 1] >= 0 else -1
    if right > n:
        right = -1
    return (down, True) if down >= right else (right, False)


def _myers(a: str, b: str, work: DiffWork) -> list[Edit] | None:
    """A shortest edit script from ``a`` to ``b`` (Myers' O((N+M)D) greedy search), as edits,
    or None when it would take more than ``work.search_left`` steps."""
    n, m = len(a), len(b)
    most = min(n + m, math.isqrt(2 * max(work.search_left, 0)))  # round d costs about d steps
    base = most + 1
    v = [-1] * (2 * most + 3)  # v[base + k]: farthest x on diagonal k (x - y = k), -1: none
    trace: list[list[int]] = []  # per round, v on diagonals -d..d before it
    for d in range(most + 1):
        steps = d + 2 + d // 64  # the diagonals, and copying v
        if (_SHORT_SNAKE + 1) * (d + 1) + steps > work.search_left:  # this round might not fit
            return None
        trace.append(v[base - d : base + d + 1])
        snakes_from = work.steps  # long snakes: counted in work.steps by _common_run
        first, last = base - d, base + d
        for i in range(first, last + 1, 2):
            k = i - base
            if d:  # _pick, inlined in this hot loop
                x = v[i + 1] if i < last else -1
                if x - k > m:
                    x = -1
                right = v[i - 1] + 1 if i > first and v[i - 1] >= 0 else -1
                if right > x and right <= n:
                    x = right
            else:
                x = 0
            if x < 0:
                v[i] = -1
                continue
            y = x - k
            run = 0  # a snake: short ones here, long ones by chunks
            while x < n and y < m and a[x] == b[y]:
                x, y, run = x + 1, y + 1, run + 1
                if run == _SHORT_SNAKE:
                    jump = _common_run(a, x, b, y, work)
                    x, y = x + jump, y + jump
                    break
            steps += run
            if run == _SHORT_SNAKE and work.steps - snakes_from + steps > work.search_left:
                break  # a long snake spent the rest
            v[i] = x
            if x == n and y == m:
                work.spend(steps)
                work.search_left -= work.steps - snakes_from - steps
                return _backtrack(trace, n, m)
        work.spend(steps)
        work.search_left -= work.steps - snakes_from - steps
    return None


def _backtrack(trace: list[list[int]], n: int, m: int) -> list[Edit]:
    """The edits along the path the search found, from its last round back to (0, 0)."""
    moves: list[tuple[int, int, bool, int]] = []  # (x, y) before a one-character move, down?, equal run after it
    x, y = n, m
    for d in range(len(trace) - 1, 0, -1):
        k = x - y
        start, down = _pick(trace[d], d, k, d, n=n, m=m)
        prev_k = k + 1 if down else k - 1
        prev_x = trace[d][prev_k + d]
        prev_y = prev_x - prev_k
        moves.append((prev_x, prev_y, down, x - start))
        x, y = prev_x, prev_y
    edits: list[list[int]] = []
    joined = False  # whether the last edit ends where the next move starts
    for px, py, down, run in reversed(moves):
        ex, ey = (px, py + 1) if down else (px + 1, py)
        if joined:
            edits[-1][1], edits[-1][3] = ex, ey
        else:
            edits.append([px, ex, py, ey])
        joined = run == 0
    return [(e[0], e[1], e[2], e[3]) for e in edits]


def _fold_short_equalities(old: str, edits: list[Edit]) -> list[Edit]:
    """Join two edits separated by fewer than ``_EDIT_COST`` equal bytes into one."""
    folded = [edits[0]]
    for edit in edits[1:]:
        last = folded[-1]
        if edit[0] - last[1] < _EDIT_COST and len(old[last[1] : edit[0]].encode()) < _EDIT_COST:
            folded[-1] = (last[0], edit[1], last[2], edit[3])
        else:
            folded.append(edit)
    return folded


def _align_edits(old: str, new: str, edits: list[Edit], work: DiffWork) -> list[Edit]:
    """Slide each pure insertion or deletion, through the equal text around it, to the position
    whose ends fall best on line, sentence and word boundaries (as diff-match-patch's
    semantic cleanup does): "27=48+ So howled...|36=" rather than "28=48+So howled... |35="."""
    aligned = list(edits)
    for index, (os, oe, ns, ne) in enumerate(aligned):
        if work.search_left <= 0:
            break
        if (os == oe) == (ns == ne):  # a replacement, or nothing: stays where it is
            continue
        text, lo_index, hi_index = (new, 3, 2) if os == oe else (old, 1, 0)
        a, b = (ns, ne) if os == oe else (os, oe)
        lo = aligned[index - 1][lo_index] if index > 0 else 0
        hi = aligned[index + 1][hi_index] if index + 1 < len(aligned) else len(text)
        shift = _best_slide(text, a, b, work, lo=lo, hi=hi)
        aligned[index] = (os + shift, oe + shift, ns + shift, ne + shift)
    return aligned


def _best_slide(text: str, a: int, b: int, work: DiffWork, *, lo: int, hi: int) -> int:
    """How far to move the edit ``text[a:b]`` within the equal text ``text[lo:a]`` and ``text[b:hi]``."""
    origin = a
    floor = max(lo, a - _SLIDE_LIMIT)
    while a > floor and text[a - 1] == text[b - 1]:  # as far left as the text repeats
        a, b = a - 1, b - 1
    work.spend(origin - a)
    ceiling = min(hi, b + 2 * _SLIDE_LIMIT)
    best, best_score = a, -1
    while True:
        work.spend(1)
        score = _boundary_score(text, a, lo, b) + _boundary_score(text, b, a, hi)
        if score >= best_score:
            best, best_score = a, score
        if b >= ceiling or text[a] != text[b]:
            return best - origin
        a, b = a + 1, b + 1


def _boundary_score(text: str, i: int, lo: int, hi: int) -> int:
    """How good a place ``i`` is to cut ``text[lo:hi]`` (diff-match-patch's semantic score, 0-6)."""
    if i <= lo or i >= hi:
        return 6
    before, after = text[i - 1], text[i]
    space_before, space_after = before.isspace(), after.isspace()
    break_before, break_after = before in "\r\n", after in "\r\n"
    if (break_before and text.endswith(("\n\n", "\n\r\n"), lo, i)) or (
        break_after and text.startswith(("\n\n", "\n\r\n", "\r\n\n", "\r\n\r\n"), i, hi)
    ):
        score = 5  # a blank line
    elif break_before or break_after:
        score = 4
    elif not before.isalnum() and not space_before and space_after:
        score = 3  # the end of a sentence
    elif space_before or space_after:
        score = 2
    elif not before.isalnum() or not after.isalnum():
        score = 1
    else:
        score = 0
    return score


def _encode_ops(old: str, new: str, edits: list[Edit], limit: int) -> str | None:
    """The ops of ``edits`` (``N=``, ``N-``, ``N+<bytes>|``, counted in UTF-8 bytes), or None once
    they reach ``limit`` bytes (the new string itself is then as short)."""
    parts: list[str] = []
    size = 0
    pos = 0
    for os, oe, ns, ne in edits:
        part = ""
        if os > pos:
            part += f"{len(old[pos:os].encode())}="
        if oe > os:
            part += f"{len(old[os:oe].encode())}-"
        if ne > ns:
            inserted = new[ns:ne]
            count = len(inserted.encode())
            part += f"{count}+{inserted}|"
            size += count - len(inserted)  # the characters beyond one byte
        size += len(part)
        if size >= limit:
            return None
        parts.append(part)
        pos = oe
    if pos < len(old):
        parts.append(f"{len(old[pos:].encode())}=")
        size += len(parts[-1])
    return None if size >= limit else "".join(parts)


def create_delta(old: Any, new: Any, *, work: DiffWork | None = None) -> Any:
    """Return the delta turning ``old`` into ``new`` (``{}`` when equal).

    ``work`` bounds (and counts) the search for string edits; by default
    ``tuning.MAX_DELTA_SEARCH_STEPS`` for the whole call.
    """
    if _same(old, new):
        return {}
    # at the top level, a replacement is always [v]
    return _diff(old, new, lambda value: [value], work if work is not None else DiffWork())


def delta_size(delta: Any) -> int:
    """Bytes of the delta as compact JSON."""
    return len(json.dumps(delta, separators=(",", ":"), ensure_ascii=False).encode())


def apply_delta(old: Any, delta: Any) -> Any:
    """Apply a delta to ``old`` and return the new value (``old`` is not modified).

    Raises:
        DeltaError: the delta is malformed or does not fit ``old``.
    """
    if isinstance(delta, dict):
        if not delta:
            return old
        if isinstance(old, dict):
            return _apply_dict(old, delta)
        if isinstance(old, list):
            return _apply_list(old, delta)
        raise DeltaError(f"object delta applied to {type(old).__name__}")
    if isinstance(delta, list):
        if len(delta) == 1:
            return delta[0]
        if len(delta) == 2:  # JsonDiffPatch [old, new]
            return delta[1]
        if len(delta) == 3 and delta[1] == 0 and delta[2] == 2:
            return _apply_string(old, delta[0])
        if len(delta) == 3 and delta[1] == 0 and delta[2] == 0:
            raise DeltaError("deletion of the whole value")
        raise DeltaError(f"malformed array delta of length {len(delta)}")
    raise DeltaError(f"a bare {type(delta).__name__} is not a top-level delta")


def _apply_inner(old: Any, delta: Any, exists: bool) -> tuple[bool, Any]:
    """Apply an inner delta; return ``(keep, value)`` (keep is False for a deletion)."""
    if isinstance(delta, list):
        if not delta or (len(delta) == 3 and delta[1] == 0 and delta[2] == 0):
            return False, None
        return True, apply_delta(old, delta)
    if isinstance(delta, dict):
        if not exists:
            raise DeltaError("object delta for a value that does not exist")
        return True, apply_delta(old, delta)
    return True, delta


def _apply_dict(old: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, inner in delta.items():
        keep, value = _apply_inner(old.get(key), inner, key in old)
        if keep:
            out[key] = value
        else:
            out.pop(key, None)
    return out


def _apply_list(old: list[Any], delta: dict[str, Any]) -> list[Any]:
    out = list(old)
    tail: tuple[int, Any] | None = None
    for key, inner in delta.items():
        if _INDEX.fullmatch(key):
            index = int(key)
            if index >= len(old):
                raise DeltaError(f"array delta index {index} beyond length {len(old)}")
            keep, value = _apply_inner(old[index], inner, True)
            if not keep:
                raise DeltaError("array elements cannot be deleted by index")
            out[index] = value
        elif (match := _TAIL.fullmatch(key)) and tail is None and isinstance(inner, list):
            tail = (int(match[1]), inner)
        else:
            raise DeltaError(f"malformed array delta key {key!r}")
    if tail is not None:
        start, values = tail
        if start > len(old):
            raise DeltaError(f"array delta tail {start} beyond length {len(old)}")
        out[start:] = values
    return out


def _apply_string(old: Any, ops: Any) -> str:
    if not isinstance(old, str) or not isinstance(ops, str):
        raise DeltaError("string delta applied to a non-string")
    source, script = old.encode(), ops.encode()
    out = bytearray()
    pos = index = 0
    while index < len(script):
        end = index
        while end < len(script) and 0x30 <= script[end] <= 0x39:
            end += 1
        if end == index or end == len(script):
            raise DeltaError("malformed string delta")
        count, op = int(script[index:end]), script[end : end + 1]
        index = end + 1
        if op == b"=":
            out += source[pos : pos + count]
            pos += count
        elif op == b"-":
            pos += count
        elif op == b"+":
            out += script[index : index + count]
            index += count
            if script[index : index + 1] != b"|":
                raise DeltaError("malformed string delta insertion")
            index += 1
        else:
            raise DeltaError("malformed string delta operation")
        if pos > len(source):
            raise DeltaError("string delta runs past the old string")
    if pos != len(source):
        raise DeltaError("string delta does not consume the whole old string")
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise DeltaError("string delta produced invalid UTF-8") from None
