"""The Training dock's curves: losses (smoothed, TensorBoard's debiased moving average), learning
rate, AP / AP50 and the share of GTs without a positive (by COCO size), over iterations or
epochs; the runs overlaid from the Runs tab dashed in their own colour; a legend row above each
plot that reads out the values under the cursor. It draws the :class:`RunCurves` its ``source``
gives at each redraw and keeps no run state of its own beyond its drawn items."""
from __future__ import annotations

import bisect

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from app import theme
from app.compact import narrow_combo
from detengine.api import RunCurves

__all__ = ["CurvePlots", "smooth", "Smoother", "cut_curves", "add_event", "ALL_TERMS", "STARVED_CURVES"]

_CURVE_COLORS = theme.CURVE_COLORS
# the starved-GT curves: assign/gt_zero_pos_frac + suffix, and their legend names
STARVED_CURVES = (("", "all"), ("_small", "small"), ("_medium", "medium"), ("_large", "large"))
_RUN_COLORS = theme.RUN_COLORS     # overlaid runs, one colour each (bright on the plots' black)
_TERM_DASHES = (Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine, Qt.PenStyle.DashDotDotLine)
ALL_TERMS = "*"                    # overlay every loss term of the overlaid runs

def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style exponential moving average, debiased (the first points are not pulled
    towards 0). Called at most every 200 ms (the redraw is coalesced)."""
    values = np.asarray(values, dtype=np.float64)
    if weight <= 0 or len(values) == 0:
        return values
    out = np.empty_like(values)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(values.tolist()):
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out


class Smoother:
    """:func:`smooth` of a growing series, extended incrementally: a new point costs O(1), not a
    pass over the whole history (245 ms per redraw of a 500k-point curve before)."""

    def __init__(self):
        self.weight, self.acc, self.norm, self.out = None, 0.0, 0.0, []

    def __call__(self, values, weight: float) -> np.ndarray:
        if weight <= 0:
            return np.asarray(values, dtype=np.float64)
        if weight != self.weight or len(values) < len(self.out):  # another weight, or another run
            self.weight, self.acc, self.norm, self.out = weight, 0.0, 0.0, []
        for v in values[len(self.out):]:
            self.acc = weight * self.acc + (1 - weight) * v
            self.norm = weight * self.norm + (1 - weight)
            self.out.append(self.acc / self.norm)
        return np.asarray(self.out, dtype=np.float64)


def cut_curves(curves: RunCurves, step: int) -> None:
    """Drop the points of ``curves`` from global step ``step`` on: a run resumed from a
    checkpoint older than its last logged iteration (a killed run) goes on from there."""
    n = bisect.bisect_left(curves.steps, step)
    del curves.steps[n:]
    del curves.lr[n:]
    for values in curves.losses.values():
        del values[n:]
    curves.evals[:] = [e for e in curves.evals if e[0] < step]


def add_event(curves: RunCurves, event: dict) -> None:
    """``curves.add(event)``, iterations that go back (a resumed run) replacing the later points."""
    if event.get("type") == "iter" and curves.steps and int(event["global_step"]) <= curves.steps[-1]:
        cut_curves(curves, int(event["global_step"]))
    curves.add(event)


class CurvePlots(QWidget):
    """The Curves tab: smoothing, x axis, which term of the overlaid runs, and the four plots."""

    def __init__(self, source, parent=None):
        """``source()``: (the shown run's curves or None, overlaid runs {name: curves}, iterations
        per epoch {run name: n}) as they are now."""
        super().__init__(parent)
        self.source = source
        self._ipe: dict[str, int] = {}                     # run name -> iterations per epoch (x in epochs)
        self._curve_items: dict[tuple, tuple] = {}        # key -> (plot, item), made once, updated with setData
        self._smoothers: dict[tuple, Smoother] = {}
        self._legend_entries: dict = {}                    # plot -> [(key, run, name, colour, dashed)]
        self._hover_x: float | None = None                 # the cursor's x on the plots, None: not over them
        self._build()
        narrow_combo(self.overlay_term)
        narrow_combo(self.x_axis, 9)
        self._layout()
        self.smoothing.valueChanged.connect(lambda _v: self.redraw())
        self.x_axis.currentIndexChanged.connect(lambda _i: self._on_x_axis())
        self.overlay_term.currentIndexChanged.connect(lambda _i: self.redraw())
        self.plots.scene().sigMouseMoved.connect(self._on_mouse_moved)

    def forget(self, run_name: str) -> None:
        """Drop the smoothing kept for ``run_name``'s curves (a run started again under that name)."""
        self._smoothers = {k: v for k, v in self._smoothers.items() if k[0] != run_name}

    def _build(self) -> None:
        """Three x-linked plots, each under a legend row (outside the data) that also reads out
        the values at the cursor."""
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(60)
        self.x_axis = QComboBox()
        self.x_axis.addItem("iterations", "iterations")
        self.x_axis.addItem("epochs", "epochs")
        self.overlay_term = QComboBox()
        self.overlay_term.setToolTip("Which loss term of the overlaid runs to draw (their lr and AP are drawn too)")
        self.overlay_term.addItem("loss", "loss")
        self.overlay_term.addItem("every loss term", ALL_TERMS)
        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setMinimumHeight(560)                   # four readable plots: the dock scrolls, they never squash
        self.smoothing.setMinimumWidth(60)
        self.legends: dict = {}                            # plot -> (title, LabelItem above it)
        self.cursors: dict = {}                            # plot -> vertical line at the cursor
        self.loss_plot = self._add_plot(0, "loss")
        self.loss_plot.setDownsampling(auto=True, mode="peak")
        self.loss_plot.setClipToView(True)
        self.lr_plot = self._add_plot(1, "learning rate")
        self.ap_plot = self._add_plot(2, "AP / AP50 (val)")
        self.starved_plot = self._add_plot(3, "GTs without a positive, % (by COCO size)")
        for plot in (self.lr_plot, self.ap_plot, self.starved_plot):
            plot.setXLink(self.loss_plot)                  # one x axis: an evaluation sits under its iteration
        self.ap_plot.setYRange(0, 1)
        self.starved_plot.setLabel("bottom", "iteration")
        grid = self.plots.ci.layout
        for row, stretch in ((1, 2), (3, 1), (5, 1), (7, 1)):      # the loss plot gets the most height
            grid.setRowStretchFactor(row, stretch)

    def _add_plot(self, index: int, title: str):
        legend = self.plots.addLabel("", row=2 * index, col=0, justify="left", size="8pt")
        plot = self.plots.addPlot(row=2 * index + 1, col=0)
        cursor = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(theme.OVERLAY_CURVE,
                                                                        style=Qt.PenStyle.DotLine))
        cursor.hide()
        plot.addItem(cursor, ignoreBounds=True)
        self.legends[plot] = (title, legend)
        self.cursors[plot] = cursor
        return plot

    def _layout(self) -> None:
        row = QHBoxLayout()
        row.addWidget(QLabel("smoothing"))
        row.addWidget(self.smoothing, 1)
        row.addWidget(QLabel("x"))
        row.addWidget(self.x_axis)
        overlay_row = QHBoxLayout()                        # a second row: the panel fits a narrow dock
        overlay_row.addWidget(QLabel("overlaid runs draw"))
        overlay_row.addWidget(self.overlay_term, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addLayout(overlay_row)
        layout.addWidget(self.plots, 1)

    def redraw(self) -> None:
        """Draw the source's shown run and overlaid runs. Curve items are made once and updated
        with ``setData`` (smoothing extended per point); items of curves no longer shown are
        removed. Overlaid runs first, one colour each."""
        shown, overlays, self._ipe = self.source()
        weight = self.smoothing.value() / 100
        self._shown, entries = set(), {plot: [] for plot in self.legends}
        for n, run in enumerate(overlays.values()):
            if run.steps:
                self._draw_overlay(run, _RUN_COLORS[n % len(_RUN_COLORS)], weight, entries)
        run = shown
        if run is not None and run.steps:
            self._draw_run(run, weight, entries)
        for key in [k for k in self._curve_items if k not in self._shown]:
            plot, item = self._curve_items.pop(key)
            plot.removeItem(item)
        self._legend_entries = entries
        self._fit_ap_axis()
        self._update_legends()

    def _put(self, plot, key, x, y, pen, entries, entry, **style) -> None:
        """Draw (or update) one curve; ``entry``: its legend line (run, name, colour, dashed)."""
        if key not in self._curve_items:
            self._curve_items[key] = (plot, plot.plot(**style))
        item = self._curve_items[key][1]
        item.setPen(pen)
        item.setData(x, y)
        self._shown.add(key)
        entries[plot].append((key, *entry))

    def _draw_run(self, run: RunCurves, weight: float, entries) -> None:
        x = self._x(run, run.steps)
        for n, (name, values) in enumerate(run.losses.items()):
            color = _CURVE_COLORS[n % len(_CURVE_COLORS)]
            self._put(self.loss_plot, ("loss", name), x, self._smoothed((run.name, name), values, weight),
                      pg.mkPen(color, width=1.5), entries, ("", name, color, False))
        self._put(self.lr_plot, ("lr",), x, run.lr, pg.mkPen(theme.LR_CURVE), entries,
                  ("", "lr", theme.LR_CURVE, False))
        if run.evals:
            ex = self._x(run, [s for s, _, _ in run.evals])
            for k, (name, color, symbol) in enumerate((("AP", theme.AP_CURVE, "o"), ("AP50", theme.AP50_CURVE, "t"))):
                self._put(self.ap_plot, (name,), ex, [e[k + 1] for e in run.evals], pg.mkPen(color), entries,
                          ("", name, color, False), symbol=symbol, symbolSize=6, symbolBrush=color, symbolPen=color)
        for n, (suffix, label) in enumerate(STARVED_CURVES):    # the trainer's assign/* at its log interval
            points = run.assign.get(f"assign/gt_zero_pos_frac{suffix}")
            if points:
                color = _CURVE_COLORS[n % len(_CURVE_COLORS)]
                self._put(self.starved_plot, ("starved", suffix), self._x(run, [s for s, _ in points]),
                          [100 * v for _, v in points], pg.mkPen(color, width=1.5), entries, ("", label, color, False))

    def _draw_overlay(self, run: RunCurves, color: str, weight: float, entries) -> None:
        """Another run's chosen loss term(s), lr and AP / AP50, dashed, in the run's colour."""
        x = self._x(run, run.steps)
        choice = self.overlay_term.currentData() or "loss"
        terms = list(run.losses) if choice == ALL_TERMS else [t for t in (choice,) if t in run.losses]
        for k, term in enumerate(terms):
            self._put(self.loss_plot, ("overlay", run.name, "loss", term), x,
                      self._smoothed((run.name, term), run.losses[term], weight),
                      pg.mkPen(color, width=1, style=_TERM_DASHES[k % len(_TERM_DASHES)]), entries,
                      (run.name, term, color, True))
        dashed = pg.mkPen(color, width=1, style=Qt.PenStyle.DashLine)
        self._put(self.lr_plot, ("overlay", run.name, "lr"), x, run.lr, dashed, entries, (run.name, "lr", color, True))
        if run.evals:
            ex = self._x(run, [s for s, _, _ in run.evals])
            for k, (name, symbol) in enumerate((("AP", "o"), ("AP50", "t"))):
                self._put(self.ap_plot, ("overlay", run.name, name), ex, [e[k + 1] for e in run.evals], dashed,
                          entries, (run.name, name, color, True), symbol=symbol, symbolSize=6, symbolBrush=color,
                          symbolPen=color)

    def _x(self, run: RunCurves, steps) -> np.ndarray:
        """Iterations done at each point (global step + 1), or epochs (iterations / per epoch)."""
        x = np.asarray(steps, dtype=np.float64) + 1
        if self.x_axis.currentData() == "epochs":
            x /= self._ipe.get(run.name) or 1
        return x

    def _on_x_axis(self) -> None:
        self.starved_plot.setLabel("bottom", "epoch" if self.x_axis.currentData() == "epochs" else "iteration")
        self.redraw()
        self.loss_plot.enableAutoRange(x=True)

    def _fit_ap_axis(self) -> None:
        """AP from 0 to a little above the best shown (at least 0.05: one small value is still a
        readable plot, not a degenerate range), at most 1."""
        values = [float(v) for plot, item in self._curve_items.values() if plot is self.ap_plot
                  for v in (item.yData if item.yData is not None else ())]
        top = 1.0 if not values else min(1.0, max(0.05, 1.15 * max(values)))
        self.ap_plot.setYRange(min(0.0, *values) if values else 0.0, top, padding=0.02)

    def _smoothed(self, key, values, weight: float) -> np.ndarray:
        smoother = self._smoothers.get(key)
        if smoother is None:
            smoother = self._smoothers[key] = Smoother()
        return smoother(values, weight)

    # ------------------------------------------------------------------ legends and the read-out

    def _on_mouse_moved(self, pos) -> None:
        for plot in self.legends:
            if plot.vb.sceneBoundingRect().contains(pos):
                self.set_hover(plot.vb.mapSceneToView(pos).x())
                return
        self.set_hover(None)

    def set_hover(self, x: float | None) -> None:
        """The read-out at ``x`` (None: none): a line through the plots, the values in the legends."""
        self._hover_x = x
        for cursor in self.cursors.values():
            cursor.setVisible(x is not None)
            if x is not None:
                cursor.setValue(x)
        self._update_legends()

    def _update_legends(self) -> None:
        """Above each plot: its title (and the cursor's x), then each shown curve in its colour
        (with its value at the cursor), one line for this run and one per overlaid run."""
        unit = "epoch" if self.x_axis.currentData() == "epochs" else "iteration"
        for plot, (title, label) in self.legends.items():
            lines: dict[str, list[str]] = {"": [f"<b>{title}</b>"]}
            if self._hover_x is not None:
                lines[""].append(f"{unit} {self._hover_x:.4g}:")
            for key, run, name, color, dashed in self._legend_entries.get(plot, ()):
                mark = "┅" if dashed else "━"
                lines.setdefault(run, [run + ":"] if run else []).append(
                    f'<span style="color: {color}">{mark} {name}{self._value_text(plot, key)}</span>')
            label.setText("<br>".join("&nbsp;&nbsp;".join(parts) for parts in lines.values()))

    def _value_text(self, plot, key) -> str:
        """`` 0.512`` (the curve's point nearest the cursor), with ``@x`` when that point is far."""
        x = self._hover_x
        item = self._curve_items[key][1]
        if x is None or item.xData is None or not len(item.xData):
            return ""
        xs = item.xData
        i = int(np.clip(np.searchsorted(xs, x), 0, len(xs) - 1))
        if i > 0 and abs(xs[i - 1] - x) <= abs(xs[i] - x):
            i -= 1
        (lo, hi), _ = plot.vb.viewRange()
        where = f" @{xs[i]:.4g}" if abs(xs[i] - x) > 0.01 * (hi - lo) else ""
        return f" {item.yData[i]:.4g}{where}"

    def legend_text(self, plot) -> str:
        return self.legends[plot][1].text

    def update_overlay_terms(self, overlays: dict) -> None:
        """The overlay choice lists the loss terms of the ``overlays`` (the choice kept)."""
        terms = ["loss"] + sorted({t for run in overlays.values() for t in run.losses} - {"loss"})
        current = self.overlay_term.currentData() or "loss"
        self.overlay_term.blockSignals(True)
        self.overlay_term.clear()
        for term in terms:
            self.overlay_term.addItem(term, term)
        self.overlay_term.addItem("every loss term", ALL_TERMS)
        self.overlay_term.setCurrentIndex(max(0, self.overlay_term.findData(current)))
        self.overlay_term.blockSignals(False)

