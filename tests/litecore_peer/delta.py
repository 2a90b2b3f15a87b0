"""Fleece JSON deltas (protocol §5; Fleece/Core/JSONDelta.cc), applied and created.

:func:`apply_delta` accepts everything Fleece's applier accepts: object deltas, array deltas with
``"N"`` and ``"N-"`` keys, ``[]`` deletion, ``[v]`` replacement, bare scalars inside containers,
JsonDiffPatch ``[old, new]`` and ``[old, 0, 0]``, string deltas ``["ops", 0, 2]``.
:func:`make_delta` writes what Fleece's creator writes except string diffs (whole strings are
replaced, which every applier accepts).
"""

from __future__ import annotations

import copy
import re
from typing import Any

__all__ = ["DeltaError", "apply_delta", "make_delta"]

_DELETED = object()
_TEXT_OP = re.compile(rb"(\d+)([=+\-])")


class DeltaError(ValueError):
    """A delta that does not apply (LiteCore: CorruptDelta, sent as HTTP 422)."""


def apply_delta(old: Any, delta: Any) -> Any:
    """Apply a Fleece JSON delta to ``old`` and return the new value."""
    result = _apply(old, delta, present=True)
    if result is _DELETED:
        raise DeltaError("delta deletes the whole document")
    return result


def _apply(old: Any, delta: Any, *, present: bool) -> Any:
    if isinstance(delta, list):
        return _apply_array_form(old, delta, present=present)
    if isinstance(delta, dict):
        if present and isinstance(old, dict):
            return _patch_dict(old, delta)
        if present and isinstance(old, list):
            return _patch_array(old, delta)
        if not delta and present:
            return copy.deepcopy(old)
        raise DeltaError("Invalid {...} in delta")
    return delta  # a bare scalar replaces or inserts


def _apply_array_form(old: Any, delta: list[Any], *, present: bool) -> Any:
    if len(delta) == 0:
        if not present:
            raise DeltaError("Invalid deletion in delta")
        return _DELETED
    if len(delta) == 1:
        return delta[0]
    if len(delta) == 2:
        if not present:
            raise DeltaError("Invalid replace in delta")
        return delta[1]
    if len(delta) == 3:
        if delta[2] == 0:
            if not present:
                raise DeltaError("Invalid deletion in delta")
            return _DELETED
        if delta[2] == 2:
            if not present or not isinstance(old, str) or not isinstance(delta[0], str) or not delta[0]:
                raise DeltaError("Invalid text replace in delta")
            return _apply_text(old, delta[0])
        raise DeltaError("Unknown mode in delta")
    raise DeltaError("Bad array count in delta")


def _patch_dict(old: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in old.items():
        if key in delta:
            new = _apply(value, delta[key], present=True)
            if new is not _DELETED:
                out[key] = new
        else:
            out[key] = copy.deepcopy(value)
    for key, change in delta.items():
        if key not in old:
            new = _apply(None, change, present=False)
            out[key] = new
    return out


def _patch_array(old: list[Any], delta: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    remainder: Any = None
    for index, item in enumerate(old):
        if str(index) in delta:
            new = _apply(item, delta[str(index)], present=True)
            if new is not _DELETED:
                out.append(new)
        elif f"{index}-" in delta:
            remainder = delta[f"{index}-"]
            break
        else:
            out.append(copy.deepcopy(item))
    if remainder is None:
        remainder = delta.get(f"{len(old)}-")
    if remainder is not None:
        if not isinstance(remainder, list):
            raise DeltaError("Invalid array remainder in delta")
        out.extend(remainder)
    return out


def _apply_text(old: str, ops: str) -> str:
    source, diff, pos, at = old.encode(), ops.encode(), 0, 0
    out = bytearray()
    while at < len(diff):
        match = _TEXT_OP.match(diff, at)
        if match is None:
            raise DeltaError("Unknown op in text delta")
        length, op = int(match.group(1)), match.group(2)
        at = match.end()
        if op == b"=":
            if pos + length > len(source):
                raise DeltaError("Invalid length in text delta")
            out += source[pos : pos + length]
            pos += length
        elif op == b"-":
            pos += length
        else:
            out += diff[at : at + length]
            at += length
            if diff[at : at + 1] != b"|":
                raise DeltaError("Missing insertion delimiter in text delta")
            at += 1
    if pos != len(source):
        raise DeltaError("Length mismatch in text delta")
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise DeltaError("text delta breaks UTF-8") from None


def make_delta(old: Any, new: Any) -> Any:
    """A delta turning ``old`` into ``new`` (``{}`` when they are equal)."""
    delta = _write(old, new, nested=False)
    return {} if delta is _DELETED else delta


def _write(old: Any, new: Any, *, nested: bool) -> Any:
    """The delta of one value; _DELETED stands for 'no change'."""
    if old == new and type(old) is type(new):
        return _DELETED
    if isinstance(old, dict) and isinstance(new, dict):
        out: dict[str, Any] = {}
        for key, value in new.items():
            if key not in old:
                out[key] = _wrap(value, nested=True)
            else:
                change = _write(old[key], value, nested=True)
                if change is not _DELETED:
                    out[key] = change
        for key in old:
            if key not in new:
                out[key] = []
        return out if out else _DELETED
    if isinstance(old, list) and isinstance(new, list) and old and new:
        patch: dict[str, Any] = {}
        shared = min(len(old), len(new))
        for index in range(shared):
            change = _write(old[index], new[index], nested=True)
            if change is not _DELETED:
                patch[str(index)] = change
        if len(old) != len(new):
            patch[f"{shared}-"] = copy.deepcopy(new[shared:])
        return patch if patch else _DELETED
    return _wrap(new, nested=nested)


def _wrap(value: Any, *, nested: bool) -> Any:
    # Fleece writes a scalar bare inside a container, anything else as [value].
    if nested and not isinstance(value, (dict, list)):
        return value
    return [copy.deepcopy(value)]
