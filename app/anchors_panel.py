"""The anchors panel (debug dock): the priors of a detector config on its network input, level by
level, with two demo GT boxes and the priors the assigner makes positive for them.

Engine calls happen only when the config changes (one ``inspect`` of a few ms); level, mode and
click changes only slice the trace's tensors and redraw.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFontDatabase
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPlainTextEdit,
                               QSplitter, QVBoxLayout, QWidget)

from detengine.builder import default_input_shape
from detengine.cli import CONFIG_DIR, resolve_config
from detengine.trace import head_core_for, inspect, model_config

from .prior_view import PriorView

__all__ = ["AnchorsPanel", "MODES", "MAX_RECTS", "shipped_configs", "demo_ground_truth", "level_row_text",
           "trace_for_config"]

WIDE_LAYOUT_PX = 720        # narrower than this, the controls go above the canvas
MAX_RECTS = 20_000          # above this many rectangles, draw centres only (level of detail)
MODES = {"all": "All priors of the level", "cell": "Priors of one cell", "centers": "Centres only"}
LEVEL_COLORS = ["#4ea1ff", "#3ddbb0", "#b48cff", "#8fd14f", "#ff7eb6", "#5ce1e6", "#c9c9c9", "#9fa8ff"]
GT_COLORS = ["#ff4d4d", "#ffd21f", "#ff9f0a", "#ffffff"]
DEMO_GT_FRACTIONS = [(0.10, 0.10, 0.45, 0.45), (0.55, 0.55, 0.70, 0.70)]


def level_color(level: int) -> str:
    return LEVEL_COLORS[level % len(LEVEL_COLORS)]


def shipped_configs() -> list[str]:
    """Names of the configs in ``resources/configs`` (``_base_`` and private files excluded)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))


def demo_ground_truth(shape: tuple[int, int], num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two demo GT boxes scaled to the input ``(h, w)``, labels 0 and 1 (kept < num_classes)."""
    h, w = shape
    boxes = torch.tensor([[x1 * w, y1 * h, x2 * w, y2 * h] for x1, y1, x2, y2 in DEMO_GT_FRACTIONS],
                         dtype=torch.float32)
    labels = torch.tensor([min(i, num_classes - 1) for i in range(len(boxes))], dtype=torch.long)
    return boxes, labels


def trace_for_config(config: str):
    """Resolve a config name or path, and trace the demo GTs through its head (no predictions)."""
    model = model_config(str(resolve_config(config)))
    shape = default_input_shape(model)
    boxes, labels = demo_ground_truth(shape, head_core_for(model).num_classes)
    return inspect(shape, boxes, labels, model)


def _num(value: float) -> str:
    return f"{value:g}"


def level_row_text(priors, level: int) -> str:
    """``P0  stride 8  38x38  4/cell  5776 priors``."""
    sw, sh = priors.strides[level]
    stride = _num(sw) if sw == sh else f"{_num(sw)}x{_num(sh)}"
    h, w = priors.featmap_sizes[level]
    return (f"P{level}  stride {stride}  {h}x{w}  {priors.num_base_priors[level]}/cell  "
            f"{priors.num_per_level[level]} priors")


def _config_label(config: str) -> str:
    return Path(config).stem if config.endswith(".py") else config


class AnchorsPanel(QWidget):
    """Config combo, level list, draw mode and trace summary on the left; the prior canvas on
    the right; drawn counts and cursor position underneath."""

    def __init__(self, config: str = "ssd300_coco", parent=None):
        super().__init__(parent)
        self.trace = None
        self.config_name = ""
        self._click_xy: tuple[float, float] | None = None
        self._cell: tuple[int, int] = (0, 0)
        self._build_canvas()
        self._build_left_panel()
        self._build_status_bar()
        self._build_layout()
        self._connect_signals()
        self.load_config(config)

    # ------------------------------------------------------------------ construction

    def _build_canvas(self) -> None:
        self.view = PriorView()

    def _build_left_panel(self) -> None:
        self.config_combo = QComboBox()
        for name in shipped_configs():
            self.config_combo.addItem(name, name)
        self.level_list = QListWidget()
        self.level_list.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.mode_combo = QComboBox()
        for key, text in MODES.items():
            self.mode_combo.addItem(text, key)
        self.gt_label = QLabel()
        self.gt_label.setWordWrap(True)
        self.summary_text = QPlainTextEdit()
        self.summary_text.setReadOnly(True)
        self.summary_text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        mono.setPointSizeF(max(7.0, mono.pointSizeF() - 1))
        self.summary_text.setFont(mono)

    def _build_status_bar(self) -> None:
        self.cursor_label = QLabel("x -, y -")
        self.count_label = QLabel()
        self.count_label.setWordWrap(True)

    def _build_layout(self) -> None:
        panel = QWidget()
        box = QVBoxLayout(panel)
        for title, widget, stretch in (("Config", self.config_combo, 0), ("Levels", self.level_list, 0),
                                       ("Show", self.mode_combo, 0), ("Ground truth (demo)", self.gt_label, 0),
                                       ("Trace summary", self.summary_text, 1)):
            heading = QLabel(f"<b>{title}</b>")
            box.addWidget(heading)
            box.addWidget(widget, stretch)
        splitter = self.splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(panel)
        splitter.addWidget(self.view)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([440, 840])
        bottom = QHBoxLayout()
        bottom.addWidget(self.count_label, 1)
        bottom.addWidget(self.cursor_label)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(splitter, 1)
        outer.addLayout(bottom)

    def _connect_signals(self) -> None:
        self.config_combo.currentIndexChanged.connect(self._on_config_changed)
        self.level_list.currentRowChanged.connect(self._on_level_changed)
        self.mode_combo.currentIndexChanged.connect(lambda _i: self.redraw())
        self.view.sigCellClicked.connect(self.select_point)
        self.view.sigCursorMoved.connect(self._on_cursor_moved)

    def resizeEvent(self, event) -> None:
        """Controls beside the prior canvas when there is room, above it in a narrow dock."""
        super().resizeEvent(event)
        wide = event.size().width() >= WIDE_LAYOUT_PX
        orientation = Qt.Orientation.Horizontal if wide else Qt.Orientation.Vertical
        if self.splitter.orientation() != orientation:
            self.splitter.setOrientation(orientation)
            self.splitter.setSizes([380, 600] if wide else [300, 400])

    # ------------------------------------------------------------------ public API

    def load_config(self, config: str) -> None:
        """Trace ``config`` (shipped name or path) and show it; raises on a bad config."""
        trace = trace_for_config(config)
        index = self.config_combo.findData(config)
        if index < 0:
            self.config_combo.addItem(_config_label(config), config)
            index = self.config_combo.count() - 1
        self.config_combo.blockSignals(True)
        self.config_combo.setCurrentIndex(index)
        self.config_combo.blockSignals(False)
        self._show_trace(trace, self.config_combo.itemText(index))

    def current_level(self) -> int:
        return max(0, self.level_list.currentRow())

    def current_mode(self) -> str:
        return self.mode_combo.currentData()

    def set_level(self, level: int) -> None:
        self.level_list.setCurrentRow(level)

    def set_mode(self, mode: str) -> None:
        self.mode_combo.setCurrentIndex(self.mode_combo.findData(mode))

    def select_point(self, x: float, y: float) -> None:
        """Select the feature cell of the current level whose prior centres are nearest (x, y)."""
        self._click_xy = (x, y)
        self._update_cell()
        self.redraw()

    @property
    def selected_cell(self) -> tuple[int, int]:
        return self._cell

    # ------------------------------------------------------------------ trace -> widgets

    def _show_trace(self, trace, name: str) -> None:
        self.trace = trace
        self.config_name = name
        h, w = trace.input_shape
        self._click_xy = (w / 2.0, h / 2.0)
        self.view.set_input_size(h, w)
        self._fill_level_list()
        self._show_ground_truth()
        self.summary_text.setPlainText(trace.summary())
        self.set_level(0)
        self._update_cell()
        self.redraw()

    def _fill_level_list(self) -> None:
        priors = self.trace.priors
        self.level_list.blockSignals(True)
        self.level_list.clear()
        for level in range(priors.num_levels):
            item = QListWidgetItem(level_row_text(priors, level))
            item.setForeground(QColor(level_color(level)).darker(130))
            self.level_list.addItem(item)
        self.level_list.blockSignals(False)
        rows = self.level_list.sizeHintForRow(0) * priors.num_levels
        self.level_list.setFixedHeight(rows + 2 * self.level_list.frameWidth() + 4)

    def _positives_of(self, gt: int) -> np.ndarray:
        mask = self.trace.assign_result.gt_inds == gt + 1
        return self.trace.priors.boxes[mask].numpy()

    def _show_ground_truth(self) -> None:
        t = self.trace
        positives = [self._positives_of(g) for g in range(len(t.gt_boxes))]
        colors = [GT_COLORS[g % len(GT_COLORS)] for g in range(len(t.gt_boxes))]
        captions = [f"GT{g} label {int(t.gt_labels[g])}: {len(p)} positive{'' if len(p) == 1 else 's'}"
                    for g, p in enumerate(positives)]
        self.view.set_ground_truth(t.gt_boxes.numpy(), colors, captions, positives)
        lines = [f'<span style="color:{c}">■</span> {text}' for c, text in zip(colors, captions)]
        self.gt_label.setText("<br>".join(lines) + f"<br>assigner {t.assigner_name}; "
                              "dashed boxes are each GT's positive priors (all levels).")

    # ------------------------------------------------------------------ drawing

    def _update_cell(self) -> None:
        if self.trace is not None and self._click_xy is not None:
            self._cell = self.trace.priors.cell_at(self.current_level(), *self._click_xy)

    def _cell_box(self, level: int) -> np.ndarray:
        priors = self.trace.priors
        idx = priors.cell_indices(level, *self._cell)
        cx, cy = priors.centers[idx[0]].tolist()
        sw, sh = priors.strides[level]
        return np.array([cx - sw / 2, cy - sh / 2, cx + sw / 2, cy + sh / 2])

    def redraw(self) -> None:
        """Draw the current level in the current mode and report the counts."""
        if self.trace is None:
            return
        level, mode = self.current_level(), self.current_mode()
        priors, color = self.trace.priors, level_color(level)
        note = ""
        if mode == "cell":
            idx = priors.cell_indices(level, *self._cell)
            self.view.show_rects(priors.boxes[idx].numpy(), color)
        elif mode == "centers" or priors.num_per_level[level] > MAX_RECTS:
            per_cell = priors.centers[priors.level_slice(level)][::priors.num_base_priors[level]]
            self.view.show_centers(per_cell.numpy(), color)      # one centre per cell
            if mode == "all":
                note = (f"  ·  level of detail: {priors.num_per_level[level]} rectangles > {MAX_RECTS}, "
                        "drawing centres only")
        else:
            self.view.show_rects(priors.boxes[priors.level_slice(level)].numpy(), color)
        self.view.set_cell(self._cell_box(level))
        self._report_counts(level, mode, note)

    def _report_counts(self, level: int, mode: str, note: str) -> None:
        v = self.view
        drawn = f"{v.rect_count} rectangles" if v.rect_count else f"{v.center_count} centres"
        row, col = self._cell
        kind = "points drawn as stride squares; " if self.trace.priors.is_point and v.rect_count else ""
        self.count_label.setText(f"P{level} {MODES[mode].lower()}: {kind}{drawn} drawn  ·  cell ({row}, {col})  ·  "
                                 f"{v.positive_count} GT positives drawn{note}")

    # ------------------------------------------------------------------ slots

    def _on_config_changed(self, index: int) -> None:
        config = self.config_combo.itemData(index)
        try:
            trace = trace_for_config(config)
        except Exception as exc:     # a user's config file: report, keep the previous trace on screen
            self.count_label.setText(f"error: cannot load {config}: {exc}")
            return
        self._show_trace(trace, self.config_combo.itemText(index))

    def _on_level_changed(self, _row: int) -> None:
        self._update_cell()
        self.redraw()

    def _on_cursor_moved(self, x: float, y: float) -> None:
        h, w = self.view.input_size
        inside = "" if 0 <= x <= w and 0 <= y <= h else "  (outside input)"
        self.cursor_label.setText(f"x {x:.1f}, y {y:.1f}{inside}")
