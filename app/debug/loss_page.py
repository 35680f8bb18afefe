"""Loss: what the current model's loss is made of on this image. Per-anchor classification loss
as a heat map per level; the negatives SSD's hard-negative mining picked, marked among all
negatives and listed hardest first (a row or a click on one explains it: its rank, its CE against
the cut, the GT it overlaps most, the class the model gives it); each positive's regression loss,
encoded target and decoded box; and a breakdown (per level, per GT, classification vs
regression, positives vs negatives) whose total is the detector's loss for this image.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.debug.anchors_page import draw_gt_tags, input_point
from app.debug.assign_page import why_text
from app.debug.debug_page import DebugPage
from app.debug_common import fill_table, make_table, select_data_row, selected_data_row
from app.theme import gt_color

__all__ = ["LossPage", "HARD_NEG_COLOR", "hard_negative_text"]

HARD_NEG_COLOR = theme.HARD_NEGATIVE
_NEG_COLOR = theme.NEGATIVE
_LEGEND = [("classification", theme.LOSS_CLS), ("regression", theme.LOSS_REG),     # the last two: pos vs neg
           ("cls, positives", theme.LOSS_POS), ("cls, negatives", theme.NEGATIVE)]


def hard_negative_text(trace, row: dict, class_names: list[str]) -> str:
    """Why this negative was mined, then why it is a negative at all (the assignment's "Why?")."""
    def name(k: int) -> str:
        return class_names[k] if 0 <= k < len(class_names) else str(k)
    cut = ("every negative was mined" if row["cut_ce"] is None
           else f"the hardest negative left out has CE {row['cut_ce']:.4f}")
    lines = [f"hard negative {row['rank']} of {row['mined']} mined from {row['negatives']} negatives "
             f"(the {row['mined']} largest cross entropies): its CE {row['ce']:.4f}; {cut}",
             f"  its share of loss_cls: {row['loss']:.5f}",
             f"  the model calls it {name(row['class'])!r} with p={row['score']:.3f}"
             + (f"; its best GT is GT{row['best_gt']} at IoU {row['best_iou']:.3f}" if row["best_gt"] is not None
                else "; the image has no GT")]
    return "\n".join(lines) + "\n" + why_text(trace, row["prior"], class_names)


class LossPage(DebugPage):
    needs_model = True

    def __init__(self, panel):
        super().__init__(panel)
        self.breakdown: dict | None = None
        self.legend: pg.LegendItem | None = None       # under the loss bars, made with them
        self._build()

    def _build(self) -> None:
        self.totals = QLabel()
        self.totals.setWordWrap(True)
        self.totals.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.show_negatives = QCheckBox("all negatives (faint)")
        self.heat = pg.GraphicsLayoutWidget()
        self.heat.setMinimumHeight(110)
        self.chart = pg.GraphicsLayoutWidget()
        self.chart.setMinimumHeight(150)
        self.table = make_table(["prior", "GT", "level", "cls loss", "reg loss", "target (encoded)", "decoded box"],
                                sortable=True)
        self.table.setToolTip("Click a positive: its prior (thin), GT (dashed) and the model's decoded box (thick)")
        self.hard_rows: list[dict] = []
        self.hard_table = make_table(["rank", "prior", "level", "CE", "loss", "best GT (IoU)", "model says"],
                                     sortable=True)
        self.hard_table.setToolTip("The negatives hard-negative mining picked, hardest first. Click one (or its box "
                                   "on the image): why it was mined and why it is a negative")
        self.hard_why = QPlainTextEdit()
        self.hard_why.setReadOnly(True)
        self.hard_why.setMaximumHeight(110)
        self.hard_why.setPlaceholderText("Click a hard negative (row or box): why it was mined")
        hard_page = QWidget()
        hard_layout = QVBoxLayout(hard_page)
        hard_layout.setContentsMargins(0, 0, 0, 0)
        hard_layout.addWidget(self.hard_table, 1)
        hard_layout.addWidget(self.hard_why)
        self.list_choice = QComboBox()
        self.list_choice.addItem("positives", "positives")
        self.list_choice.addItem("hard negatives", "hard")
        self.lists = QStackedWidget()
        self.lists.addWidget(self.table)
        self.lists.addWidget(hard_page)
        list_box = QWidget()
        list_layout = QVBoxLayout(list_box)
        list_layout.setContentsMargins(0, 0, 0, 0)
        choice_row = QHBoxLayout()
        choice_row.addWidget(QLabel("list"))
        choice_row.addWidget(self.list_choice, 1)
        list_layout.addLayout(choice_row)
        list_layout.addWidget(self.lists, 1)
        top = QHBoxLayout()
        top.addWidget(self.totals, 1)
        top.addWidget(self.show_negatives)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.chart)
        split.addWidget(self.heat)
        split.addWidget(list_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self.table.itemSelectionChanged.connect(self.redraw)
        self.hard_table.itemSelectionChanged.connect(self.redraw)
        self.list_choice.currentIndexChanged.connect(self._on_list_choice)
        self.show_negatives.toggled.connect(lambda _c: self.redraw())

    def _on_list_choice(self, _index: int) -> None:
        self.lists.setCurrentIndex(self.list_choice.currentIndex())
        self.redraw()

    def showing_hard(self) -> bool:
        return self.list_choice.currentData() == "hard"

    def show_result(self, result, overlay) -> None:  # a DebugResult
        super().show_result(result, overlay)
        it = result.main
        trace = it.trace
        if trace.loss is None:
            self.totals.setText("No loss: choose a model (random init or a checkpoint) above.")
            self.breakdown = None
            self.heat.clear()
            self.chart.clear()
            self.table.setRowCount(0)
            self.hard_rows = []
            self.hard_table.setRowCount(0)
            self.hard_why.clear()
            return
        self.breakdown = trace.loss_breakdown
        b = self.breakdown
        terms = " + ".join(f"{k} {v:.5f}" for k, v in b["terms"].items())
        hard = trace.hard_negative_mask
        mined = f"; hard negatives mined: {int(hard.sum())} of {trace.assign_result.num_neg}" if hard is not None else ""
        self.totals.setText(f"{it.model_name}: {terms} = <b>{b['total']:.5f}</b> (avg_factor {b['avg_factor']:.4g}); "
                            f"cls on positives {b['cls_positive']:.4f}, on negatives {b['cls_negative']:.4f}{mined}")
        draw_gt_tags(result, overlay)
        self._fill_hard_table(it)
        self._draw_anchors(it, overlay)
        self._fill_table(it)
        self._draw_chart(trace, b)
        self._draw_heat(trace)

    def _draw_anchors(self, it, overlay) -> None:
        trace = it.trace
        gt_inds = trace.assign_result.gt_inds
        hard = trace.hard_negative_mask
        if self.show_negatives.isChecked():
            centers = trace.priors.centers[gt_inds == 0].numpy()
            overlay.points("negatives", it.input.points_to_original(centers), _NEG_COLOR, size=2.0)
        if hard is not None and hard.any():
            overlay.rects("hard_negatives", it.to_original(trace.priors.boxes[hard].numpy(), clip=False),
                          HARD_NEG_COLOR, width=1.2, alpha=220)
        if self.showing_hard():
            self._draw_hard_selection(it, overlay)
            return
        row = selected_data_row(self.table)                 # an index into the positives, whatever the sort
        positives = self._positives(trace)
        if row is not None and 0 <= row < len(positives):
            prior = positives[row]
            k = int(gt_inds[prior]) - 1
            overlay.rects("selected", it.to_original(trace.priors.boxes[prior:prior + 1].numpy(), clip=False),
                          gt_color(k), width=1.0)
            decoded = it.decoded_predictions([prior]).numpy()
            overlay.rects("selected", it.to_original(decoded, clip=False), theme.FOCUS, width=3.0, z=3.7)
        else:
            for k in range(len(trace.gt_boxes)):
                mask = gt_inds == k + 1
                if mask.any():
                    overlay.rects("positives", it.to_original(trace.priors.boxes[mask].numpy(), clip=False),
                                  gt_color(k), width=1.5)

    def _draw_hard_selection(self, it, overlay) -> None:
        """The selected hard negative (thick, dashed) and the GT it overlaps most; the "why" text."""
        row = selected_data_row(self.hard_table)
        if row is None or not 0 <= row < len(self.hard_rows):
            self.hard_why.clear()
            return
        info = self.hard_rows[row]
        prior = info["prior"]
        overlay.rects("selected", it.to_original(it.trace.priors.boxes[prior:prior + 1].numpy(), clip=False),
                      theme.FOCUS, width=3.0, dash=True, z=3.8)
        self.hard_why.setPlainText(hard_negative_text(it.trace, info, self.panel.class_names()))

    def _fill_hard_table(self, it) -> None:
        """The mined negatives, hardest first (the engine's list; the selection kept by prior)."""
        old = selected_data_row(self.hard_table)
        old_prior = self.hard_rows[old]["prior"] if old is not None and old < len(self.hard_rows) else None
        self.hard_rows = it.trace.hard_negatives()
        names = self.panel.class_names()
        rows = [[r["rank"], f"#{r['prior']}", f"P{r['level']}", f"{r['ce']:.4f}", f"{r['loss']:.5f}",
                 "-" if r["best_gt"] is None else f"GT{r['best_gt']} ({r['best_iou']:.2f})",
                 f"{names[r['class']] if r['class'] < len(names) else r['class']} {r['score']:.2f}"]
                for r in self.hard_rows]
        self.hard_table.blockSignals(True)
        fill_table(self.hard_table, rows)
        keep = next((i for i, r in enumerate(self.hard_rows) if r["prior"] == old_prior), None)
        select_data_row(self.hard_table, keep)
        self.hard_table.blockSignals(False)
        self.list_choice.setItemText(1, f"hard negatives ({len(self.hard_rows)})" if it.trace.hard_negative_mask
                                     is not None else "hard negatives (this head does not mine)")

    def on_click(self, x: float, y: float) -> None:
        """A click on a mined negative's box (the hardest one there) lists and explains it."""
        it = self.result.main if self.result is not None else None
        if it is None or not self.hard_rows:
            return
        px, py = input_point(it, x, y)
        boxes = it.trace.priors.boxes[[r["prior"] for r in self.hard_rows]]
        inside = ((boxes[:, 0] <= px) & (px <= boxes[:, 2]) & (boxes[:, 1] <= py) & (py <= boxes[:, 3])).nonzero()
        if not len(inside):
            return
        self.list_choice.setCurrentIndex(1)
        select_data_row(self.hard_table, int(inside[0]))            # the rows are hardest first

    @staticmethod
    def _positives(trace) -> list[int]:
        return (trace.assign_result.gt_inds > 0).nonzero().view(-1).tolist()

    def _fill_table(self, it) -> None:
        """One row per positive: its prior, GT, level, each loss term (the head's further terms
        too: centerness, DFL, objectness), encoded target and decoded box."""
        trace = it.trace
        loss = trace.loss
        extra = loss.extra_per_prior() if hasattr(loss, "extra_per_prior") else {}
        headers = ["prior", "GT", "level", "cls loss", "reg loss",
                   *(f"{theme.LOSS_TERM_TEXT.get(k, k).split(' ')[0]} loss" for k in extra), "target (encoded)",
                   "decoded box"]
        if [self.table.horizontalHeaderItem(c).text() for c in range(self.table.columnCount())] != headers:
            self.table.setColumnCount(len(headers))
            self.table.setHorizontalHeaderLabels(headers)
        positives = self._positives(trace)
        decoded = it.decoded_predictions(positives)
        rows = []
        for n, prior in enumerate(positives):
            target = ", ".join(f"{v:.3f}" for v in trace.targets.bbox_targets[prior].tolist())
            box = ", ".join(f"{v:.1f}" for v in decoded[n].tolist())
            rows.append([f"#{prior}", f"GT{int(trace.assign_result.gt_inds[prior]) - 1}", f"P{int(trace.priors.level[prior])}",
                         f"{float(loss.cls_per_prior[prior]):.5f}", f"{float(loss.bbox_per_prior[prior]):.5f}",
                         *(f"{float(v[prior]):.5f}" for v in extra.values()), target, box])
        selected = selected_data_row(self.table)
        self.table.blockSignals(True)
        fill_table(self.table, rows)
        select_data_row(self.table, selected if selected is not None and selected < len(rows) else None)
        self.table.blockSignals(False)

    def _draw_chart(self, trace, b: dict) -> None:
        """Three bar plots: per level and per GT (every loss term of the head stacked: class, box,
        and centerness / DFL / objectness where the head has them), and positive vs negative cls."""
        self.chart.clear()
        names = list(b["per_level"])
        colors = theme.loss_term_colors(names)
        self._stacked(self.chart.addPlot(row=0, col=0, title="per level"), b["per_level"], names, colors, "P")
        plot = self.chart.addPlot(row=0, col=1, title="per GT (positives)")
        if len(b["per_gt"]["loss_cls"]):
            self._stacked(plot, b["per_gt"], names, colors, "GT")
        plot = self.chart.addPlot(row=0, col=2, title="cls: pos vs neg")
        plot.addItem(pg.BarGraphItem(x=[0, 1], height=[b["cls_positive"], b["cls_negative"]], width=0.6,
                                     brushes=[theme.LOSS_POS, theme.NEGATIVE]))
        plot.getAxis("bottom").setTicks([[(0, "pos"), (1, "neg")]])
        legend = self._legend(colors)
        self.chart.addItem(legend, row=1, col=0, colspan=3)
        height = legend.layout.effectiveSizeHint(Qt.SizeHint.PreferredSize).height()
        self.chart.ci.layout.setRowFixedHeight(1, height)          # the plots shrink first, never the legend

    @staticmethod
    def _stacked(plot, parts: dict, names: list[str], colors: dict, prefix: str) -> None:
        """One bar per entry, its terms stacked in ``names``' order."""
        n = len(parts[names[0]])
        x, base = np.arange(n), np.zeros(n)
        for name in names:
            height = np.asarray(parts[name], dtype=np.float64)
            plot.addItem(pg.BarGraphItem(x=x, y0=base.copy(), height=height, width=0.6, brush=colors[name],
                                         name=name))
            base += height
        plot.getAxis("bottom").setTicks([[(i, f"{prefix}{i}") for i in range(n)]])

    def _legend(self, colors: dict) -> pg.LegendItem:
        """One legend under the three plots: a swatch per bar colour (the samples are never drawn)."""
        self.legend = pg.LegendItem(colCount=2, horSpacing=12)
        entries = [(theme.LOSS_TERM_TEXT.get(n, n), c) for n, c in colors.items()]
        for name, color in entries + _LEGEND[2:]:
            self.legend.addItem(pg.BarGraphItem(x=[0], height=[1], width=1, brush=color, pen=None), name)
        for sample, _label in self.legend.items:
            sample.setAcceptedMouseButtons(Qt.MouseButton.NoButton)     # clicking would "hide" a sample
        return self.legend

    def _draw_heat(self, trace) -> None:
        """Classification loss per cell (summed over the cell's priors), one image per level."""
        self.heat.clear()
        cls = trace.loss.cls_per_prior.detach().float()
        for lv in range(trace.priors.num_levels):
            h, w = trace.priors.featmap_sizes[lv]
            grid = cls[trace.priors.level_slice(lv)].reshape(h, w, -1).sum(-1).numpy()
            view = self.heat.addViewBox(row=0, col=lv, lockAspect=True, invertY=True)
            image = pg.ImageItem(grid.T)
            image.setColorMap(pg.colormap.get("inferno"))
            view.addItem(image)
            self.heat.addItem(pg.LabelItem(f"P{lv} sum {grid.sum():.3g}", size="8pt"), row=1, col=lv)
