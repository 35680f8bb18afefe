"""Assignment: which priors the assigner makes positive (coloured by their GT), negative (faint)
or ignored (hatched); the assigner and its parameters; per-GT counts per level; a GT's IoU
heat map over each level's grid with the threshold contours; "Why?" for the prior under a
click; and a second parameter set side by side.

Selecting a GT (its table row, or a click inside its box) shows only its positives and its heat
map; clicking the row again, Esc, or a click on the image away from every GT and from the
selected GT's positives shows all GTs again. The counts line says what each drawing leaves out.
The GT table sorts by a header click (rows keep their GT index). In a narrow dock the "Compare
with" parameters sit under the first set (shown only while ticked), side by side when wide.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QBoxLayout,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.debug.anchors_page import coverage_rows, draw_gt_tags, input_point
from app.debug.debug_page import DebugPage
from app.debug_common import (
    ASSIGNER_PARAMS,
    data_row,
    fill_table,
    make_table,
    select_data_row,
    selected_data_row,
    threshold_slider,
)
from app.theme import gt_color, level_color
from detengine.api import REASON_TEXT, rule_numbers, rule_regions

__all__ = ["AssignPage", "ParamEditor", "why_text"]

_NEG_FAINT = theme.NEGATIVE
_IGNORED = theme.IGNORED
_SIDE_BY_SIDE_PX = 520          # from this page width the two parameter sets sit side by side (~255 px each)


def why_text(trace, prior: int, class_names: list[str]) -> str:
    """Why prior ``prior`` got its label: the rule, its IoU with each GT, the thresholds."""
    ar, priors = trace.assign_result, trace.priors
    gt = int(ar.gt_inds[prior])
    state = "positive for GT%d" % (gt - 1) if gt > 0 else "negative" if gt == 0 else "ignored"
    reason = REASON_TEXT.get(int(ar.reasons[prior]), "?") if ar.reasons is not None else "?"
    x1, y1, x2, y2 = priors.boxes[prior].tolist()
    lines = [f"prior #{prior}: level P{int(priors.level[prior])}, cell (row {int(priors.row[prior])}, "
             f"col {int(priors.col[prior])}), base #{int(priors.base_index[prior])}",
             f"  box (input px) ({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}), {x2 - x1:.1f} x {y2 - y1:.1f}",
             f"  label: {state}", f"  rule: {reason}"]
    lines += ["  " + text for text in _grouped(ar.why_per_gt(prior))]     # per-GT rules (FCOS, TOOD, SimOTA)
    numbers = rule_numbers(trace, prior)              # what FCOS / SimOTA compared (not the cell's IoU)
    lines += ["  " + text for text in numbers]
    iou = trace.iou
    for k in range(len(trace.gt_boxes) if not numbers else 0):
        label = int(trace.gt_labels[k])
        name = class_names[label] if label < len(class_names) else str(label)
        lines.append(f"  IoU with GT{k} ({name}): {float(iou[k, prior]):.3f}")
    params = {k: v for k, v in trace.assigner_params.items() if isinstance(v, (int, float, bool, tuple))}
    lines.append(f"  {trace.assigner_name}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    for key in ("atss_threshold",):
        if key in ar.extras and gt > 0:
            lines.append(f"  ATSS threshold of GT{gt - 1}: {float(ar.extras[key][gt - 1]):.3f}")
    return "\n".join(lines)


def _grouped(lines: list[str]) -> list[str]:
    """``GTk: <rule>`` lines with one rule for several GTs as one line (``GT0, GT2: <rule>``)."""
    gts: dict[str, list[str]] = {}
    for line in lines:
        gt, _, rule = line.partition(": ")
        gts.setdefault(rule, []).append(gt)
    return [f"{', '.join(names)}: {rule}" for rule, names in gts.items()]


def _smallest_containing(boxes: np.ndarray, x: float, y: float) -> int | None:
    """Index of the smallest of ``boxes`` (N, 4) xyxy containing (x, y), or None."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    inside = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
    if not inside.any():
        return None
    area = np.where(inside, (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), np.inf)
    return int(np.argmin(area))


def _class_defaults(kind: str) -> dict:
    """The constructor defaults of an assigner class (what mmdetection gives when a config
    names the type and nothing else)."""
    import inspect as _inspect

    from detengine.api import REGISTRY
    cls = REGISTRY["assigner"].get(kind)
    if cls is None:
        return {}
    return {n: p.default for n, p in _inspect.signature(cls.__init__).parameters.items()
            if p.default is not _inspect.Parameter.empty and isinstance(p.default, (int, float))}


class ParamEditor(QWidget):
    """An assigner type and its parameters; ``changed`` on any edit."""

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.base: dict = {}
        self.built: dict = {}                          # the assigner's values as the config builds it
        self.touched: set[str] = set()                 # only what the user changed is sent as an override
        self.type_combo = QComboBox()
        for name in ASSIGNER_PARAMS:
            self.type_combo.addItem(name, name)
        self.form = QFormLayout()
        self.widgets: dict[str, QWidget] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.type_combo)
        layout.addLayout(self.form)
        self.type_combo.currentIndexChanged.connect(self._on_type)

    def set_base(self, assigner: dict, built: dict | None = None) -> None:
        """The config's assigner: its type is the starting point; the widgets show the values
        the built assigner really uses (``built``: its parameters, defaults included)."""
        self.base = dict(assigner)
        self.built = dict(built or {})
        self.type_combo.blockSignals(True)
        self.type_combo.setCurrentIndex(max(0, self.type_combo.findData(assigner.get("type"))))
        self.type_combo.blockSignals(False)
        self._rebuild({**self.built, **assigner})

    def _on_type(self, _index: int) -> None:
        kind = self.type_combo.currentData()
        self._rebuild({**self.built, **self.base} if kind == self.base.get("type") else _class_defaults(kind))
        self.changed.emit()

    def _rebuild(self, values: dict) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.widgets = {}
        self.touched = set()
        for name, kind, lo, hi, step in ASSIGNER_PARAMS[self.type_combo.currentData()]:
            value = values.get(name)
            if isinstance(value, (list, tuple)):          # a (lo, hi) negative range: not editable here
                continue
            widget = self._make(kind, lo, hi, step, value, name)
            self.widgets[name] = widget
            self.form.addRow(name, widget)

    def _make(self, kind, lo, hi, step, value, name) -> QWidget:
        def on_change():
            self.touched.add(name)
            self.changed.emit()
        if kind == "bool":
            box = QCheckBox()
            box.setChecked(bool(value))
            box.toggled.connect(lambda _on: on_change())
            return box
        if kind == "thr":
            slider = threshold_slider(on_change, value if value is not None else 0.5)
            return slider.row
        spin = QSpinBox() if kind == "int" else QDoubleSpinBox()
        spin.setRange(lo, hi)
        spin.setSingleStep(step)
        if value is not None:
            spin.setValue(value)
        spin.valueChanged.connect(lambda _v: on_change())
        return spin

    def set_value(self, name: str, value: float) -> None:
        widget = self.widgets[name]
        if hasattr(widget, "slider"):
            widget.slider.setValue(int(round(value * 100)))
        elif isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        else:
            widget.setValue(value)

    def values(self) -> dict:
        """The parameters the user changed (the others stay what the config / the class says)."""
        out = {}
        for name, widget in self.widgets.items():
            if name in self.touched:
                out[name] = widget.slider.value() / 100 if hasattr(widget, "slider") else \
                    widget.isChecked() if isinstance(widget, QCheckBox) else widget.value()
        return out

    def assigner(self) -> dict:
        kind = self.type_combo.currentData()
        if kind == self.base.get("type"):
            return {**self.base, **self.values()}
        return {"_delete_": True, "type": kind, **self.values()}


class AssignPage(DebugPage):
    def __init__(self, panel):
        super().__init__(panel)
        self.selected_gt: int | None = None
        self.why_prior: int | None = None
        self.color_bar: pg.ColorBarItem | None = None       # the IoU heat map's scale, while one is drawn
        self._build()
        self.config_changed(panel.cfg)

    def _build(self) -> None:
        self.editor_a = ParamEditor()
        self.compare_box = QCheckBox("Compare with")
        self.editor_b = ParamEditor()
        self.editor_b.setEnabled(False)
        self.show_neg = QCheckBox("negatives (faint)")
        self.show_ignored = QCheckBox("ignored (hatched)")
        self.show_ignored.setChecked(True)
        self.table = make_table(["GT", "class", "positives", "per level", "B positives"], sortable=True)
        self.table.setToolTip("Click a GT: only its positives, and its IoU heat map per level. Click it again, "
                              "press Esc or click the image away from the GTs: all GTs. Double-click: zoom to it")
        self.table.viewport().installEventFilter(self)
        self.heat = pg.GraphicsLayoutWidget()
        self.heat.setMinimumHeight(120)
        self.counts = QLabel()
        self.counts.setWordWrap(True)
        self.why = QPlainTextEdit()
        self.why.setReadOnly(True)
        self.why.setPlaceholderText("Click an anchor on the image: why did it get its label? (A click inside a GT "
                                    "box also selects that GT; a click away from the GTs shows them all)")
        self.params = params = QBoxLayout(QBoxLayout.Direction.TopToBottom)     # side by side when wide
        params.addWidget(self.editor_a, 1)
        side = QVBoxLayout()
        side.addWidget(self.compare_box)
        side.addWidget(self.editor_b)
        params.addLayout(side, 1)
        shows = QHBoxLayout()                    # the two boxes say what they show: fits a ~280 px dock
        shows.addWidget(self.show_neg)
        shows.addWidget(self.show_ignored)
        shows.addStretch(1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.heat)
        split.addWidget(self.why)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(params)
        layout.addLayout(shows)
        layout.addWidget(self.counts)
        layout.addWidget(split, 1)
        self.editor_a.changed.connect(self.changed)
        self.editor_b.changed.connect(lambda: self.changed.emit() if self.compare_box.isChecked() else None)
        self.compare_box.toggled.connect(self._on_compare)
        self.show_neg.toggled.connect(lambda _c: self.redraw())
        self.show_ignored.toggled.connect(lambda _c: self.redraw())
        self.table.itemSelectionChanged.connect(self._on_gt_selected)
        self.table.cellDoubleClicked.connect(lambda row, _c: self.zoom_to_gt(data_row(self.table, row)))
        self._arrange_params()                       # after the layout parents editor_b (else it is a window)

    # ------------------------------------------------------------------ parameters

    def config_changed(self, cfg: dict) -> None:
        from detengine.api import head_core_for
        assigner = (cfg["model"].get("train_cfg") or {}).get("assigner") or {}
        try:
            core = head_core_for(cfg["model"])
            built = {k: v for k, v in vars(core.assigner).items() if isinstance(v, (int, float))}
            assigner = {"type": type(core.assigner).__name__, **assigner}
        except (ValueError, KeyError, TypeError) as exc:  # the trace reports the same error in full
            self.panel.message.emit(f"assigner parameters unavailable: {exc}")
            built = {}
        for editor in (self.editor_a, self.editor_b):
            editor.set_base(assigner, built)

    def _on_compare(self, on: bool) -> None:
        self.editor_b.setEnabled(on)
        self._arrange_params()
        self.changed.emit()

    def _arrange_params(self) -> None:
        """The two parameter sets side by side from ``_SIDE_BY_SIDE_PX`` wide, else one under
        the other with the second shown only while "Compare with" is ticked."""
        wide = self.width() >= _SIDE_BY_SIDE_PX
        direction = QBoxLayout.Direction.LeftToRight if wide else QBoxLayout.Direction.TopToBottom
        if self.params.direction() != direction:
            self.params.setDirection(direction)
        self.editor_b.setVisible(wide or self.compare_box.isChecked())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._arrange_params()

    def _overrides(self, editor: ParamEditor) -> dict | None:
        assigner = editor.assigner()
        if assigner == editor.base:
            return None
        return {"train_cfg": {"assigner": assigner}}

    def model_overrides(self) -> dict | None:
        return self._overrides(self.editor_a)

    def compare_overrides(self) -> dict | None:
        if not self.compare_box.isChecked():
            return None
        return self._overrides(self.editor_b) or {}

    # ------------------------------------------------------------------ drawing

    def show_result(self, result, overlay) -> None:  # a DebugResult
        super().show_result(result, overlay)
        it = result.main
        trace = it.trace
        names = self.panel.class_names()
        cov_rows, _ = coverage_rows(it, names)
        other = result.compare
        rows, colors = [], []
        for k, row in enumerate(cov_rows):
            per_level = trace.coverage.num_pos_per_level[k].tolist()
            b = int(other.trace.coverage.num_pos[k]) if other is not None else "-"
            rows.append([row[0], row[1], int(trace.coverage.num_pos[k]),
                         " ".join(f"P{lv}:{n}" for lv, n in enumerate(per_level) if n) or "none", b])
            colors.append(QColor(theme.PROBLEM) if int(trace.coverage.num_pos[k]) == 0 else gt_color(k).darker(160))
        self.table.blockSignals(True)
        fill_table(self.table, rows, colors)
        if self.selected_gt is not None and self.selected_gt >= len(rows):
            self.selected_gt = None
        select_data_row(self.table, self.selected_gt)
        self.table.blockSignals(False)
        draw_gt_tags(result, overlay, self.selected_gt)
        self._draw_labels(it, overlay)
        self._draw_rule_regions(it, overlay)
        if other is not None:
            self._draw_b_positives(other, overlay)
        self._draw_heat(it)
        if self.why_prior is not None and self.why_prior < len(trace.priors):
            self._draw_why(it, overlay, self.why_prior)
        counts = self.counts_text(trace)
        if other is not None:
            o = other.trace.assign_result
            counts += (f"  |  B {other.trace.assigner_name}: {o.num_pos} / {o.num_neg} / {o.num_ignored} "
                       f"(B's positives dashed)")
        self.counts.setText(counts)

    def counts_text(self, trace) -> str:
        """``MaxIoUAssigner: 29 positive, 8703 negative (hidden: ...), 17 ignored``: every count
        the image does not show in full says so."""
        ar = trace.assign_result
        pos = f"{ar.num_pos} positive"
        if self.selected_gt is not None:
            k = self.selected_gt
            pos += f" (showing GT{k}'s {int((ar.gt_inds == k + 1).sum())} only; Esc: all GTs)"
        neg = f"{ar.num_neg} negative"
        if ar.num_neg and not self.show_neg.isChecked():
            neg += " (hidden: tick 'negatives')"
        ignored = f"{ar.num_ignored} ignored"
        if ar.num_ignored and not self.show_ignored.isChecked():
            ignored += " (hidden: tick 'ignored')"
        return f"{trace.assigner_name}: {pos}, {neg}, {ignored}"

    def _draw_labels(self, it, overlay) -> None:
        trace = it.trace
        gt_inds = trace.assign_result.gt_inds
        boxes = trace.priors.boxes
        for k in range(len(trace.gt_boxes)):
            if self.selected_gt is not None and k != self.selected_gt:
                continue
            mask = gt_inds == k + 1
            if mask.any():
                overlay.rects("positives", it.to_original(boxes[mask].numpy(), clip=False), gt_color(k), width=1.5)
        if self.show_ignored.isChecked():              # a GT's selection hides other GTs' positives only
            mask = gt_inds == -1
            if mask.any():
                overlay.rects("ignored", it.to_original(boxes[mask].numpy(), clip=False), _IGNORED, width=1.0,
                              alpha=200, brush=Qt.BrushStyle.BDiagPattern)
        if self.show_neg.isChecked():
            mask = gt_inds == 0
            centers = trace.priors.centers[mask].numpy()
            overlay.points("negatives", it.input.points_to_original(centers), _NEG_FAINT, size=2.0)

    def _draw_rule_regions(self, it, overlay) -> None:
        """The selected GT's rule regions (FCOS: regress-range bounds, centre regions; SimOTA:
        centre regions), dotted in their level's colour with a tag."""
        if self.selected_gt is None:
            return
        for region in rule_regions(it.trace, self.selected_gt):
            box = it.to_original([region.box], clip=False)
            color = level_color(region.level)
            overlay.rects("rule_regions", box, color, width=2.0, dash=True, z=3.6)
            x1, y1, x2, y2 = box[0]
            overlay.text("rule_tags", x1 if region.kind == "centre" else x2, y1 if region.kind == "centre" else y2,
                         region.label, color)

    def _draw_b_positives(self, other, overlay) -> None:
        """The compared assigner's positives, dashed in their GT's colour (the same GT selection)."""
        gt_inds, boxes = other.trace.assign_result.gt_inds, other.trace.priors.boxes
        for k in range(len(other.trace.gt_boxes)):
            if self.selected_gt is not None and k != self.selected_gt:
                continue
            mask = gt_inds == k + 1
            if mask.any():
                overlay.rects("positives_b", other.to_original(boxes[mask].numpy(), clip=False), gt_color(k),
                              width=1.0, dash=True)

    def _draw_heat(self, it) -> None:
        """The selected GT's IoU with each level's priors (max over a cell's base priors), with
        contours at the assigner's thresholds."""
        self.heat.clear()
        self.color_bar = None
        k = self.selected_gt
        trace = it.trace
        if k is None or k >= len(trace.gt_boxes):
            self.heat.addLabel("Click a GT in the table: its IoU with every prior, per level (max over a cell's "
                               "priors), with the thresholds as contours", size="9pt")
            return
        iou = trace.iou[k]
        params = trace.assigner_params
        levels = [thr for thr in (params.get("pos_iou_thr"), params.get("neg_iou_thr")) if isinstance(thr, float)]
        images = []
        for lv in range(trace.priors.num_levels):
            h, w = trace.priors.featmap_sizes[lv]
            grid = iou[trace.priors.level_slice(lv)].reshape(h, w, -1).amax(-1).numpy()
            view = self.heat.addViewBox(row=0, col=lv, lockAspect=True, invertY=True)
            image = pg.ImageItem(grid.T, levels=(0, 1))
            view.addItem(image)
            images.append(image)
            for thr, color in zip(levels, (theme.CONTOUR_POS, theme.CONTOUR_NEG)):
                curve = pg.IsocurveItem(grid.T, level=thr, pen=pg.mkPen(color, width=2))
                view.addItem(curve)
            label = pg.LabelItem(f"P{lv}<br>{grid.max():.2f}", size="8pt")     # two lines: six levels fit ~330 px
            self.heat.addItem(label, row=1, col=lv)
        self.heat.addItem(self._iou_color_bar(images), row=2, col=0, colspan=trace.priors.num_levels)   # adds no width

    def _iou_color_bar(self, images: list) -> pg.ColorBarItem:
        """The IoU scale of every level's heat map (fixed 0..1; viridis); it also colours them."""
        self.color_bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=pg.colormap.get("viridis"), label="IoU (under each level: its max)",
                                         interactive=False, width=10, orientation="horizontal",
                                         colorMapMenu=False)
        self.color_bar.setImageItem(images)
        return self.color_bar

    def _on_gt_selected(self) -> None:
        self.selected_gt = selected_data_row(self.table)
        self.redraw()

    def select_gt(self, k: int | None) -> None:
        """Show GT ``k`` alone (its positives, its heat map), or all GTs (``None``)."""
        if k is None:
            self.table.clearSelection()
            self.selected_gt = None
            self.redraw()
        else:
            select_data_row(self.table, k)

    def on_escape(self) -> None:
        """Esc: back to all GTs; with none selected, drop the "Why?" mark."""
        if self.selected_gt is not None:
            self.select_gt(None)
        elif self.why_prior is not None:
            self.why_prior = None
            self.why.clear()
            self.redraw()

    def eventFilter(self, watched, event) -> bool:
        """A press on the selected GT's row deselects it (the table alone would keep it)."""
        if (watched is self.table.viewport() and event.type() == QEvent.Type.MouseButtonPress
                and event.button() == Qt.MouseButton.LeftButton and self.selected_gt is not None
                and data_row(self.table, self.table.rowAt(int(event.position().y()))) == self.selected_gt):
            self.select_gt(None)
            return True
        return super().eventFilter(watched, event)

    def zoom_to_gt(self, k: int) -> None:
        it = self.result.main if self.result is not None else None
        if it is not None and 0 <= k < len(it.trace.gt_boxes):
            self.panel.canvas.zoom_to_rect(*it.to_original(it.trace.gt_boxes[k:k + 1].numpy())[0].tolist())

    # ------------------------------------------------------------------ Why?

    def on_click(self, x: float, y: float) -> None:
        """Why? for the prior under the click; the GT selection follows the click (the selected
        GT stays while the click is on it or on one of its positives)."""
        it = self.result.main
        self.why_prior = self.prior_at(it, x, y)
        k = self.selected_gt
        if k is None or not self._on_gt_or_its_positives(it, k, x, y):
            k = self.gt_at(it, x, y)
        if k != self.selected_gt:
            self.select_gt(k)
        else:
            self.redraw()

    @staticmethod
    def gt_at(it, x: float, y: float) -> int | None:
        """The smallest traced GT whose box (original pixels) contains (x, y)."""
        return _smallest_containing(it.to_original(it.trace.gt_boxes.numpy()), x, y)

    @staticmethod
    def _on_gt_or_its_positives(it, k: int, x: float, y: float) -> bool:
        trace = it.trace
        boxes = [it.to_original(trace.gt_boxes[k:k + 1].numpy())]
        mask = trace.assign_result.gt_inds == k + 1
        if mask.any():
            boxes.append(it.to_original(trace.priors.boxes[mask].numpy(), clip=False))
        return _smallest_containing(np.concatenate(boxes), x, y) is not None

    def prior_at(self, it, x: float, y: float) -> int:
        """The prior a click means: among the priors whose cell contains the click (every level), a
        positive one if any (point assigners do not go by the cell's IoU), then the one with the
        highest IoU with any GT (the most interesting one); ties to the finest level."""
        trace = it.trace
        px, py = input_point(it, x, y)
        candidates = []
        for lv in range(trace.priors.num_levels):
            row, col = trace.priors.cell_at(lv, px, py)
            candidates += trace.priors.cell_indices(lv, row, col).tolist()
        iou = trace.iou
        best = iou[:, candidates].amax(0) if len(trace.gt_boxes) else torch.zeros(len(candidates))
        best = best + 2.0 * (trace.assign_result.gt_inds[candidates] > 0)   # a positive first (FCOS, SimOTA)
        return candidates[int(torch.argmax(best))]

    def _draw_why(self, it, overlay, prior: int) -> None:
        box = it.to_original(it.trace.priors.boxes[prior:prior + 1].numpy(), clip=False)
        overlay.rects("why", box, theme.FOCUS, width=3.0, dash=True, z=3.8)
        self.why.setPlainText(why_text(it.trace, prior, self.panel.class_names()))
