"""Anchors: the priors of one pyramid level over the image (all, one cell, or centres), and the
GT coverage table ("why is my small object never detected?").

Level of detail: with all priors of a level on screen, cells closer than ``MIN_SCREEN_STRIDE_PX``
on screen are thinned to every k-th row and column (the status line says so and how to see all);
zooming in redraws with more.
"""
from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFontDatabase
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QSplitter, QVBoxLayout

from app import theme
from app.debug.debug_page import DebugPage
from app.debug_common import fill_table, level_row_text, make_table, select_data_row, selected_data_row
from app.theme import gt_color, level_color

__all__ = ["AnchorsPage", "MODES", "MIN_SCREEN_STRIDE_PX", "draw_gt_tags", "input_point"]

MODES = {"all": "All priors of the level", "cell": "Priors of the clicked cell", "centers": "Centres only"}
MIN_SCREEN_STRIDE_PX = 6.0
_RED = QColor(theme.PROBLEM)


def input_point(image_trace, x: float, y: float) -> tuple[float, float]:
    """Original pixel (x, y) -> network-input pixel."""
    box = image_trace.input.to_input(np.array([[x, y, x, y]], np.float64))[0]
    return float(box[0]), float(box[1])


def draw_gt_tags(result, overlay, only: int | None = None) -> None:
    """``GT k`` beside each traced GT box, in its colour (the tables and colours refer to k)."""
    it = result.main
    boxes = it.to_original(it.trace.gt_boxes.numpy())
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        if only is None or only == k:
            overlay.rects("gt", [[x1, y1, x2, y2]], gt_color(k), width=2.5, dash=True, z=3.5)
            overlay.text("gt_tags", x2 + 1, y1, f"GT{k}", gt_color(k))


def coverage_rows(it, class_names: list[str]) -> tuple[list[list], list]:
    trace = it.trace
    cov = trace.coverage
    rows, colors = [], []
    for k, row in enumerate(cov.rows()):
        x1, y1, x2, y2 = trace.gt_boxes[k].tolist()
        label = int(trace.gt_labels[k])
        points = trace.priors.is_point                     # point priors (RTMDet): no IoU to speak of
        n05 = "-" if row["num_iou_ge_05"] < 0 else row["num_iou_ge_05"]
        n04 = "-" if row["num_iou_ge_04"] < 0 else row["num_iou_ge_04"]
        rows.append([f"GT{k}", class_names[label] if label < len(class_names) else str(label),
                     f"{x2 - x1:.0f}x{y2 - y1:.0f}", "-" if points else round(row["best_iou"], 3), f"P{row['best_level']}",
                     f"#{row['best_base_index']}", n05, n04, row["num_pos"]])
        colors.append(_RED if row["weak"] else None)
    return rows, colors


class AnchorsPage(DebugPage):
    persistent_layers = ("priors",)

    def __init__(self, panel):
        super().__init__(panel)
        self.level = 0
        self.mode = "all"
        self.cell: tuple[int, int] | None = None
        self.note = ""
        self.click_input: tuple[float, float] | None = None  # the last click, in network-input pixels
        self._build()

    def _build(self) -> None:
        self.level_list = QListWidget()
        self.level_list.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.mode_combo = QComboBox()
        for key, text in MODES.items():
            self.mode_combo.addItem(text, key)
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.coverage = make_table(["GT", "class", "w x h (input px)", "best IoU", "level", "base", ">=0.5", ">=0.4",
                                    "positives"], sortable=True)
        self.coverage.setToolTip("Best IoU of each GT with any prior; red: no prior reaches IoU 0.5, or no "
                                 "positive. Click a row to see its best prior.")
        top = QHBoxLayout()
        top.addWidget(QLabel("Show"))
        top.addWidget(self.mode_combo, 1)
        upper = QSplitter(Qt.Orientation.Vertical)
        upper.addWidget(self.level_list)
        upper.addWidget(self.coverage)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(upper, 1)
        layout.addWidget(self.info)
        self.level_list.currentRowChanged.connect(self._on_level)
        self.mode_combo.currentIndexChanged.connect(self._on_mode)
        self.coverage.itemSelectionChanged.connect(self.redraw)

    # ------------------------------------------------------------------ state

    def set_level(self, level: int) -> None:
        self.level_list.setCurrentRow(level)

    def set_mode(self, mode: str) -> None:
        self.mode_combo.setCurrentIndex(self.mode_combo.findData(mode))

    def _on_level(self, row: int) -> None:
        if row >= 0 and row != self.level:
            self.level = row
            self.redraw()

    def _on_mode(self, _index: int) -> None:
        self.mode = self.mode_combo.currentData()
        self.redraw()

    def on_click(self, x: float, y: float) -> None:
        it = self.result.main
        self.click_input = input_point(it, x, y)           # kept in input pixels: valid on every level
        self.cell = it.trace.priors.cell_at(self.level, *self.click_input)
        if self.mode == "cell":
            self.redraw()

    def on_zoom(self) -> None:
        if self.mode == "all":
            self.redraw()

    # ------------------------------------------------------------------ drawing

    def show_result(self, result, overlay) -> None:  # a DebugResult
        super().show_result(result, overlay)
        it = result.main
        priors = it.trace.priors
        self._fill_levels(priors)
        self.level = min(self.level, priors.num_levels - 1)
        rows, colors = coverage_rows(it, self.panel.class_names())
        selected = selected_data_row(self.coverage)          # a GT index, whatever the sort
        self.coverage.blockSignals(True)
        fill_table(self.coverage, rows, colors)
        select_data_row(self.coverage, selected if selected is not None and selected < len(rows) else None)
        self.coverage.blockSignals(False)
        draw_gt_tags(result, overlay)
        self._draw_level(it, overlay)
        self._draw_selected_gt(it, overlay)

    def _fill_levels(self, priors) -> None:
        texts = [level_row_text(priors, lv) for lv in range(priors.num_levels)]
        if [self.level_list.item(i).text() for i in range(self.level_list.count())] == texts:
            return
        self.level_list.blockSignals(True)
        self.level_list.clear()
        for lv, text in enumerate(texts):
            item = QListWidgetItem(text)
            item.setForeground(QColor(level_color(lv)).darker(130))
            self.level_list.addItem(item)
        self.level_list.setCurrentRow(min(self.level, len(texts) - 1))
        self.level_list.blockSignals(False)

    def _draw_level(self, it, overlay) -> None:
        priors, level = it.trace.priors, self.level
        color = level_color(level)
        sl = priors.level_slice(level)
        per_cell = priors.num_base_priors[level]
        if self.mode == "cell":
            point = self.click_input
            row, col = priors.cell_at(level, *point) if point is not None else (0, 0)
            self.cell = (row, col)
            idx = priors.cell_indices(level, row, col)
            if self._unchanged(it, ("cell", level, row, col)):
                return
            boxes = it.to_original(priors.boxes[idx].numpy(), clip=False)
            overlay.rects("priors", boxes, color, width=2.0)
            self.info.setText(self._cell_text(it, level, row, col, idx))
            return
        centers = priors.centers[sl][::per_cell].numpy()            # one centre per cell
        if self.mode == "centers":
            if not self._unchanged(it, ("centers", level)):
                overlay.points("priors", it.input.points_to_original(centers), color, size=4.0)
            self.info.setText(f"P{level}: {len(centers)} cell centres")
            return
        step = self._thinning(it, level)
        if self._unchanged(it, ("all", level, step)):
            self.info.setText(self._all_text(level, overlay))
            return
        self.note = ""
        boxes = priors.boxes[sl].numpy()
        if step > 1:
            h, w = priors.featmap_sizes[level]
            rows = np.arange(h)[:, None].repeat(w, 1).ravel()
            cols = np.arange(w)[None, :].repeat(h, 0).ravel()
            keep_cell = (rows % step == 0) & (cols % step == 0)
            boxes = boxes.reshape(h * w, per_cell, 4)[keep_cell].reshape(-1, 4)
            self.note = (f"zoomed out: every {_ordinal(step)} row and column of cells drawn "
                         f"({len(boxes)} of {priors.num_per_level[level]}); zoom in to see all")
        overlay.rects("priors", it.to_original(boxes, clip=False), color, width=1.0)    # opaque: 4x faster to paint
        self.info.setText(self._all_text(level, overlay))

    def _all_text(self, level: int, overlay) -> str:
        return f"P{level}: {overlay.count('priors')} priors drawn" + (f"  ·  {self.note}" if self.note else "")

    def _unchanged(self, it, what: tuple) -> bool:
        """True when the priors layer already shows ``what`` for this network input (an edit of
        the GT boxes does not move a single prior: the 150,000-anchor path is kept)."""
        trace = it.trace
        key = (what, trace.input_shape, trace.pad_shape, len(trace.priors), trace.priors.featmap_sizes,
               tuple(it.input.meta.get("scale_factor", (1, 1))), id(self.panel.cfg))
        panel = self.panel
        if panel.overlay_key == key and "priors" in panel.overlay.layers:
            return True
        panel.overlay.clear("priors")
        panel.overlay_key = key
        return False

    def _thinning(self, it, level: int) -> int:
        """Cell step so that drawn cells are at least MIN_SCREEN_STRIDE_PX apart on screen."""
        stride = min(it.trace.priors.strides[level])
        sx = it.input.meta.get("scale_factor", (1.0, 1.0))[0] or 1.0
        on_screen = stride / sx * self.panel.canvas.scale_factor()
        return max(1, math.ceil(MIN_SCREEN_STRIDE_PX / max(on_screen, 1e-6)))

    def _cell_text(self, it, level: int, row: int, col: int, idx) -> str:
        trace = it.trace
        lines = [f"P{level} cell (row {row}, col {col}): {len(idx)} priors (input px w x h, best GT IoU)"]
        iou = trace.iou
        for i in idx.tolist():
            x1, y1, x2, y2 = trace.priors.boxes[i].tolist()
            best = f", IoU {float(iou[:, i].max()):.3f}" if len(trace.gt_boxes) else ""
            lines.append(f"  #{int(trace.priors.base_index[i])}: {x2 - x1:.1f} x {y2 - y1:.1f}{best}")
        return "\n".join(lines)

    def _draw_selected_gt(self, it, overlay) -> None:
        k = selected_data_row(self.coverage)
        if k is None or not 0 <= k < len(it.trace.gt_boxes):
            return
        best = int(it.trace.coverage.best_prior[k])
        box = it.to_original(it.trace.priors.boxes[best:best + 1].numpy(), clip=False)
        overlay.rects("best", box, gt_color(k), width=3.0, z=3.6)
        self.info.setText(self.info.text() + f"\nGT{k}: best prior #{best} (level P{int(it.trace.priors.level[best])}, "
                          f"IoU {float(it.trace.coverage.best_iou[k]):.3f}) drawn thick")


def _ordinal(n: int) -> str:
    """2nd, 3rd, 4th, 11th, 21st ..."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"
