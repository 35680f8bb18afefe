"""Dataset scan: under the current config and assigner, every GT of the project with fewer than
k positive priors, and a scatter of GT width x height (network-input pixels) coloured by its best
IoU with any prior, with each level's prior shapes overlaid. Point priors (RTMDet) have no box,
so no IoU: there the colour is the number of positives and the marks are the level strides. An
assigner that weighs the predictions (RTMDet's dynamic soft label) is scanned with the debug
panel's model (a checkpoint, or the random init) run on every image, as the trainer would assign
with that model; with no model, with a freshly initialised head's outputs. Runs on its own worker
thread with a progress bar and a cancel button; a click on a row or a point jumps to that box.

"During training" mode (:class:`TrainingScanView`): a training run's per-GT probe
(:mod:`detengine.probe`, ``probe.jsonl``): the probe GTs with zero positives in at least a chosen
share of the probes, most often starved first; a click plots that GT's positives and its mean
classification / regression loss per positive over the iterations, and jumps to it when its image
is in the open project.
"""
from __future__ import annotations

import math
import threading

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.annotate.image_loader import image_size, read_image
from app.debug.debug_page import DebugPage
from app.debug_common import data_row, fill_table, make_table, qimage_to_rgb, select_data_row, selected_data_row
from app.theme import level_color
from app.trace_worker import TraceRunner

__all__ = ["ScanPage", "TrainingScanView"]

MODES = (("project", "Project scan"), ("training", "During training (a run's probe)"))


class _CurrentStack(QStackedWidget):
    """A stack as large as the page it shows (a QStackedWidget asks for its largest page)."""

    def sizeHint(self):
        return self.currentWidget().sizeHint() if self.currentWidget() else super().sizeHint()

    def minimumSizeHint(self):
        return self.currentWidget().minimumSizeHint() if self.currentWidget() else super().minimumSizeHint()


class _PlotArea(pg.GraphicsLayoutWidget):
    """The history plots: a modest preferred height (pyqtgraph asks for 600 px, taller than the dock)."""

    def sizeHint(self):
        return QSize(260, 250)


TABLE_PX, BELOW_PX = 112, 290         # the starved table (~5 rows) and the selected GT's line + plots


class _Split(QSplitter):
    """The table over the selected GT's history, asking for :data:`TABLE_PX` + :data:`BELOW_PX`
    (the dock scrolls: a page gets the height it asks for, so the plots start within reach)."""

    def sizeHint(self):
        return QSize(260, TABLE_PX + BELOW_PX + self.handleWidth())

POWERS_OF_TWO = [2 ** k for k in range(0, 14)]     # the scatter's axis ticks (1 .. 8192 px)


class ScanPage(DebugPage):
    progress = Signal(int, int)
    jumpRequested = Signal(int, int)          # image index, box id

    def __init__(self, panel):
        super().__init__(panel)
        self.runner = TraceRunner(self)
        self.runner.done.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)
        self.cancel_event = threading.Event()
        self.scan = None  # detengine.api.ScanResult of the last scan
        self.scatter = None  # the GT scatter's plot item (clickable points)
        self._build()
        self.progress.connect(self._on_progress)

    def _build(self) -> None:
        self.start = QPushButton("Scan the dataset")
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.k = QSpinBox()
        self.k.setRange(1, 100)
        self.k.setValue(1)
        self.k.setPrefix("< ")
        self.k.setSuffix(" positives")
        self.k.setToolTip("List the GTs with fewer than this many positive priors")
        self.bar = QProgressBar()
        self.bar.setValue(0)                      # "0%", not an empty box beside k, before the first scan
        self.summary = QLabel("Scans every GT of the project with the current config and assigner parameters.")
        self.summary.setWordWrap(True)
        self.table = make_table(["image", "file", "box id", "w x h (input px)", "best IoU", "positives"], sortable=True)
        # the scatter, its colour bar beside it and the legend under it (never over the points)
        self.plot_widget = pg.GraphicsLayoutWidget()
        self.plot = self.plot_widget.addPlot(row=0, col=0)
        self.plot.setLogMode(True, True)
        self.plot.setLabel("bottom", "GT width (input px)")
        self.plot.setLabel("left", "GT height (input px)")
        for side in ("bottom", "left"):          # powers of two: labels that never overlap
            self.plot.getAxis(side).setTicks([[(np.log10(v), str(v)) for v in POWERS_OF_TWO], []])
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=pg.colormap.get("viridis"), width=12,
                                        interactive=False, label="best IoU")
        self.plot_widget.addItem(self.colorbar, row=0, col=1)
        self.legend = pg.LegendItem(colCount=3)
        self.plot_widget.addItem(self.legend, row=1, col=0, colspan=2)
        top = QHBoxLayout()                       # k beside the progress bar on a row of their own: a narrow dock
        for w in (self.start, self.cancel):
            top.addWidget(w)
        second = QHBoxLayout()
        second.addWidget(self.k)
        second.addWidget(self.bar, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.plot_widget)
        split.addWidget(self.table)
        project_mode = QWidget()
        inner = QVBoxLayout(project_mode)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addLayout(top)
        inner.addLayout(second)
        inner.addWidget(self.summary)
        inner.addWidget(split, 1)
        self.training = TrainingScanView(self)
        self.training.jumpRequested.connect(self.jumpRequested)
        self.mode = QComboBox()
        for key, label in MODES:
            self.mode.addItem(label, key)
        self.mode.setToolTip("Project scan: every GT of the open project under the current config and assigner.\n"
                             "During training: a training run's per-GT probe (probe.jsonl), GT by GT over the "
                             "iterations")
        self.stack = _CurrentStack()
        self.stack.addWidget(project_mode)
        self.stack.addWidget(self.training)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.mode)
        layout.addWidget(self.stack, 1)
        self.mode.currentIndexChanged.connect(self._on_mode)
        self.start.clicked.connect(self.run_scan)
        self.cancel.clicked.connect(self.cancel_event.set)
        self.k.valueChanged.connect(lambda _v: self._show_scan())
        self.table.cellDoubleClicked.connect(lambda r, _c: self._jump_row(r))
        self.table.cellClicked.connect(lambda r, _c: self._jump_row(r))

    # ------------------------------------------------------------------ modes

    def _on_mode(self, index: int) -> None:
        training = self.mode.itemData(index) == "training"
        self.stack.setCurrentIndex(1 if training else 0)
        self.stack.updateGeometry()               # the page asks for the shown mode's size only
        if training:
            self.training.refresh_runs()

    def set_mode(self, mode: str) -> None:
        """``"project"`` (the dataset scan) or ``"training"`` (a run's probe)."""
        self.mode.setCurrentIndex(self.mode.findData(mode))

    def show_training_run(self, run_dir) -> None:
        """The "during training" mode on run folder ``run_dir`` (listed even when not registered)."""
        self.set_mode("training")
        self.training.show_run(run_dir)

    # ------------------------------------------------------------------ running

    def snapshot(self) -> list:
        """Every image of the project as the scan needs it, taken on the GUI thread."""
        from detengine.api import scan_items
        return scan_items(self.panel.editor.project, size_of=image_size)

    def _model_for_scan(self, overrides) -> tuple[str | None, str | None]:
        """(model choice, checkpoint) when the assigner weighs predictions and a model is chosen."""
        from detengine.api import head_core_for, merge_dicts

        cfg = self.panel.cfg["model"]
        try:
            uses = head_core_for(merge_dicts(cfg, overrides) if overrides else cfg).needs_predictions()
        except (ValueError, KeyError, TypeError) as exc:  # a config the engine cannot build: say so
            self.panel.message.emit(f"dataset scan: cannot build the head ({exc}); scanning without a model")
            uses = False
        choice = self.panel.model_choice()
        if not uses or not self.panel.has_model():
            return None, None
        return choice, self.panel.checkpoints.get(choice)

    def run_scan(self) -> None:
        items = self.snapshot()
        categories = list(self.panel.editor.project.categories)
        spec_cfg, num_classes = self.panel.cfg, max(1, len(categories))
        overrides = self.panel.pages["assign"].model_overrides()
        model_choice, checkpoint = self._model_for_scan(overrides)
        self.cancel_event.clear()
        cancel, progress = self.cancel_event, self.progress
        self.start.setEnabled(False)
        self.cancel.setEnabled(True)
        self.bar.setRange(0, len(items))
        self.bar.setValue(0)

        def job():
            from detengine.api import load_model, scan_project
            loaded = load_model(spec_cfg, num_classes, checkpoint) if model_choice is not None else None

            def read_rgb(path):
                qimage, _error = read_image(path)
                return None if qimage is None else qimage_to_rgb(qimage)
            return scan_project(items, spec_cfg, categories, loaded=loaded, checkpoint=checkpoint,
                                model_overrides=overrides, read_rgb=read_rgb, cancel=cancel,
                                progress=lambda done, total: progress.emit(done, total))

        self.runner.request(job, "scan")

    def _on_progress(self, done: int, total: int) -> None:
        self.bar.setValue(done)
        self.summary.setText(f"scanning: {done} of {total} images")

    def _on_failed(self, slot: str, request_id: int, text: str) -> None:
        if slot == "probe":
            self.training.on_failed(request_id, text)
        else:
            self.summary.setText(f"scan failed: {text.splitlines()[0]}")
            self.start.setEnabled(True)
            self.cancel.setEnabled(False)

    def _on_done(self, slot: str, request_id: int, result, seconds: float) -> None:
        if slot == "probe":
            self.training.on_loaded(request_id, result)
            return
        self.start.setEnabled(True)
        self.cancel.setEnabled(False)
        self.scan = result
        cancelled = " (cancelled)" if self.cancel_event.is_set() else ""
        self._show_scan(cancelled)

    # ------------------------------------------------------------------ showing

    def weak_rows(self) -> np.ndarray:
        """Indices of the scanned GTs with fewer than k positives, fewest / worst IoU first."""
        return self.scan.weak(self.k.value())

    def _show_scan(self, note: str = "") -> None:
        if self.scan is None:
            return
        rows, where = self.scan.rows, self.scan.where
        weak = self.weak_rows()
        project = self.panel.editor.project
        text = f"{len(rows)} GTs in {self.scan.images} images{note}: {len(weak)} with fewer than {self.k.value()} positives"
        if self.scan.is_point:
            text += (f"; median positives {np.median(rows[:, 1]) if len(rows) else 0:.0f}. Point priors have no box, "
                     f"so no IoU: colour = positives")
        else:
            text += f"; median best IoU {np.median(rows[:, 0]) if len(rows) else 0:.3f}"
        if self.scan.uses_predictions and self.scan.model:
            text += f". This assigner weighs the model's predictions: scanned with {self.scan.model} run on every image"
        elif self.scan.uses_predictions:
            text += (". This assigner weighs the model's predictions: scanned with a freshly initialised head "
                     "(choose a model above to scan with its predictions)")
        self.summary.setText(text)
        table = [[int(where[r, 0]) + 1, project.images[int(where[r, 0])].file_name, int(where[r, 1]),
                  f"{rows[r, 2]:.0f}x{rows[r, 3]:.0f}", "-" if self.scan.is_point else round(float(rows[r, 0]), 3),
                  int(rows[r, 1])] for r in weak]
        fill_table(self.table, table)
        self._draw_plot()

    def _draw_plot(self) -> None:
        self.plot.clear()
        self.legend.clear()
        rows = self.scan.rows
        if len(rows):
            cmap = pg.colormap.get("viridis")
            if self.scan.is_point:  # 0 positives dark, 2k or more bright
                top = 2 * self.k.value()
                value, legend, label = rows[:, 1] / top, "GT (colour: positives)", "positives"
                self.colorbar.setLevels((0, top))
            else:
                value, legend, label = rows[:, 0], "GT (colour: best IoU)", "best IoU"
                self.colorbar.setLevels((0, 1))
            self.colorbar.axis.setLabel(label)
            brushes = [pg.mkBrush(c) for c in cmap.map(np.clip(value, 0, 1), mode="qcolor")]
            # PlotDataItem (not a bare ScatterPlotItem): it follows the plot's log axes
            self.scatter = self.plot.plot(np.maximum(rows[:, 2], 1), np.maximum(rows[:, 3], 1), pen=None, symbol="o",
                                          symbolSize=6, symbolBrush=brushes, symbolPen=None, name=legend)
            self.scatter.sigPointsClicked.connect(self._on_point)
            self.legend.addItem(self.scatter, legend)
        for level, wh in enumerate(self.scan.shapes):
            name = f"P{level} stride" if self.scan.is_point else f"P{level} priors"
            item = self.plot.plot(wh[:, 0], wh[:, 1], pen=None, symbol="+", symbolSize=16,
                                  symbolPen=pg.mkPen(level_color(level), width=2), symbolBrush=None, name=name)
            self.legend.addItem(item, name)

    def _on_point(self, _item, points, _event=None) -> None:
        if not points:
            return
        index = points[0].index()
        image, box_id = self.scan.where[index]
        self.jumpRequested.emit(int(image), int(box_id))

    def _jump_row(self, row: int) -> None:
        weak = self.weak_rows()
        row = data_row(self.table, row)           # the table may be sorted by a header click
        if 0 <= row < len(weak):
            image, box_id = self.scan.where[weak[row]]
            self.jumpRequested.emit(int(image), int(box_id))

    def shutdown(self) -> None:
        self.cancel_event.set()
        self.runner.stop()


class TrainingScanView(QWidget):
    """The Dataset scan's "during training" mode: one run's per-GT probe. ``jumpRequested(image,
    box id)`` when the clicked GT's image is in the open project."""

    jumpRequested = Signal(int, int)
    loaded = Signal()

    def __init__(self, page: ScanPage):
        super().__init__()
        self.page = page
        self.history = None           # detengine.api.ProbeHistory of the shown run
        self.rows: list = []          # the listed ProbeGTs, in data order
        self.run_dir = None
        self.loading = False
        self._request = -1
        self._build()

    def _build(self) -> None:
        self.run_combo = QComboBox()
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_combo.setMinimumContentsLength(12)
        self.run_combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.run_combo.setToolTip("Training runs with a per-GT probe (probe.jsonl); Open run folder… for another")
        self.reload = QPushButton("Reload")
        self.reload.setToolTip("Read the run's probe again (a run still training adds a probe every interval)")
        self.share = QSpinBox()
        self.share.setRange(0, 100)
        self.share.setValue(50)
        self.share.setSingleStep(10)
        self.share.setSuffix(" % of probes")
        self.share.setToolTip("List the probe GTs without a positive in at least this share of the probes "
                              "(0 %: every probe GT)")
        share_label = QLabel("No positive in ≥")
        share_label.setToolTip(self.share.toolTip())
        self.summary = QLabel("Choose a training run: its probe (probe.jsonl) follows a fixed set of training "
                              "images' GTs over the iterations.")
        self.summary.setWordWrap(True)
        self.table = make_table(["% zero", "GT", "class", "w x h", "image"], sortable=True)
        self.table.horizontalHeaderItem(0).setToolTip("Share of the probes in which the GT had no positive prior")
        self.table.horizontalHeaderItem(3).setToolTip("GT width x height in network-input pixels (what the "
                                                      "assigner matched)")
        self.table.setMinimumHeight(70)
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)   # the name elides
        self.table.horizontalHeader().setMinimumSectionSize(24)
        self.table.horizontalHeader().setStretchLastSection(False)       # (it keeps >= 100 px; Stretch shrinks)
        self.table.setTextElideMode(Qt.TextElideMode.ElideLeft)                             # ...the end shows
        self.table.setWordWrap(False)                                                      # (else no elision)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)     # the detail line names it
        self.table.setToolTip("Click a GT: its positives and losses over the iterations, and the canvas shows it "
                              "when its image is in the open project")
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.plots = _PlotArea()
        self.pos_plot = self.plots.addPlot(row=0, col=0)
        self.pos_plot.setLabel("left", "positives")
        self.loss_plot = self.plots.addPlot(row=1, col=0)
        self.loss_plot.setLabel("left", "loss")
        self.loss_plot.setToolTip("Mean classification (cls) and regression (box) loss over the GT's positives, "
                                  "per prior as the Loss view lists them; none without positives")
        self.loss_plot.setLabel("bottom", "iteration")
        self.loss_plot.setXLink(self.pos_plot)
        self.pos_plot.getAxis("bottom").setStyle(showValues=False)
        for plot in (self.pos_plot, self.loss_plot):
            plot.getAxis("left").setWidth(58)             # the two plots' x axes line up; label and ticks fit
            plot.getAxis("left").enableAutoSIPrefix(False)  # "0.0006", not "600" under a "(x0.001)" label
            plot.showGrid(x=True, y=True, alpha=0.15)
        self.legend = pg.LegendItem(colCount=3)
        self.plots.addItem(self.legend, row=2, col=0)
        self._fill_legend()
        top = QHBoxLayout()
        top.addWidget(self.run_combo, 1)
        top.addWidget(self.reload)
        below = QWidget()                                 # the selected GT: a line, then its history
        below_layout = QVBoxLayout(below)
        below_layout.setContentsMargins(0, 0, 0, 0)
        below_layout.addWidget(self.detail)
        below_layout.addWidget(self.plots, 1)
        split = _Split(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(below)
        split.setSizes([TABLE_PX, BELOW_PX])
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        share_row = QHBoxLayout()
        share_row.addWidget(share_label)
        share_row.addWidget(self.share, 1)
        layout.addLayout(top)
        layout.addLayout(share_row)
        layout.addWidget(self.summary)
        layout.addWidget(split)
        layout.addStretch(1)          # a tab as tall as the dock's tallest view: the room goes below, not to the table
        self.run_combo.activated.connect(self._on_run_chosen)
        self.reload.clicked.connect(lambda: self.run_dir is not None and self._load(self.run_dir))
        self.share.valueChanged.connect(lambda _v: self._fill())
        self.table.itemSelectionChanged.connect(self._on_selection)

    def _fill_legend(self) -> None:
        for name, color, symbol in (("positives", theme.LOSS_POS, "o"), ("no positive", theme.PROBLEM, "x"),
                                    ("cls", theme.LOSS_CLS, None), ("box", theme.LOSS_REG, None)):
            item = pg.PlotDataItem([0], [0], pen=None if symbol else pg.mkPen(color, width=2), symbol=symbol,
                                   symbolBrush=color, symbolPen=color, symbolSize=7)
            self.legend.addItem(item, name)
        for sample, _label in self.legend.items:
            sample.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    # ------------------------------------------------------------------ runs
    def refresh_runs(self) -> None:
        """The runs with a probe (the window's and every registered one), newest first."""
        from detengine.api import has_probe, known_runs
        try:
            runs = [p for p in known_runs() if has_probe(p)]
        except OSError as exc:
            runs = []
            self.summary.setText(f"cannot list the runs: {exc}")
        if self.run_dir is not None and self.run_dir not in runs:
            runs.insert(0, self.run_dir)
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        for path in runs:
            self.run_combo.addItem(path.name, str(path))
            self.run_combo.setItemData(self.run_combo.count() - 1, str(path), Qt.ItemDataRole.ToolTipRole)
        self.run_combo.addItem("Open run folder…", "")
        self.run_combo.setCurrentIndex(max(0, self.run_combo.findData(str(self.run_dir))) if self.run_dir else 0)
        self.run_combo.blockSignals(False)
        if self.run_dir is None and runs:
            self.show_run(runs[0])
        elif not runs and self.run_dir is None:
            self.summary.setText("No training run with a per-GT probe yet: runs of small data sets probe by default "
                                 "(probe=dict(interval=N) in a config, or detengine train --probe-interval N).")

    def _on_run_chosen(self, index: int) -> None:
        path = self.run_combo.itemData(index)
        if not path:
            path = QFileDialog.getExistingDirectory(self, "Open a training run folder")
            if not path:
                self.refresh_runs()
                return
        self.show_run(path)

    def show_run(self, run_dir) -> None:
        from pathlib import Path
        self.run_dir = Path(run_dir).resolve()
        if self.run_combo.findData(str(self.run_dir)) < 0:
            self.refresh_runs()
        self.run_combo.setCurrentIndex(max(0, self.run_combo.findData(str(self.run_dir))))
        self._load(self.run_dir)

    def _load(self, run_dir) -> None:
        self.loading = True
        self.summary.setText(f"reading the probe of {run_dir.name}…")

        def job():
            from detengine.api import read_probe
            return read_probe(run_dir)
        self._request = self.page.runner.request(job, "probe")

    def on_failed(self, request_id: int, text: str) -> None:
        if request_id == self._request:
            self.loading = False
            self.summary.setText(f"cannot read the probe: {text.splitlines()[0]}")
            self.loaded.emit()

    def on_loaded(self, request_id: int, history) -> None:
        if request_id != self._request:
            return
        self.loading = False
        keep = self._selected_key()
        self.history = history
        self._fill(keep)
        self.loaded.emit()

    # ------------------------------------------------------------------ showing
    def _selected_key(self):
        row = selected_data_row(self.table)
        return (self.rows[row].image, self.rows[row].gt) if row is not None and row < len(self.rows) else None

    def _fill(self, keep=None) -> None:
        keep = keep or self._selected_key()
        h = self.history
        if h is None:
            self.rows = []
            fill_table(self.table, [])
            self._plot(None)
            name = self.run_dir.name if self.run_dir is not None else "this run"
            self.summary.setText(f"{name} has no per-GT probe: train with probe=dict(interval=N) in the config or "
                                 f"detengine train --probe-interval N.")
            return
        share = self.share.value() / 100
        self.rows = h.starved(share)
        iterations = h.iterations
        span = f"iterations {iterations[0]}–{iterations[-1]}" if iterations else "no probe yet"
        listed = (f"<b>{len(self.rows)} starved</b>" if self.share.value() else
                  f"every GT listed, {sum(g.zero_fraction >= 0.5 for g in self.rows)} starved in ≥ half")
        self.summary.setText(f"{len(h.images)} images, {len(h.gts)} GTs, {len(iterations)} probes ({span}, every "
                             f"{h.interval}): {listed}")
        from pathlib import Path
        table = [[round(100 * g.zero_fraction, 1), f"GT{g.gt}", g.class_name,
                  "{:.0f}x{:.0f}".format(*(g.input_size or g.size)), Path(g.file_name).name] for g in self.rows]
        self.table.blockSignals(True)
        fill_table(self.table, table)
        index = next((i for i, g in enumerate(self.rows) if (g.image, g.gt) == keep), None)
        select_data_row(self.table, index if index is not None else (0 if self.rows else None))
        self.table.blockSignals(False)
        self._on_selection(jump=False)

    def _on_selection(self, jump: bool = True) -> None:
        key = self._selected_key()
        gt = self.history.gt(*key) if key is not None and self.history is not None else None
        self._plot(gt)
        if gt is not None and jump:
            self.jump_to(gt)

    def selected_gt(self):
        key = self._selected_key()
        return self.history.gt(*key) if key is not None and self.history is not None else None

    def _plot(self, gt) -> None:
        self.pos_plot.clear()
        self.loss_plot.clear()
        if gt is None:
            self.detail.setText("")
            return
        x = gt.iters.astype(float)
        self.pos_plot.plot(x, gt.pos.astype(float), pen=pg.mkPen(theme.LOSS_POS, width=2), symbol="o", symbolSize=5,
                           symbolBrush=theme.LOSS_POS, symbolPen=None)
        zero = gt.pos == 0
        if zero.any():
            self.pos_plot.plot(x[zero], np.zeros(int(zero.sum())), pen=None, symbol="x", symbolSize=9,
                               symbolPen=pg.mkPen(theme.PROBLEM, width=2), symbolBrush=theme.PROBLEM)
        top = max(1, int(gt.pos.max()) if len(gt.pos) else 1)
        step = max(1, math.ceil(top / 4))                  # whole positives on the axis
        self.pos_plot.getAxis("left").setTicks([[(v, str(v)) for v in range(0, top + step, step)], []])
        self.pos_plot.setYRange(-0.08 * top, top * 1.1, padding=0)          # the 0 tick and the zero marks show
        for values, color in ((gt.cls, theme.LOSS_CLS), (gt.box, theme.LOSS_REG)):
            if np.isfinite(values).any():
                self.loss_plot.plot(x, values, pen=pg.mkPen(color, width=2), connect="finite", symbol="o",
                                    symbolSize=4, symbolBrush=color, symbolPen=None)
        if len(x) and not np.isfinite(gt.cls).any():        # say why the plot is empty
            note = pg.TextItem("no positive in any probe: no loss on this GT", color=theme.PROBLEM, anchor=(0.5, 0.5))
            self.loss_plot.addItem(note)
            self.loss_plot.setYRange(0, 1, padding=0)
            note.setPos(float(x.min() + x.max()) / 2, 0.5)
        self.pos_plot.enableAutoRange(axis="x")
        w, hgt = gt.size
        size = f"{w:.0f}x{hgt:.0f} px"
        if gt.input_size is not None:
            size += " ({:.0f}x{:.0f} input)".format(*gt.input_size)
        last = f"; {int(gt.pos[-1])} positives at iteration {int(gt.iters[-1])}" if len(gt.iters) else ""
        self.detail.setText(f"<b>{gt.name}</b>, {gt.class_name} {size}: without a positive in {int(zero.sum())} "
                            f"of {len(gt.pos)} probes{last}")

    def jump_to(self, gt) -> bool:
        """Show ``gt`` on the canvas when its image and box are in the open project."""
        from detengine.api import probe_gt_in_project
        editor = getattr(self.page.panel, "editor", None)
        project = getattr(editor, "project", None)
        found = probe_gt_in_project(project, gt) if project is not None else None
        if found is None:
            self.detail.setText(self.detail.text() + f" Not in the open project ({gt.file_name}).")
            return False
        self.jumpRequested.emit(*found)
        return True
