"""JSON for the engine: orjson where it gives exactly what the standard library gives, the standard library elsewhere.

Every document crosses JSON at least twice on its way through a replication
(decoded from the wire, encoded canonically for the store), and orjson does
both several times faster than the ``json`` module. Its results differ from the
standard library's in three places:

* integers beyond 64 bits: orjson reads them as floats (losing digits) and
  cannot write them. Text with a run of 19 or more digits is read by ``json``;
  such values are written by ``json``.
* floats: orjson writes ``1e16`` where ``json`` writes ``1e+16``. Canonical
  JSON feeds revision IDs (protocol §4.1), so a body with a float is encoded by
  ``json``; the caller says whether it may hold one.
* ``NaN`` and ``Infinity`` are not JSON: orjson refuses them, and so does the
  standard library's path here. A lone surrogate (``"\\ud800"``) is refused by
  orjson when reading and by both when writing canonical JSON: it cannot be
  stored as UTF-8.

Malformed input raises ValueError (orjson's JSONDecodeError is one).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

__all__ = ["canonical", "dumps", "loads", "pretty", "read_json_lines"]

#: Integers of 19 digits or more may not fit in 64 bits (2**63 has 19). Looked
#: for as a run of zeros once every digit is a zero: a regular expression takes
#: several times longer than decoding.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_std_decode = json.JSONDecoder(parse_constant=_refuse_constant).decode
_std_canonical = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"), check_circular=False
).encode


_std_compact = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def loads(data: bytes | str) -> Any:
    """Decode JSON text (bytes are UTF-8).

    Raises:
        ValueError: not JSON (invalid UTF-8, ``NaN``, nesting deeper than
            orjson's 1,024 levels included).
    """
    if isinstance(data, str):
        data = data.encode(errors="surrogatepass")
    if _LONG_RUN not in data.translate(_DIGITS_TO_ZERO):
        return orjson.loads(data)
    try:
        return _std_decode(data.decode())
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def canonical(value: Any, *, floats: bool = True) -> bytes:
    """Canonical JSON: UTF-8, keys sorted, no whitespace (protocol §4.1).

    ``floats=False`` promises that ``value`` holds no float; orjson writes it.

    Raises:
        ValueError: ``value`` holds a non-finite float.
        UnicodeEncodeError: ``value`` holds a lone surrogate.
        TypeError: ``value`` holds something that is not JSON.
    """
    if not floats:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # a big integer, a lone surrogate, a non-string key: the standard library decides
    return _std_canonical(value).encode()


def dumps(value: Any) -> bytes:
    """Compact JSON in UTF-8, as sent on the wire and stored in records (key order kept).

    Raises:
        ValueError: ``value`` holds a non-finite float.
        TypeError: ``value`` holds something that is not JSON.
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _std_compact(value).encode()  # a big integer or a lone surrogate: the standard library decides


def pretty(value: Any) -> str:
    """JSON indented for people to read (the command line's ``doc get``)."""
    return json.dumps(value, ensure_ascii=False, indent=2)


def read_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, value)`` from a file of one JSON value per line, or of one JSON array.

    Raises:
        OSError: the file cannot be read (the message names it).
        ValueError: not UTF-8, or malformed JSON (the message names the file and line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"cannot read {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise OSError(exc.errno, f"cannot read {path}: {exc.strerror or exc}") from None
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            values = loads(stripped)
        except ValueError as exc:
            raise ValueError(f"{path}: malformed JSON: {exc}") from None
        yield from ((1, value) for value in values)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, loads(line)
        except ValueError as exc:
            raise ValueError(f"{path} line {number}: malformed JSON: {exc}") from None
