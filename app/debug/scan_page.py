"""Dataset scan: under the current config and assigner, every GT of the project with fewer than
k positive priors, and a scatter of GT width x height (network-input pixels) coloured by its best
IoU with any prior, with each level's prior shapes overlaid. Point priors (RTMDet) have no box,
so no IoU: there the colour is the number of positives and the marks are the level strides. An
assigner that weighs the predictions (RTMDet's dynamic soft label) is scanned with the debug
panel's model (a checkpoint, or the random init) run on every image, as the trainer would assign
with that model; with no model, with a freshly initialised head's outputs. Runs on its own worker
thread with a progress bar and a cancel button; a click on a row or a point jumps to that box.
"""
from __future__ import annotations

import threading

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox, QSplitter, QVBoxLayout

from app.annotate.image_loader import image_size, read_image
from app.debug.debug_page import DebugPage
from app.debug_common import data_row, fill_table, make_table, qimage_to_rgb
from app.theme import level_color
from app.trace_worker import TraceRunner

__all__ = ["ScanPage"]

POWERS_OF_TWO = [2 ** k for k in range(0, 14)]     # the scatter's axis ticks (1 .. 8192 px)


class ScanPage(DebugPage):
    progress = Signal(int, int)
    jumpRequested = Signal(int, int)          # image index, box id

    def __init__(self, panel):
        super().__init__(panel)
        self.runner = TraceRunner(self)
        self.runner.done.connect(self._on_done)
        self.runner.failed.connect(lambda _s, _i, text: self.summary.setText(f"scan failed: {text.splitlines()[0]}"))
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
        top = QHBoxLayout()                       # the progress bar on its own row: the dock can be narrow
        for w in (self.start, self.cancel, self.k):
            top.addWidget(w)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.plot_widget)
        split.addWidget(self.table)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(self.bar)
        layout.addWidget(self.summary)
        layout.addWidget(split, 1)
        self.start.clicked.connect(self.run_scan)
        self.cancel.clicked.connect(self.cancel_event.set)
        self.k.valueChanged.connect(lambda _v: self._show_scan())
        self.table.cellDoubleClicked.connect(lambda r, _c: self._jump_row(r))
        self.table.cellClicked.connect(lambda r, _c: self._jump_row(r))

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

    def _on_done(self, _slot: str, _id: int, result, seconds: float) -> None:
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
