"""Peers in the Browser tab: those added by URL and those found on the network.

A row is a :class:`PeerInfo` (who and where) and the latest replicator status
of that peer. Discovery plugs in through :meth:`PeersModel.upsert_peer` and
:meth:`PeersModel.remove_peer` (the browser's added/changed/removed events);
a peer that is our own listener is never listed (:meth:`set_own_urls`,
:meth:`set_own_peer_id`). The status column counts down an offline peer's
retry once a second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from enum import IntEnum
from urllib.parse import urlsplit

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QColor

from engine.replication.replicator_types import ActivityLevel, ReplicatorStatus
from inventory_qt.models.headers import horizontal_header
from inventory_qt.peer_status import PeerState, StatusWords, status_words

__all__ = ["PeerColumn", "PeerInfo", "PeerRole", "PeerRow", "PeersModel", "manual_peer"]

_Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A peer: a stable ID, a name, the URL to connect to, and what discovery says about TLS."""

    peer_id: str
    name: str
    url: str
    tls: bool = False
    fingerprint: str | None = None
    discovered: bool = False

    @property
    def address(self) -> str:
        """``host:port`` of the URL (IPv6 in brackets)."""
        return urlsplit(self.url).netloc


def manual_peer(url: str) -> PeerInfo:
    """A peer typed in by hand ("Connect to URL...")."""
    parts = urlsplit(url)
    return PeerInfo(f"url:{url}", parts.hostname or url, url, tls=parts.scheme == "wss")


_STOPPED = ReplicatorStatus()


@dataclass(frozen=True, slots=True)
class PeerRow:
    """A peer and its replication status; ``retry_at`` is the monotonic time of the next attempt when offline."""

    info: PeerInfo
    status: ReplicatorStatus = _STOPPED
    retry_at: float | None = None

    def words(self, now: float | None = None) -> StatusWords:
        """The status in words, with the retry counted down."""
        left = None if self.retry_at is None else self.retry_at - (time.monotonic() if now is None else now)
        return status_words(self.status, retry_left=left)


class PeerRole(IntEnum):
    """Data roles beyond Qt's own."""

    ROW = Qt.ItemDataRole.UserRole + 1  #: the PeerRow
    PEER_ID = Qt.ItemDataRole.UserRole + 2
    URL = Qt.ItemDataRole.UserRole + 3
    STATE = Qt.ItemDataRole.UserRole + 4  #: PeerState (int)
    PROGRESS = Qt.ItemDataRole.UserRole + 5  #: (completed, total) while busy, else None


class PeerColumn(IntEnum):
    """The table's columns."""

    NAME = 0
    ADDRESS = 1
    TLS = 2
    STATUS = 3


_HEADERS = ("Peer", "Address", "Security", "Status")


class PeersModel(QAbstractTableModel):
    """The peers shown in the Browser tab (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[PeerRow] = []
        self._own_urls: set[str] = set()
        self._own_peer_id: str | None = None
        self._ticker = QTimer(self)
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self._tick)

    # -- rows --------------------------------------------------------------------------------

    def is_own(self, info: PeerInfo) -> bool:
        """Whether ``info`` is this app's own listener."""
        return info.url in self._own_urls or (self._own_peer_id is not None and info.peer_id == self._own_peer_id)

    def set_own_urls(self, urls: list[str]) -> None:
        """Our listener's URLs: a peer at one of them is ourselves and is not listed."""
        self._own_urls = set(urls)
        self._drop_own()

    def set_own_peer_id(self, peer_id: str | None) -> None:
        """Our database's peer ID (the one our listener advertises), never listed as a peer."""
        self._own_peer_id = peer_id
        self._drop_own()

    def _drop_own(self) -> None:
        for row in [r for r in self._rows if self.is_own(r.info)]:
            self.remove_peer(row.info.peer_id)

    def upsert_peer(self, info: PeerInfo) -> bool:
        """Add a peer, or update it (discovery: changed); return False for our own listener."""
        if self.is_own(info):
            return False
        position = self.row_of(info.peer_id)
        if position >= 0:
            self._rows[position] = replace(self._rows[position], info=info)
            self.dataChanged.emit(self.index(position, 0), self.index(position, len(_HEADERS) - 1))
            return True
        self.beginInsertRows(QModelIndex(), len(self._rows), len(self._rows))
        self._rows.append(PeerRow(info))
        self.endInsertRows()
        return True

    def remove_peer(self, peer_id: str) -> None:
        """Forget a peer (Remove, or discovery: removed)."""
        position = self.row_of(peer_id)
        if position >= 0:
            self.beginRemoveRows(QModelIndex(), position, position)
            del self._rows[position]
            self.endRemoveRows()

    def set_status(self, peer_id: str, status: ReplicatorStatus) -> None:
        """Show a peer's new replicator status."""
        position = self.row_of(peer_id)
        if position < 0:
            return
        offline = status.activity is ActivityLevel.OFFLINE and status.retry_in is not None
        retry_at = time.monotonic() + status.retry_in if offline and status.retry_in is not None else None
        self._rows[position] = replace(self._rows[position], status=status, retry_at=retry_at)
        index = self.index(position, PeerColumn.STATUS)
        self.dataChanged.emit(index, index)
        if retry_at is not None and not self._ticker.isActive():
            self._ticker.start()

    def _tick(self) -> None:
        offline = [i for i, row in enumerate(self._rows) if row.retry_at is not None]
        if not offline:
            self._ticker.stop()
            return
        for position in offline:
            index = self.index(position, PeerColumn.STATUS)
            self.dataChanged.emit(index, index)

    def row_of(self, peer_id: str) -> int:
        """The row of a peer, or -1."""
        return next((i for i, row in enumerate(self._rows) if row.info.peer_id == peer_id), -1)

    def peer_row(self, row: int) -> PeerRow:
        """The PeerRow at ``row``."""
        return self._rows[row]

    @property
    def peers(self) -> list[PeerRow]:
        """Every row."""
        return list(self._rows)

    # -- Qt model API ---------------------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(_HEADERS)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:  # noqa: PLR0911  (a switch on roles)
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        column = index.column()
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return self._text(row, column, role)
        if role == Qt.ItemDataRole.ForegroundRole and column == PeerColumn.STATUS:
            return QColor(row.words().colour)
        if role == PeerRole.ROW:
            return row
        if role == PeerRole.PEER_ID:
            return row.info.peer_id
        if role == PeerRole.URL:
            return row.info.url
        if role == PeerRole.STATE:
            return int(row.words().state)
        if role == PeerRole.PROGRESS:
            words = row.words()
            return (words.completed, words.total) if words.state is PeerState.BUSY and words.total else None
        return None

    @staticmethod
    def _text(row: PeerRow, column: int, role: int) -> str | None:
        info = row.info
        if column == PeerColumn.NAME:
            return info.name + (
                " (found on the network)" if info.discovered and role != Qt.ItemDataRole.DisplayRole else ""
            )
        if column == PeerColumn.ADDRESS:
            return info.url if role == Qt.ItemDataRole.ToolTipRole else info.address
        if column == PeerColumn.TLS:
            return _security_text(info, role)
        return row.words().text

    def headerData(  # noqa: N802
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        return horizontal_header(_HEADERS, section, orientation, role)


def _security_text(info: PeerInfo, role: int) -> str:
    if not info.tls:
        return "None (ws://)"
    if not info.fingerprint:
        return "TLS"
    if role == Qt.ItemDataRole.ToolTipRole:
        return f"TLS, certificate SHA-256 {info.fingerprint}"
    return f"TLS {info.fingerprint[:8]}\u2026"  # the advertised fingerprint's start, to tell peers apart
