"""Small shared pieces of the debug views: image conversion, the assigner parameter
table, the config snippet, tables."""
from __future__ import annotations

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

__all__ = ["qimage_to_rgb", "ASSIGNER_PARAMS",
           "config_snippet", "make_table", "fill_table", "level_row_text", "fmt", "threshold_slider"]

# Editable parameters per assigner type: (name, kind, lo, hi, step). Kinds: "thr" (slider 0..1), "int".
ASSIGNER_PARAMS = {
    "MaxIoUAssigner": [("pos_iou_thr", "thr", 0.0, 1.0, 0.01), ("neg_iou_thr", "thr", 0.0, 1.0, 0.01),
                       ("min_pos_iou", "thr", 0.0, 1.0, 0.01)],
    "ATSSAssigner": [("topk", "int", 1, 50, 1)],
    "DynamicSoftLabelAssigner": [("topk", "int", 1, 50, 1), ("soft_center_radius", "float", 0.5, 10.0, 0.5),
                                 ("iou_weight", "float", 0.0, 10.0, 0.5)],
    "SSDPytorchMatcher": [("threshold", "thr", 0.0, 1.0, 0.01)],
    "D2LGreedyAssigner": [("iou_threshold", "thr", 0.0, 1.0, 0.01)],
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


def make_table(headers: list[str], stretch_last: bool = True) -> QTableWidget:
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
    return table


def fill_table(table: QTableWidget, rows: list[list], colors: list | None = None) -> None:
    """Replace the rows; ``colors[i]`` (QColor or None) paints row i's text."""
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            item = QTableWidgetItem(value if isinstance(value, str) else fmt(value) if isinstance(value, float)
                                    else str(value))
            if not isinstance(value, str):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if colors and colors[r] is not None:
                item.setForeground(colors[r])
            table.setItem(r, c, item)
