"""The inventory list document: its values and its schema.

The body is ``{"type": "list", "items": [{"key": "Apples", "value": 10,
"image": <blob>}, ...]}`` as in the original sample; ``value`` is a
non-negative integer quantity and ``image`` a JPEG blob (optional).
:func:`check_list_body` is the schema (see there) and
:func:`validate_list_revision` applies it to any revision of ``doc::list``
about to be stored (the database's validator, see :mod:`engine.userdata`).
Item names are stored in Unicode normalization form NFC, so a name typed with a
precomposed or a combining accent names the same item.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.blobs import MAX_BLOB_LENGTH, Blob, digest_to_key
from engine.errors import InvalidDocumentError, InventoryError, ValidationError

__all__ = [
    "LIST_DOC_ID",
    "MAX_EDIT",
    "MAX_KEY_LENGTH",
    "MAX_QUANTITY",
    "InvalidListError",
    "Item",
    "StarterItem",
    "check_item_name",
    "check_list_body",
    "next_edit_stamp",
    "parse_quantity",
    "validate_list_revision",
]

LIST_DOC_ID = "doc::list"
#: Largest quantity accepted (fits every peer's integer types).
MAX_QUANTITY = 2**31 - 1
#: Longest item name, in code points (of its NFC form).
MAX_KEY_LENGTH = 200
#: Largest edit stamp (fits a signed 64-bit integer); edits past it keep it.
MAX_EDIT = 2**63 - 1
#: Format characters (category Cf) allowed in names: zero width non-joiner and
#: joiner, which Persian and Indic spelling and emoji sequences need.
_JOINERS = frozenset("\u200c\u200d")
#: Categories refused in names: controls, format characters, surrogates, line
#: and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NOT_NFC = "is not in Unicode normalization form NFC"
#: Space separators (category Zs), dropped around a name a user typed; other white space is refused.
_SPACES = " \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"


class InvalidListError(InventoryError, ValidationError):
    """A body of ``doc::list`` breaks the list schema (see :func:`check_list_body`).

    Also a ValidationError (an InvalidDocumentError), so that the database's
    validator refuses it like any bad body, and a peer that sends one gets 403.
    """


@dataclass(frozen=True, slots=True)
class Item:
    """One line of the inventory: a name, a quantity and an optional picture.

    ``edit`` is the item's edit stamp (:func:`next_edit_stamp`): every edit
    gives the item a stamp higher than any in the list and at least the time
    in milliseconds (a hybrid logical clock), so that merging two versions
    can tell an item's newer state from an older one even when a value
    returns to an earlier one, and of two edits made apart the later wins.
    """

    key: str
    value: int
    image: Blob | None = None
    edit: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the list document."""
        out: dict[str, Any] = {"key": self.key, "value": self.value}
        if self.image is not None:
            out["image"] = self.image.to_dict()
        if self.edit:
            out["edit"] = self.edit
        return out


def next_edit_stamp(stamps: Iterable[int]) -> int:
    """The stamp of an edit to a list holding items with ``stamps`` (see :class:`Item`).

    Above every stamp there, so that an edit made on a version always beats
    that version's items whatever the clocks say; and at least this machine's
    time in milliseconds, so that of two edits of one item made on two
    machines without seeing each other, the later wins when their clocks
    agree (otherwise the one whose clock is ahead: no worse than a coin).
    A stamp from a clock that was ahead keeps counting from there until the
    time catches up: meanwhile edits count up as a Lamport clock, and the
    higher revision ID decides between two concurrent ones, as before.
    """
    return min(max(max(stamps, default=0) + 1, _now_ms()), MAX_EDIT)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class StarterItem:
    """An item to seed a new list with: name, quantity and JPEG bytes."""

    key: str
    value: int
    jpeg: bytes


def parse_quantity(value: object) -> int:
    """Return ``value`` as a quantity, or raise InventoryError.

    Accepts a non-bool int or a string of ASCII digits, from 0 to MAX_QUANTITY.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text.isascii() or not text.isdigit():
            raise InventoryError(f"quantity must be a whole number of 0 or more, not {value[:40]!r}")
        if len(text.lstrip("0")) > len(str(MAX_QUANTITY)):  # int() refuses over 4,300 digits
            raise InventoryError(f"quantity must be between 0 and {MAX_QUANTITY}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InventoryError(f"quantity must be a whole number, not {type(value).__name__}")
    if not 0 <= value <= MAX_QUANTITY:
        shown = value if abs(value) <= 10 * MAX_QUANTITY else "a number of that size"
        raise InventoryError(f"quantity must be between 0 and {MAX_QUANTITY}, not {shown}")
    return value


def _key_problem(key: str) -> str | None:
    """What makes ``key`` (already in NFC) unfit to name an item, or None."""
    if len(key) > MAX_KEY_LENGTH:
        return f"is longer than {MAX_KEY_LENGTH} characters"
    if key.isprintable():  # the usual case: no character of a refused category, no joiner
        return None if key and not key.isspace() else "is empty or only whitespace"
    for char in key:
        if char not in _JOINERS and unicodedata.category(char) in _REFUSED_CATEGORIES:
            return f"contains the control or format character U+{ord(char):04X}"
    if not "".join(char for char in key if char not in _JOINERS).strip():
        return "is empty or only whitespace"
    return None


def check_item_name(key: object) -> str:
    """Return the item name ``key`` as typed by a user, without surrounding spaces, in NFC.

    Raises:
        InventoryError: not a string, or not fit to name an item (see :func:`check_list_body`).
    """
    if not isinstance(key, str):
        raise InventoryError(f"item name must be a string, not {_json_type(key)}")
    key = unicodedata.normalize("NFC", key.strip(_SPACES))
    problem = _key_problem(key)
    if problem is not None:
        raise InventoryError(f"item name {key[:40]!r} {problem}")
    return key


_JSON_TYPES = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string"}
_ABSENT: Any = object()


def _json_type(value: object) -> str:
    """How to name the JSON type of ``value`` in a message."""
    if value is _ABSENT:
        return "missing"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _whole_number(value: object, largest: int, message: str) -> int:
    """Return ``value`` if it is a whole number from 0 to ``largest``; else raise InvalidListError(message...)."""
    if isinstance(value, bool) or not isinstance(value, int):
        problem = _json_type(value)
    elif value < 0:
        problem = "a negative number"
    elif value > largest:
        problem = f"a number above {largest}"  # not the number itself: it may have thousands of digits
    else:
        return value
    raise InvalidListError(f"{message} from 0 to {largest}, not {problem}")


def check_list_body(body: object) -> list[Item]:
    """Check a body of ``doc::list`` against the list schema; return its items.

    A valid list is a JSON object whose ``items`` is an array of objects
    (other top-level properties, such as ``type``, are free), each with:

    - ``key``: the item's name, unique within the list; a string in Unicode
      normalization form NFC of at most MAX_KEY_LENGTH code points, not empty
      nor only whitespace, without control characters (category Cc, line
      breaks included), format characters (Cf) other than the zero width
      non-joiner and joiner, surrogates (Cs), or line and paragraph
      separators (Zl, Zp);
    - ``value``: the quantity, a whole number (not a boolean) from 0 to
      MAX_QUANTITY;
    - ``image`` (optional): the picture, a blob dictionary with
      ``"@type": "blob"`` (see :meth:`Blob.from_dict`); null means none;
    - ``edit`` (optional): the edit stamp, a whole number from 0 to MAX_EDIT.

    Items may carry other properties (a newer peer's); they are not read.

    Raises:
        InvalidListError: the body breaks the schema; the message names the
            first offending item by its index and name.
    """
    raw_items = _checked_items(body)
    return [
        Item(raw["key"], raw["value"], _blob(raw.get("image")), raw.get("edit", 0))  # checked: cannot fail
        for raw in raw_items
    ]


def _blob(image: dict[str, Any] | None) -> Blob | None:
    return None if image is None else Blob.from_dict(image)


def _checked_items(body: object) -> list[dict[str, Any]]:
    """The ``items`` of a valid list body; the checks of :func:`check_list_body`, without building items.

    Raises:
        InvalidListError: the body breaks the schema.
    """
    if not isinstance(body, dict):
        raise InvalidListError(f"the list is {_json_type(body)}, not an object")
    raw_items = body.get("items")
    if not isinstance(raw_items, list):
        if raw_items is None:
            raise InvalidListError("the list has no items array")
        raise InvalidListError(f"the list's items are {_json_type(raw_items)}, not an array")
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_items):
        _check_item(index, raw, seen)
    return raw_items


def _check_item(index: int, raw: object, seen: dict[str, int]) -> None:
    if not isinstance(raw, dict):
        raise InvalidListError(f"item {index} is {_json_type(raw)}, not an object")
    key = raw.get("key")
    if not isinstance(key, str):
        if key is None:
            raise InvalidListError(f"item {index} has no key (name)")
        raise InvalidListError(f"item {index}: the name is {_json_type(key)}, not a string")
    problem = _key_problem(key) if key.isascii() or unicodedata.is_normalized("NFC", key) else _NOT_NFC
    if problem is not None:
        raise InvalidListError(f"item {index} ({key[:40]!r}): the name {problem}")
    if key in seen:
        raise InvalidListError(f"item {index} ({key[:40]!r}): item {seen[key]} has the same name")
    seen[key] = index
    value = raw.get("value", _ABSENT)
    if value.__class__ is not int or not 0 <= value <= MAX_QUANTITY:  # the usual case is a plain int
        _whole_number(value, MAX_QUANTITY, f"item {index} ({key[:40]!r}): the quantity must be a whole number")
    image = raw.get("image")
    if image is not None:
        problem = _blob_problem(image)
        if problem is not None:
            raise InvalidListError(f"item {index} ({key[:40]!r}): {problem}")
    edit = raw.get("edit", 0)
    if edit.__class__ is not int or not 0 <= edit <= MAX_EDIT:
        _whole_number(edit, MAX_EDIT, f"item {index} ({key[:40]!r}): the edit stamp must be a whole number")


def _blob_problem(image: object) -> str | None:
    """What is wrong with ``image`` as a picture, or None; accepts what :meth:`Blob.from_dict` accepts."""
    if not isinstance(image, dict) or image.get("@type") != "blob":
        kind = "an object without @type blob" if isinstance(image, dict) else _json_type(image)
        return f"the picture must be a blob, not {kind}"
    digest, length, content_type = image.get("digest"), image.get("length"), image.get("content_type")
    try:
        if (  # the usual case, without building a Blob (digest_to_key remembers digests it decoded)
            isinstance(digest, str)
            and digest_to_key(digest)
            and length.__class__ is int
            and 0 <= length <= MAX_BLOB_LENGTH
            and (content_type is None or content_type.__class__ is str)
        ):
            return None
        Blob.from_dict(image)
    except InvalidDocumentError as exc:
        return f"bad picture: {exc}"
    return None


def validate_list_revision(doc_id: str, body: object, deleted: bool) -> None:
    """Refuse a revision of ``doc::list`` whose body breaks the list schema.

    Does nothing for other documents (one string comparison) and for
    deletions; for the list, makes the checks of :func:`check_list_body`
    without building items (about 1.5 us per item). Meant for every revision
    of a document before it is stored: local saves, ``doc put`` and revisions
    received from peers.

    Raises:
        InvalidListError: the list body breaks the schema (an
            InvalidDocumentError and an InventoryError).
    """
    if deleted or doc_id != LIST_DOC_ID:
        return
    try:
        _checked_items(body)
    except InvalidListError as exc:
        raise InvalidListError(f"{LIST_DOC_ID} is not a valid inventory list: {exc}") from None
