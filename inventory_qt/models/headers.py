"""Column titles for the app's table models (their ``headerData``)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt

__all__ = ["horizontal_header"]


def horizontal_header(titles: Sequence[str], section: int, orientation: Qt.Orientation, role: int) -> str | None:
    """The title of column ``section`` for the display role of a horizontal header, else None."""
    if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal and 0 <= section < len(titles):
        return titles[section]
    return None
