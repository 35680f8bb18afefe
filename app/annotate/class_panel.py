"""The class list: colour, name, COCO id and box count per class; the current class (the one a
new box gets) is the selected row. Add / rename / merge / delete are asked of the window, which
owns the dialogs."""
from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QGridLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from app.theme import class_color

__all__ = ["ClassPanel", "class_row_text"]


def class_row_text(index: int, name: str, cat_id: int, count: int) -> str:
    key = f"{index + 1}  " if index < 9 else "   "
    return f"{key}{name}   ({count})   id {cat_id}"


def _swatch(color: QColor) -> QIcon:
    pixmap = QPixmap(14, 14)
    pixmap.fill(color)
    return QIcon(pixmap)


class ClassPanel(QWidget):
    """Signals: ``classActivated(cat_id)`` when the user picks a class (click, or number key
    via the window); ``addRequested()``, ``renameRequested(id)``, ``mergeRequested(id)``,
    ``deleteRequested(id)``, ``colorRequested(id)`` for the window's dialogs."""

    classActivated = Signal(int)
    currentClassPicked = Signal(int)
    addRequested = Signal()
    renameRequested = Signal(int)
    mergeRequested = Signal(int)
    deleteRequested = Signal(int)
    colorRequested = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.doc = None
        self.list = QListWidget()
        self.list.setToolTip("Click: make this the class of the selected boxes and of the next box.\n"
                             "Keys 1-9 pick the first nine classes.")
        buttons = QGridLayout()                      # two rows: the dock can be narrow
        self.buttons = {}
        for i, (key, text) in enumerate((("add", "Add"), ("rename", "Rename"), ("color", "Colour…"),
                                         ("merge", "Merge into…"), ("delete", "Delete"))):
            button = QPushButton(text)
            buttons.addWidget(button, i // 3, i % 3)
            self.buttons[key] = button
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self.list.itemClicked.connect(lambda item: self.classActivated.emit(item.data(Qt.ItemDataRole.UserRole)))
        self.list.currentRowChanged.connect(self._on_row)
        self._refresh_timer = QTimer(self)           # many box edits at once (a merge) refresh once
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(0)
        self._refresh_timer.timeout.connect(self.refresh)
        self.buttons["add"].clicked.connect(self.addRequested)
        self.buttons["rename"].clicked.connect(lambda: self._emit_for_current(self.renameRequested))
        self.buttons["merge"].clicked.connect(lambda: self._emit_for_current(self.mergeRequested))
        self.buttons["delete"].clicked.connect(lambda: self._emit_for_current(self.deleteRequested))
        self.buttons["color"].clicked.connect(lambda: self._emit_for_current(self.colorRequested))
        self.buttons["color"].setToolTip("Pick the colour of the selected class (kept for this class name)")
        self.list.itemDoubleClicked.connect(lambda item: self.renameRequested.emit(item.data(Qt.ItemDataRole.UserRole)))

    def _emit_for_current(self, signal) -> None:
        cat_id = self.current_id()
        if cat_id is not None:
            signal.emit(cat_id)

    def set_document(self, doc) -> None:
        self.doc = doc
        doc.categoriesChanged.connect(self.refresh)
        doc.boxesChanged.connect(lambda _i: self._refresh_timer.start())
        self.refresh()

    def _on_row(self, row: int) -> None:
        """Keyboard moves in the list change the class of the next box (not of the selected ones)."""
        cat_id = self.id_at(row)
        if cat_id is not None:
            self.currentClassPicked.emit(cat_id)

    def refresh(self) -> None:
        """Rebuild the rows (names, counts) keeping the current class selected."""
        current = self.current_id()
        counts = self.doc.project.category_counts()
        self.list.blockSignals(True)
        self.list.clear()
        for i, c in enumerate(self.doc.project.categories):
            item = QListWidgetItem(_swatch(class_color(c.id)), class_row_text(i, c.name, c.id, counts.get(c.id, 0)))
            item.setData(Qt.ItemDataRole.UserRole, c.id)
            self.list.addItem(item)
        self.list.blockSignals(False)
        self.select(current)
        for key in ("rename", "merge", "delete", "color"):
            self.buttons[key].setEnabled(self.list.count() > 0)

    def select(self, cat_id: int | None) -> None:
        """Show ``cat_id`` as the current class (no signal)."""
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == cat_id:
                self.list.setCurrentRow(row)
                return
        self.list.setCurrentRow(-1)

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def id_at(self, row: int) -> int | None:
        item = self.list.item(row)
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)
