"""The clients connected to our listener: user, address, connected since."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from inventory_qt.models.headers import horizontal_header

__all__ = ["ClientRole", "ClientRow", "ClientsModel"]

_Index = QModelIndex | QPersistentModelIndex
_HEADERS = ("User", "Address", "Connected since")


@dataclass(frozen=True, slots=True)
class ClientRow:
    """One connection: the peer's address, the user it signed in as, when (wall-clock seconds)."""

    peer: str
    user: str | None
    since: float


class ClientRole(IntEnum):
    """Data roles beyond Qt's own."""

    ROW = Qt.ItemDataRole.UserRole + 1


class ClientsModel(QAbstractTableModel):
    """Rows are open connections, oldest first."""

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[ClientRow] = []

    def client_connected(self, peer: str, user: str | None, since: float) -> None:
        """Add a connection."""
        self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows))
        self._rows.append(ClientRow(peer, user, since))
        self.endInsertRows()

    def client_disconnected(self, peer: str) -> None:
        """Remove the connection from ``peer`` (address and port name one connection)."""
        position = next((i for i, row in enumerate(self._rows) if row.peer == peer), -1)
        if position >= 0:
            self.beginRemoveRows(QModelIndex(), position, position)
            del self._rows[position]
            self.endRemoveRows()

    def clear(self) -> None:
        """No connections (the listener stopped)."""
        if self._rows:
            self.beginRemoveRows(QModelIndex(), 0, len(self._rows) - 1)
            self._rows.clear()
            self.endRemoveRows()

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(_HEADERS)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            if index.column() == 0:
                return row.user or "(anonymous)"
            if index.column() == 1:
                return row.peer
            return time.strftime("%H:%M:%S", time.localtime(row.since))
        if role == ClientRole.ROW:
            return row
        return None

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        return horizontal_header(_HEADERS, section, orientation, role)
