"""A table model of the inventory list's items."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import TYPE_CHECKING

from PySide6.QtCore import Property, QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal

from engine.errors import EngineError
from engine.inventory import Item, ListReading, read_items_or_last_valid

if TYPE_CHECKING:
    from engine.database import Database

__all__ = ["ItemRole", "ItemsModel"]

_Index = QModelIndex | QPersistentModelIndex


class ItemRole(IntEnum):
    """Custom data roles."""

    ITEM = Qt.ItemDataRole.UserRole + 1  #: the whole :class:`Item`
    DIGEST = Qt.ItemDataRole.UserRole + 2  #: the picture's digest or None


class ItemsModel(QAbstractTableModel):
    """Rows are items; columns are name and quantity.

    :meth:`load` never raises for a damaged stored list: it shows the last
    valid items (or none) and says what is wrong in ``errorText``.
    """

    HEADERS = ("Item", "Quantity")

    #: The text of ``errorText`` when it changes ("" when the list is fine).
    errorChanged = Signal(str)  # noqa: N815

    def __init__(self) -> None:
        super().__init__()
        self._items: list[Item] = []
        self._error = ""

    def _get_error_text(self) -> str:
        return self._error

    #: What is wrong with the list shown, for the user ("" when nothing is).
    errorText = Property(str, _get_error_text, notify=errorChanged)  # noqa: N815

    @property
    def error_text(self) -> str:
        """What is wrong with the list shown, for the user ("" when nothing is)."""
        return self._error

    def set_items(self, items: Sequence[Item]) -> None:
        """Replace every row (and clear the error text)."""
        self._show(items, "")

    def set_reading(self, reading: ListReading) -> None:
        """Show what :func:`~engine.inventory.read_items_or_last_valid` read, with its problem if any."""
        self._show(reading.items, reading.problem or "")

    def load(self, db: Database) -> None:
        """Show the list stored in ``db``; never raises.

        A damaged list shows its last valid revision's items (or none) and
        the error text says so; a list that cannot be read at all shows
        nothing, with the reason.
        """
        try:
            reading = read_items_or_last_valid(db)
        except EngineError as exc:
            reading = ListReading([], None, f"the list cannot be read: {exc}")
        self.set_reading(reading)

    def _show(self, items: Sequence[Item], error: str) -> None:
        self.beginResetModel()
        self._items = list(items)
        self.endResetModel()
        if error != self._error:
            self._error = error
            self.errorChanged.emit(error)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._items)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.HEADERS)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        item = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return item.key if index.column() == 0 else item.value
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() == 1:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == ItemRole.ITEM:
            return item
        if role == ItemRole.DIGEST:
            return item.image.digest if item.image else None
        return None

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None
