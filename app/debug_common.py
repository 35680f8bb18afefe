"""Small shared pieces of the debug views: image conversion, the assigner parameter
table, the config snippet, tables.

Tables made ``sortable`` sort by a header click (numbers as numbers, "GT10" after "GT9"; a third
click restores the data order) and keep each row's data index, so a view maps a shown row to its
GT / prior with :func:`data_row` and back with :func:`view_row`, whatever the sort.
"""
from __future__ import annotations

import re

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

__all__ = ["qimage_to_rgb", "ASSIGNER_PARAMS", "config_snippet", "make_table", "fill_table", "data_row",
           "view_row", "select_data_row", "selected_data_row", "level_row_text", "fmt", "threshold_slider"]

_DATA_ROW = Qt.ItemDataRole.UserRole + 1             # column 0's item: the row's index in fill_table's rows
_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)")

# Editable parameters per assigner type: (name, kind, lo, hi, step). Kinds: "thr" (slider 0..1), "int",
# "float", "bool" (a check box).
ASSIGNER_PARAMS = {
    "MaxIoUAssigner": [("pos_iou_thr", "thr", 0.0, 1.0, 0.01), ("neg_iou_thr", "thr", 0.0, 1.0, 0.01),
                       ("min_pos_iou", "thr", 0.0, 1.0, 0.01)],
    "ATSSAssigner": [("topk", "int", 1, 50, 1)],
    "DynamicSoftLabelAssigner": [("topk", "int", 1, 50, 1), ("soft_center_radius", "float", 0.5, 10.0, 0.5),
                                 ("iou_weight", "float", 0.0, 10.0, 0.5)],
    "SSDPytorchMatcher": [("threshold", "thr", 0.0, 1.0, 0.01)],
    "D2LGreedyAssigner": [("iou_threshold", "thr", 0.0, 1.0, 0.01)],
    "TaskAlignedAssigner": [("topk", "int", 1, 100, 1), ("alpha", "float", 0.0, 4.0, 0.25),
                            ("beta", "float", 0.0, 12.0, 0.5)],
    "SimOTAAssigner": [("center_radius", "float", 0.5, 10.0, 0.5), ("candidate_topk", "int", 1, 50, 1),
                       ("iou_weight", "float", 0.0, 10.0, 0.5), ("cls_weight", "float", 0.0, 10.0, 0.5)],
    "FCOSAssigner": [("center_sampling", "bool", 0, 1, 1), ("center_sample_radius", "float", 0.5, 5.0, 0.25)],
}


def fmt(value: float) -> str:
    return f"{value:g}"


def level_row_text(priors, level: int) -> str:
    """``P0  stride 8  38x38  4/cell  5776 priors``."""
    sw, sh = priors.strides[level]
    stride = fmt(sw) if sw == sh else f"{fmt(sw)}x{fmt(sh)}"
    h, w = priors.featmap_sizes[level]
    return (f"P{level}  stride {stride}  {h}x{w}  {priors.num_base_priors[level]}/cell  "
            f"{priors.num_per_level[level]} priors")


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB copy of a QImage (what the canvas shows, EXIF rotation applied)."""
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w, stride = rgb.height(), rgb.width(), rgb.bytesPerLine()
    data = np.frombuffer(rgb.constBits(), dtype=np.uint8, count=h * stride).reshape(h, stride)
    return data[:, : w * 3].reshape(h, w, 3).copy()


def _py(value) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{k}={_py(v)}" for k, v in value.items()) + ")"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    if isinstance(value, float):
        return fmt(round(value, 6))
    return repr(value)


def config_snippet(model_overrides: dict, test_cfg: dict) -> str:
    """The current parameters as an mmdetection config fragment to paste into a config file."""
    parts = []
    for key, value in model_overrides.items():
        parts.append(f"    {key}={_py(value)}")
    if test_cfg:
        parts.append(f"    test_cfg={_py(test_cfg)}")
    return "model = dict(\n" + ",\n".join(parts) + ")\n" if parts else "# the config's own parameters\n"


def threshold_slider(on_change, value: float = 0.5, scale: int = 100) -> QSlider:
    """A 0-1 slider in steps of ``1 / scale`` with its value shown beside it; ``slider.row`` is
    the widget to put in a layout; ``on_change()`` runs on every move; ``slider.scale``."""
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(0, scale)
    slider.setValue(int(round(value * scale)))
    slider.scale = scale
    digits = len(str(scale)) - 1
    label = QLabel(f"{slider.value() / scale:.{digits}f}")
    slider.valueChanged.connect(lambda v: label.setText(f"{v / scale:.{digits}f}"))
    slider.valueChanged.connect(lambda _v: on_change())
    row = QWidget()
    box = QHBoxLayout(row)
    box.setContentsMargins(0, 0, 0, 0)
    box.addWidget(slider, 1)
    box.addWidget(label)
    slider.row = row
    row.slider = slider
    return slider


class _SortItem(QTableWidgetItem):
    """A cell that sorts by :func:`_sort_key` of its text."""

    def __lt__(self, other) -> bool:
        return _sort_key(self.text()) < _sort_key(other.text())


def _sort_key(text: str) -> list[tuple]:
    """Natural order: ``GT2 < GT10``, ``-0.5 < 3``, ``P0:4 P1:2 < P1:1``; text after numbers."""
    return [(0, float(part), "") if k % 2 else (1, 0.0, part) for k, part in enumerate(_NUMBER.split(text)) if part]


def make_table(headers: list[str], stretch_last: bool = True, sortable: bool = False) -> QTableWidget:
    """A read-only table selecting one row; ``sortable``: a header click sorts (none at first)."""
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().hide()
    table.verticalHeader().setDefaultSectionSize(19)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    if stretch_last:
        table.horizontalHeader().setStretchLastSection(True)
    if sortable:
        table.horizontalHeader().setSortIndicatorClearable(True)
        table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)   # the data order until a click
        table.setSortingEnabled(True)
    return table


def fill_table(table: QTableWidget, rows: list[list], colors: list | None = None) -> None:
    """Replace the rows; ``colors[i]`` (QColor or None) paints row i's text. A sorted table
    sorts the new rows the same way."""
    sorting = table.isSortingEnabled()
    table.setSortingEnabled(False)                     # else each setItem moves rows under the loop
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            item = _SortItem(value if isinstance(value, str) else fmt(value) if isinstance(value, float)
                             else str(value))
            if c == 0:
                item.setData(_DATA_ROW, r)
            if not isinstance(value, str):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if colors and colors[r] is not None:
                item.setForeground(colors[r])
            table.setItem(r, c, item)
    table.setSortingEnabled(sorting)


def data_row(table: QTableWidget, row: int) -> int:
    """The index in :func:`fill_table`'s rows of the row shown at ``row`` (-1 for none)."""
    item = table.item(row, 0) if row >= 0 else None
    return int(item.data(_DATA_ROW)) if item is not None and item.data(_DATA_ROW) is not None else -1


def view_row(table: QTableWidget, index: int) -> int:
    """Where data row ``index`` is shown now (-1 when absent)."""
    return next((r for r in range(table.rowCount()) if data_row(table, r) == index), -1)


def selected_data_row(table: QTableWidget) -> int | None:
    """The data index of the selected row (None when no row is selected; not ``currentRow()``,
    which outlives a deselection)."""
    rows = table.selectionModel().selectedRows()
    return data_row(table, rows[0].row()) if rows else None


def select_data_row(table: QTableWidget, index: int | None) -> None:
    """Select data row ``index`` wherever the sort shows it (clear the selection for None)."""
    row = view_row(table, index) if index is not None else -1
    if row >= 0:
        table.selectRow(row)
    else:
        table.clearSelection()
