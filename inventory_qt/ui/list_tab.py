"""The List tab ("What's in stock"): search, edit quantities and pictures, add and remove, save or revert.

The stored list is read on the database thread whenever a transaction
changes ``doc::list`` (local, a peer's, another process's) and the draft moves
onto it (:class:`~inventory_qt.list_draft.ListDraft`): unsaved edits survive,
items changed on both sides are marked for the user to pick. Reads and saves
take turns (one lock), so a slow read never undoes a save.

Keyboard: Ctrl+F search, Tab between controls, Enter edits the quantity,
+ and - step it, Delete removes the item, Ctrl+S saves.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from PySide6.QtCore import QEvent, QModelIndex, QObject, QPersistentModelIndex, QPoint, QSize, Qt, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from engine.changes import Changes
from engine.errors import InventoryError
from engine.inventory import LIST_DOC_ID
from engine.list_schema import check_item_name
from engine.pictures import picture_from_file
from inventory_qt.errors import describe_error, show_error
from inventory_qt.list_draft import DraftRow, RowState, read_list_state, save_draft
from inventory_qt.models.items_model import Column, ItemsModel, ItemsProxyModel
from inventory_qt.ops import run_op
from inventory_qt.session import Session
from inventory_qt.thumbnails import THUMBNAIL_SIZE, ThumbnailCache
from inventory_qt.ui.delegates import QuantityDelegate, QuantityEditor

__all__ = ["AddItemDialog", "ListTab"]

log = logging.getLogger(__name__)

#: Saves retried when a peer's change to other items lands during the save.
_SAVE_ATTEMPTS = 5


class AddItemDialog(QDialog):
    """A new item's name and quantity; OK only for a name that is valid and not taken."""

    def __init__(self, taken: set[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add item")
        self._taken = taken
        self.name = QLineEdit()
        self.name.setMaxLength(200)
        self.quantity = QuantityEditor()
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #c62828")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        form = QFormLayout(self)
        form.addRow("&Name:", self.name)
        form.addRow("&Quantity:", self.quantity)
        form.addRow(self.problem)
        form.addRow(self.buttons)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.name.textChanged.connect(self._check)
        self._check()

    def key(self) -> str | None:
        """The name in NFC when valid and new, else None."""
        try:
            key = check_item_name(self.name.text().strip())
        except InventoryError as exc:
            self.problem.setText((describe_error(exc) or "") if self.name.text() else "")
            return None
        if key in self._taken:
            self.problem.setText(f"There is already an item named {key[:40]!r}.")
            return None
        self.problem.setText("")
        return key

    def _check(self) -> None:
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(self.key() is not None)


class _ViewKeys(QObject):
    """Enter edits the quantity, + and - step it, Delete removes the item (keys on the table)."""

    def __init__(self, tab: ListTab) -> None:
        super().__init__(tab)
        self._tab = tab

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() != QEvent.Type.KeyPress or not isinstance(event, QKeyEvent):
            return False
        view = self._tab.view
        if view.state() == QAbstractItemView.State.EditingState:
            return False
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self._tab.edit_quantity()
            return True
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Minus) and not event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self._tab.step_current(1 if key == Qt.Key.Key_Plus else -1)
            return True
        if key == Qt.Key.Key_Delete:
            self._tab.remove_current()
            return True
        return False


class ListTab(QWidget):
    """See the module docstring."""

    #: the list as shown was (re)loaded from the database
    loaded = Signal()
    #: a save finished (its revision ID, or "" when nothing was saved)
    saved = Signal(str)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._io = asyncio.Lock()
        self._reload_wanted = False
        self._reloading: asyncio.Task[None] | None = None
        self.model = ItemsModel(self._thumbnail)
        self.thumbnails = ThumbnailCache(session, self.model.draft.picture)
        self.thumbnails.ready.connect(self.model.thumbnail_ready)
        self.proxy = ItemsProxyModel()
        self.proxy.setSourceModel(self.model)
        self.dialog: QDialog | None = None
        self._build()
        session.changed.connect(self._on_changes)
        self.model.dirtyChanged.connect(self._update_buttons)
        self.model.errorChanged.connect(self._show_problem)
        self.model.dataChanged.connect(self._update_banner)
        self.model.rowsInserted.connect(self._update_banner)
        self.model.rowsRemoved.connect(self._update_banner)

    # -- layout ------------------------------------------------------------------------------

    def _build(self) -> None:
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search items (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.set_search)
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet("color: #c62828")
        self.problem.hide()
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background: #ffdad2; padding: 4px")
        self.banner.hide()

        self._build_view()

        self.add_button = QPushButton("&Add item\u2026")
        self.remove_button = QPushButton("&Remove")
        self.picture_button = QPushButton("Change &picture\u2026")
        self.keep_button = QPushButton("&Keep mine")
        self.theirs_button = QPushButton("&Take theirs")
        self.revert_button = QPushButton("Re&vert")
        self.save_button = QPushButton("&Save")
        self.save_button.setDefault(False)
        self.add_button.clicked.connect(self.ask_new_item)
        self.remove_button.clicked.connect(self.remove_current)
        self.picture_button.clicked.connect(self.ask_picture)
        self.keep_button.clicked.connect(lambda: self._settle(keep=True))
        self.theirs_button.clicked.connect(lambda: self._settle(keep=False))
        self.revert_button.clicked.connect(self.revert)
        self.save_button.clicked.connect(self.save)

        buttons = QHBoxLayout()
        for button in (self.add_button, self.remove_button, self.picture_button, self.keep_button, self.theirs_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.revert_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.search)
        layout.addWidget(self.problem)
        layout.addWidget(self.banner)
        layout.addWidget(self.view, 1)
        layout.addLayout(buttons)

        QShortcut(QKeySequence.StandardKey.Find, self, self.focus_search)
        QShortcut(QKeySequence.StandardKey.Save, self, self.save)
        self.search.installEventFilter(self)
        self._update_buttons()

    def _build_view(self) -> None:
        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # the list's own order until a header is clicked
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.view.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.view.verticalHeader().hide()
        self.view.verticalHeader().setDefaultSectionSize(THUMBNAIL_SIZE + 8)
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(Column.NAME, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(Column.QUANTITY, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(Column.QUANTITY, 190)
        header.setSectionResizeMode(Column.STATE, QHeaderView.ResizeMode.ResizeToContents)
        self.delegate = QuantityDelegate(self._step_index, self.view)
        self.view.setItemDelegateForColumn(Column.QUANTITY, self.delegate)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.installEventFilter(_ViewKeys(self))
        self.view.selectionModel().currentChanged.connect(lambda *_: self._update_buttons())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        """Down or Enter in the search field moves to the list."""
        if (
            watched is self.search
            and event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() in (Qt.Key.Key_Down, Qt.Key.Key_Return, Qt.Key.Key_Enter)
        ):
            self.view.setFocus()
            if not self.view.currentIndex().isValid() and self.proxy.rowCount():
                self.view.setCurrentIndex(self.proxy.index(0, Column.QUANTITY))
            return True
        return super().eventFilter(watched, event)

    def _thumbnail(self, digest: str) -> QPixmap | None:
        return self.thumbnails.get(digest)

    # -- reading -----------------------------------------------------------------------------

    def _on_changes(self, changes: Changes) -> None:
        if LIST_DOC_ID in changes.doc_ids or LIST_DOC_ID in changes.purged:
            self.reload()

    def reload(self) -> asyncio.Task[None]:
        """Read the stored list again (coalesced: one read at a time, one more if asked meanwhile)."""
        self._reload_wanted = True
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.ensure_future(self._reload_loop())
        return self._reloading

    async def _reload_loop(self) -> None:
        while self._reload_wanted and not self.session.closed:
            self._reload_wanted = False
            async with self._io:
                try:
                    state = await self.session.run(read_list_state, self.session.db)
                except Exception as exc:
                    if not self.session.closed:
                        self._show_problem(describe_error(exc) or "")
                    return
                self.model.set_state(state)
            self.loaded.emit()

    # -- current row ----------------------------------------------------------------------------

    def _source_row(self, index: QModelIndex | QPersistentModelIndex | None = None) -> int:
        index = self.view.currentIndex() if index is None else index
        if not index.isValid():
            return -1
        return self.proxy.mapToSource(index).row()

    def current_row(self) -> DraftRow | None:
        """The row under the cursor."""
        row = self._source_row()
        return self.model.draft_row(row) if row >= 0 else None

    def select_item(self, key: str, column: Column = Column.QUANTITY) -> None:
        """Move the cursor to the item named ``key``."""
        row = self.model.row_for(key)
        if row >= 0:
            self.view.setCurrentIndex(self.proxy.mapFromSource(self.model.index(row, column)))

    def focus_search(self) -> None:
        """Ctrl+F."""
        self.search.setFocus()
        self.search.selectAll()

    def edit_quantity(self) -> None:
        """Enter: edit the current item's quantity."""
        row = self._source_row()
        if row >= 0:
            index = self.proxy.mapFromSource(self.model.index(row, Column.QUANTITY))
            self.view.setCurrentIndex(index)
            self.view.edit(index)

    def _step_index(self, index: QModelIndex | QPersistentModelIndex, delta: int) -> None:
        row = self._source_row(index)
        if row >= 0:
            self.model.step(row, delta)

    def step_current(self, delta: int) -> None:
        """The + and - keys."""
        row = self._source_row()
        if row >= 0:
            self.model.step(row, delta)

    def _update_buttons(self) -> None:
        row = self.current_row()
        has_row = row is not None
        clash = has_row and row is not None and row.state is RowState.CLASH
        self.remove_button.setEnabled(has_row and row is not None and row.state is not RowState.REMOVED)
        self.picture_button.setEnabled(has_row and row is not None and row.item is not None)
        self.keep_button.setVisible(bool(clash))
        self.theirs_button.setVisible(bool(clash))
        self.save_button.setEnabled(self.model.dirty)
        self.revert_button.setEnabled(self.model.dirty)

    def _update_banner(self, *_: object) -> None:
        clashes = self.model.draft.clashes
        if clashes:
            self.banner.setText(
                f"{len(clashes)} item{'s' if len(clashes) > 1 else ''} changed here and on another device. "
                "Select each marked item and choose Keep mine or Take theirs, then Save."
            )
        self.banner.setVisible(bool(clashes))
        self._update_buttons()

    def _show_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.setVisible(bool(text))

    # -- edits -------------------------------------------------------------------------------------

    def _edit_draft(self, change: object) -> None:
        try:
            self.model.edit(change)  # type: ignore[arg-type]
        except InventoryError as exc:
            show_error(self, exc)

    def remove_current(self) -> None:
        """Delete: mark the current item for removal."""
        row = self.current_row()
        if row is not None and row.state is not RowState.REMOVED:
            self._edit_draft(lambda draft: draft.remove_item(row.key))

    def _settle(self, *, keep: bool) -> None:
        row = self.current_row()
        if row is not None and row.state is RowState.CLASH:
            self.settle(row.key, keep=keep)

    def settle(self, key: str, *, keep: bool) -> None:
        """Keep mine or take theirs for an item changed on both sides."""
        self._edit_draft(lambda draft: draft.keep_mine(key) if keep else draft.take_theirs(key))

    def ask_new_item(self) -> QDialog:
        """Add item...: a dialog for the name and quantity (not waited for)."""
        taken = {self.model.draft_row(i).key for i in range(self.model.rowCount())}
        dialog = AddItemDialog(taken, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def accepted() -> None:
            key = dialog.key()
            if key is not None:
                quantity = dialog.quantity.value()
                self._edit_draft(lambda draft: draft.add_item(key, quantity))
                self.select_item(key)

        dialog.accepted.connect(accepted)
        self.dialog = dialog
        dialog.open()
        return dialog

    def ask_picture(self) -> QDialog | None:
        """Change picture...: pick a file (not waited for); it is scaled and stored at the next save."""
        row = self.current_row()
        if row is None or row.item is None:
            return None
        dialog = QFileDialog(self, f"Picture for {row.key}")
        dialog.setNameFilter("Pictures (*.jpg *.jpeg *.png *.gif *.webp *.bmp *.tif *.tiff)")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(lambda path: self.set_picture_from(row.key, Path(path)))
        self.dialog = dialog
        dialog.open()
        return dialog

    def set_picture_from(self, key: str, path: Path) -> asyncio.Task[None | None]:
        """Read, turn upright, scale (1024 px) and re-encode a picture off the GUI thread; refuse big files."""

        async def load() -> None:
            jpeg = await self.session.run(picture_from_file, path)
            self._edit_draft(lambda draft: draft.set_picture(key, jpeg))

        return run_op(load(), parent=self, disable=[self.picture_button])

    def revert(self) -> None:
        """Forget every unsaved edit."""
        self.model.edit(lambda draft: draft.revert())

    def save(self) -> asyncio.Task[str | None]:
        """Save every edit as one new revision of the list."""
        return run_op(self._save(), parent=self, disable=[self.save_button], after=self._update_buttons)

    async def _save(self) -> str:
        if self.view.state() == QAbstractItemView.State.EditingState:
            self.view.setFocus()  # commits an open editor
        async with self._io:
            for _ in range(_SAVE_ATTEMPTS):
                request = self.model.draft.save_request()  # InventoryError while clashes are unsettled
                result = await self.session.run(save_draft, self.session.db, request)
                self.model.edit(lambda draft: draft.saved(request, result))  # noqa: B023
                if result.rev_id is not None:
                    self.saved.emit(result.rev_id)
                    return result.rev_id
                if self.model.draft.clashes:
                    self.saved.emit("")
                    raise InventoryError(
                        "some items you edited changed on another device meanwhile; "
                        "choose Keep mine or Take theirs for each marked item, then Save again"
                    )
        raise InventoryError("the list keeps changing; try again")

    # -- menus ---------------------------------------------------------------------------------------

    def menu_for(self, row: DraftRow) -> QMenu:
        """The context menu of an item."""
        menu = QMenu(self)
        if row.state is RowState.CLASH:
            theirs = "removed" if row.theirs is None else f"{row.theirs.value:,}"
            menu.addAction(
                f"Keep mine ({row.item.value if row.item else 'absent'})", lambda: self.settle(row.key, keep=True)
            )
            menu.addAction(f"Take theirs ({theirs})", lambda: self.settle(row.key, keep=False))
            menu.addSeparator()
        if row.item is not None and row.state is not RowState.REMOVED:
            menu.addAction("Edit quantity", self.edit_quantity)
            menu.addAction("Change picture\u2026", self.ask_picture)
            menu.addAction("Remove", self.remove_current)
        if row.edited:
            menu.addAction("Undo my change", lambda: self._edit_draft(lambda draft: draft.undo(row.key)))
        return menu

    def _context_menu(self, point: QPoint) -> None:
        index = self.view.indexAt(point)
        if not index.isValid():
            return
        self.view.setCurrentIndex(index)
        row = self.model.draft_row(self.proxy.mapToSource(index).row())
        menu = self.menu_for(row)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.popup(self.view.viewport().mapToGlobal(point))

    def shutdown(self) -> None:
        """Log out: stop reading."""
        self.thumbnails.cancel()
        if self._reloading is not None:
            self._reloading.cancel()
