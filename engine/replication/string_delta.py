"""String deltas for delta sync (protocol §5): Fleece's ``["<ops>", 0, 2]`` form, made in bounded time.

The ops edit the old string's UTF-8 bytes: ``N=`` copy, ``N-`` skip,
``N+<N bytes>|`` insert. A delta is made only for strings of
``MIN_STRING_DELTA`` bytes or more, and only when shorter than the new string.

Making one is linear in the strings, plus a bounded search for edits
(:class:`DiffWork`): the strings lose their common prefix and suffix, the rest
is diffed (Myers) only as long as the allowance lasts, and otherwise replaced
in one piece. Edits are found over characters, so they never split a UTF-8
sequence. Applying a delta is :func:`engine.replication.delta.apply_delta`.
"""

from __future__ import annotations

import math

from engine.replication import tuning

__all__ = ["MIN_STRING_DELTA", "DiffWork", "string_delta"]

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


# -- string deltas (protocol §5) -------------------------------------------------------
#
# An edit is (old start, old end, new start, new end) in characters: old[os:oe]
# becomes new[ns:ne]. Between two edits, and around them, the strings are equal.

Edit = tuple[int, int, int, int]


def string_delta(old: str, new: str, work: DiffWork) -> list[object] | None:
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
