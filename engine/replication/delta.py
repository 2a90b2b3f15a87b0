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
search for string edits (:mod:`engine.replication.string_delta`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from engine.json_codec import dumps
from engine.replication.errors import ReplicationError
from engine.replication.string_delta import DiffWork, string_delta

__all__ = ["DeltaError", "DiffWork", "apply_delta", "create_delta", "delta_size"]

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
        string = string_delta(old, new, work)
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
    return len(dumps(delta))


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
