"""Tools > Fit Anchors to Dataset…: :func:`detengine.api.fit_anchors` on the project's training
split under the debug views' config, on a worker thread; then before / after side by side: the
coverage table under the real assigner (GTs whose best prior IoU reaches the positive threshold,
mean best IoU, GTs with no positive), the GTs' width x height with both settings' prior shapes,
and the config snippet to copy (the starting settings when nothing better was found).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app import theme
from app.trace_worker import TraceRunner

__all__ = ["FitAnchorsDialog"]

POWERS_OF_TWO = [2 ** k for k in range(0, 14)]


class FitAnchorsDialog(QDialog):
    """Starts the fit at once (``start``); ``fit`` holds the :class:`~detengine.api.AnchorFit`."""

    max_iter = 60           # differential evolution generations (as ``detengine fit-anchors``)

    def __init__(self, items, cfg: dict, categories, config_name: str, parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Fit anchors to the dataset: {config_name}")
        self.resize(760, 640)
        self.fit = None
        self.error = ""
        self.items, self.cfg, self.categories = items, cfg, categories
        self.status = QLabel(f"fitting {config_name}'s anchors to {sum(len(i.boxes) for i in items)} GTs of "
                             f"{len(items)} training images (a scan before, the search, a scan after)…")
        self.status.setWordWrap(True)
        self.table = QTableWidget(4, 3)
        self.table.setHorizontalHeaderLabels(["", "before", "after"])
        self.table.verticalHeader().hide()
        self.plot = pg.PlotWidget()
        self.plot.setLogMode(True, True)
        self.plot.setLabel("bottom", "width (input px)")
        self.plot.setLabel("left", "height (input px)")
        for side in ("bottom", "left"):
            self.plot.getAxis(side).setTicks([[(np.log10(v), str(v)) for v in POWERS_OF_TWO], []])
        self.plot.addLegend(offset=(-5, 5))
        self.snippet = QPlainTextEdit()
        self.snippet.setReadOnly(True)
        self.snippet.setMaximumHeight(90)
        self.copy = QPushButton("Copy config snippet")
        self.copy.setEnabled(False)
        close = QPushButton("Close")
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.snippet)
        layout.addLayout(buttons)
        self.copy.clicked.connect(lambda: QApplication.clipboard().setText(self.snippet.toPlainText()))
        close.clicked.connect(self.accept)
        self.runner = TraceRunner(self)
        self.runner.done.connect(self._on_done)
        self.runner.failed.connect(self._on_failed)

    def start(self) -> None:
        items, cfg, categories, max_iter = self.items, self.cfg, self.categories, self.max_iter

        def job():
            from detengine.api import fit_anchors
            return fit_anchors(items, cfg, categories, max_iter=max_iter)
        self.runner.request(job, "fit")

    def _on_failed(self, _slot, _id, text: str) -> None:
        self.error = text.splitlines()[0]
        self.status.setText(f"cannot fit: {self.error}")

    def _on_done(self, _slot, _id, fit, seconds: float) -> None:
        self.fit = fit
        verdict = ("fitted settings cover more GTs (or as many, closer): copy them into the config" if fit.improved
                   else "no setting covering more GTs was found: the config's own settings are kept")
        self.status.setText(f"{verdict} ({seconds:.0f} s; the proxy searched is each GT's best prior IoU at its real "
                            f"position, the table is the real assigner's scan).")
        b, a = fit.before_coverage, fit.after_coverage
        rows = [("GTs", b.gts, a.gts),
                (f"best IoU >= {b.threshold:g}", f"{b.covered} ({100 * b.share:.1f}%)", f"{a.covered} ({100 * a.share:.1f}%)"),
                ("mean best IoU", f"{b.mean_best_iou:.3f}", f"{a.mean_best_iou:.3f}"),
                ("GTs with no positive", b.zero_positives, a.zero_positives)]
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(str(value)))
        self.table.resizeColumnsToContents()
        self._draw(fit)
        self.snippet.setPlainText(fit.snippet)
        self.copy.setEnabled(True)

    def _draw(self, fit) -> None:
        wh = np.maximum(fit.gt_wh, 1)
        self.plot.plot(wh[:, 0], wh[:, 1], pen=None, symbol="o", symbolSize=4, symbolPen=None,
                       symbolBrush=pg.mkBrush(theme.NEGATIVE), name="GTs")
        for shapes, name, color, symbol in ((fit.shapes_before, "prior shapes before", theme.FP, "+"),
                                            (fit.shapes_after, "prior shapes after", theme.TP, "x")):
            s = np.concatenate(shapes)
            self.plot.plot(s[:, 0], s[:, 1], pen=None, symbol=symbol, symbolSize=12, symbolBrush=None,
                           symbolPen=pg.mkPen(color, width=2), name=name)

    def done(self, code: int) -> None:     # closing stops the worker
        self.runner.stop()
        super().done(code)
