"""The inventory list as a table model: picture and name, quantity, unsaved or clash state.

Rows come from a :class:`~inventory_qt.list_draft.ListDraft`: the stored list
with the user's unsaved edits. :meth:`ItemsModel.set_state` moves the draft
onto a newly read list and updates rows in place (``dataChanged``), inserting
and removing only the rows that came or went, so a view keeps its selection
and the user's edits survive a peer's change. Search and sort live in
:class:`ItemsProxyModel`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import IntEnum

from PySide6.QtCore import (
    Property,
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFont, QPixmap

from engine.errors import InventoryError
from engine.inventory import MAX_QUANTITY, Item, parse_quantity
from inventory_qt.list_draft import DraftRow, ListDraft, ListState, RowState
from inventory_qt.models.headers import horizontal_header

__all__ = ["Column", "ItemRole", "ItemsModel", "ItemsProxyModel"]

_Index = QModelIndex | QPersistentModelIndex


class ItemRole(IntEnum):
    """Data roles beyond Qt's own."""

    ROW = Qt.ItemDataRole.UserRole + 1  #: the whole DraftRow
    KEY = Qt.ItemDataRole.UserRole + 2  #: the item's name
    STATE = Qt.ItemDataRole.UserRole + 3  #: its RowState (int)
    DIGEST = Qt.ItemDataRole.UserRole + 4  #: its picture's digest or None
    SORT = Qt.ItemDataRole.UserRole + 5  #: the value to sort by
    QUANTITY = Qt.ItemDataRole.UserRole + 6  #: the quantity shown (int)


class Column(IntEnum):
    """The table's columns."""

    NAME = 0
    QUANTITY = 1
    STATE = 2


_HEADERS = ("Item", "Quantity", "Status")
_STATE_WORDS = {
    RowState.SAVED: "",
    RowState.EDITED: "Unsaved",
    RowState.ADDED: "New, unsaved",
    RowState.REMOVED: "Removed, unsaved",
    RowState.CLASH: "Changed here and by a peer: pick a side",
}
_STATE_COLOURS = {
    RowState.EDITED: QColor(255, 244, 204),
    RowState.ADDED: QColor(221, 244, 221),
    RowState.REMOVED: QColor(238, 238, 238),
    RowState.CLASH: QColor(255, 218, 210),
}
#: The unsaved-row marker drawn before a name.
UNSAVED_MARK = "\u25cf "


def _quantity_words(row: DraftRow) -> str:
    mine = "-" if row.item is None else f"{row.item.value:,}"
    if row.state is not RowState.CLASH:
        return mine
    theirs = "removed" if row.theirs is None else f"{row.theirs.value:,}"
    return f"{mine} (theirs: {theirs})"


class ItemsModel(QAbstractTableModel):
    """Rows are items (see the module docstring); editing the quantity goes through :meth:`setData`."""

    #: what is wrong with the stored list ("" when nothing is)
    errorChanged = Signal(str)  # noqa: N815
    #: whether there is something to save
    dirtyChanged = Signal(bool)  # noqa: N815

    def __init__(self, thumbnail: Callable[[str], QPixmap | None] | None = None) -> None:
        super().__init__()
        self.draft = ListDraft()
        self._rows: list[DraftRow] = []
        self._error = ""
        self._dirty = False
        self._thumbnail = thumbnail

    # -- error text (a damaged list shows its last valid revision) --------------------------

    def _get_error_text(self) -> str:
        return self._error

    errorText = Property(str, _get_error_text, notify=errorChanged)  # noqa: N815

    @property
    def error_text(self) -> str:
        """What is wrong with the list shown, for the user ("" when nothing is)."""
        return self._error

    @property
    def dirty(self) -> bool:
        """Whether there are unsaved edits (or a conflict to close)."""
        return self._dirty

    # -- the stored list and edits ----------------------------------------------------------

    def set_state(self, state: ListState) -> None:
        """Show a newly read list, keeping unsaved edits (rows update in place)."""
        self.draft.rebase(state)
        self._refresh()
        error = state.problem or ""
        if error != self._error:
            self._error = error
            self.errorChanged.emit(error)

    def set_items(self, items: Sequence[Item]) -> None:
        """Show ``items`` as the stored list (tests and previews)."""
        self.set_state(ListState(tuple(items), "1-a"))

    def edit(self, change: Callable[[ListDraft], object]) -> None:
        """Apply an edit to the draft and update the rows (InventoryError passes through)."""
        change(self.draft)
        self._refresh()

    def _refresh(self) -> None:
        new_rows = self.draft.rows()
        old_keys = [row.key for row in self._rows]
        new_keys = [row.key for row in new_rows]
        if old_keys != new_keys:
            self._move_rows(new_keys)
        changed = [i for i, (old, new) in enumerate(zip(self._rows, new_rows, strict=True)) if old != new]
        self._rows = new_rows
        if changed:
            last = self.columnCount() - 1
            self.dataChanged.emit(self.index(min(changed), 0), self.index(max(changed), last))
        dirty = self.draft.dirty
        if dirty != self._dirty:
            self._dirty = dirty
            self.dirtyChanged.emit(dirty)

    def _move_rows(self, new_keys: list[str]) -> None:
        """Remove the rows that went and insert those that came, keeping the others' rows (and views' state)."""
        wanted = set(new_keys)
        for position in range(len(self._rows) - 1, -1, -1):
            if self._rows[position].key not in wanted:
                self.beginRemoveRows(QModelIndex(), position, position)
                del self._rows[position]
                self.endRemoveRows()
        kept = [row.key for row in self._rows]
        if kept != [key for key in new_keys if key in set(kept)]:  # reordered: rare, a reset is simplest
            by_key = {row.key: row for row in self.draft.rows()}
            self.beginResetModel()
            self._rows = [by_key[key] for key in new_keys]
            self.endResetModel()
            return
        present = set(kept)
        by_key = {row.key: row for row in self.draft.rows()}
        for position, key in enumerate(new_keys):
            if key not in present:
                self.beginInsertRows(QModelIndex(), position, position)
                self._rows.insert(position, by_key[key])
                self.endInsertRows()

    def row_for(self, key: str) -> int:
        """The row of the item named ``key``, or -1."""
        return next((i for i, row in enumerate(self._rows) if row.key == key), -1)

    def draft_row(self, row: int) -> DraftRow:
        """The DraftRow shown at ``row``."""
        return self._rows[row]

    def thumbnail_ready(self, digest: str) -> None:
        """A picture finished loading: repaint the rows that show it."""
        for position, row in enumerate(self._rows):
            if row.item is not None and row.item.image is not None and row.item.image.digest == digest:
                index = self.index(position, Column.NAME)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    # -- Qt model API -------------------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(_HEADERS)

    def flags(self, index: _Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        row = self._rows[index.row()]
        if index.column() == Column.QUANTITY and row.state is not RowState.REMOVED and row.item is not None:
            flags |= Qt.ItemFlag.ItemIsEditable
        return flags

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:  # noqa: PLR0911  (a switch on roles)
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, column)
        if role == Qt.ItemDataRole.EditRole and column == Column.QUANTITY:
            return row.item.value if row.item is not None else 0
        if role == Qt.ItemDataRole.DecorationRole and column == Column.NAME:
            digest = row.item.image.digest if row.item is not None and row.item.image is not None else None
            return self._thumbnail(digest) if digest and self._thumbnail is not None else None
        if role == Qt.ItemDataRole.BackgroundRole and row.state in _STATE_COLOURS:
            return QBrush(_STATE_COLOURS[row.state])
        if role == Qt.ItemDataRole.FontRole and row.state is not RowState.SAVED:
            font = QFont()
            font.setItalic(row.state is not RowState.CLASH)
            font.setBold(row.state is RowState.CLASH)
            font.setStrikeOut(row.state is RowState.REMOVED)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and column == Column.QUANTITY:
            return int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and row.state is RowState.CLASH:
            return "This item changed here and on another device. Right-click it to keep yours or take theirs."
        return self._custom(row, column, role)

    def _display(self, row: DraftRow, column: int) -> str:
        if column == Column.NAME:
            return (UNSAVED_MARK if row.edited or row.state is RowState.CLASH else "") + row.key
        if column == Column.QUANTITY:
            return _quantity_words(row)
        return _STATE_WORDS[row.state]

    def _custom(self, row: DraftRow, column: int, role: int) -> object:  # noqa: PLR0911  (a switch on roles)
        if role == ItemRole.ROW:
            return row
        if role == ItemRole.KEY:
            return row.key
        if role == ItemRole.STATE:
            return int(row.state)
        if role == ItemRole.DIGEST:
            return row.item.image.digest if row.item is not None and row.item.image is not None else None
        if role == ItemRole.QUANTITY:
            return row.item.value if row.item is not None else 0
        if role == ItemRole.SORT:
            if column == Column.QUANTITY:
                return row.item.value if row.item is not None else -1
            if column == Column.STATE:
                return int(row.state)
            return row.key.casefold()
        return None

    def setData(self, index: _Index, value: object, role: int = Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        """Set a quantity: only a whole number from 0 to MAX_QUANTITY is accepted; anything else changes nothing."""
        if role != Qt.ItemDataRole.EditRole or not index.isValid() or index.column() != Column.QUANTITY:
            return False
        if not self.flags(index) & Qt.ItemFlag.ItemIsEditable:
            return False
        try:
            quantity = parse_quantity(value)
        except InventoryError:
            return False
        key = self._rows[index.row()].key
        self.edit(lambda draft: draft.set_quantity(key, quantity))
        return True

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        return horizontal_header(_HEADERS, section, orientation, role)

    def step(self, row: int, delta: int) -> None:
        """The +/- steppers: add ``delta`` to a row's quantity (within 0..MAX_QUANTITY)."""
        target = self._rows[row]
        if target.state is RowState.REMOVED or target.item is None:
            return
        self.edit(lambda draft: draft.step(target.key, delta, MAX_QUANTITY))


class ItemsProxyModel(QSortFilterProxyModel):
    """Search (by name, any case) and sort (names alphabetically, quantities as numbers)."""

    def __init__(self) -> None:
        super().__init__()
        self.setSortRole(ItemRole.SORT)
        self.setFilterRole(ItemRole.KEY)
        self.setFilterKeyColumn(Column.NAME)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setSortCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setDynamicSortFilter(True)

    def set_search(self, text: str) -> None:
        """Show only items whose name contains ``text`` (any case)."""
        self.setFilterFixedString(text.strip())
