"""The Dataset tab: the open project's first look, as mmyolo's dataset_analysis and FiftyOne give
it: images, boxes, classes, boxes per class, box width / height / aspect-ratio histograms, COCO
size buckets, images without boxes, boxes outside their image and what the open reported. The
numbers are :func:`detengine.api.dataset_stats` (what ``detengine stats`` prints); they follow
edits (recomputed when the tab is shown and the project changed).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QPushButton, QSplitter, QVBoxLayout, QWidget

from app import theme

__all__ = ["DatasetPanel"]

PLOTS = (("boxes per class", "class"), ("box width (image px)", "width"),
         ("box height (image px)", "height"), ("aspect ratio (w / h)", "aspect"))


class DatasetPanel(QWidget):
    """Call :meth:`set_document`; :meth:`set_active` when the tab shows or hides."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.doc = None
        self.stats = None              # detengine.api.DatasetStats of the project as last computed
        self.active = False
        self._stale = True
        self.summary = QLabel("Open the Dataset tab to count the project's boxes.")
        self.summary.setWordWrap(True)
        self.refresh_button = QPushButton("Refresh")
        self.plots = pg.GraphicsLayoutWidget()
        self.plot_items = {}
        for row, (title, key) in enumerate(PLOTS):
            item = self.plots.addPlot(row=row, col=0, title=title)
            item.setMenuEnabled(False)
            item.getAxis("left").setLabel("boxes")
            self.plot_items[key] = item
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        split = QSplitter()
        split.setOrientation(pg.QtCore.Qt.Orientation.Vertical)
        split.addWidget(self.plots)
        split.addWidget(self.details)
        split.setSizes([420, 160])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.summary)
        layout.addWidget(self.refresh_button)
        layout.addWidget(split, 1)
        self.refresh_button.clicked.connect(self.refresh)
        self._timer = QTimer(self)           # many edits at once: one recount
        self._timer.setSingleShot(True)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self._refresh_if_shown)

    def set_document(self, doc) -> None:
        self.doc = doc
        self.stats = None
        doc.boxesChanged.connect(self._changed)
        doc.categoriesChanged.connect(self._changed)
        self._changed()

    def set_active(self, active: bool) -> None:
        self.active = active
        if active and self._stale:
            self.refresh()

    def _changed(self, *_args) -> None:
        self._stale = True
        self._timer.start()

    def _refresh_if_shown(self) -> None:
        if self.active and self._stale:
            self.refresh()

    def refresh(self) -> None:
        """Count the project now (a few ms per 1,000 boxes) and draw."""
        from detengine.api import dataset_stats
        if self.doc is None:
            return
        project = self.doc.project
        self.stats = stats = dataset_stats(project, source=str(project.path or project.image_root))
        self._stale = False
        crowd = int(stats.crowd.sum())
        self.summary.setText(f"{stats.num_images} images ({len(stats.images_without_boxes)} without boxes), "
                             f"{stats.num_boxes} boxes ({crowd} crowd), {len(stats.class_names)} classes; "
                             f"COCO sizes: " + ", ".join(f"{k} {v}" for k, v in stats.size_buckets.items())
                             + (f"; {len(stats.boxes_outside)} boxes outside their image" if stats.boxes_outside else ""))
        self._draw()
        self.details.setPlainText(stats.summary())

    def _draw(self) -> None:
        stats = self.stats
        ids = [c.id for c in self.doc.project.categories]
        colors = [theme.class_color(i) for i in ids]
        self._bars("class", stats.class_names, stats.boxes_per_class, colors)
        for key, hist in (("width", stats.width_hist), ("height", stats.height_hist), ("aspect", stats.aspect_hist)):
            self._bars(key, list(hist.labels), list(hist.counts), [pg.mkColor(theme.AP_CURVE)] * len(hist.counts))

    def _bars(self, key: str, labels: list[str], counts: list[int], colors) -> None:
        item = self.plot_items[key]
        item.clear()
        x = np.arange(len(counts))
        if len(counts):
            item.addItem(pg.BarGraphItem(x=x, height=np.asarray(counts, float), width=0.8, brushes=colors,
                                         pens=[pg.mkPen(None)] * len(counts)))
        longest = max((len(t) for t in labels), default=1)
        step = max(1, -(-len(labels) * longest // 40))  # about 40 characters of tick labels: no overlap
        item.getAxis("bottom").setTicks([[(i, labels[i]) for i in range(0, len(labels), step)], []])
        item.setXRange(-0.6, max(len(counts), 1) - 0.4, padding=0)
        item.setYRange(0, max(max(counts, default=0), 1) * 1.1, padding=0)
