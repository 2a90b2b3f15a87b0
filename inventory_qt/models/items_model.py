"""A table model of the inventory list's items."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from engine.inventory import Item

__all__ = ["ItemRole", "ItemsModel"]

_Index = QModelIndex | QPersistentModelIndex


class ItemRole(IntEnum):
    """Custom data roles."""

    ITEM = Qt.ItemDataRole.UserRole + 1  #: the whole :class:`Item`
    DIGEST = Qt.ItemDataRole.UserRole + 2  #: the picture's digest or None


class ItemsModel(QAbstractTableModel):
    """Rows are items; columns are name and quantity."""

    HEADERS = ("Item", "Quantity")

    def __init__(self) -> None:
        super().__init__()
        self._items: list[Item] = []

    def set_items(self, items: Sequence[Item]) -> None:
        """Replace every row."""
        self.beginResetModel()
        self._items = list(items)
        self.endResetModel()

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
