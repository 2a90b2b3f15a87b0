"""The inventory list: one document ``doc::list`` holding every item.

Reading and editing the list in a database. Its values and schema live in
:mod:`engine.list_schema` (re-exported here: this module is the list's public
face). Edits go through :func:`set_quantity` and friends, which re-apply the
edit on top of whatever revision is current, so an edit never undoes a change
that arrived from a peer in the meantime; every writer here produces lists that
pass the schema.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.blobs import Blob, digest_of
from engine.conflicts import ConcurrencyControl
from engine.errors import ConflictError, InventoryError
from engine.list_schema import (
    LIST_DOC_ID,
    MAX_EDIT,
    MAX_KEY_LENGTH,
    MAX_QUANTITY,
    InvalidListError,
    Item,
    StarterItem,
    check_item_name,
    check_list_body,
    next_edit_stamp,
    parse_quantity,
    validate_list_revision,
)

if TYPE_CHECKING:  # not imported at run time, so that the database can import this module
    from engine.database import Database
    from engine.documents import Document

__all__ = [
    "JPEG",
    "LIST_DOC_ID",
    "MAX_EDIT",
    "MAX_KEY_LENGTH",
    "MAX_QUANTITY",
    "InvalidListError",
    "Item",
    "ListReading",
    "StarterItem",
    "add_item",
    "check_list_body",
    "list_body",
    "new_list_body",
    "next_edit_stamp",
    "parse_items",
    "parse_quantity",
    "picture_blob",
    "read_items",
    "read_items_or_last_valid",
    "remove_item",
    "replace_list",
    "save_new_list",
    "set_picture",
    "set_quantity",
    "validate_list_revision",
]

_FAIL = ConcurrencyControl.FAIL_ON_CONFLICT
#: The pictures' MIME type (the sample's, and what the app stores).
JPEG = "image/jpeg"
_DAMAGED = "the stored list is damaged"


def parse_items(body: dict[str, Any]) -> list[Item]:
    """Read the items of a list body (the same as :func:`check_list_body`).

    Raises:
        InvalidListError: the body is not a valid list.
    """
    return check_list_body(body)


def list_body(items: Sequence[Item], template: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a list body with ``items``, keeping other properties of ``template``."""
    body = dict(template or {"type": "list"})
    body["items"] = [item.to_dict() for item in items]
    return body


def _stored_items(body: dict[str, Any]) -> list[Item]:
    try:
        return check_list_body(body)
    except InvalidListError as exc:
        raise InvalidListError(f"{_DAMAGED}: {exc}") from None


def read_items(db: Database) -> list[Item]:
    """Return the items of the list (empty if there is no list).

    Raises:
        InvalidListError: the stored list breaks the schema ("the stored list
            is damaged: ..."); :func:`read_items_or_last_valid` then gives the
            items of its last valid revision.
    """
    doc = db.get(LIST_DOC_ID)
    if doc is None or doc.deleted:
        return []
    return _stored_items(doc.body)


@dataclass(frozen=True, slots=True)
class ListReading:
    """What :func:`read_items_or_last_valid` found.

    ``items`` are the current list's or, when it is damaged, those of its
    newest valid earlier revision (none when no such revision is stored);
    ``rev_id`` is the revision they come from (None when there is none).
    ``problem`` is None when the current list is valid, otherwise a message
    for the user: what is wrong with the list and what is shown instead.
    """

    items: list[Item]
    rev_id: str | None = None
    problem: str | None = None

    @property
    def damaged(self) -> bool:
        """Whether the current list breaks the schema."""
        return self.problem is not None


def read_items_or_last_valid(db: Database) -> ListReading:
    """Read the list, or the newest valid revision of it when the current one is damaged.

    A damaged current revision (one that breaks :func:`check_list_body`) is
    reported in ``problem``, and the items are those of the nearest ancestor
    in its history whose body is still stored and valid; a deletion on the way
    ends the search (nothing earlier belongs to the list as it is now). Never
    raises for a damaged list.
    """
    doc = db.get(LIST_DOC_ID)
    if doc is None or doc.deleted:
        return ListReading([])
    try:
        return ListReading(check_list_body(doc.body), doc.rev_id)
    except InvalidListError as exc:
        damage = f"{_DAMAGED}: {exc}"
    tree = db.get_tree(LIST_DOC_ID)
    for rev_id in tree.history(doc.rev_id)[1:] if tree is not None else ():
        older = db.get_revision(LIST_DOC_ID, rev_id)
        if older is None:
            continue  # its body is no longer kept; an earlier one may be
        if older.deleted:
            break
        try:
            items = check_list_body(older.body)
        except InvalidListError:
            continue
        return ListReading(items, rev_id, f"{damage}; showing its last valid revision instead")
    return ListReading([], None, f"{damage}; no earlier valid revision of it is stored")


def _edit(db: Database, change: Callable[[list[Item], int], list[Item]]) -> Document:
    """Apply ``change`` (given the items and the next edit stamp) to the current list and save,
    retrying if a peer's edit lands meanwhile."""
    for _ in range(100):
        doc = db.get(LIST_DOC_ID)
        if doc is None or doc.deleted:
            raise InventoryError("there is no inventory list yet")
        items = _stored_items(doc.body)
        stamp = next_edit_stamp(item.edit for item in items)
        body = list_body(change(items, stamp), doc.body)
        try:
            return db.save(LIST_DOC_ID, body, base_rev=doc.rev_id, concurrency=_FAIL)
        except ConflictError:
            continue
    raise InventoryError("the list keeps changing; try again")


def _named(typed: str) -> Callable[[list[Item]], int]:
    """Finds the item a user named: ``typed`` as it is (in NFC, as stored names are), else without
    the spaces around it (a list from elsewhere may hold a name with spaces around it).

    Raises:
        InventoryError: ``typed`` cannot name an item; the finder raises it when no item has the name.
    """
    key = check_item_name(typed)
    exact = unicodedata.normalize("NFC", typed)

    def find(items: list[Item]) -> int:
        for name in (exact, key):
            for index, item in enumerate(items):
                if item.key == name:
                    return index
        raise InventoryError(f"no item named {key[:40]!r}")

    return find


def set_quantity(db: Database, key: str, quantity: object) -> Document:
    """Set the quantity of the item named ``key``.

    Raises:
        InventoryError: unknown item, invalid quantity or damaged list; nothing is saved.
    """
    find = _named(key)
    value = parse_quantity(quantity)

    def change(items: list[Item], stamp: int) -> list[Item]:
        index = find(items)
        items[index] = Item(items[index].key, value, items[index].image, stamp)
        return items

    return _edit(db, change)


def add_item(db: Database, key: str, quantity: object, image: Blob | None = None) -> Document:
    """Append a new item.

    Raises:
        InventoryError: the name is taken or invalid, the quantity is invalid
            or the list is damaged.
    """
    key = check_item_name(key)
    value = parse_quantity(quantity)

    def change(items: list[Item], stamp: int) -> list[Item]:
        if any(item.key == key for item in items):
            raise InventoryError(f"an item named {key[:40]!r} already exists")
        return [*items, Item(key, value, image, stamp)]

    return _edit(db, change)


def remove_item(db: Database, key: str) -> Document:
    """Remove the item named ``key``."""
    find = _named(key)

    def change(items: list[Item], _stamp: int) -> list[Item]:
        del items[find(items)]
        return items

    return _edit(db, change)


def set_picture(db: Database, key: str, image: Blob | None) -> Document:
    """Replace the picture of the item named ``key`` (None removes it)."""
    find = _named(key)

    def change(items: list[Item], stamp: int) -> list[Item]:
        index = find(items)
        items[index] = Item(items[index].key, items[index].value, image, stamp)
        return items

    return _edit(db, change)


def save_new_list(db: Database, items: Sequence[StarterItem]) -> bool:
    """Create the list from ``items`` unless a list already exists.

    Names and quantities are checked first, then pictures are stored; the
    list document is then created in one transaction, so a crash never leaves
    a partial list, and seeding twice never duplicates. Returns whether a list
    was created.

    Raises:
        InventoryError: a name or quantity is invalid, or two names are the
            same in NFC; nothing is stored.
    """
    if db.get(LIST_DOC_ID) is not None:
        return False
    body = _starter_body(_checked_starters(items), lambda jpeg: db.save_blob(jpeg, JPEG))
    try:
        db.save(LIST_DOC_ID, body, base_rev=None, concurrency=_FAIL)
    except ConflictError:
        return False
    return True


def new_list_body(items: Sequence[StarterItem]) -> dict[str, Any]:
    """The body :func:`save_new_list` gives ``items``, computed without storing anything.

    Raises:
        InventoryError: as :func:`save_new_list`.
    """
    return _starter_body(_checked_starters(items), picture_blob)


def picture_blob(jpeg: bytes) -> Blob:
    """The blob a JPEG picture is stored as, computed without storing it (as ``save_blob(jpeg, JPEG)``)."""
    return Blob(digest_of(jpeg), len(jpeg), JPEG)


def _starter_body(checked: list[tuple[str, int, bytes]], picture: Callable[[bytes], Blob]) -> dict[str, Any]:
    return list_body([Item(key, value, picture(jpeg)) for key, value, jpeg in checked])


def replace_list(db: Database, items: Sequence[StarterItem]) -> Document:
    """Replace every item of the list with ``items``: one new revision on top of the current one.

    The list may be missing, deleted or damaged (this is how a damaged list is
    mended). The new items carry an edit stamp above any in the list, so that
    a merge with a peer's older edits keeps them.

    Raises:
        InventoryError: a name or quantity is invalid, or two names are the
            same in NFC; nothing is saved.
    """
    checked = _checked_starters(items)
    pictures = [db.save_blob(jpeg, JPEG) for _, _, jpeg in checked]
    for _ in range(100):
        doc = db.get(LIST_DOC_ID)
        current = None if doc is None or doc.deleted else doc
        try:
            stamps = [item.edit for item in check_list_body(current.body)] if current is not None else []
            template: dict[str, Any] | None = current.body if current is not None else None
        except InvalidListError:
            stamps, template = [], None  # a damaged list: keep none of it
        stamp = next_edit_stamp(stamps)
        stored = [Item(key, value, picture, stamp) for (key, value, _), picture in zip(checked, pictures, strict=True)]
        body = list_body(stored, {k: v for k, v in template.items() if k != "items"} if template else None)
        try:
            return db.save(LIST_DOC_ID, body, base_rev=None if doc is None else doc.rev_id, concurrency=_FAIL)
        except ConflictError:
            continue
    raise InventoryError("the list keeps changing; try again")


def _checked_starters(items: Sequence[StarterItem]) -> list[tuple[str, int, bytes]]:
    """Names (in NFC) and quantities checked, before anything is stored."""
    checked: list[tuple[str, int, bytes]] = []
    seen: set[str] = set()
    for item in items:
        key = check_item_name(item.key)
        if key in seen:
            raise InventoryError(f"an item named {key[:40]!r} appears twice")
        seen.add(key)
        checked.append((key, parse_quantity(item.value), item.jpeg))
    return checked
