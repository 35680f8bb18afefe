"""The image list: file name, box count, a mark for unsaved edits (●) or an unreadable image (⚠),
filtered by name and by class. A model over the project (no copy), so 5,000 images list at once."""
from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QEvent, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app import theme

__all__ = ["ImageListPanel", "ImageTableModel", "UNSAVED_MARK", "PROBLEM_MARK"]

UNSAVED_MARK = "●"
PROBLEM_MARK = "⚠"
COLUMNS = ("", "#", "File", "Boxes", "TP", "FP", "Missed")
FILE_MIN_WIDTH = 70     # below this the File column stops stretching and the list scrolls sideways


class ImageTableModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.doc = None
        self.problems: dict[int, str] = {}
        self.eval_counts: dict[int, tuple[int, int, int]] = {}   # row -> (TP, FP, missed) of the last evaluation

    def set_document(self, doc) -> None:
        self.beginResetModel()
        self.doc = doc
        self.problems = {}
        self.eval_counts = {}
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() or self.doc is None else len(self.doc.project.images)

    def columnCount(self, parent=QModelIndex()) -> int:
        return len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        row, col = index.row(), index.column()
        record = self.doc.project.images[row]
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return self.mark(row)
            if col >= 4:
                counts = self.eval_counts.get(row)
                return None if counts is None else counts[col - 4]
            return (row + 1, record.file_name, len(record.boxes))[col - 1]
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.problems.get(row) or (f"{record.file_name}: unsaved edits" if self.mark(row) else record.file_name)
        if role == Qt.ItemDataRole.ForegroundRole and row in self.problems:
            return QColor(theme.UNREADABLE)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (1, 3, 4, 5, 6):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.UserRole:
            return row
        return None

    def mark(self, row: int) -> str:
        if row in self.problems:
            return PROBLEM_MARK
        return UNSAVED_MARK if self.doc.is_image_dirty(row) else ""

    def refresh_row(self, row: int) -> None:
        if 0 <= row < self.rowCount():
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def set_problem(self, row: int, text: str) -> None:
        if text:
            self.problems[row] = text
        else:
            self.problems.pop(row, None)
        self.refresh_row(row)


class _Filter(QSortFilterProxyModel):
    """Rows whose file name contains the text (any case), that hold a box of the class and, with
    ``only`` set, that are among those rows (the validation split)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = ""
        self.cat_id: int | None = None
        self.only: set[int] | None = None
        self.order = Qt.SortOrder.AscendingOrder

    def set_filter(self, text: str, cat_id: int | None, only: set[int] | None = None) -> None:
        self.text, self.cat_id, self.only = text.lower(), cat_id, only
        self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent) -> bool:
        if self.only is not None and row not in self.only:
            return False
        record = self.sourceModel().doc.project.images[row]
        if self.text and self.text not in record.file_name.lower():
            return False
        return self.cat_id is None or any(b.category_id == self.cat_id for b in record.boxes)

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """"#" ascending is the project's own order: the source order, no comparisons (a 20,000
        image list is not sorted at open, nor again on each reset or filter change)."""
        self.order = order
        if column == 1 and order == Qt.SortOrder.AscendingOrder:
            column = -1
        super().sort(column, order)

    def lessThan(self, left, right) -> bool:
        column = left.column()
        if column in (1, 2, 3):                     # straight from the project (the same order as data())
            images = self.sourceModel().doc.project.images
            if column == 1:
                return left.row() < right.row()
            a, b = images[left.row()], images[right.row()]
            if column == 3:
                return len(a.boxes) < len(b.boxes)
            return a.file_name.lower() < b.file_name.lower()
        a, b = self.sourceModel().data(left), self.sourceModel().data(right)
        if a is None or b is None:                  # images not evaluated sort after the others, either way
            descending = self.order == Qt.SortOrder.DescendingOrder     # (Qt then asks lessThan(right, left))
            return a is None and b is not None if descending else a is not None and b is None
        if isinstance(a, int) and isinstance(b, int):
            return a < b
        return str(a).lower() < str(b).lower()


class ImageListPanel(QWidget):
    """Signal ``imageSelected(index)`` (index into the project's images)."""

    imageSelected = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = ImageTableModel(self)
        self.proxy = _Filter(self)
        self.proxy.setDynamicSortFilter(False)   # an edit must never hide (and so switch away from) the shown image
        self.proxy.setSourceModel(self.model)
        self._build()

    def _build(self) -> None:
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by name")
        self.filter_edit.setClearButtonEnabled(True)
        self.class_combo = QComboBox()
        self.class_combo.setToolTip("Show only images with a box of this class")
        self.scope_combo = QComboBox()
        self.scope_combo.addItem("All images", "all")
        self.scope_combo.addItem("Validation split", "val")
        self.scope_combo.setToolTip("Validation split: the images the Evaluate panel evaluates (the Train "
                                    "panel's split)")
        self.scope_combo.setEnabled(False)
        self.val_rows: set[int] | None = None
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.AscendingOrder)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideLeft)     # a long path keeps its file name
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        for col in (0, 1, 3, 4, 5, 6):           # fitted to their text: the File column gets the rest
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Fixed)
        self._fit_columns()
        for col in (4, 5, 6):                      # TP / FP / missed: shown once an evaluation ran
            self.table.setColumnHidden(col, True)
        top = QHBoxLayout()
        top.addWidget(self.filter_edit, 2)
        top.addWidget(self.class_combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.scope_combo)
        layout.addWidget(self.table)
        self.filter_edit.textChanged.connect(self._apply_filter)
        self.class_combo.currentIndexChanged.connect(self._apply_filter)
        self.scope_combo.currentIndexChanged.connect(self._apply_filter)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_changed)
        self.table.viewport().installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.table.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_file_column()
        return super().eventFilter(watched, event)

    def _fit_file_column(self) -> None:
        """The File column takes the room the others leave; once TP / FP / Missed show, never
        less than :data:`FILE_MIN_WIDTH` (in a narrow dock the list then scrolls sideways instead
        of cutting every name to "…")."""
        header = self.table.horizontalHeader()
        others = sum(header.sectionSize(c) for c in range(len(COLUMNS)) if c != 2 and not header.isSectionHidden(c))
        room = self.table.viewport().width() - others
        if header.isSectionHidden(4) or room >= FILE_MIN_WIDTH:
            header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        else:
            header.setSectionResizeMode(2, QHeaderView.ResizeMode.Interactive)
            header.resizeSection(2, FILE_MIN_WIDTH)

    def _fit_columns(self) -> None:
        """The fixed columns as narrow as their text: "#" as wide as the largest row number (and
        its header with the sort arrow), the counts as their headers; the File column stretches
        into the rest (a 174 px dock at 1024x700 leaves it ~70 px, a file name's tail)."""
        fm = self.table.fontMetrics()
        header = self.table.horizontalHeader()
        rows = max(self.model.rowCount(), 9)
        header.setMinimumSectionSize(8)                     # the style's default (~26 px) is wider than a mark
        header.resizeSection(0, fm.horizontalAdvance(UNSAVED_MARK) + 8)
        header.resizeSection(1, max(fm.horizontalAdvance(str(rows)) + 10, fm.horizontalAdvance("#") + 22))
        for col in (3, 4, 5, 6):
            header.resizeSection(col, fm.horizontalAdvance(COLUMNS[col]) + 10)

    def set_document(self, doc) -> None:
        self.model.set_document(doc)
        self._fit_columns()
        doc.boxesChanged.connect(self.model.refresh_row)
        doc.dirtyChanged.connect(self._on_dirty_changed)
        doc.categoriesChanged.connect(self.refresh_classes)
        self.refresh_classes()

    def refresh_classes(self) -> None:
        current = self.class_combo.currentData()
        self.class_combo.blockSignals(True)
        self.class_combo.clear()
        self.class_combo.addItem("All classes", None)
        for c in self.model.doc.project.categories:
            self.class_combo.addItem(c.name, c.id)
        found = self.class_combo.findData(current)
        self.class_combo.setCurrentIndex(max(found, 0))
        self.class_combo.blockSignals(False)
        self._apply_filter()

    def _on_dirty_changed(self, image: int) -> None:
        if image < 0:
            n = self.model.rowCount()
            if n:
                self.model.dataChanged.emit(self.model.index(0, 0), self.model.index(n - 1, 0))
        else:
            self.model.refresh_row(image)

    def _apply_filter(self, *_args) -> None:
        only = self.val_rows if self.scope_combo.currentData() == "val" else None
        self.proxy.set_filter(self.filter_edit.text(), self.class_combo.currentData(), only)

    def set_val_rows(self, rows) -> None:
        """The validation split's images (rows), for the "Validation split" filter; None: unknown."""
        self.val_rows = None if rows is None else set(rows)
        self.scope_combo.setEnabled(self.val_rows is not None)
        if self.val_rows is None:
            self.scope_combo.setCurrentIndex(0)
        self._apply_filter()

    def _on_current_changed(self, current: QModelIndex, _previous) -> None:
        if current.isValid():
            self.imageSelected.emit(self.proxy.mapToSource(current).row())

    def select_image(self, index: int) -> None:
        """Make ``index`` the current row (clears the filter if it hides that image)."""
        proxy_index = self.proxy.mapFromSource(self.model.index(index, 0))
        if not proxy_index.isValid():
            self.filter_edit.clear()
            self.class_combo.setCurrentIndex(0)
            self.scope_combo.setCurrentIndex(0)
            proxy_index = self.proxy.mapFromSource(self.model.index(index, 0))
        self.table.setCurrentIndex(proxy_index)
        self.table.scrollTo(proxy_index)

    def set_eval_counts(self, counts: dict[int, tuple[int, int, int]]) -> None:
        """Per image (row) TP / FP / missed of an evaluation; sortable columns to find the worst images."""
        self.model.eval_counts = dict(counts)
        for col in (4, 5, 6):
            self.table.setColumnHidden(col, not counts)
        self._fit_file_column()
        n = self.model.rowCount()
        if n:
            self.model.dataChanged.emit(self.model.index(0, 4), self.model.index(n - 1, 6))
        self.proxy.invalidate()

    def neighbour(self, index: int, step: int) -> int | None:
        """The image ``step`` rows away from ``index`` in the list as shown (filtered, sorted)."""
        proxy_index = self.proxy.mapFromSource(self.model.index(index, 0))
        row = proxy_index.row() + step if proxy_index.isValid() else 0
        if not 0 <= row < self.proxy.rowCount():
            return None
        return self.proxy.mapToSource(self.proxy.index(row, 0)).row()

    def visible_count(self) -> int:
        return self.proxy.rowCount()
