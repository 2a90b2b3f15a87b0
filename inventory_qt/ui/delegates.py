"""Delegates: the quantity editor with +/- steppers, and a peer status with a progress bar.

Delegates choose what to draw by role, not by column number.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QAbstractItemModel, QEvent, QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QMouseEvent, QPainter, QValidator
from PySide6.QtWidgets import (
    QApplication,
    QSpinBox,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionButton,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QWidget,
)

from engine.inventory import MAX_QUANTITY
from inventory_qt.models.items_model import ItemRole
from inventory_qt.models.peers_model import PeerRole

__all__ = ["PeerStatusDelegate", "QuantityDelegate", "QuantityEditor"]

_Index = QModelIndex | QPersistentModelIndex
_STEPPER = 22  # side of a stepper button, in pixels


class QuantityEditor(QSpinBox):
    """A whole number from 0 to MAX_QUANTITY: letters, signs, spaces and line breaks cannot be typed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(0, MAX_QUANTITY)
        self.setAccelerated(True)
        self.setGroupSeparatorShown(False)
        self.setObjectName("quantityEditor")

    def validate(self, text: str, pos: int) -> tuple[QValidator.State, str, int]:
        """Only ASCII digits (QSpinBox alone lets a lone sign through as "intermediate")."""
        if text and not (text.isascii() and text.isdigit()):
            return QValidator.State.Invalid, text, pos
        return super().validate(text, pos)


def stepper_rects(cell: QRect) -> tuple[QRect, QRect]:
    """Where the minus and plus buttons of a quantity cell are."""
    side = min(_STEPPER, cell.height() - 4)
    top = cell.top() + (cell.height() - side) // 2
    plus = QRect(cell.right() - side - 2, top, side, side)
    minus = QRect(plus.left() - side - 2, top, side, side)
    return minus, plus


class QuantityDelegate(QStyledItemDelegate):
    """Edits quantities with :class:`QuantityEditor`; draws - and + buttons that step by one."""

    def __init__(self, step: Callable[[_Index, int], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._step = step

    def _is_quantity(self, index: _Index) -> bool:
        return index.data(ItemRole.QUANTITY) is not None and bool(index.flags() & Qt.ItemFlag.ItemIsEditable)

    def createEditor(self, parent: QWidget, option: QStyleOptionViewItem, index: _Index) -> QWidget:  # noqa: N802
        return QuantityEditor(parent)

    def setEditorData(self, editor: QWidget, index: _Index) -> None:  # noqa: N802
        if isinstance(editor, QuantityEditor):
            editor.setValue(int(index.data(Qt.ItemDataRole.EditRole) or 0))
            editor.selectAll()

    def setModelData(self, editor: QWidget, model: QAbstractItemModel, index: _Index) -> None:  # noqa: N802
        if isinstance(editor, QuantityEditor):
            editor.interpretText()
            model.setData(index, editor.value(), Qt.ItemDataRole.EditRole)

    def updateEditorGeometry(self, editor: QWidget, option: QStyleOptionViewItem, index: _Index) -> None:  # noqa: N802
        rect = QRect(option.rect)
        rect.setRight(stepper_rects(rect)[0].left() - 2)
        editor.setGeometry(rect)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        super().paint(painter, option, index)
        if not self._is_quantity(index):
            return
        style = option.widget.style() if option.widget is not None else QApplication.style()
        for rect, text in zip(stepper_rects(option.rect), ("\u2212", "+"), strict=True):
            button = QStyleOptionButton()
            button.rect = rect
            button.text = text
            button.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Raised
            style.drawControl(QStyle.ControlElement.CE_PushButton, button, painter)

    def editorEvent(  # noqa: N802
        self, event: QEvent, model: QAbstractItemModel, option: QStyleOptionViewItem, index: _Index
    ) -> bool:
        if (
            event.type() in (QEvent.Type.MouseButtonRelease, QEvent.Type.MouseButtonDblClick)
            and isinstance(event, QMouseEvent)
            and self._is_quantity(index)
        ):
            minus, plus = stepper_rects(option.rect)
            point = event.position().toPoint()
            for rect, delta in ((minus, -1), (plus, 1)):
                if rect.contains(point):
                    if event.type() == QEvent.Type.MouseButtonRelease:
                        self._step(index, delta)
                    return True
        return super().editorEvent(event, model, option, index)

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:  # noqa: N802
        size = super().sizeHint(option, index)
        if self._is_quantity(index):
            size.setWidth(size.width() + 2 * _STEPPER + 12)
            size.setHeight(max(size.height(), _STEPPER + 6))
        return size


class PeerStatusDelegate(QStyledItemDelegate):
    """Draws a progress bar (completed/total) under the status words while a peer is busy."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        progress = index.data(PeerRole.PROGRESS)
        if not progress:
            super().paint(painter, option, index)
            return
        completed, total = progress
        bar = QStyleOptionProgressBar()
        bar.rect = QRect(option.rect).adjusted(2, 3, -2, -3)
        bar.minimum = 0
        bar.maximum = max(total, 1)
        bar.progress = min(completed, total)
        bar.text = str(index.data(Qt.ItemDataRole.DisplayRole))
        bar.textVisible = True
        bar.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Horizontal
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)
