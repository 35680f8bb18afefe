"""The prior canvas: the network input rectangle with priors, GT boxes and positives drawn on it.

Coordinates are input pixels, y pointing down like an image. Rectangles are drawn with ONE
``QGraphicsPathItem`` per layer (all priors of a level are one path), centres with one
``ScatterPlotItem``; the view never creates an item per prior. The view knows nothing about the
engine: it is given numpy arrays and reports clicks in input pixels.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsRectItem

__all__ = ["PriorView", "rects_to_path", "path_to_rects"]

_VERTS_PER_RECT = 5          # moveTo + 4 lineTo (closed ring)
_BACKGROUND = "#111318"
_INPUT_FILL = "#1d2129"
_INPUT_EDGE = "#d0d4dc"


def rects_to_path(boxes: np.ndarray) -> QPainterPath:
    """(N, 4) xyxy boxes -> one QPainterPath of N closed rectangles, built without a Python loop."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return QPainterPath()
    x = boxes[:, [0, 2, 2, 0, 0]].ravel()
    y = boxes[:, [1, 1, 3, 3, 1]].ravel()
    connect = np.ones(len(x), dtype=np.int32)
    connect[_VERTS_PER_RECT - 1::_VERTS_PER_RECT] = 0     # the ring's last vertex does not join the next ring
    return pg.arrayToQPath(x, y, connect)


def path_to_rects(path: QPainterPath) -> np.ndarray:
    """The (N, 4) xyxy rectangles stored in a path made by :func:`rects_to_path` (read back
    from the path's elements: what is drawn, not what was asked for)."""
    n = path.elementCount() // _VERTS_PER_RECT
    out = np.empty((n, 4), dtype=np.float64)
    for i in range(n):
        a, c = path.elementAt(i * _VERTS_PER_RECT), path.elementAt(i * _VERTS_PER_RECT + 2)
        out[i] = (min(a.x, c.x), min(a.y, c.y), max(a.x, c.x), max(a.y, c.y))
    return out


def _pen(color, width: float = 1.0, alpha: int = 255, style=Qt.PenStyle.SolidLine) -> QPen:
    c = QColor(color)
    c.setAlpha(alpha)
    pen = QPen(c, width, style)
    pen.setCosmetic(True)            # width in screen pixels whatever the zoom
    return pen


class PriorView(pg.PlotWidget):
    """Canvas for one input image size: priors of a level, one cell, centres, GTs and positives.

    Signals: ``sigCellClicked(x, y)`` on a left click (input pixels), ``sigCursorMoved(x, y)``.
    Counts of what is currently drawn: :attr:`rect_count` (rectangles in the prior path),
    :attr:`center_count` (centre points), :attr:`positive_count` (positive-anchor rectangles).
    """

    sigCellClicked = Signal(float, float)
    sigCursorMoved = Signal(float, float)

    def __init__(self, parent=None):
        super().__init__(parent, background=_BACKGROUND)
        self.input_size = (0, 0)                  # (h, w)
        self._gt_items: list = []
        self._positive_items: list[QGraphicsPathItem] = []
        self._build_plot()
        self._build_layers()
        self.scene().sigMouseClicked.connect(self._on_scene_clicked)
        self.scene().sigMouseMoved.connect(self._on_scene_moved)

    # ------------------------------------------------------------------ construction

    def _build_plot(self) -> None:
        plot = self.getPlotItem()
        plot.invertY(True)                         # image convention: y grows downwards
        plot.setAspectLocked(True, ratio=1.0)      # one input pixel is square on screen
        plot.setMenuEnabled(False)
        plot.hideButtons()
        plot.showAxis("top")
        plot.hideAxis("bottom")
        plot.setLabel("top", "x (input px)")
        plot.setLabel("left", "y (input px)")
        plot.showGrid(x=False, y=False)
        plot.vb.disableAutoRange()

    def _build_layers(self) -> None:
        self._input_item = QGraphicsRectItem()
        self._input_item.setPen(_pen(_INPUT_EDGE, 1.5))
        self._input_item.setBrush(QBrush(QColor(_INPUT_FILL)))
        self._input_item.setZValue(-10)
        self._input_label = pg.TextItem(color=_INPUT_EDGE, fill=pg.mkBrush(_BACKGROUND), anchor=(0, 0))
        self._input_label.setZValue(2)
        self._prior_item = QGraphicsPathItem()
        self._prior_item.setZValue(0)
        self._center_item = pg.ScatterPlotItem(size=3, pen=None, pxMode=True)
        self._center_item.setZValue(1)
        self._cell_item = QGraphicsRectItem()
        self._cell_item.setPen(_pen("#ffffff", 1.5, 230, Qt.PenStyle.DashLine))
        self._cell_item.setZValue(3)
        self._cell_item.setVisible(False)
        for item in (self._input_item, self._input_label, self._prior_item, self._center_item, self._cell_item):
            self.addItem(item)

    # ------------------------------------------------------------------ public drawing API

    def set_input_size(self, h: int, w: int) -> None:
        """Show the network input rectangle 0..w x 0..h and fit the view to it."""
        self.input_size = (int(h), int(w))
        self._input_item.setRect(QRectF(0, 0, w, h))
        self._input_label.setText(f"network input {w}x{h} (w x h)")
        self._input_label.setPos(0, h)
        self.getPlotItem().vb.setRange(xRange=(0, w), yRange=(0, h), padding=0.04)

    def show_rects(self, boxes: np.ndarray, color) -> None:
        """Draw (N, 4) xyxy boxes as one path in ``color``; hides the centres."""
        path = rects_to_path(boxes)
        self._prior_item.setPath(path)
        alpha = 255 if len(boxes) <= 64 else (150 if len(boxes) <= 2000 else 70)
        self._prior_item.setPen(_pen(color, 1.5 if len(boxes) <= 64 else 1.0, alpha))
        self._center_item.setData([], [])

    def show_centers(self, points: np.ndarray, color) -> None:
        """Draw (N, 2) points as one scatter item in ``color``; hides the prior rectangles."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        self._prior_item.setPath(QPainterPath())
        self._center_item.setData(points[:, 0], points[:, 1], brush=pg.mkBrush(color))

    def set_cell(self, box) -> None:
        """Outline one feature cell (xyxy), or hide the outline with None."""
        self._cell_item.setVisible(box is not None)
        if box is not None:
            x1, y1, x2, y2 = (float(v) for v in box)
            self._cell_item.setRect(QRectF(x1, y1, x2 - x1, y2 - y1))

    def set_ground_truth(self, boxes: np.ndarray, colors: list, captions: list[str],
                         positives: list[np.ndarray]) -> None:
        """GT boxes (thick, with a caption) and, per GT, its positive priors (one path per GT)."""
        for item in self._gt_items + self._positive_items:
            self.removeItem(item)
        self._gt_items, self._positive_items = [], []
        for box, color, caption, pos in zip(boxes, colors, captions, positives):
            self._add_positive_path(pos, color)
            self._add_gt_box(box, color, caption)

    def _add_positive_path(self, boxes: np.ndarray, color) -> None:
        item = QGraphicsPathItem(rects_to_path(boxes))
        item.setPen(_pen(color, 1.6, 240, Qt.PenStyle.DashLine))
        item.setZValue(4)
        self.addItem(item)
        self._positive_items.append(item)

    def _add_gt_box(self, box, color, caption: str) -> None:
        x1, y1, x2, y2 = (float(v) for v in box)
        rect = QGraphicsRectItem(QRectF(x1, y1, x2 - x1, y2 - y1))
        rect.setPen(_pen(color, 3.0))
        rect.setZValue(5)
        fill = QColor(color)
        label = pg.TextItem(caption, color="#000000", fill=pg.mkBrush(fill), anchor=(0, 1))
        label.setPos(x1, y1)
        label.setZValue(6)
        for item in (rect, label):
            self.addItem(item)
            self._gt_items.append(item)

    # ------------------------------------------------------------------ what is drawn

    @property
    def rect_count(self) -> int:
        """Rectangles currently in the prior path (counted from the path itself)."""
        return self._prior_item.path().elementCount() // _VERTS_PER_RECT

    @property
    def center_count(self) -> int:
        """Centre points currently in the scatter item."""
        return len(self._center_item.data)

    @property
    def positive_count(self) -> int:
        """Positive-prior rectangles drawn over all GTs."""
        return sum(item.path().elementCount() // _VERTS_PER_RECT for item in self._positive_items)

    def drawn_rects(self) -> np.ndarray:
        """(N, 4) xyxy rectangles read back from the prior path."""
        return path_to_rects(self._prior_item.path())

    def data_to_viewport(self, x: float, y: float):
        """Widget (viewport) position of input pixel (x, y); used by tests and tools."""
        scene_pos = self.getPlotItem().vb.mapViewToScene(QPointF(x, y))
        return self.mapFromScene(scene_pos)

    # ------------------------------------------------------------------ mouse

    def _scene_to_input(self, scene_pos) -> tuple[float, float]:
        p = self.getPlotItem().vb.mapSceneToView(scene_pos)
        return p.x(), p.y()

    def _inside_input(self, x: float, y: float) -> bool:
        h, w = self.input_size
        return 0 <= x <= w and 0 <= y <= h

    def _on_scene_clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        x, y = self._scene_to_input(event.scenePos())
        if self._inside_input(x, y):
            self.sigCellClicked.emit(x, y)

    def _on_scene_moved(self, scene_pos) -> None:
        x, y = self._scene_to_input(scene_pos)
        self.sigCursorMoved.emit(x, y)
