"""The user's unsaved edits to the inventory list, kept apart from the stored list (no Qt).

A :class:`ListDraft` is the list as last read (its *base*: items and revision)
plus the edits not saved yet, one :class:`Edit` per item. When the stored list
changes (a peer's change arrived, or another window saved), :meth:`rebase`
moves the draft onto it: items nobody edited here take the new version, items
edited here keep the local edit, and an item changed on both sides is marked
as a *clash* for the user to settle with :meth:`keep_mine` or
:meth:`take_theirs`. A list left in conflict between peers (two live
revisions, which the item-merge resolver normally never leaves) shows its
differing items as clashes in the same way; saving then closes the other
revision.

:func:`save_draft` writes every edit as one new revision of ``doc::list``
(on the database thread), on top of whatever revision is current, unless an
item edited here changed meanwhile: then nothing is saved and the caller
rebases, which shows the clash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from engine.blobs import Blob
from engine.conflicts import ConcurrencyControl
from engine.errors import ConflictError, InventoryError
from engine.inventory import (
    JPEG,
    LIST_DOC_ID,
    Item,
    list_body,
    next_edit_stamp,
    picture_blob,
    read_items_or_last_valid,
)
from engine.list_schema import InvalidListError, check_list_body

if TYPE_CHECKING:
    from engine.database import Database

__all__ = [
    "DraftRow",
    "Edit",
    "ListDraft",
    "ListState",
    "RowState",
    "SaveRequest",
    "SaveResult",
    "read_list_state",
    "save_draft",
]


class RowState(IntEnum):
    """What the user has done to an item that is not saved yet."""

    SAVED = 0  #: as stored
    EDITED = 1  #: quantity or picture changed here
    ADDED = 2  #: new here
    REMOVED = 3  #: to be removed at the next save
    CLASH = 4  #: changed here and by a peer (or in conflict between peers): pick a side


@dataclass(frozen=True, slots=True)
class Edit:
    """An unsaved change to one item: new quantity and/or picture, or an addition or removal."""

    value: int | None = None
    image: Blob | None = None
    #: whether ``image`` is the new picture (None then removes it)
    image_changed: bool = False
    added: bool = False
    removed: bool = False


@dataclass(frozen=True, slots=True)
class DraftRow:
    """One row as shown: the item with the local edit applied, and the other side of a clash."""

    key: str
    #: what the user sees as theirs: the saved item with the edit (None: not in "my" list)
    item: Item | None
    state: RowState
    #: the stored version the edit started from (None: new here)
    saved: Item | None
    #: with CLASH, the other side's version (None: the other side removed it)
    theirs: Item | None = None
    #: whether there is an unsaved edit under the row (with or without a clash)
    edited: bool = False


@dataclass(frozen=True, slots=True)
class ListState:
    """The stored list as read: items and revision, a problem with it, and a conflicting revision if any."""

    items: tuple[Item, ...] = ()
    rev_id: str | None = None
    problem: str | None = None
    other_rev_id: str | None = None
    other_items: tuple[Item, ...] = ()


def _content(item: Item | None) -> tuple[int, str | None] | None:
    """What the user sees of an item (quantity and picture); edit stamps do not count."""
    return None if item is None else (item.value, item.image.digest if item.image else None)


def read_list_state(db: Database) -> ListState:
    """Read the list and, when it is in conflict, the best other live revision. Blocking."""
    reading = read_items_or_last_valid(db)
    doc = db.get(LIST_DOC_ID)
    other_rev: str | None = None
    other_items: tuple[Item, ...] = ()
    if doc is not None and doc.conflicted:
        tree = db.get_tree(LIST_DOC_ID)
        for leaf in tree.leaves() if tree is not None else ():
            if leaf.deleted or leaf.rev_id == doc.rev_id:
                continue
            other = db.get_revision(LIST_DOC_ID, leaf.rev_id)
            if other is None:
                continue
            try:
                other_items = tuple(check_list_body(other.body))
            except InvalidListError:
                continue
            other_rev = leaf.rev_id
            break
    return ListState(tuple(reading.items), reading.rev_id, reading.problem, other_rev, other_items)


@dataclass(frozen=True, slots=True)
class SaveRequest:
    """What :func:`save_draft` needs: the base the edits start from, the edits, pictures to store."""

    base_rev: str | None
    base: Mapping[str, Item]
    edits: Mapping[str, Edit]
    pictures: Mapping[str, bytes] = field(default_factory=dict)
    close_rev: str | None = None


@dataclass(frozen=True, slots=True)
class SaveResult:
    """What :func:`save_draft` did: saved (the new revision) or nothing, because edited items changed."""

    rev_id: str | None
    state: ListState


def _apply(items: list[Item], edits: Mapping[str, Edit]) -> list[Item]:
    stamp = next_edit_stamp(item.edit for item in items)
    out: list[Item] = []
    seen: set[str] = set()
    for item in items:
        edit = edits.get(item.key)
        seen.add(item.key)
        if edit is None:
            out.append(item)
        elif not edit.removed:
            value = item.value if edit.value is None else edit.value
            image = edit.image if edit.image_changed else item.image
            out.append(Item(item.key, value, image, stamp))
    for key, edit in edits.items():
        if edit.added and key not in seen:
            out.append(Item(key, edit.value or 0, edit.image, stamp))
    return out


def save_draft(db: Database, request: SaveRequest) -> SaveResult:
    """Save the edits as one new revision of the list. Blocking: call on the database thread.

    The edits go on top of the current revision. If an item edited here
    changed since the draft's base (a peer's change arrived meanwhile), nothing
    is saved and the current state is returned for the caller to rebase.

    Raises:
        InventoryError: the list is missing or damaged, or an edit is invalid.
    """
    for _ in range(20):
        state = read_list_state(db)
        if state.problem is not None:
            raise InventoryError(f"{state.problem}; it cannot be edited until it is repaired")
        current = {item.key: item for item in state.items}
        changed = [key for key in request.edits if _content(current.get(key)) != _content(request.base.get(key))]
        if changed or state.other_rev_id != request.close_rev:
            return SaveResult(None, state)
        for digest, jpeg in request.pictures.items():
            stored = db.save_blob(jpeg, JPEG)
            assert stored.digest == digest
        items = _apply(list(state.items), request.edits)
        doc = db.get(LIST_DOC_ID)
        template: dict[str, Any] | None = doc.body if doc is not None and not doc.deleted else None
        body = list_body(items, template)
        try:
            if request.close_rev is not None and state.rev_id is not None:
                saved = db.resolve_conflict(LIST_DOC_ID, keep=state.rev_id, close=request.close_rev, merged=body)
            else:
                saved = db.save(
                    LIST_DOC_ID, body, base_rev=state.rev_id, concurrency=ConcurrencyControl.FAIL_ON_CONFLICT
                )
        except ConflictError:
            continue  # a peer's revision landed between the read and the save: read again
        return SaveResult(saved.rev_id, read_list_state(db))
    raise InventoryError("the list keeps changing; try again")


class ListDraft:
    """The stored list plus unsaved edits and the clashes to settle (see the module docstring)."""

    def __init__(self) -> None:
        self.state = ListState()
        self._base: dict[str, Item] = {}
        self._order: list[str] = []
        self._edits: dict[str, Edit] = {}
        #: picture bytes of unsaved edits, by digest (stored at save)
        self._pictures: dict[str, bytes] = {}
        #: clashes: the other side's version of an item edited here (None: removed there)
        self._theirs: dict[str, Item | None] = {}
        #: items of a conflicting revision the user chose to keep as they are here
        self._kept: set[str] = set()

    # -- reading --------------------------------------------------------------------------

    @property
    def rev_id(self) -> str | None:
        """The stored revision the draft is on."""
        return self.state.rev_id

    @property
    def dirty(self) -> bool:
        """Whether there is anything to save (an edit, or a conflict to close)."""
        return bool(self._edits) or (self.state.other_rev_id is not None and not self.clashes)

    @property
    def clashes(self) -> list[str]:
        """Items to settle before saving, in list order."""
        return [row.key for row in self.rows() if row.state is RowState.CLASH]

    def picture(self, digest: str) -> bytes | None:
        """The JPEG of an unsaved picture."""
        return self._pictures.get(digest)

    def has_item(self, key: str) -> bool:
        """Whether ``key`` names an item in the list as shown (removed ones included)."""
        return key in self._base or key in self._edits or key in self._peer_clashes()

    def _peer_clashes(self) -> dict[str, Item | None]:
        """Items that differ between the two revisions of a conflicted list (not settled yet)."""
        if self.state.other_rev_id is None:
            return {}
        other = {item.key: item for item in self.state.other_items}
        keys = [*self._order, *(k for k in other if k not in self._base)]
        return {
            key: other.get(key)
            for key in keys
            if key not in self._kept
            and key not in self._edits
            and _content(other.get(key)) != _content(self._base.get(key))
        }

    def rows(self) -> list[DraftRow]:
        """The rows to show: stored items in order, then items added here, then the other revision's."""
        peer = self._peer_clashes()
        keys = [
            *self._order,
            *(k for k in self._edits if k not in self._base),
            *(k for k in peer if k not in self._base),
        ]
        rows = []
        for key in dict.fromkeys(keys):
            saved = self._base.get(key)
            edit = self._edits.get(key)
            item = self._shown(key, saved, edit)
            if key in self._theirs or key in peer:
                theirs = self._theirs[key] if key in self._theirs else peer[key]
                rows.append(DraftRow(key, item, RowState.CLASH, saved, theirs, edit is not None))
            elif edit is None:
                rows.append(DraftRow(key, item, RowState.SAVED, saved))
            else:
                state = RowState.REMOVED if edit.removed else RowState.ADDED if edit.added else RowState.EDITED
                rows.append(DraftRow(key, item, state, saved, None, True))
        return rows

    @staticmethod
    def _shown(key: str, saved: Item | None, edit: Edit | None) -> Item | None:
        if edit is None:
            return saved
        if edit.added or saved is None:
            return Item(key, edit.value or 0, edit.image)
        value = saved.value if edit.value is None else edit.value
        return Item(key, value, edit.image if edit.image_changed else saved.image, saved.edit)

    # -- the stored list moves ---------------------------------------------------------------

    def rebase(self, state: ListState) -> None:
        """Move onto the stored list ``state``, keeping local edits (see the module docstring)."""
        new = {item.key: item for item in state.items}
        for key, edit in list(self._edits.items()):
            old_item, new_item = self._base.get(key), new.get(key)
            if _content(old_item) == _content(new_item):
                continue
            mine = self._shown(key, old_item, edit)
            if (edit.removed and new_item is None) or (not edit.removed and _content(mine) == _content(new_item)):
                self._drop_edit(key)  # both sides made the same change
                self._theirs.pop(key, None)
                continue
            self._theirs[key] = new_item
            if new_item is None and mine is not None and not edit.added and not edit.removed:
                # removed there, edited here: the edit now carries the whole item, to add back if kept
                self._edits[key] = Edit(mine.value, mine.image, image_changed=True)
        if state.other_rev_id != self.state.other_rev_id:
            self._kept.clear()
        self.state = state
        self._base = new
        self._order = [item.key for item in state.items]

    # -- edits ------------------------------------------------------------------------------------

    def _edit(self, key: str, **changes: Any) -> None:
        edit = self._edits.get(key)
        saved = self._base.get(key)
        if edit is None:
            if saved is None:
                raise InventoryError(f"no item named {key[:40]!r}")
            edit = Edit()
        edit = replace(edit, **changes)
        if saved is not None and not edit.added and not edit.removed:
            same_value = edit.value is None or edit.value == saved.value
            same_image = not edit.image_changed or _content(Item("", 0, edit.image)) == _content(
                Item("", 0, saved.image)
            )
            if same_value and same_image and key not in self._theirs:
                self._drop_edit(key)  # back to what is stored: nothing to save
                return
        self._edits[key] = edit

    def _drop_edit(self, key: str) -> None:
        edit = self._edits.pop(key, None)
        if (
            edit is not None
            and edit.image is not None
            and edit.image_changed
            and not any(e.image == edit.image for e in self._edits.values())
        ):
            self._pictures.pop(edit.image.digest, None)

    def set_quantity(self, key: str, value: int) -> None:
        """Set an item's quantity (checked by the caller: a whole number in range)."""
        self._edit(key, value=value)

    def step(self, key: str, delta: int, maximum: int) -> int:
        """Add ``delta`` to an item's quantity, staying within 0..``maximum``; return the new quantity."""
        row = next(r for r in self.rows() if r.key == key)
        current = row.item.value if row.item is not None else 0
        value = min(max(current + delta, 0), maximum)
        self.set_quantity(key, value)
        return value

    def set_picture(self, key: str, jpeg: bytes) -> Blob:
        """Give an item a new picture (JPEG bytes, stored at save); return its blob."""
        blob = picture_blob(jpeg)
        self._pictures[blob.digest] = jpeg
        self._edit(key, image=blob, image_changed=True)
        return blob

    def add_item(self, key: str, value: int) -> None:
        """Add a new item (the name is checked by the caller and must be new)."""
        if self.has_item(key) and not (key in self._edits and self._edits[key].removed):
            raise InventoryError(f"an item named {key[:40]!r} already exists")
        if key in self._base:  # re-adding an item marked for removal: it stays, with the new quantity
            self._edits.pop(key, None)
            self._edit(key, value=value)
            return
        self._edits[key] = Edit(value=value, added=True)

    def remove_item(self, key: str) -> None:
        """Mark an item for removal (an item added here goes at once)."""
        edit = self._edits.get(key)
        if edit is not None and edit.added:
            self._drop_edit(key)
            self._theirs.pop(key, None)
            return
        self._edit(key, removed=True)

    def undo(self, key: str) -> None:
        """Forget the local edit of one item."""
        self._drop_edit(key)
        self._theirs.pop(key, None)

    def revert(self) -> None:
        """Forget every local edit."""
        self._edits.clear()
        self._pictures.clear()
        self._theirs.clear()
        self._kept.clear()

    def keep_mine(self, key: str) -> None:
        """Settle a clash by keeping this side's version."""
        if key in self._theirs:
            del self._theirs[key]
            if key not in self._edits:
                return
            if key not in self._base and not self._edits[key].added:
                edit = self._edits[key]
                self._edits[key] = Edit(value=edit.value or 0, image=edit.image, image_changed=True, added=True)
            elif key in self._base and self._edits[key].added:
                self._edits[key] = replace(self._edits[key], added=False)
        else:
            self._kept.add(key)

    def take_theirs(self, key: str) -> None:
        """Settle a clash by taking the other side's version."""
        if key in self._theirs:
            del self._theirs[key]
            self._drop_edit(key)
            return
        theirs = self._peer_clashes().get(key)
        if theirs is None:
            if key in self._base:
                self._edits[key] = Edit(removed=True)
            return
        if key in self._base:
            self._edits[key] = Edit(value=theirs.value, image=theirs.image, image_changed=True)
        else:
            self._edits[key] = Edit(value=theirs.value, image=theirs.image, image_changed=True, added=True)

    # -- saving -------------------------------------------------------------------------------------

    def save_request(self) -> SaveRequest:
        """What to hand to :func:`save_draft` (on the database thread).

        Raises:
            InventoryError: clashes are not settled yet.
        """
        clashes = self.clashes
        if clashes:
            names = ", ".join(repr(k[:40]) for k in clashes[:3]) + (" and more" if len(clashes) > 3 else "")
            raise InventoryError(f"{names} changed here and on another device; choose Keep mine or Take theirs first")
        pictures = {
            e.image.digest: self._pictures[e.image.digest]
            for e in self._edits.values()
            if e.image is not None and e.image.digest in self._pictures
        }
        return SaveRequest(self.rev_id, dict(self._base), dict(self._edits), pictures, self.state.other_rev_id)

    def saved(self, request: SaveRequest, result: SaveResult) -> None:
        """After :func:`save_draft`: move onto the new state and drop the edits that were saved."""
        if result.rev_id is not None:
            new = items_by_key(result.state.items)
            for key, edit in request.edits.items():
                if self._edits.get(key) == edit:
                    self._drop_edit(key)
                    continue
                later = self._edits.get(key)  # edited again while saving: that edit now starts from the save
                if later is not None and key in new:
                    self._base[key] = new[key]
                    if later.added:
                        self._edits[key] = replace(later, added=False, image_changed=True)
            self._kept.clear()
        self.rebase(result.state)


def items_by_key(items: Sequence[Item]) -> dict[str, Item]:
    """The items of a list by name."""
    return {item.key: item for item in items}
