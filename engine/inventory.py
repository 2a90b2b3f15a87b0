"""The inventory list: one document ``doc::list`` holding every item.

The body is ``{"type": "list", "items": [{"key": "Apples", "value": 10,
"image": <blob>}, ...]}`` as in the original sample; ``value`` is a
non-negative integer quantity and ``image`` a JPEG blob (optional). Edits go
through :func:`set_quantity` and friends, which re-apply the edit on top of
whatever revision is current, so an edit never undoes a change that arrived
from a peer in the meantime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.blobs import Blob
from engine.conflicts import ConcurrencyControl
from engine.database import Database
from engine.documents import Document
from engine.errors import ConflictError, InvalidDocumentError, InventoryError

__all__ = [
    "LIST_DOC_ID",
    "MAX_QUANTITY",
    "Item",
    "StarterItem",
    "add_item",
    "list_body",
    "parse_items",
    "parse_quantity",
    "read_items",
    "remove_item",
    "save_new_list",
    "set_picture",
    "set_quantity",
]

LIST_DOC_ID = "doc::list"
#: Largest quantity accepted (fits every peer's integer types).
MAX_QUANTITY = 2**31 - 1
MAX_KEY_LENGTH = 200
_FAIL = ConcurrencyControl.FAIL_ON_CONFLICT


@dataclass(frozen=True, slots=True)
class Item:
    """One line of the inventory: a name, a quantity and an optional picture.

    ``edit`` is the item's edit stamp: every edit gives the item a stamp
    higher than any in the list (a Lamport clock), so that merging two
    versions can tell an item's newer state from an older one even when a
    value returns to an earlier one.
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
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InventoryError(f"quantity must be a whole number, not {type(value).__name__}")
    if not 0 <= value <= MAX_QUANTITY:
        raise InventoryError(f"quantity must be between 0 and {MAX_QUANTITY}, not {value}")
    return value


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key.strip():
        raise InventoryError("item name must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InventoryError(f"item name is longer than {MAX_KEY_LENGTH} characters")
    return key


def parse_items(body: dict[str, Any]) -> list[Item]:
    """Read the items of a list body.

    Raises:
        InventoryError: the body is not a valid list.
    """
    items = body.get("items")
    if not isinstance(items, list):
        raise InventoryError("list document has no items array")
    out: list[Item] = []
    for raw in items:
        if not isinstance(raw, dict):
            raise InventoryError("list item is not an object")
        image = raw.get("image")
        try:
            blob = Blob.from_dict(image) if isinstance(image, dict) else None
        except InvalidDocumentError as exc:
            raise InventoryError(f"item {raw.get('key')!r} has a bad picture: {exc}") from None
        edit = raw.get("edit", 0)
        stamp = edit if isinstance(edit, int) and not isinstance(edit, bool) and edit > 0 else 0
        out.append(Item(_check_key(raw.get("key")), parse_quantity(raw.get("value")), blob, stamp))
    return out


def list_body(items: Sequence[Item], template: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a list body with ``items``, keeping other properties of ``template``."""
    body = dict(template or {"type": "list"})
    body["items"] = [item.to_dict() for item in items]
    return body


def read_items(db: Database) -> list[Item]:
    """Return the items of the list (empty if there is no list)."""
    doc = db.get(LIST_DOC_ID)
    if doc is None or doc.deleted:
        return []
    return parse_items(doc.body)


def _edit(db: Database, change: Callable[[list[Item], int], list[Item]]) -> Document:
    """Apply ``change`` (given the items and the next edit stamp) to the current list and save,
    retrying if a peer's edit lands meanwhile."""
    for _ in range(100):
        doc = db.get(LIST_DOC_ID)
        if doc is None or doc.deleted:
            raise InventoryError("there is no inventory list yet")
        items = parse_items(doc.body)
        stamp = max((item.edit for item in items), default=0) + 1
        body = list_body(change(items, stamp), doc.body)
        try:
            return db.save(LIST_DOC_ID, body, base_rev=doc.rev_id, concurrency=_FAIL)
        except ConflictError:
            continue
    raise InventoryError("the list keeps changing; try again")


def _find(items: list[Item], key: str) -> int:
    for index, item in enumerate(items):
        if item.key == key:
            return index
    raise InventoryError(f"no item named {key!r}")


def set_quantity(db: Database, key: str, quantity: object) -> Document:
    """Set the quantity of the item named ``key``.

    Raises:
        InventoryError: unknown item or invalid quantity; nothing is saved.
    """
    value = parse_quantity(quantity)

    def change(items: list[Item], stamp: int) -> list[Item]:
        index = _find(items, key)
        items[index] = Item(items[index].key, value, items[index].image, stamp)
        return items

    return _edit(db, change)


def add_item(db: Database, key: str, quantity: object, image: Blob | None = None) -> Document:
    """Append a new item.

    Raises:
        InventoryError: the name is taken or invalid, or the quantity is invalid.
    """
    key = _check_key(key)
    value = parse_quantity(quantity)

    def change(items: list[Item], stamp: int) -> list[Item]:
        if any(item.key == key for item in items):
            raise InventoryError(f"an item named {key!r} already exists")
        return [*items, Item(key, value, image, stamp)]

    return _edit(db, change)


def remove_item(db: Database, key: str) -> Document:
    """Remove the item named ``key``."""

    def change(items: list[Item], _stamp: int) -> list[Item]:
        del items[_find(items, key)]
        return items

    return _edit(db, change)


def set_picture(db: Database, key: str, image: Blob | None) -> Document:
    """Replace the picture of the item named ``key`` (None removes it)."""

    def change(items: list[Item], stamp: int) -> list[Item]:
        index = _find(items, key)
        items[index] = Item(items[index].key, items[index].value, image, stamp)
        return items

    return _edit(db, change)


def save_new_list(db: Database, items: Sequence[StarterItem]) -> bool:
    """Create the list from ``items`` unless a list already exists.

    Pictures are stored first; the list document is then created in one
    transaction, so a crash never leaves a partial list, and seeding twice
    never duplicates. Returns whether a list was created.
    """
    if db.get(LIST_DOC_ID) is not None:
        return False
    stored = [Item(_check_key(i.key), parse_quantity(i.value), db.save_blob(i.jpeg, "image/jpeg")) for i in items]
    try:
        db.save(LIST_DOC_ID, list_body(stored), base_rev=None, concurrency=_FAIL)
    except ConflictError:
        return False
    return True
